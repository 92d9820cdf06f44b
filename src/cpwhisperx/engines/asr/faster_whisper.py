"""faster-whisper (CTranslate2) on CPU or CUDA.

Sequential decoding runs on the VAD speech regions joined end to end (what faster-whisper's own
``vad_filter`` does), with times mapped back to the original audio; ``BATCH_SIZE > 1`` decodes
windows of at most 30 s in batches.
"""

from collections.abc import Callable, Iterable

import numpy as np

from cpwhisperx.engines.asr import check_language, speech_windows
from cpwhisperx.errors import EngineUnavailable
from cpwhisperx.media import SAMPLE_RATE
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Segment, Transcript, Word


class FasterWhisperEngine:
    def __init__(self, *, model: ModelRef, device: str, compute_type: str, cpu_threads: int,
                 beam_size: int, batch_size: int) -> None:
        from faster_whisper import WhisperModel

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

    def transcribe(self, audio: np.ndarray, *, regions: list[tuple[float, float]],
                   language: str | None, word_timestamps: bool,
                   on_progress: Callable[[float], None]) -> Transcript:
        check_language(language, multilingual=self.model.model.is_multilingual)
        options = {"language": language, "beam_size": self.beam_size,
                   "word_timestamps": word_timestamps}
        if self.batch_size > 1:
            from faster_whisper import BatchedInferencePipeline

            clips = [{"start": s, "end": e} for s, e in speech_windows(regions)]
            segments, info = BatchedInferencePipeline(self.model).transcribe(
                audio, clip_timestamps=clips, batch_size=self.batch_size, **options)
        else:
            from faster_whisper.transcribe import restore_speech_timestamps
            from faster_whisper.vad import collect_chunks

            chunks = [{"start": int(s * SAMPLE_RATE), "end": int(e * SAMPLE_RATE)}
                      for s, e in regions]
            pieces, _ = collect_chunks(audio, chunks, sampling_rate=SAMPLE_RATE)
            segments, info = self.model.transcribe(np.concatenate(pieces), vad_filter=False,
                                                   **options)
            segments = restore_speech_timestamps(segments, chunks, SAMPLE_RATE)
        duration = max(len(audio) / SAMPLE_RATE, 1e-9)
        result = list(self._convert(segments, duration, on_progress))
        return Transcript(language=info.language, segments=tuple(result),
                          meta={"language_probability": round(info.language_probability, 3)})

    @staticmethod
    def _convert(segments: Iterable, duration: float,
                 on_progress: Callable[[float], None]) -> Iterable[Segment]:
        for seg in segments:
            words = tuple(Word(start=w.start, end=w.end, text=w.word.strip(),
                               probability=round(w.probability, 4)) for w in seg.words or ())
            text = seg.text.strip()
            if text:
                yield Segment(start=seg.start, end=seg.end, text=text, words=words,
                              avg_logprob=round(seg.avg_logprob, 4),
                              no_speech_prob=round(seg.no_speech_prob, 4))
            on_progress(min(1.0, seg.end / duration))
