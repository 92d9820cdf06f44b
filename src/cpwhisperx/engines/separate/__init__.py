"""Source separation / speech enhancement: ``process(src, dst) -> stats``.

``src`` is the demuxed 16 kHz mono WAV; ``dst`` gets the cleaned speech in the same format,
sample for sample aligned with ``src``, so times still refer to the original media. Engines
stream the audio through ffmpeg (resampled to the model's rate on the way in and back on the way
out), so memory stays flat for a 2-hour film.
"""

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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
                  stdin=subprocess.PIPE)


@contextlib.contextmanager
def ffmpeg(args: list[str], **pipes: Any) -> Iterator[subprocess.Popen]:
    """An ffmpeg process whose failure (after the body) raises with its last error line."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([media.tool("ffmpeg"), "-hide_banner", "-v", "error", "-y",
                                 *args], stderr=errors, **pipes)
        try:
            yield proc
        except BaseException:
            proc.kill()
            raise
        finally:
            with contextlib.suppress(OSError):
                if proc.stdout:
                    proc.stdout.close()
            returncode = proc.wait()
        if returncode != 0:
            errors.seek(0)
            detail = (errors.read().decode("utf-8", "replace").strip().splitlines()
                      or ["unknown error"])[-1]
            raise CpwError(f"ffmpeg failed while separating speech: {detail}")
