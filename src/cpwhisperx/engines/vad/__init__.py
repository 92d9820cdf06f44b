"""Voice activity detection engines: ``detect(audio) -> [(start_s, end_s), ...]``."""

from typing import Protocol

import numpy as np

from cpwhisperx.config import Settings


class VadEngine(Protocol):
    name: str

    def detect(self, audio: np.ndarray) -> list[tuple[float, float]]: ...


class WholeFile:
    """``VAD_BACKEND=none``: treat the whole file as speech."""

    name = "none"

    def detect(self, audio: np.ndarray) -> list[tuple[float, float]]:
        from cpwhisperx.media import SAMPLE_RATE

        return [(0.0, len(audio) / SAMPLE_RATE)] if len(audio) else []


def create(settings: Settings) -> VadEngine:
    if settings.vad_backend == "silero":
        from cpwhisperx.engines.vad.silero import SileroVad

        return SileroVad(threshold=settings.vad_threshold,
                         min_silence_ms=settings.vad_min_silence_ms,
                         speech_pad_ms=settings.vad_speech_pad_ms)
    return WholeFile()
