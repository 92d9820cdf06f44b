"""ffprobe / ffmpeg wrappers: inspect media, pick an audio stream, decode to 16 kHz mono WAV.

Commands are argument lists, never shell strings, so any file name works.
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cpwhisperx.errors import CpwError, MediaError

SAMPLE_RATE = 16_000
PROBE_TIMEOUT_S = 120  # reading a file's header; a network mount can be slow, not this slow


@dataclass(frozen=True, slots=True)
class AudioStream:
    position: int  # among audio streams, as in ffmpeg's "0:a:N"
    codec: str
    language: str | None
    channels: int
    title: str | None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    path: Path
    duration: float
    audio: tuple[AudioStream, ...]
    has_video: bool
    fps: float | None = None  # of the video, for subtitle frame gaps
    container: str = ""  # ffprobe's format_name: "mov,mp4,m4a,3gp,3g2,mj2", "wav", ...


def tool(name: str) -> str:
    if found := shutil.which(name):
        return found
    raise CpwError(f"{name} not found on PATH: install ffmpeg "
                   "(apt-get install ffmpeg, brew install ffmpeg or winget install ffmpeg)")


def check_file(path: Path) -> None:
    """Fail early, with the reason, for a path that cannot be media at all."""
    if not path.exists():
        raise MediaError(f"media file not found: {path}")
    if path.is_dir():
        raise MediaError(f"{path} is a folder, not a media file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is an empty file (0 bytes): nothing to transcribe")


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def probe(path: Path) -> MediaInfo:
    check_file(path)
    try:
        proc = subprocess.run(
            [tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format",
             "-show_streams", str(path)], capture_output=True, text=True, errors="replace",
            check=False, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path} could not be read: ffprobe gave no answer in "
                         f"{PROBE_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        if _looks_like_text(path):
            raise MediaError(f"{path} is not a media file (it contains text)")
        if "moov atom not found" in proc.stderr:
            raise MediaError(f"{path} is corrupt or truncated (its index, the moov atom, is "
                             "missing): re-download or re-export it")
        raise MediaError(f"{path} is not a readable media file: {detail.split(': ', 1)[-1]}")
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams", [])
    audio = tuple(
        AudioStream(position=i, codec=s.get("codec_name", "?"),
                    language=(s.get("tags") or {}).get("language"),
                    channels=int(s.get("channels") or 0), title=(s.get("tags") or {}).get("title"))
        for i, s in enumerate(st for st in streams if st.get("codec_type") == "audio"))
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    if not streams:
        raise MediaError(f"{path} is not a media file: no audio or video streams found")
    try:
        duration = float(data.get("format", {}).get("duration") or 0.0)
    except ValueError:
        duration = 0.0
    return MediaInfo(path=path, duration=duration, audio=audio, has_video=bool(videos),
                     fps=_rate(videos[0].get("avg_frame_rate")) if videos else None,
                     container=data.get("format", {}).get("format_name", ""))


def _rate(value: str | None) -> float | None:
    """ffprobe's "24000/1001" as 23.976; None when it is unknown ("0/0")."""
    num, _, den = (value or "").partition("/")
    try:
        rate = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return round(rate, 3) if rate > 0 else None


def select_stream(info: MediaInfo, choice: str) -> AudioStream:
    """The first audio stream, or the one chosen by position (``1``) or language tag (``hin``)."""
    if not info.audio:
        raise MediaError(f"{info.path} has no audio stream"
                         + (" (video only)" if info.has_video else "")
                         + ": choose a file with sound")
    listing = ", ".join(f"{a.position}={a.language or 'und'}/{a.codec}" for a in info.audio)
    if not choice:
        return info.audio[0]
    if choice.isdigit():
        position = int(choice)
        if position < len(info.audio):
            return info.audio[position]
        raise MediaError(f"{info.path} has no audio stream {position}; it has: {listing}")
    for stream in info.audio:
        if (stream.language or "").lower() == choice:
            return stream
    raise MediaError(f"{info.path} has no audio stream tagged {choice!r}; it has: {listing}")


