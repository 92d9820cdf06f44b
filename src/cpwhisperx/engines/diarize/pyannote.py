"""pyannote.audio's speaker-diarization pipeline (``DIARIZATION=pyannote``, the ``[torch]``
extra), for users who have its weights. ``DIARIZATION_MODEL`` names it: a Hugging Face id (by
default community-1, whose conditions are accepted on huggingface.co once, with ``HF_TOKEN``
set, online; it is cached then), a local folder holding its ``config.yaml``, or that file.

It finds speech and speakers over the whole recording by itself (its own segmentation, speaker
embeddings and clustering); the words then get their speakers from its turns, as from any
engine. Its turns without overlap are used, as WhisperX does for words."""

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from cpwhisperx import models
from cpwhisperx.engines.diarize import Speakers, Turn
from cpwhisperx.errors import CpwError, ModelNotFound
from cpwhisperx.media import SAMPLE_RATE, WavReader

DEFAULT_MODEL = "pyannote/speaker-diarization-community-1"
INSTALL = ("DIARIZATION=pyannote needs the torch extra: install torch first (a CPU build where "
           "there is no GPU), then pip install 'cpwhisperx[torch]'")


def check_obtainable(model: str) -> bool:
    """ModelNotFound, at once, for a pipeline on the Hub that is neither cached nor can be
    downloaded now (before a worker imports torch and the Hub client retries for 20 s).
    Whether it is to be loaded from the cache alone: the Hub out of reach or HF_HUB_OFFLINE
    set (the Hub client would otherwise wait out its retries for each of its files)."""
    name = model or DEFAULT_MODEL
    if os.path.exists(os.path.expanduser(name)) or models.looks_like_path(name):
        return False  # a folder or a file: the engine says what is wrong with it
    local = models.offline() or not models.hub_reachable()
    if local and not models.hub_cached(name, files=("config.yaml",), weights=("config.yaml",)):
        why = ("HF_HUB_OFFLINE is set" if models.offline()
               else "the Hugging Face Hub cannot be reached")
        raise ModelNotFound(f"pyannote pipeline {name!r} is not in the Hugging Face cache and "
                            f"{why}: accept its conditions on huggingface.co and run once "
                            "online with HF_TOKEN set (it is cached), or set DIARIZATION_MODEL "
                            "to a local folder")
    return local


def load() -> Any:
    """``pyannote.audio``, imported so that it runs here (ImportError without it).

    pyannote imports torchaudio, of which it runs Python code only (resampling, filter banks).
    PyPI's torchaudio 2.11 is a CUDA build, whose native library does not load beside a CPU
    torch: torchaudio is then imported as where it is installed without that library. And
    pyannote warns that torchcodec cannot decode files, which it is never given here."""
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # its telemetry, on by default
    try:
        import torchaudio
    except OSError:
        utils = sys.modules.get("torchaudio._extension.utils")
        if utils is None:
            raise
        utils._load_lib = lambda _lib: False  # type: ignore[attr-defined]  # "not installed"
        for name in [m for m in sys.modules
                     if m.split(".")[0] == "torchaudio" and m != utils.__name__]:
            del sys.modules[name]
        import torchaudio  # noqa: F401
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "(?s).*torchcodec is not installed correctly")
        import pyannote.audio

    return pyannote.audio


class Pyannote:
    name = "pyannote"

    def __init__(self, *, model: str = "", threads: int = 1, device: str = "cpu",
                 offline: bool = False) -> None:
        if offline:  # read when huggingface_hub is imported, and by it afterwards
            os.environ["HF_HUB_OFFLINE"] = "1"
        try:
            import torch

            pyannote_audio = load()
        except (ImportError, OSError) as exc:  # OSError: a native library that does not load
            raise CpwError(f"{INSTALL} ({_first_line(exc)})") from exc
        if offline:
            import huggingface_hub.constants

            huggingface_hub.constants.HF_HUB_OFFLINE = True
        torch.set_num_threads(threads)
        name = model or DEFAULT_MODEL
        try:
            pipeline = pyannote_audio.Pipeline.from_pretrained(os.path.expanduser(name))
        except Exception as exc:  # huggingface_hub's, yaml's and torch's errors all differ
            raise ModelNotFound(f"pyannote pipeline {name!r} cannot be loaded "
                                f"({_first_line(exc)}): give a Hugging Face id you have access "
                                "to (HF_TOKEN), a folder with its config.yaml, or that "
                                "file") from exc
        if device == "cuda" and not torch.cuda.is_available():
            device = "cpu"  # ASR's CUDA is CTranslate2's: this torch may be a CPU build
        self.torch = torch
        self.pipeline = pipeline.to(torch.device(device))

    def diarize(self, audio: WavReader, *, regions: Sequence[tuple[float, float]],
                speakers: Speakers, progress: Callable[[float], None] = lambda _done: None
                ) -> list[Turn]:
        """Turns over the whole recording (``regions`` are not needed: pyannote finds its own
        speech), speakers numbered by first appearance."""
        # The whole recording in memory, as pyannote takes it (a 2-hour film: 0.46 GB).
        waveform = self.torch.from_numpy(audio[:])[None]  # (channel, time), float32
        steps = {"segmentation": (0.0, 0.6), "embeddings": (0.6, 0.95)}

        def hook(step: str, _artifact: Any, file: Any = None, total: int | None = None,
                 completed: int | None = None) -> None:
            if step in steps and total:
                lo, hi = steps[step]
                progress(lo + (hi - lo) * min(1.0, (completed or 0) / total))

        output = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE},
                               num_speakers=speakers.number or None,
                               min_speakers=speakers.low or None,
                               max_speakers=speakers.high or None, hook=hook)
        annotation: Any = getattr(output, "exclusive_speaker_diarization", output)
        first: dict[str, int] = {}
        turns = []
        for segment, _track, label in sorted(annotation.itertracks(yield_label=True),
                                             key=lambda t: (t[0].start, t[0].end)):
            # Its frames run on past the end where the last window is padded.
            start, end = round(segment.start, 3), round(min(segment.end, audio.duration), 3)
            if end > start:
                turns.append(Turn(start, end, first.setdefault(label, len(first))))
        progress(1.0)
        return turns


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:160] if lines else type(exc).__name__
