"""Word aligners: given a segment's words and the audio, find when each word is spoken."""

import importlib.util
from typing import Protocol

import numpy as np

from cpwhisperx.media import WavReader


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