def extract_wav(info: MediaInfo, stream: AudioStream, out: Path, *,
                on_progress: Callable[[float], None] | None = None) -> None:
    """Decode one audio stream to 16 kHz mono 16-bit WAV, written atomically to ``out``."""
    args = ["-i", str(info.path), "-map", f"0:a:{stream.position}", "-vn", "-sn", "-dn",
            "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav"]

    def decoded(tmp: Path) -> None:
        if wav_frames(tmp) == 0:
            raise MediaError(f"{info.path}: the audio stream decodes to no samples "
                             "(corrupt or truncated)")

    ffmpeg(args, out=out, duration=info.duration, on_progress=on_progress, check=decoded,
           failure=lambda detail: MediaError(f"cannot decode audio of {info.path}: {detail}"))


@contextlib.contextmanager
def ffmpeg_process(args: list[str], *, failure: Callable[[str], CpwError],
                   writing: Path | None = None, **popen: Any) -> Iterator[subprocess.Popen]:
    """ffmpeg running ``args`` while the body uses its pipes (``popen``); if it then fails,
    ``failure(its last error line)`` is raised, or that the disk filled up ``writing``."""
    cmd = [tool("ffmpeg"), "-hide_banner", "-v", "error", "-y", *args]
    # stderr goes to a file: a damaged file can print more errors than a pipe holds.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stderr=errors, **popen)
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
            stderr = errors.read().decode("utf-8", "replace")
            if "No space left" in stderr:
                raise CpwError(f"disk full while writing {writing or 'a file'}: free some space "
                               "and run again")
            raise failure((stderr.strip().splitlines() or ["unknown error"])[-1])


def ffmpeg(args: list[str], *, out: Path, duration: float,
           failure: Callable[[str], CpwError],
           on_progress: Callable[[float], None] | None = None,
           check: Callable[[Path], None] | None = None, cwd: Path | None = None) -> None:
    """Run ffmpeg with ``args`` (inputs, maps, codecs, ``-f``) writing ``out`` atomically: to a
    hidden temp file beside it, renamed once complete (and once ``check`` passes). A failure
    raises ``failure(ffmpeg's last error line)``, or says the disk is full."""
    # Short, whatever the length of out's name (which may fill NAME_MAX).
    tmp = out.with_name(f".cpw-{hashlib.sha256(out.name.encode()).hexdigest()[:12]}.tmp")
    try:
        with ffmpeg_process(["-nostdin", *args, "-progress", "pipe:1", "-nostats", str(tmp)],
                            failure=failure, writing=out, stdout=subprocess.PIPE, text=True,
                            errors="replace", cwd=cwd) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if on_progress and line.startswith("out_time_us=") and duration > 0:
                    with contextlib.suppress(ValueError):
                        on_progress(min(1.0, int(line.split("=", 1)[1]) / 1e6 / duration))
        if check:
            check(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def wav_frames(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes()


class WavReader:
    """A 16 kHz mono 16-bit WAV read from disk a slice at a time: ``reader[lo:hi]`` is float32
    in [-1, 1]. Stages take what they need, so a two-hour film is never held in memory whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wav = wave.open(str(path), "rb")  # noqa: SIM115 -- closed by __exit__
        if self._wav.getframerate() != SAMPLE_RATE or self._wav.getnchannels() != 1:
            self._wav.close()
            raise CpwError(f"{path} is not 16 kHz mono: delete it and run again")
        self.frames = self._wav.getnframes()

    def __enter__(self) -> "WavReader":
        return self

    def __exit__(self, *_exc: object) -> None:
        self._wav.close()

    def __len__(self) -> int:
        return self.frames

    @property
    def duration(self) -> float:
        return self.frames / SAMPLE_RATE

    def __getitem__(self, span: slice) -> np.ndarray:
        lo, hi, step = span.indices(self.frames)
        if step != 1:
            raise ValueError("WavReader slices take every sample")
        self._wav.setpos(lo)
        audio = np.frombuffer(self._wav.readframes(max(0, hi - lo)), dtype="<i2")
        return audio.astype(np.float32) / 32768.0

    def seconds(self, start: float, end: float) -> np.ndarray:
        return self[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
