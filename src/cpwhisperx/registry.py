"""The one list of stages, in order, and the workflows made of them.

A stage is the module ``cpwhisperx.stages.<name>`` (``stages.Stage``); its number names its
folder in a job (``04_asr``). Adding a stage touches its module and this list only.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cpwhisperx.stages import Stage

ORDER = ("demux", "separate", "vad", "asr", "align", "clean", "diarize", "export", "translate",
         "subtitles", "mux")
WORKFLOWS: dict[str, tuple[str, ...]] = {
    "transcribe": ORDER[:ORDER.index("export") + 1],
    "translate": ORDER[:ORDER.index("translate") + 1],
    "subtitle": ORDER,
}


def number(name: str) -> int:
    return ORDER.index(name) + 1


def module(name: str) -> "Stage":
    """The stage's module, imported on first use (a worker imports only its own)."""
    if name not in ORDER:
        raise KeyError(f"no stage {name!r}")
    return importlib.import_module(f"cpwhisperx.stages.{name}")
