"""mlx-whisper on Apple Silicon (Metal), or MLX's CPU build elsewhere.

Each window of speech (at most 30 s, from the VAD regions) is decoded on its own, so progress is
reported per window and a loop cannot carry over into the next one; the language, when not
given, is detected once on the first window. mlx-whisper decodes greedily (no beam search).
"""

from collections.abc import Callable

import numpy as np

from cpwhisperx import fsutil
from cpwhisperx.engines.asr import check_language, speech_windows
from cpwhisperx.engines.asr.mlx_convert import HEADS
from cpwhisperx.errors import EngineUnavailable
from cpwhisperx.media import SAMPLE_RATE
from cpwhisperx.models import ModelRef
from cpwhisperx.transcript import Segment, Transcript, Word


class MlxWhisperEngine:
    def __init__(self, *, model: ModelRef, device: str, compute_type: str) -> None:
        try:
            import mlx.core as mx
            from mlx_whisper.load_models import load_model
            from mlx_whisper.transcribe import ModelHolder
        except ImportError as exc:
            raise EngineUnavailable(f"mlx-whisper cannot be imported ({exc}): "
                                    "pip install 'cpwhisperx[mlx]'") from None
        self.name = f"mlx-whisper {model.name} {device}/{compute_type}"
        self.path = str(model.path)
        self.fp16 = compute_type == "float16"
        mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
        dtype = mx.float16 if self.fp16 else mx.float32
        try:
            self.model = load_model(self.path, dtype=dtype)
        except (ValueError, RuntimeError, OSError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise EngineUnavailable(f"cannot load MLX model {model.path}: {reason}") from None
        self.model.set_dtype(dtype)  # the weights are stored as the source model had them
        if heads := fsutil.read_json(model.path / HEADS):
            self.model.set_alignment_heads(np.array(heads))
        # mlx_whisper.transcribe looks its model up by path: hand it the one loaded here.
        ModelHolder.model, ModelHolder.model_path = self.model, self.path

    def transcribe(self, audio: np.ndarray, *, regions: list[tuple[float, float]],
                   language: str | None, word_timestamps: bool,
                   on_progress: Callable[[float], None]) -> Transcript:
        import mlx_whisper

        check_language(language, multilingual=self.model.is_multilingual)
        windows = speech_windows(regions)
        total = sum(end - start for start, end in windows) or 1.0
        segments: list[Segment] = []
        done = 0.0
        for start, end in windows:
            clip = audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
            result = mlx_whisper.transcribe(
                clip, path_or_hf_repo=self.path, language=language, fp16=self.fp16,
                word_timestamps=word_timestamps, condition_on_previous_text=False, verbose=None)
            language = language or result["language"]
            segments.extend(_segment(seg, start) for seg in result["segments"]
                            if seg["text"].strip())
            done += end - start
            on_progress(done / total)
        return Transcript(language=language or "und", segments=tuple(segments),
                          meta={"decoding": "greedy (mlx-whisper has no beam search)"})


def _segment(seg: dict, offset: float) -> Segment:
    words = tuple(Word(start=offset + w["start"], end=offset + w["end"], text=w["word"].strip(),
                       probability=round(float(w["probability"]), 4))
                  for w in seg.get("words", ()) if w["word"].strip())
    return Segment(start=offset + seg["start"], end=offset + seg["end"],
                   text=seg["text"].strip(), words=words,
                   avg_logprob=round(float(seg["avg_logprob"]), 4),
                   no_speech_prob=round(float(seg["no_speech_prob"]), 4))
