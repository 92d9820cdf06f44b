"""Source separation / speech enhancement: ``process(src, dst) -> stats``.

``src`` is the demuxed 16 kHz mono WAV; ``dst`` gets the cleaned speech in the same format,
sample for sample aligned with ``src``, so times still refer to the original media. Engines
stream the audio through ffmpeg (resampled to the model's rate on the way in and back on the way
out), so memory stays flat for a 2-hour film.
"""

import contextlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cpwhisperx import media
from cpwhisperx.errors import CpwError


class Separator(Protocol):
    name: str

    def process(self, src: Path, dst: Path, *,
                on_progress: Callable[[float], None]) -> dict[str, Any]: ...


def create(method: str, *, model: str, cpu_threads: int) -> Separator:
    if method == "deepfilternet":
        from cpwhisperx.engines.separate.deepfilternet import DeepFilterNet

        return DeepFilterNet()
    if method == "demucs":
        from cpwhisperx.engines.separate.demucs import Demucs

        return Demucs(model=model, cpu_threads=cpu_threads)
    raise ValueError(f"unknown SOURCE_SEPARATION {method!r}")


def reader(src: Path, *, rate: int, channels: int) -> contextlib.AbstractContextManager:
    """ffmpeg decoding ``src`` to interleaved float32 at ``rate`` on its stdout."""
    return ffmpeg(["-i", str(src), "-ac", str(channels), "-ar", str(rate), "-f", "f32le",
                   "pipe:1"], stdout=subprocess.PIPE)


def writer(dst: Path, *, rate: int) -> contextlib.AbstractContextManager:
    """ffmpeg taking mono float32 at ``rate`` on its stdin, writing ``dst`` as 16 kHz WAV."""
    return ffmpeg(["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
                   "-ar", str(media.SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav", str(dst)],
                  stdin=subprocess.PIPE, writing=dst)


def ffmpeg(args: list[str], **popen: Any) -> contextlib.AbstractContextManager:
    return media.ffmpeg_process(args, failure=lambda line: CpwError(
        f"ffmpeg failed while separating speech: {line}"), **popen)
