"""faster-whisper (CTranslate2) on CPU or CUDA.

Each window is decoded on its own with faster-whisper's sequential decoder (timestamps, beam
search, temperature fallback); ``BATCH_SIZE > 1`` decodes the windows of a chunk together with
its ``BatchedInferencePipeline``.
"""

from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np

from cpwhisperx.errors import EngineUnavailable
from cpwhisperx.media import SAMPLE_RATE
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Segment, Word


class FasterWhisperEngine:
    def __init__(self, *, model: ModelRef, device: str, compute_type: str, cpu_threads: int,
                 beam_size: int, batch_size: int) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.name = f"faster-whisper {model.name} {device}/{compute_type}"
        self.beam_size = beam_size
        self.batch_size = batch_size
        try:
            self.model = WhisperModel(str(model.path), device=device, compute_type=compute_type,
                                      cpu_threads=cpu_threads, local_files_only=True)
        except (ValueError, RuntimeError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise EngineUnavailable(f"cannot load model {model.path} on {device} as "
                                    f"{compute_type}: {reason}") from None
        self.multilingual = self.model.model.is_multilingual
        self.batched = BatchedInferencePipeline(self.model) if batch_size > 1 else None

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        language, probability, _ = self.model.detect_language(audio)
        return language, probability

    def decode(self, audios: Sequence[np.ndarray], *, language: str,
               word_timestamps: bool) -> list[list[Segment]]:
        options = {"language": language, "beam_size": self.beam_size,
                   "word_timestamps": word_timestamps}
        if self.batched is None:
            return [list(_convert(self.model.transcribe(audio, vad_filter=False, **options)[0],
                                  offset=0.0)) for audio in audios]
        bounds = np.cumsum([0, *(len(a) for a in audios)]) / SAMPLE_RATE
        clips = [{"start": float(s), "end": float(e)} for s, e in pairwise(bounds)]
        segments, _ = self.batched.transcribe(np.concatenate(audios), clip_timestamps=clips,
                                              batch_size=self.batch_size, **options)
        per_window: list[list[Segment]] = [[] for _ in audios]
        for seg in segments:
            i = min(int(np.searchsorted(bounds, seg.start, side="right")) - 1, len(audios) - 1)
            per_window[i].extend(_convert([seg], offset=float(bounds[i])))
        return per_window


def _convert(segments: Iterable, *, offset: float) -> Iterable[Segment]:
    for seg in segments:
        text = seg.text.strip()
        if not text:
            continue
        words = tuple(Word(start=w.start - offset, end=w.end - offset, text=w.word.strip(),
                           probability=round(w.probability, 4)) for w in seg.words or ())
        yield Segment(start=seg.start - offset, end=seg.end - offset, text=text, words=words,
                      avg_logprob=round(seg.avg_logprob, 4),
                      no_speech_prob=round(seg.no_speech_prob, 4))
