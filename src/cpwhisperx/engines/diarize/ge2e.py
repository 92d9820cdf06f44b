"""The GE2E speaker encoder of Resemblyzer (Apache-2.0; ``data/ge2e/LICENSE``), converted to
ONNX by ``scripts/build_ge2e.py``: runs on onnxruntime, which faster-whisper already needs, so
the default install diarizes without torch.

Each span of speech is volume-normalised as Resemblyzer does, cut into 1.6 s windows of 40
mel bands (linear power, as the encoder was trained on) and embedded; a span's embedding is
the mean of its windows'. The spans are then clustered (``cluster``). Where two speakers'
spans meet without a pause, 1 s windows every 0.2 s across the two find where the voice turns
from the one speaker's to the other's."""

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import resources

import numpy as np

from cpwhisperx.engines.diarize import Speakers, Turn, cluster
from cpwhisperx.media import SAMPLE_RATE, WavReader

N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms windows every 10 ms
WINDOW = 160  # frames: 1.6 s windows
TARGET_DBFS = -30.0  # quiet speech raised to this, loud speech left alone
# Mean pairwise cosine similarity at which two groups of spans are one voice. Different voices
# score 0.40-0.44 here (Piper, JFK, espeak-ng), up to 0.66 for close synthetic ones; one real
# voice in short phrases as low as 0.70. On 18 conversations and clips of 1-4 speakers,
# 0.60-0.70 found every count but for two espeak-ng variants of one male voice (one speaker to
# it); the middle keeps a margin either way.
THRESHOLD = 0.65
BATCH = 128  # windows per onnxruntime call
# Where two speakers' turns are under NEAR_S apart, the change is searched for in the audio of
# both, with windows of CHANGE_WINDOW frames every CHANGE_STEP: 1 s windows placed it as well as
# 0.8 s ones and better than 1.6 s ones on the relay conversations (``evaluation.relay``).
NEAR_S = 1.0
CHANGE_WINDOW, CHANGE_STEP = 100, 20


@functools.cache
def _filterbank() -> np.ndarray:
    """Slaney-scale mel filters with Slaney area normalisation, 0-8 kHz: librosa's defaults,
    which the encoder was trained with."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= 1000, 15 + np.log(np.maximum(hz, 1e-10) / 1000) / (np.log(6.4) / 27),
                        hz * 3 / 200)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= 15, 1000 * np.exp((np.log(6.4) / 27) * (mel - 15)), mel * 200 / 3)

    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(SAMPLE_RATE / 2)),
                              N_MELS + 2))
    bins = np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / np.diff(edges)[:-1, None]
    upper = ramps[2:] / np.diff(edges)[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram, frames centred every 10 ms (zero padded)."""
    padded = np.pad(audio.astype(np.float32), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32) ** 2
    return power @ _filterbank().T


def normalise(audio: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    gain = 10 ** ((TARGET_DBFS - 20 * np.log10(max(rms, 1e-9))) / 20)
    return audio * gain if 1 < gain < 1e4 else audio  # raised only, and never silence


def windows(spectrogram: np.ndarray) -> np.ndarray:
    """As many 1.6 s windows as the span holds, rounded (at least one), spread evenly from its
    start to its end; one window sits in the middle. The encoder's cost follows the speech:
    a 2.2 s span is one window, not two that overlap. A span shorter than a window is padded
    with silence, as Resemblyzer pads."""
    if len(spectrogram) < WINDOW:
        spectrogram = np.pad(spectrogram, ((0, WINDOW - len(spectrogram)), (0, 0)))
    room = len(spectrogram) - WINDOW
    count = max(1, round(len(spectrogram) / WINDOW))
    starts = [room / 2] if count == 1 else np.linspace(0, room, count)
    return np.stack([spectrogram[round(s):round(s) + WINDOW] for s in starts])


class GE2E:
    name = "ge2e"

    def __init__(self, *, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = resources.files("cpwhisperx") / "data" / "ge2e" / "ge2e.onnx"
        self.session = onnxruntime.InferenceSession(model.read_bytes(), options,
                                                    providers=["CPUExecutionProvider"])

    def embed(self, spans: Sequence[np.ndarray],
              progress: Callable[[float], None] = lambda _done: None) -> np.ndarray:
        """One unit-length embedding per span of audio: the mean of its windows'."""
        batches = [windows(mel(normalise(span))) for span in spans]
        owner = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
        stacked = np.concatenate(batches) if batches else np.zeros((0, WINDOW, N_MELS))
        out = np.zeros((len(stacked), 256), dtype=np.float32)
        for lo in range(0, len(stacked), BATCH):
            out[lo:lo + BATCH] = self.session.run(
                None, {"mels": stacked[lo:lo + BATCH].astype(np.float32)})[0]
            progress(min(1.0, (lo + BATCH) / len(stacked)))
        sums = np.zeros((len(spans), 256), dtype=np.float64)
        np.add.at(sums, owner, out)
        return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)

    def diarize(self, audio: WavReader, *, regions: Sequence[tuple[float, float]],
                speakers: Speakers, progress: Callable[[float], None] = lambda _done: None
                ) -> list[Turn]:
        embeddings = self.embed([audio.seconds(start, end) for start, end in regions],
                                lambda done: progress(0.95 * done))
        durations = np.array([end - start for start, end in regions])
        # A span shorter than a window is padded with silence: unless a number of speakers is
        # given, it joins the voices rather than makes one.
        labels = cluster.cluster(embeddings, durations, threshold=THRESHOLD, speakers=speakers,
                                 reliable_s=WINDOW * HOP / SAMPLE_RATE)
        turns = [Turn(start, end, int(label))
                 for (start, end), label in zip(regions, labels, strict=True)]
        voices = cluster.centroids(embeddings, labels)
        for k in range(len(turns) - 1):
            before, after = turns[k], turns[k + 1]
            if before.speaker != after.speaker and after.start - before.end < NEAR_S:
                change = self.change(audio.seconds(before.start, after.end),
                                     voices[before.speaker], voices[after.speaker])
                if change is not None and not before.end <= before.start + change <= after.start:
                    turns[k] = replace(before, end=round(before.start + change, 3))
                    turns[k + 1] = replace(after, start=turns[k].end)
        progress(1.0)
        return turns

    def change(self, audio: np.ndarray, first: np.ndarray, second: np.ndarray) -> float | None:
        """Seconds into ``audio`` where the ``first`` voice (an embedding) hands over to the
        ``second``: the split that leaves the most lean to the first voice in the windows
        before it and to the second after it. None where the audio holds under two windows."""
        spectrogram = mel(normalise(audio))
        starts = np.arange(0, len(spectrogram) - CHANGE_WINDOW + 1, CHANGE_STEP)
        if len(starts) < 2:
            return None
        found = self.session.run(None, {"mels": np.stack(
            [spectrogram[s:s + CHANGE_WINDOW] for s in starts]).astype(np.float32)})[0]
        found /= np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
        lean = found @ (first - second)  # above 0: more like the first voice
        # The split before window m keeps sum(lean[:m]) - sum(lean[m:]) = 2 cumsum - total.
        m = int(np.argmax(2 * np.cumsum(lean)[:-1] - lean.sum())) + 1
        centres = (starts + CHANGE_WINDOW / 2) * HOP / SAMPLE_RATE
        return float(centres[m - 1] + centres[m]) / 2
