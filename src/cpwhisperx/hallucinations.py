"""Hallucination removal: Whisper's known failure modes, each a rule that says what it removed.

- ``loops``: a word or n-gram repeated more than ``repeat_limit`` times in a row inside a
  segment is collapsed to one occurrence; so is a run of identical consecutive segments.
- ``silence``: a segment that lies in what the VAD found to be silence, or that the decoder
  itself rated as no speech (no-speech probability and average log-probability beyond Whisper's
  own thresholds).
- ``phrases``: a known phantom phrase ("Thanks for watching!", shipped per language in
  ``data/hallucinations/``), removed only when the audio supports it weakly.
- ``rate``: a speaking rate no speech has (too many characters per second, or a few characters
  stretched over seconds).
"""

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from cpwhisperx.transcript import (
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
    Segment,
    Transcript,
    Word,
)

RULES = ("loops", "silence", "phrases", "rate")
REPEAT_LIMIT = 3  # repeats in a row allowed before a word or phrase counts as a loop
MIN_SPEECH_SHARE = 0.1  # less of the segment than this inside VAD speech: it lies in silence
# A phantom phrase is kept when the audio supports it well; any of these makes support weak.
WEAK_NO_SPEECH, WEAK_LOGPROB, WEAK_WORD_PROB, WEAK_SPEECH_SHARE = 0.3, -0.7, 0.5, 0.5
MIN_RATE_SPAN_S = 3.0  # the slow-rate check needs a span this long to mean anything
RATE_FLOOR_S = 0.5  # shorter spans count as this long, so a clamped time cannot divide by ~0


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    rules: frozenset[str] = frozenset(RULES)
    repeat_limit: int = REPEAT_LIMIT
    max_cps: float = 40.0
    min_cps: float = 1.0


@dataclass(frozen=True, slots=True)
class Removal:
    rule: str
    start: float
    end: float
    text: str  # what was removed
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "start": self.start, "end": self.end, "text": self.text,
                "why": self.why}


def norm(text: str) -> str:
    """Compare text by its letters, marks and digits only: case and punctuation do not count."""
    text = unicodedata.normalize("NFC", text).casefold()
    return " ".join("".join(c if unicodedata.category(c)[0] in "LMN" else " " for c in text)
                    .split())


@dataclass(frozen=True, slots=True)
class Loop:
    gram: tuple[int, ...]  # indices of the occurrence kept
    count: int  # occurrences in a row
    removed: tuple[int, ...]  # indices of the others


def collapse_loops(tokens: Sequence[str], limit: int) -> tuple[list[int], list[Loop]]:
    """Indices of the tokens to keep, and the loops removed.

    At each position the shortest n-gram repeated more than ``limit`` times in a row is kept
    once. Passes repeat until none is left, since collapsing one loop can expose a longer one.
    """
    keys = [norm(t) for t in tokens]
    keep = list(range(len(tokens)))
    loops: list[Loop] = []
    while True:
        found = _loops_in([keys[k] for k in keep], limit)
        if not found:
            return keep, loops
        dropped: set[int] = set()
        for first, n, count in found:
            loops.append(Loop(tuple(keep[first:first + n]), count,
                              tuple(keep[first + n:first + count * n])))
            dropped.update(range(first + n, first + count * n))
        keep = [k for i, k in enumerate(keep) if i not in dropped]


