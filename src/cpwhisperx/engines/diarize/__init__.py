"""Speaker diarization engines: given the audio and where words are spoken, who speaks when."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cpwhisperx.media import WavReader


@dataclass(frozen=True, slots=True, kw_only=True)
class Speakers:
    """How many speakers there are: ``number`` when known (0: find out), else between
    ``low`` and ``high`` (0: no limit)."""

    number: int = 0
    low: int = 0
    high: int = 0


@dataclass(frozen=True, slots=True)
class Turn:
    start: float
    end: float
    speaker: int  # 0, 1, ... in order of first appearance


class Diarizer(Protocol):
    name: str

    def diarize(self, audio: WavReader, *, regions: Sequence[tuple[float, float]],
                speakers: Speakers, progress: Callable[[float], None]) -> list[Turn]:
        """Speaker turns over the audio; ``regions`` are the spans where words are spoken, in
        order (each short enough to be mostly one speaker's)."""
        ...


def choose(setting: str) -> str:
    """``auto``: the speaker encoder that ships with the package (GE2E on onnxruntime, no
    torch), on every machine; pyannote only when asked for, as its weights are gated."""
    return "ge2e" if setting == "auto" else setting
