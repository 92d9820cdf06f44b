"""Silero VAD through the ONNX model bundled with faster-whisper (onnxruntime, no torch)."""

import numpy as np

from cpwhisperx.media import SAMPLE_RATE


class SileroVad:
    name = "silero (faster-whisper ONNX)"

    def __init__(self, *, threshold: float, min_silence_ms: int, speech_pad_ms: int,
                 max_speech_s: float) -> None:
        from faster_whisper.vad import VadOptions

        self.options = VadOptions(threshold=threshold, min_silence_duration_ms=min_silence_ms,
                                  speech_pad_ms=speech_pad_ms, max_speech_duration_s=max_speech_s)

    def detect(self, audio: np.ndarray) -> list[tuple[float, float]]:
        from faster_whisper.vad import get_speech_timestamps

        if len(audio) == 0:
            return []
        chunks = get_speech_timestamps(audio, self.options, sampling_rate=SAMPLE_RATE)
        return [(round(c["start"] / SAMPLE_RATE, 3), round(c["end"] / SAMPLE_RATE, 3))
                for c in chunks]
