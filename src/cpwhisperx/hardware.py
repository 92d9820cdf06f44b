"""Detect the machine once, cache it, and resolve ``auto`` settings from it."""

import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from cpwhisperx.config import Settings
from cpwhisperx.errors import ConfigError
from cpwhisperx.runtime import fsutil

CACHE_NAME = "hardware_cache.json"


@dataclass(frozen=True, slots=True)
class Hardware:
    system: str
    machine: str
    cpu_cores: int
    memory_gb: float
    cuda_devices: int
    apple_silicon: bool
    ctranslate2: str | None
    mlx_whisper: str | None
    signature: str
    cpu_name: str = ""
    gpu_name: str = ""  # the first CUDA device's, or the Apple chip's

    def describe(self) -> str:
        gpu = f"{self.cuda_devices} CUDA device(s)" if self.cuda_devices else "no CUDA device"
        return (f"{self.system} {self.machine}, {self.cpu_cores} CPU cores, "
                f"{self.memory_gb:.1f} GiB memory, {gpu}"
                + (", Apple Silicon" if self.apple_silicon else ""))


@dataclass(frozen=True, slots=True)
class Resolved:
    backend: str
    device: str
    compute_type: str
    cpu_threads: int
    batch_size: int  # windows of speech decoded together
    decoders: int  # the lanes of a batch are dealt out among this many, decoded side by side
    why: str
    notes: tuple[str, ...] = ()  # settings that could not be had here, and what was used


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _signature() -> str:
    # A new host, OS, engine build, visible GPUs or CPU affinity: detect again then.
    return "|".join((socket.gethostname(), platform.platform(),
                     package_version("ctranslate2") or "-", package_version("mlx-whisper") or "-",
                     os.environ.get("CUDA_VISIBLE_DEVICES", "*"), str(_cpu_cores())))


def _cuda_devices() -> int:
    if importlib.util.find_spec("ctranslate2") is None:
        return 0
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except RuntimeError:  # a CUDA build without a usable driver
        return 0


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _cpu_name() -> str:
    if platform.system() == "Darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5).stdout.strip()
        return ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def _gpu_name(cuda_devices: int) -> str:
    if not cuda_devices or not shutil.which("nvidia-smi"):
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10).stdout
        return names.splitlines()[0].strip() if names.strip() else ""
    return ""


def detect() -> Hardware:
    system, machine = platform.system(), platform.machine()
    apple = system == "Darwin" and machine == "arm64"
    cuda, cpu = _cuda_devices(), _cpu_name()
    return Hardware(system=system, machine=machine, cpu_cores=_cpu_cores(),
                    memory_gb=round(_memory_gb(), 1), cuda_devices=cuda, apple_silicon=apple,
                    ctranslate2=package_version("ctranslate2"),
                    mlx_whisper=package_version("mlx-whisper"), signature=_signature(),
                    cpu_name=cpu, gpu_name=cpu if apple else _gpu_name(cuda))


def load(out_root: Path, *, refresh: bool = False) -> Hardware:
    """The cached detection under ``out_root`` if it is for this machine, else a fresh one."""
    cache = out_root / CACHE_NAME
    if not refresh and cache.is_file():
        try:
            data = fsutil.read_json(cache)
            hw = Hardware(**{f.name: data[f.name] for f in fields(Hardware) if f.name in data})
        except (ValueError, TypeError):
            hw = None
        if hw is not None and hw.signature == _signature():
            return hw
    hw = detect()
    # The keys the CP-WhisperX-App's cache had too, so that scripts reading it still work.
    chosen = resolve(Settings(), hw)
    with contextlib.suppress(OSError):  # a read-only output root still gets a detection
        fsutil.write_json(cache, {**asdict(hw), "whisper_backend": chosen.backend,
                                  "device": chosen.device, "compute_type": chosen.compute_type,
                                  "has_cuda": hw.cuda_devices > 0, "has_mps": hw.apple_silicon,
                                  "has_mlx": hw.mlx_whisper is not None})
    return hw