def _loops_in(keys: list[str], limit: int) -> list[tuple[int, int, int]]:
    """Each loop as (first position, n-gram size, count), scanning left to right."""
    found = []
    i = 0
    while i < len(keys):
        step = 1
        for n in range(1, (len(keys) - i) // (limit + 1) + 1):
            gram = keys[i:i + n]
            count = 1
            while keys[i + count * n:i + (count + 1) * n] == gram:
                count += 1
            if count > limit and any(gram):
                found.append((i, n, count))
                step = count * n
                break
        i += step
    return found


def clean(transcript: Transcript, *, speech: Sequence[tuple[float, float]],
          options: Options) -> tuple[Transcript, list[Removal]]:
    """Apply the enabled rules in order; return the kept transcript and what was removed."""
    segments = list(transcript.segments)
    removed: list[Removal] = []
    if "loops" in options.rules:
        segments = _segment_loops(segments, options.repeat_limit, removed)
        segments = _repeated_segments(segments, options.repeat_limit, removed)
    phrases = _phrases(transcript.language)
    kept: list[Segment] = []
    for seg in segments:
        why = _why_remove(seg, speech=speech, phrases=phrases, options=options)
        if why is None:
            kept.append(seg)
        else:
            removed.append(Removal(why[0], seg.start, seg.end, seg.text, why[1]))
    removed.sort(key=lambda r: r.start)
    return replace(transcript, segments=tuple(kept)), removed


def _segment_loops(segments: list[Segment], limit: int, removed: list[Removal]) -> list[Segment]:
    out = []
    for seg in segments:
        tokens: Sequence[Word | str] = seg.words or seg.text.split()
        texts = [t.text if isinstance(t, Word) else t for t in tokens]
        keep, loops = collapse_loops(texts, limit)
        if not loops:
            out.append(seg)
            continue
        for loop in loops:
            gram = " ".join(texts[i] for i in loop.gram)
            removed.append(Removal("loops", seg.start, seg.end,
                                   " ".join(texts[i] for i in loop.removed),
                                   f"{gram!r} repeated {loop.count} times in a row; kept once"))
        text = " ".join(texts[i] for i in keep)
        if seg.words:
            words = tuple(seg.words[i] for i in keep)
            out.append(replace(seg, text=text, words=words, start=words[0].start,
                               end=words[-1].end))
        else:
            out.append(replace(seg, text=text))
    return out


def _repeated_segments(segments: list[Segment], limit: int,
                       removed: list[Removal]) -> list[Segment]:
    out: list[Segment] = []
    i = 0
    while i < len(segments):
        j = i + 1
        while j < len(segments) and norm(segments[j].text) == norm(segments[i].text):
            j += 1
        out.append(segments[i])
        if j - i > limit and norm(segments[i].text):
            for seg in segments[i + 1:j]:
                removed.append(Removal("loops", seg.start, seg.end, seg.text,
                                       f"the same text in {j - i} segments in a row; kept once"))
        else:
            out.extend(segments[i + 1:j])
        i = j
    return out


def _why_remove(seg: Segment, *, speech: Sequence[tuple[float, float]],
                phrases: frozenset[str], options: Options) -> tuple[str, str] | None:
    share = speech_share(seg.start, seg.end, speech)
    if "silence" in options.rules:
        if share < MIN_SPEECH_SHARE:
            return "silence", f"lies in VAD silence ({share:.0%} of it is speech)"
        if ((seg.no_speech_prob or 0.0) > NO_SPEECH_THRESHOLD
                and (seg.avg_logprob or 0.0) < LOG_PROB_THRESHOLD):
            return "silence", (f"no-speech probability {seg.no_speech_prob:.2f} with average "
                               f"log-probability {seg.avg_logprob:.2f}")
    if "phrases" in options.rules and norm(seg.text) in phrases:
        weak = _weak_support(seg, share)
        if weak:
            return "phrases", f"known phantom phrase, weakly supported ({weak})"
    if "rate" in options.rules:
        chars = sum(1 for c in norm(seg.text) if unicodedata.category(c)[0] in "LN")
        span = (seg.words[-1].end - seg.words[0].start) if seg.words else seg.end - seg.start
        cps = chars / max(span, RATE_FLOOR_S)
        if cps > options.max_cps or (span >= MIN_RATE_SPAN_S and cps < options.min_cps):
            return "rate", f"{chars} characters in {span:.2f} s ({cps:.1f}/s) is not speech"
    return None


def _weak_support(seg: Segment, share: float) -> str:
    reasons = []
    if (seg.no_speech_prob or 0.0) >= WEAK_NO_SPEECH:
        reasons.append(f"no-speech probability {seg.no_speech_prob:.2f}")
    if seg.avg_logprob is not None and seg.avg_logprob <= WEAK_LOGPROB:
        reasons.append(f"average log-probability {seg.avg_logprob:.2f}")
    if seg.words and (p := sum(w.probability for w in seg.words) / len(seg.words)) < WEAK_WORD_PROB:
        reasons.append(f"mean word probability {p:.2f}")
    if share < WEAK_SPEECH_SHARE:
        reasons.append(f"{share:.0%} inside VAD speech")
    return ", ".join(reasons)


def speech_share(start: float, end: float, speech: Sequence[tuple[float, float]]) -> float:
    """The share of [start, end] inside the speech regions (a point: 1 if inside one)."""
    if end <= start:
        return float(any(s <= start <= e for s, e in speech))
    inside = sum(max(0.0, min(end, e) - max(start, s)) for s, e in speech)
    return min(1.0, inside / (end - start))


@cache
def _phrases(language: str) -> frozenset[str]:
    """The phantom phrases for ``language``, and the English ones for every language."""
    folder = resources.files("cpwhisperx") / "data" / "hallucinations"
    found: set[str] = set()
    for name in {f"{language}.txt", "en.txt"}:
        item = folder / name
        if item.is_file():
            lines = item.read_text(encoding="utf-8").splitlines()
            found.update(norm(line) for line in lines if line.strip() and not line.startswith("#"))
    return frozenset(found - {""})
