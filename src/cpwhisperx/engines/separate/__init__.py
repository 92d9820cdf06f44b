"""Source separation / speech enhancement: ``process(src, dst) -> stats``.

``src`` is the demuxed 16 kHz mono WAV; ``dst`` gets the cleaned speech in the same format,
sample for sample aligned with ``src``, so times still refer to the original media.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class Separator(Protocol):
    name: str

    def process(self, src: Path, dst: Path, *,
                on_progress: Callable[[float], None]) -> dict[str, Any]: ...


def create(method: str) -> Separator:
    if method == "deepfilternet":
        from cpwhisperx.engines.separate.deepfilternet import DeepFilterNet

        return DeepFilterNet()
    raise ValueError(f"unknown SOURCE_SEPARATION {method!r}")
