"""ASR engines decode windows of speech into segments with window-local times; ``Window`` maps
those back onto the media's timeline."""

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from cpwhisperx.errors import CpwError
from cpwhisperx.hardware import Resolved
from cpwhisperx.languages import SPACELESS
from cpwhisperx.media import WavReader
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Segment, Word

WINDOW_S = 30.0  # Whisper's input length
# Speech per lane: a lane is decoded as the sequential decoder decodes a file, 30 s at a time,
# each step going on from where the last one stopped.
LANE_S = 120.0
MIN_LANE_S = 60.0


@dataclass(frozen=True, slots=True)
class Prompt:
    """What every stretch of speech is taken to follow (``INITIAL_PROMPT``: names, their
    spelling, the style of punctuation) and the words to favour (``HOTWORDS``, with the
    glossary's terms), as faster-whisper's ``initial_prompt`` and ``hotwords``."""

    text: str = ""
    hotwords: str = ""


NO_PROMPT = Prompt()


@dataclass(frozen=True, slots=True)
class Steps:
    """The decoding steps an earlier run of the same windows finished, and where to record each
    new one: per window, its new segments and how it goes on (``next``: ``decode`` from mel
    frame ``seek`` with ``prompt``, the tokens it is prompted with; a ``leftover`` from
    ``seek``, to pack with others'; or ``done``). Engines that decode a window in one go
    ignore it."""

    done: Sequence[dict[str, Any]]
    record: Callable[[dict[str, Any]], None]


class AsrEngine(Protocol):
    name: str
    multilingual: bool

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]: ...

    def decode(self, audios: Sequence[np.ndarray], *, language: str, word_timestamps: bool,
               on_progress: Callable[[float], None] | None = None,
               steps: Steps | None = None) -> list[list[Segment]]:
        """Segments per window, times in seconds from the start of that window's audio;
        ``on_progress`` hears the share of the windows' audio decoded so far."""
        ...

    def translate(self, audio: np.ndarray, *, language: str) -> list[Segment]:
        """Whisper's own translation of one window into English (segments, no words)."""
        ...


def create(resolved: Resolved, *, model: ModelRef, beam_size: int, prompt: Prompt = NO_PROMPT,
           lanes: int | None = None) -> AsrEngine:
    """The engine; ``lanes``, the most windows it will be given at a time, where known."""
    if resolved.backend == "faster-whisper":
        from cpwhisperx.engines.asr.faster_whisper import FasterWhisperEngine

        return FasterWhisperEngine(model=model, device=resolved.device,
                                   compute_type=resolved.compute_type,
                                   cpu_threads=resolved.cpu_threads,
                                   decoders=resolved.decoders, lanes=lanes,
                                   beam_size=beam_size, prompt=prompt)
    if resolved.backend == "mlx":
        from cpwhisperx.engines.asr.mlx_whisper import MlxWhisperEngine

        return MlxWhisperEngine(model=model, device=resolved.device,
                                compute_type=resolved.compute_type, prompt=prompt)
    raise ValueError(f"unknown ASR backend {resolved.backend!r}")


def one_by_one(decode: Callable[..., list[Segment]], audios: Sequence[np.ndarray], *,
               language: str, word_timestamps: bool,
               on_progress: Callable[[float], None] | None) -> list[list[Segment]]:
    """``decode`` (one window) on each window in turn, telling the progress after each."""
    out = []
    for audio in audios:
        out.append(decode(audio, language=language, word_timestamps=word_timestamps))
        if on_progress:
            on_progress(len(out) / len(audios))
    return out


def to_words(words: Iterable[tuple[float, float, str, float]], *, language: str,
             offset: float = 0.0) -> tuple[Word, ...]:
    """Decoded (start, end, text, probability) as the transcript's words: times moved by
    ``offset`` and rounded, no empty words. Whisper starts each word with a space; a piece it
    wrote without one (",500" after "38", ".2" after "$1") belongs to the word before it, so
    that no aligner, event or line break ever splits a number (not in languages written
    without spaces, where no word has one)."""
    out: list[Word] = []
    for start, end, text, probability in words:
        if not text.strip():
            continue
        word = Word(start=round(float(start) + offset, 3), end=round(float(end) + offset, 3),
                    text=text.strip(), probability=round(float(probability), 4))
        if out and not text[0].isspace() and language not in SPACELESS:
            glued = out.pop()
            word = Word(start=glued.start, end=max(glued.end, word.end),
                        text=glued.text + word.text,
                        probability=min(glued.probability, word.probability))
        out.append(word)
    return tuple(out)


