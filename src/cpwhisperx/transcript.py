"""The data contract every stage reads and writes: Word, Segment, Transcript.

Times are seconds relative to the original media, ``start <= end``, monotonic.
JSON on disk is ``to_dict()``.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Any

# Whisper's verdict that a window is silence, from a segment's no_speech_prob and avg_logprob:
# faster-whisper's defaults (no_speech_threshold, log_prob_threshold), the one copy here
# (tests/test_faster_whisper_api.py checks they are still its defaults).
NO_SPEECH_THRESHOLD, LOG_PROB_THRESHOLD = 0.6, -1.0


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0
    speaker: str | None = None  # once diarized

    def to_dict(self) -> dict[str, Any]:
        out = {"start": self.start, "end": self.end, "text": self.text,
               "probability": self.probability}
        return out if self.speaker is None else {**out, "speaker": self.speaker}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Word":
        return cls(start=float(data["start"]), end=float(data["end"]), text=str(data["text"]),
                   probability=float(data.get("probability", 1.0)), speaker=data.get("speaker"))


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


# A word shorter than this has no real time (an aligner that could not place it, or Whisper's
# zero-length words); it is given time from its neighbours, about WORD_S where there is room.
MIN_WORD_S = 0.02
WORD_S = 0.2


@dataclass(slots=True)
class _Span:
    start: float
    end: float
    weight: int  # characters, to share out time among words that have none


def tidy(transcript: Transcript, duration: float) -> Transcript:
    """Enforce the contract on every word and segment: times inside [0, duration], in order,
    no overlaps (a segment ends where the next begins at the latest, words likewise, across
    segments too), no zero-length word where there is room, a segment spanning its words.

    Overlaps are split in the middle; a run of words without a real length is spread, by
    characters, over the room between its neighbours, taking in the neighbours themselves when
    there is none."""
    duration = math.floor(duration * 1000 + 1e-6) / 1000  # times are whole milliseconds
    spans = [_Span(w.start, w.end, len(w.text.strip()) or 1)
             for seg in transcript.segments
             for w in (seg.words or (Word(seg.start, seg.end, seg.text),))]
    _order(spans, duration)
    _give_length(spans, duration)
    it = iter(spans)
    segments: list[Segment] = []
    for seg in transcript.segments:
        if seg.words:
            words = tuple(replace(w, start=round(x.start, 3), end=round(x.end, 3))
                          for w, x in zip(seg.words, it, strict=False))
            segments.append(replace(seg, start=words[0].start, end=words[-1].end, words=words))
        else:
            x = next(it)
            segments.append(replace(seg, start=round(x.start, 3), end=round(x.end, 3)))
    return Transcript(language=transcript.language, segments=tuple(segments),
                      meta=transcript.meta)


def _order(spans: list[_Span], duration: float) -> None:
    """Inside the media, starts non-decreasing, and each overlap cut in its middle (never past
    the start of the span after next, so that starts stay in order)."""
    last = 0.0
    for x in spans:
        x.start = last = min(max(x.start, last), duration)
        x.end = min(max(x.end, x.start), duration)
    for i in range(len(spans) - 1):
        a, b = spans[i], spans[i + 1]
        if a.end > b.start:
            ceiling = min(a.end, b.end, spans[i + 2].start if i + 2 < len(spans) else b.end)
            a.end = b.start = min(max((a.end + b.start) / 2, b.start), ceiling)


def _give_length(spans: list[_Span], duration: float) -> None:
    i, n = 0, len(spans)
    while i < n:
        if spans[i].end - spans[i].start >= MIN_WORD_S:
            i += 1
            continue
        a = b = i
        while b < n and spans[b].end - spans[b].start < MIN_WORD_S:
            b += 1
        short = b - a
        while True:  # take in the neighbours until the run has room
            lo = spans[a - 1].end if a else 0.0
            hi = spans[b].start if b < n else duration
            if hi - lo >= MIN_WORD_S * short or (a == 0 and b == n):
                break
            a, b = max(a - 1, 0), min(b + 1, n)
        run = spans[a:b]
        # Where the run was, as long as its words need (WORD_S each for the short ones).
        need = sum(max(x.end - x.start, WORD_S) for x in run)
        middle = (run[0].start + run[-1].end) / 2
        start = min(max(middle - need / 2, lo), max(hi - need, lo))
        end = min(start + need, hi)
        total, done = sum(x.weight for x in run), 0
        for x in run:
            x.start = start + (end - start) * done / total
            done += x.weight
            x.end = start + (end - start) * done / total
        i = b


def interpolate(segment: Segment) -> Segment:
    """Last resort: spread the segment's words over its span by their length in characters."""
    texts = [w.text for w in segment.words] or segment.text.split()
    spans = fill_gaps([None] * len(texts), texts, segment.start, segment.end)
    words = tuple(Word(start=s, end=e, text=t, probability=0.0)
                  for (s, e), t in zip(spans, texts, strict=True))
    return replace(segment, words=words)


def spoken_words(segment: Segment) -> list[Word]:
    """The segment's non-empty words, spread over its span where it has no word times."""
    return [w for w in (segment.words or interpolate(segment).words) if w.text.strip()]


def fill_gaps(times: list[tuple[float, float] | None], words: list[str], start: float,
          end: float) -> list[tuple[float, float]]:
    """Spread each run of unaligned words over the gap between its aligned neighbours."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(times):
        span = times[i]
        if span is not None:
            out.append((round(span[0], 3), round(span[1], 3)))
            i += 1
            continue
        j = i
        while j < len(times) and times[j] is None:
            j += 1
        nxt = times[j] if j < len(times) else None
        gap_lo = out[-1][1] if out else min(start, nxt[0] if nxt else start)
        gap_hi = max(gap_lo, nxt[0] if nxt else max(end, gap_lo))
        sizes = [len(w) or 1 for w in words[i:j]]
        cursor, step = gap_lo, (gap_hi - gap_lo) / sum(sizes)
        for size in sizes:
            out.append((round(cursor, 3), round(cursor + size * step, 3)))
            cursor += size * step
        i = j
    return out
