"""ASR engines: ``transcribe(audio, regions=..., language=...) -> Transcript``."""

from collections.abc import Callable
from typing import Protocol

import numpy as np

from cpwhisperx.errors import CpwError
from cpwhisperx.hardware import Resolved
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Transcript

WINDOW_S = 30.0  # Whisper's input length


class AsrEngine(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, *, regions: list[tuple[float, float]],
                   language: str | None, word_timestamps: bool,
                   on_progress: Callable[[float], None]) -> Transcript: ...


def create(resolved: Resolved, *, model: ModelRef, beam_size: int, batch_size: int) -> AsrEngine:
    if resolved.backend == "faster-whisper":
        from cpwhisperx.engines.asr.faster_whisper import FasterWhisperEngine

        return FasterWhisperEngine(model=model, device=resolved.device,
                                   compute_type=resolved.compute_type,
                                   cpu_threads=resolved.cpu_threads, beam_size=beam_size,
                                   batch_size=batch_size)
    if resolved.backend == "mlx":
        from cpwhisperx.engines.asr.mlx_whisper import MlxWhisperEngine

        return MlxWhisperEngine(model=model, device=resolved.device,
                                compute_type=resolved.compute_type)
    raise ValueError(f"unknown ASR backend {resolved.backend!r}")


def check_language(language: str | None, *, multilingual: bool) -> None:
    if language not in (None, "en") and not multilingual:
        raise CpwError(f"the model is English-only but the language is {language!r}: "
                       "set WHISPER_MODEL to a multilingual model (base, small, ...)")


def speech_windows(regions: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Windows of at most 30 s covering the speech: long regions split, neighbours merged."""
    pieces: list[tuple[float, float]] = []
    for start, end in regions:
        while end - start > WINDOW_S:
            pieces.append((start, start + WINDOW_S))
            start += WINDOW_S
        pieces.append((start, end))
    windows: list[tuple[float, float]] = []
    for start, end in pieces:
        if windows and end - windows[-1][0] <= WINDOW_S:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows
