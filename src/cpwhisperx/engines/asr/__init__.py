"""ASR engines decode windows of speech (at most 30 s each) into segments with window-local
times; ``Window`` maps those back onto the media's timeline."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from cpwhisperx.errors import CpwError
from cpwhisperx.hardware import Resolved
from cpwhisperx.media import WavReader
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Segment

WINDOW_S = 30.0  # Whisper's input length


class AsrEngine(Protocol):
    name: str
    multilingual: bool

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]: ...

    def decode(self, audios: Sequence[np.ndarray], *, language: str,
               word_timestamps: bool) -> list[list[Segment]]:
        """Segments per window, times in seconds from the start of that window's audio."""
        ...

    def translate(self, audio: np.ndarray, *, language: str) -> list[Segment]:
        """Whisper's own translation of one window into English (segments, no words)."""
        ...


def create(resolved: Resolved, *, model: ModelRef, beam_size: int) -> AsrEngine:
    if resolved.backend == "faster-whisper":
        from cpwhisperx.engines.asr.faster_whisper import FasterWhisperEngine

        return FasterWhisperEngine(model=model, device=resolved.device,
                                   compute_type=resolved.compute_type,
                                   cpu_threads=resolved.cpu_threads, beam_size=beam_size,
                                   batch_size=resolved.batch_size)
    if resolved.backend == "mlx":
        from cpwhisperx.engines.asr.mlx_whisper import MlxWhisperEngine

        return MlxWhisperEngine(model=model, device=resolved.device,
                                compute_type=resolved.compute_type)
    raise ValueError(f"unknown ASR backend {resolved.backend!r}")


def check_language(language: str | None, *, multilingual: bool) -> None:
    if language not in (None, "en") and not multilingual:
        raise CpwError(f"the model is English-only but the language is {language!r}: "
                       "set WHISPER_MODEL to a multilingual model (base, small, ...)")


@dataclass(frozen=True, slots=True)
class Window:
    """Speech regions decoded together, joined end to end without the silence between them
    (at most ``WINDOW_S`` of audio)."""

    regions: tuple[tuple[float, float], ...]

    def read(self, audio: WavReader) -> np.ndarray:
        return np.concatenate([audio.seconds(start, end) for start, end in self.regions])

    def place(self, segment: Segment) -> Segment:
        """The segment on the media's timeline. A word stays inside the region holding its
        middle, so no word straddles the silence cut out between two regions."""
        words = tuple(replace(w, start=self._time(w.start, at=(w.start + w.end) / 2),
                              end=self._time(w.end, at=(w.start + w.end) / 2))
                      for w in segment.words)
        if words:
            return replace(segment, start=words[0].start, end=words[-1].end, words=words)
        return replace(segment, start=self._time(segment.start, at=segment.start),
                       end=self._time(segment.end, at=segment.end - 1e-3))

    def _time(self, t: float, *, at: float) -> float:
        offset = 0.0
        for start, end in self.regions:
            length = end - start
            if at < offset + length or (start, end) == self.regions[-1]:
                return round(start + min(max(t - offset, 0.0), length), 3)
            offset += length
        raise AssertionError("a window has regions")


def speech_windows(regions: list[tuple[float, float]]) -> list[Window]:
    """Regions packed in order into windows of at most 30 s of speech; a longer region (only
    with ``VAD_BACKEND=none``, or speech running across a VAD block) is cut every 30 s."""
    pieces: list[tuple[float, float]] = []
    for start, end in regions:
        while end - start > WINDOW_S:
            pieces.append((start, start + WINDOW_S))
            start += WINDOW_S
        pieces.append((start, end))
    windows: list[list[tuple[float, float]]] = []
    used = WINDOW_S
    for start, end in pieces:
        if used + end - start > WINDOW_S:
            windows.append([])
            used = 0.0
        windows[-1].append((start, end))
        used += end - start
    return [Window(tuple(w)) for w in windows]