def beam_size(setting: int, language: str) -> int:
    """``BEAM_SIZE``; 0 (auto) is greedy for English and a 5-beam search otherwise. Measured
    with tiny.en: greedy decoding has WER 2.3% against 2.4% on a 10-minute English file (2.4%
    against 2.1% on the eight English eval clips, one word) in 3/4 of the time; with base on
    Hindi the 5-beam search is clearly more accurate (CER 26% and 34% against 35% and 35%)."""
    return setting or (1 if language == "en" else 5)


def check_language(language: str | None, *, multilingual: bool) -> None:
    if language not in (None, "en") and not multilingual:
        raise CpwError(f"the model is English-only but the language is {language!r}: "
                       "set WHISPER_MODEL to a multilingual model (base, small, ...)")


@dataclass(frozen=True, slots=True)
class Window:
    """Speech regions decoded together, joined end to end without the silence between them."""

    regions: tuple[tuple[float, float], ...]

    def read(self, audio: WavReader) -> np.ndarray:
        return np.concatenate([audio.seconds(start, end) for start, end in self.regions])

    def place(self, segment: Segment) -> Segment:
        """The segment on the media's timeline. A word stays inside the region holding its
        middle, so no word straddles the silence cut out between two regions."""
        words = tuple(replace(w, start=self._time(w.start, at=(w.start + w.end) / 2),
                              end=self._time(w.end, at=(w.start + w.end) / 2))
                      for w in segment.words)
        if words:
            return replace(segment, start=words[0].start, end=words[-1].end, words=words)
        return replace(segment, start=self._time(segment.start, at=segment.start),
                       end=self._time(segment.end, at=segment.end - 1e-3))

    def _time(self, t: float, *, at: float) -> float:
        offset = 0.0
        for start, end in self.regions:
            length = end - start
            if at < offset + length or (start, end) == self.regions[-1]:
                return round(start + min(max(t - offset, 0.0), length), 3)
            offset += length
        raise AssertionError("a window has regions")


def speech_windows(regions: list[tuple[float, float]]) -> list[Window]:
    """Regions packed in order into windows of at most 30 s of speech."""
    windows: list[list[tuple[float, float]]] = []
    used = WINDOW_S
    for start, end in _pieces(regions):
        if used + end - start > WINDOW_S:
            windows.append([])
            used = 0.0
        windows[-1].append((start, end))
        used += end - start
    return [Window(tuple(w)) for w in windows]


def lanes(regions: list[tuple[float, float]], *, batch_size: int,
          decoders: int = 1) -> list[Window]:
    """Regions split in order into lanes of about equal speech, each decoded as one long window.

    Whisper often stops a few seconds before the end of a 30-s window; in a lane the next step
    starts there, where a 30-s window would spend a whole encoding on those seconds (a third of
    the encodings of a 10-minute file). Lanes hold about ``LANE_S``, a multiple of
    ``batch_size`` of them so that batches are full, and at least ``MIN_LANE_S`` each (a short
    file gets fewer lanes, not short ones), except that a file with fewer lanes than a batch
    gets as many for each of the ``decoders`` (which deal out the lanes of a batch) where that
    leaves each at least a window of speech."""
    pieces = _pieces(regions)
    total = sum(end - start for start, end in pieces)
    count = math.ceil(total / LANE_S / batch_size) * batch_size
    count = max(1, min(count, int(total // MIN_LANE_S)))
    even = min(batch_size, math.ceil(count / decoders) * decoders)
    if count < batch_size and total / even >= WINDOW_S:
        count = even
    each = total / count
    out: list[list[tuple[float, float]]] = [[] for _ in range(count)]
    done = 0.0
    for start, end in pieces:  # by where its middle falls: lanes differ by < one piece
        out[min(count - 1, int((done + (end - start) / 2) // each))].append((start, end))
        done += end - start
    return [Window(tuple(lane)) for lane in out]


def _pieces(regions: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Regions cut every 30 s: a longer one only comes with ``VAD_BACKEND=none`` or speech
    running across a VAD block."""
    pieces = []
    for start, end in regions:
        while end - start > WINDOW_S:
            pieces.append((start, start + WINDOW_S))
            start += WINDOW_S
        pieces.append((start, end))
    return pieces
