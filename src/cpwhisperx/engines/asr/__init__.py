"""ASR engines: ``transcribe(audio, regions=..., language=...) -> Transcript``."""

from collections.abc import Callable
from typing import Protocol

import numpy as np

from cpwhisperx.hardware import Resolved
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Transcript


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
    raise ValueError(f"unknown ASR backend {resolved.backend!r}")
