"""Word aligners: given a segment's words and the audio, find when each word is spoken."""

import importlib.util

from cpwhisperx.transcript import Segment, Word


class AlignmentFailed(Exception):
    """A segment the aligner cannot align; the caller keeps it unaligned."""


def available(name: str) -> bool:
    return name in ("whisper", "none") or (
        name == "pocketsphinx" and importlib.util.find_spec("pocketsphinx") is not None)


def choose(setting: str, language: str) -> str:
    """``auto``: the best available aligner for the language (forced alignment for English)."""
    if setting == "auto":
        return "pocketsphinx" if language == "en" and available("pocketsphinx") else "whisper"
    return "whisper" if setting == "same" else setting


def interpolate(segment: Segment) -> Segment:
    """Last resort: spread the segment's words over its span by their length in characters."""
    texts = [w.text for w in segment.words] or segment.text.split()
    total = sum(len(t) for t in texts) or 1
    span = segment.end - segment.start
    words, cursor = [], segment.start
    for text in texts:
        end = cursor + span * len(text) / total
        words.append(Word(start=round(cursor, 3), end=round(min(end, segment.end), 3),
                          text=text, probability=0.0))
        cursor = end
    return Segment(segment.start, segment.end, segment.text, tuple(words), segment.speaker)
