"""The data contract every stage reads and writes: Word, Segment, Transcript.

Times are seconds relative to the original media, ``start <= end``, monotonic.
JSON on disk is ``to_dict()``.
"""

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text,
                "probability": self.probability}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Word":
        return cls(start=float(data["start"]), end=float(data["end"]), text=str(data["text"]),
                   probability=float(data.get("probability", 1.0)))


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    speaker: str | None = None
    # The decoder's confidence, when the ASR engine gives it (the clean stage reads it).
    avg_logprob: float | None = None
    no_speech_prob: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text,
                "words": [w.to_dict() for w in self.words], "speaker": self.speaker,
                "avg_logprob": self.avg_logprob, "no_speech_prob": self.no_speech_prob}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Segment":
        return cls(start=float(data["start"]), end=float(data["end"]), text=str(data["text"]),
                   words=tuple(Word.from_dict(w) for w in data.get("words") or ()),
                   speaker=data.get("speaker"), avg_logprob=_optional(data.get("avg_logprob")),
                   no_speech_prob=_optional(data.get("no_speech_prob")))


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Transcript:
    language: str
    segments: tuple[Segment, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "text": self.text,
                "segments": [s.to_dict() for s in self.segments], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transcript":
        return cls(language=str(data["language"]),
                   segments=tuple(Segment.from_dict(s) for s in data["segments"]),
                   meta=dict(data.get("meta") or {}))


def clamp_times(transcript: Transcript, duration: float) -> Transcript:
    """Enforce the contract: times inside [0, duration], start <= end, starts non-decreasing."""

    def clip(t: float, low: float) -> float:
        return min(max(round(t, 3), low), duration)

    segments: list[Segment] = []
    last = 0.0
    for seg in transcript.segments:
        start = cursor = clip(seg.start, last)
        words: list[Word] = []
        for w in seg.words:
            cursor = clip(w.start, cursor)
            words.append(Word(start=cursor, end=clip(w.end, cursor), text=w.text,
                              probability=w.probability))
        end = max([clip(seg.end, start), *(w.end for w in words)])
        segments.append(replace(seg, start=start, end=end, words=tuple(words)))
        last = start
    return Transcript(language=transcript.language, segments=tuple(segments),
                      meta=transcript.meta)
