"""mlx-whisper on Apple Silicon (Metal), or MLX's CPU build elsewhere.

mlx-whisper decodes greedily (no beam search); the transcript's meta says so.
"""

import functools
from collections.abc import Callable, Sequence

import numpy as np

from cpwhisperx import errors
from cpwhisperx.engines.asr import NO_PROMPT, Prompt, Steps, one_by_one, to_words
from cpwhisperx.engines.asr.mlx_convert import HEADS
from cpwhisperx.errors import EngineUnavailable
from cpwhisperx.models import ModelRef
from cpwhisperx.runtime import fsutil
from cpwhisperx.transcript import NO_SPEECH_THRESHOLD, Segment


class MlxWhisperEngine:
    def __init__(self, *, model: ModelRef, device: str, compute_type: str,
                 prompt: Prompt = NO_PROMPT) -> None:
        try:
            import mlx.core as mx
            from mlx_whisper.load_models import load_model
            from mlx_whisper.transcribe import ModelHolder
        except ImportError as exc:
            raise EngineUnavailable(f"mlx-whisper cannot be imported ({exc}): "
                                    "pip install 'cpwhisperx[mlx]'") from None
        self.name = f"mlx-whisper {model.name} {device}/{compute_type}"
        # mlx-whisper has no hotwords: they go before the prompt, as faster-whisper puts them.
        self.initial_prompt = " ".join(filter(None, (prompt.hotwords, prompt.text))) or None
        self.path = str(model.path)
        self.fp16 = compute_type == "float16"
        mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
        self.dtype = dtype = mx.float16 if self.fp16 else mx.float32
        try:
            self.model = load_model(self.path, dtype=dtype)
        except (ValueError, RuntimeError, OSError) as exc:
            reason = errors.reason(exc)
            raise EngineUnavailable(f"cannot load MLX model {model.path}: {reason}") from None
        self.model.set_dtype(dtype)  # the weights are stored as the source model had them
        if heads := fsutil.read_json(model.path / HEADS):
            self.model.set_alignment_heads(np.array(heads))
        # mlx_whisper.transcribe looks its model up by path: hand it the one loaded here.
        ModelHolder.model, ModelHolder.model_path = self.model, self.path
        self.multilingual = self.model.is_multilingual

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        from mlx_whisper.audio import N_FRAMES, log_mel_spectrogram, pad_or_trim

        mel = pad_or_trim(log_mel_spectrogram(audio, n_mels=self.model.dims.n_mels), N_FRAMES,
                          axis=-2).astype(self.dtype)
        _, probs = self.model.detect_language(mel)
        language = max(probs, key=probs.get)
        return language, float(probs[language])

    def decode(self, audios: Sequence[np.ndarray], *, language: str, word_timestamps: bool,
               on_progress: Callable[[float], None] | None = None,
               steps: Steps | None = None) -> list[list[Segment]]:
        return one_by_one(functools.partial(self._run, task="transcribe",
                                            initial_prompt=self.initial_prompt), audios,
                          language=language, word_timestamps=word_timestamps,
                          on_progress=on_progress)

    def translate(self, audio: np.ndarray, *, language: str) -> list[Segment]:
        # Speech where ASR found words: no "no speech" verdict (see the faster-whisper engine).
        return self._run(audio, language=language, word_timestamps=False, task="translate",
                         no_speech_threshold=None)

    def _run(self, audio: np.ndarray, *, language: str, word_timestamps: bool,
             task: str, no_speech_threshold: float | None = NO_SPEECH_THRESHOLD,
             initial_prompt: str | None = None) -> list[Segment]:
        import mlx_whisper

        result = mlx_whisper.transcribe(audio, path_or_hf_repo=self.path, language=language,
                                        task=task, fp16=self.fp16,
                                        word_timestamps=word_timestamps, verbose=None,
                                        no_speech_threshold=no_speech_threshold,
                                        initial_prompt=initial_prompt)
        return [_segment(seg, language) for seg in result["segments"] if seg["text"].strip()]


def _segment(seg: dict, language: str) -> Segment:
    words = to_words(((w["start"], w["end"], w["word"], w["probability"])
                      for w in seg.get("words", ())), language=language)
    return Segment(start=seg["start"], end=seg["end"],
                   text=seg["text"].strip(), words=words,
                   avg_logprob=round(float(seg["avg_logprob"]), 4),
                   no_speech_prob=round(float(seg["no_speech_prob"]), 4))
