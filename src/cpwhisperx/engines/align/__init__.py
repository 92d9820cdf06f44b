"""Word aligners: given a segment's words and the audio, find when each word is spoken."""

import importlib.util
from dataclasses import replace
from typing import Protocol

import numpy as np

from cpwhisperx.media import WavReader
from cpwhisperx.transcript import Segment, Word


class AlignmentFailed(Exception):
    """A segment the aligner cannot align; the caller keeps it unaligned."""


class Aligner(Protocol):
    name: str  # what the transcript's meta.word_times says

    def align_segment(self, audio: WavReader | np.ndarray, *, start: float, end: float,
                      words: list[str]) -> list[tuple[float, float]]:
        """Start and end of each word of the segment spoken between ``start`` and ``end``
        (seconds into ``audio``); ``AlignmentFailed`` where it cannot tell."""
        ...


NEEDS = {"whisper": (), "none": (), "pocketsphinx": ("pocketsphinx",),
         "wav2vec2": ("torch", "transformers")}
INSTALL = {"pocketsphinx": "pip install pocketsphinx",
           "wav2vec2": "pip install 'cpwhisperx[torch]'"}


def available(name: str) -> bool:
    return all(importlib.util.find_spec(module) for module in NEEDS[name])


def choose(setting: str, language: str, *, model: str = "") -> str:
    """``auto``: the best available aligner for the language. For English, pocketsphinx
    (median word-boundary error 8/28 ms in bench/alignment.py, against Whisper's 61/166 ms);
    wav2vec2 where the torch extra is installed and a model for the language is known.
    ``whisperx``: the same, wav2vec2 first, as WhisperX aligns."""
    if setting == "same":
        return "whisper"
    if setting not in ("auto", "whisperx"):
        return setting
    # whisperx: WhisperX's aligner first, as WhisperX does.
    order = (("wav2vec2", "pocketsphinx") if setting == "whisperx" else
             ("pocketsphinx", "wav2vec2") if language == "en" else ("wav2vec2",))
    for name in order:
        if available(name) and (name != "wav2vec2" or model or _has_ctc_model(language)):
            return name
    return "whisper"


def _has_ctc_model(language: str) -> bool:
    from cpwhisperx.engines.align.wav2vec2 import DEFAULT_MODELS

    return language in DEFAULT_MODELS


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
