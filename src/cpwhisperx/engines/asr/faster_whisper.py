"""faster-whisper (CTranslate2) on CPU or CUDA.

Windows are decoded 30 s at a time as faster-whisper's sequential decoder decodes them
(timestamps, beam search, temperature fallback), the windows of a chunk (``BATCH_SIZE``) all
together, each step recordable as it finishes (``batched.decode``); ``transcribe`` is that
sequential decoder itself, on one window in one go.
"""

from collections.abc import Callable, Sequence

import numpy as np

from cpwhisperx import errors
from cpwhisperx.engines.asr import NO_PROMPT, Prompt, Steps, to_words
from cpwhisperx.errors import EngineUnavailable
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import NO_SPEECH_THRESHOLD, Segment


class FasterWhisperEngine:
    def __init__(self, *, model: ModelRef, device: str, compute_type: str, cpu_threads: int,
                 beam_size: int, decoders: int = 1, lanes: int | None = None,
                 prompt: Prompt = NO_PROMPT) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        # The temperature fallback samples: a fixed seed makes a rerun give the same transcript
        # (with one decoder; with two, which replica, and so which random stream, takes a step
        # decoded again depends on timing).
        ctranslate2.set_random_seed(0)

        self.name = f"faster-whisper {model.name} {device}/{compute_type}"
        self.beam_size = beam_size
        self.prompt = prompt
        # The lanes are dealt out in ``decoders`` shares, decoded side by side by as many
        # CTranslate2 replicas as there are threads and lanes for, sharing the weights: one
        # lane (a short file) has one replica with every thread.
        self.decoders = decoders
        self.replicas = max(1, min(decoders, cpu_threads, lanes or decoders))
        try:
            self.model = WhisperModel(str(model.path), device=device, compute_type=compute_type,
                                      cpu_threads=max(1, cpu_threads // self.replicas),
                                      num_workers=self.replicas, local_files_only=True)
        except (ValueError, RuntimeError) as exc:
            reason = errors.reason(exc)
            raise EngineUnavailable(f"cannot load model {model.path} on {device} as "
                                    f"{compute_type}: {reason}") from None
        self.multilingual = self.model.model.is_multilingual

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        language, probability, _ = self.model.detect_language(audio)
        return language, probability

    def decode(self, audios: Sequence[np.ndarray], *, language: str, word_timestamps: bool,
               on_progress: Callable[[float], None] | None = None,
               steps: Steps | None = None) -> list[list[Segment]]:
        from cpwhisperx.engines.asr import batched

        return batched.decode(self, audios, language=language, word_timestamps=word_timestamps,
                              on_progress=on_progress, steps=steps)

    def translate(self, audio: np.ndarray, *, language: str) -> list[Segment]:
        # The sentences' speech, where ASR found words: a "no speech" verdict is wrong there,
        # and the base model gives one for whole windows of Hindi it translates poorly.
        return self.transcribe(audio, language=language, word_timestamps=False,
                               task="translate", no_speech_threshold=None)

    def transcribe(self, audio: np.ndarray, *, language: str, word_timestamps: bool,
                   offset: float = 0.0, task: str = "transcribe",
                   no_speech_threshold: float | None = NO_SPEECH_THRESHOLD) -> list[Segment]:
        """One window with faster-whisper's sequential decoder and its temperature fallback;
        ``audio`` starts ``offset`` seconds into the window (what is left of it)."""
        segments, _ = self.model.transcribe(audio, vad_filter=False, language=language,
                                            task=task, beam_size=self.beam_size,
                                            word_timestamps=word_timestamps,
                                            no_speech_threshold=no_speech_threshold)
        return [Segment(start=round(seg.start + offset, 3), end=round(seg.end + offset, 3),
                        text=seg.text.strip(),
                        words=to_words(((w.start, w.end, w.word, w.probability)
                                        for w in seg.words or ()), language=language,
                                       offset=offset),
                        avg_logprob=round(seg.avg_logprob, 4),
                        no_speech_prob=round(seg.no_speech_prob, 4))
                for seg in segments if seg.text.strip()]