def resolve(settings: Settings, hw: Hardware) -> Resolved:
    """Turn ``auto`` into a concrete backend, device and compute type, with the reason; a
    setting this machine cannot honour (the Apple GPU, MLX) becomes the nearest it can, with a
    note."""
    reasons: list[str] = []
    notes: list[str] = []
    backend = settings.whisper_backend
    if settings.whisper_device == "mps":
        if hw.apple_silicon and hw.mlx_whisper and backend in ("auto", "mlx"):
            backend = "mlx"
            settings = settings.model_copy(update={"whisper_device": "gpu"})
            reasons.append("device gpu: WHISPER_DEVICE=mps, the Apple GPU through MLX")
        else:
            why = ("this machine has no Apple GPU" if not hw.apple_silicon else
                   "mlx-whisper is not installed (pip install 'cpwhisperx[mlx]')"
                   if not hw.mlx_whisper else
                   f"WHISPER_BACKEND={backend} has no Apple GPU path (auto or mlx has)")
            notes.append(f"WHISPER_DEVICE=mps: {why}; device auto instead")
            settings = settings.model_copy(update={"whisper_device": "auto"})
    if backend == "mlx" and not hw.mlx_whisper:
        notes.append("WHISPER_BACKEND=mlx: mlx-whisper is not installed (pip install "
                     "'cpwhisperx[mlx]'); faster-whisper instead")
        backend = "faster-whisper"
    if backend == "auto":
        backend = "mlx" if hw.apple_silicon and hw.mlx_whisper else "faster-whisper"
        reasons.append(f"backend {backend}: " + (
            "Apple Silicon with mlx-whisper" if backend == "mlx" else
            "mlx-whisper not installed" if hw.apple_silicon else "CTranslate2 on this platform"))
    resolve_device = _mlx_device if backend == "mlx" else _ct2_device
    device, compute = resolve_device(settings, hw, reasons)
    threads = settings.cpu_threads or hw.cpu_cores
    batch = settings.batch_size or _batch_size(backend, device, hw, reasons)
    # More decoders than lanes at a time would stand idle.
    decoders = (min(settings.asr_decoders, batch) if settings.asr_decoders
                else _decoders(backend, device, batch, reasons))
    return Resolved(backend=backend, device=device, compute_type=compute, cpu_threads=threads,
                    batch_size=batch, decoders=decoders,
                    why="; ".join(reasons) or "all set explicitly",
                    notes=tuple(notes))


def _batch_size(backend: str, device: str, hw: Hardware, reasons: list[str]) -> int:
    """Windows decoded together: batching pays on CTranslate2 (one matrix product for all the
    beams of the batch instead of one per window); 16 on a GPU; on CPU 8, or fewer where beam
    search over 8 windows of a large model could run out of memory."""
    if backend != "faster-whisper":
        size, why = 1, "MLX decodes window by window"
    elif device == "cuda":
        size, why = 16, "CUDA"
    else:
        size = 8 if hw.memory_gb >= 8 else 4 if hw.memory_gb >= 4 else 1
        why = f"CPU with {hw.memory_gb:.0f} GiB memory"
    reasons.append(f"batch {size}: {why}")
    return size


def _decoders(backend: str, device: str, batch: int, reasons: list[str]) -> int:
    """On CPU, the lanes of a batch dealt out between two decoders side by side, each on half
    the threads: a CTranslate2 call on two threads keeps only part of the second core busy
    (small matrices, one decoding step after another), and the Python between calls
    (word-time alignment, splitting segments) then leaves it idle. On 2 cores, 10 minutes of
    English: tiny.en 13.2-13.9 s against 20.4-22.5 s on one decoder, base 25.1 s against 32.0
    s. On one thread the two shares are decoded one after the other: the lanes, and the
    journal a run resumes from, do not depend on the threads."""
    if backend != "faster-whisper" or device != "cpu" or batch % 2:
        return 1
    reasons.append("2 decoders: CPU")
    return 2


def _auto(setting: str, choice: str, why: str, reasons: list[str]) -> str:
    """The setting, unless it is auto: then ``choice``, with why it was made."""
    if setting != "auto":
        return setting
    reasons.append(why)
    return choice


def _ct2_device(settings: Settings, hw: Hardware, reasons: list[str]) -> tuple[str, str]:
    choice = "cuda" if hw.cuda_devices else "cpu"
    device = _auto(settings.whisper_device, choice,
                   f"device {choice}: CTranslate2 sees {hw.cuda_devices} CUDA device(s)", reasons)
    choice = "float16" if device == "cuda" else "int8"
    compute = _auto(settings.whisper_compute_type, choice,
                    f"compute {choice}: fastest without accuracy loss on {device}", reasons)
    return device, compute


def _mlx_device(settings: Settings, hw: Hardware, reasons: list[str]) -> tuple[str, str]:
    if settings.whisper_device == "cuda":
        raise ConfigError("WHISPER_DEVICE=cuda does not go with WHISPER_BACKEND=mlx (Apple GPU "
                          "or CPU): set WHISPER_DEVICE=auto or cpu, or WHISPER_BACKEND=auto")
    choice = "gpu" if hw.apple_silicon else "cpu"
    device = _auto(settings.whisper_device, choice,
                   f"device {choice}: MLX on {'Apple Silicon' if hw.apple_silicon else 'CPU'}",
                   reasons)
    choice = "float16" if device == "gpu" else "float32"
    compute = _auto(settings.whisper_compute_type, choice,
                    f"compute {choice}: MLX's fast path on {device}", reasons)
    if compute not in ("float16", "float32"):
        raise ConfigError(f"WHISPER_COMPUTE_TYPE={compute} does not go with WHISPER_BACKEND=mlx: "
                          "set float16, float32 or auto")
    return device, compute


def fallback(resolved: Resolved) -> Resolved | None:
    """What to retry with after the engine crashed: MLX → CTranslate2 CPU int8; CUDA → CPU
    int8; CPU → float32 kernels."""
    if resolved.backend == "mlx" or resolved.device == "cuda":
        # Its decoders stay: the retry takes up the same journal, laid out in as many lanes.
        return replace(resolved, backend="faster-whisper", device="cpu", compute_type="int8",
                       why="fallback after a crash")
    if resolved.compute_type != "float32":
        return replace(resolved, compute_type="float32", why="fallback after a crash")
    return None
