"""Voice activity detection engines: ``detect(audio) -> [(start_s, end_s), ...]``."""

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from cpwhisperx.config import Settings
from cpwhisperx.media import SAMPLE_RATE, WavReader

BLOCK_S = 600.0  # audio read and scanned at a time: memory stays flat whatever the length
MAX_REGION_S = 30.0  # Whisper's window: longer speech is split at its quietest point


class VadEngine(Protocol):
    name: str

    def detect(self, audio: np.ndarray) -> list[tuple[float, float]]: ...


class WholeFile:
    """``VAD_BACKEND=none``: treat the whole file as speech."""

    name = "none"

    def detect(self, audio: np.ndarray) -> list[tuple[float, float]]:
        return [(0.0, len(audio) / SAMPLE_RATE)] if len(audio) else []


def create(settings: Settings) -> VadEngine:
    if settings.vad_backend == "silero":
        from cpwhisperx.engines.vad.silero import SileroVad

        return SileroVad(threshold=settings.vad_threshold,
                         min_silence_ms=settings.vad_min_silence_ms,
                         speech_pad_ms=settings.vad_speech_pad_ms, max_speech_s=MAX_REGION_S)
    return WholeFile()


def detect_blocks(engine: VadEngine, audio: WavReader, *, block_s: float = BLOCK_S,
                  workers: int = 1, on_progress: Callable[[float], None]
                  ) -> list[tuple[float, float]]:
    """Speech regions of the whole file, scanned in blocks of at most ``block_s`` and of equal
    length (the cuts depend on the file alone, not on ``workers``), ``workers`` blocks at once:
    the model runs without the GIL. Speech running across a block boundary comes back as two
    regions touching it; they are joined again."""
    regions: list[tuple[float, float]] = []
    blocks = max(1, math.ceil(len(audio) / (block_s * SAMPLE_RATE)))
    step = max(1, math.ceil(len(audio) / blocks))

    def join(lo: int, found: list[tuple[float, float]]) -> None:
        offset = lo / SAMPLE_RATE
        for start, end in found:
            start, end = round(offset + start, 3), round(offset + end, 3)
            if regions and lo and regions[-1][1] >= offset - 0.001 and start <= offset + 0.001:
                start = regions.pop()[0]
            regions.append((start, end))
        on_progress(min(1.0, (lo + step) / max(len(audio), 1)))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for lo in range(0, len(audio), step):  # read here: the reader is not thread-safe
            pending.append((lo, pool.submit(engine.detect, audio[lo:lo + step])))
            if len(pending) >= workers:
                lo, future = pending.popleft()
                join(lo, future.result())
        for lo, future in pending:
            join(lo, future.result())
    return regions
