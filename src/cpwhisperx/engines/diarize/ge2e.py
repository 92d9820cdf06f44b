"""The GE2E speaker encoder of Resemblyzer (Apache-2.0; ``data/ge2e/LICENSE``), converted to
ONNX by ``scripts/build_ge2e.py``: runs on onnxruntime, which faster-whisper already needs, so
the default install diarizes without torch.

Each span of speech is volume-normalised as Resemblyzer does, cut into 1.6 s windows of 40 mel
bands (linear power, as the encoder was trained on; a shorter span is one window of its own
length) and embedded; a span's embedding is the mean of its windows'. The spans are then
clustered (``cluster``). Where two speakers' spans are under a second apart, 0.8 s windows
every 0.4 s across the two find where the voice turns from the one speaker's to the other's: a
change of speaker inside a sentence, with no pause, is timed there."""

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
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
# Frames: a span shorter than a window is embedded at its own length, but not under 1 s (padded
# with silence to it). All padded to 1.6 s, 232 short spans of 11.5 min of speech cost 56% of
# the windows for 28% of the speech; at their own length down to 0.1 s, 3 of them went to the
# wrong speaker; from 1 s, none, and the DERs of the conversations stay the same.
SHORTEST = 100
# Where two speakers' turns are under NEAR_S apart, the change is searched for in the audio of
# both, with windows of CHANGE_WINDOW frames every CHANGE_STEP. On the relay conversations
# (``evaluation.relay``, seeds 0-4), 0.8 s windows every 0.4 s placed it about as well as 1 s
# windows every 0.2 s (DER 7.1/3.4/10.1/13.1/11.2% against 7.1/2.0/9.8/13.1/11.3%) for 40% of
# the cost; 1.6 s windows placed it worse.
NEAR_S = 1.0
CHANGE_WINDOW, CHANGE_STEP = 80, 40
PAIRS = 64  # changes searched for together, their windows in the same batches


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
    start to its end (a single one in its middle). The encoder's cost follows the speech:
    a 2.2 s span is one window, not two that overlap. The span holds one window at least."""
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

    def _run(self, stacked: np.ndarray) -> np.ndarray:
        """Embeddings of same-length windows, ``BATCH`` at a time: an LSTM's steps are small
        matrix products, and a batch of a dozen windows took twice as long per window."""
        return np.concatenate([self.session.run(None, {"mels": stacked[lo:lo + BATCH]})[0]
                               for lo in range(0, len(stacked), BATCH)]
                              or [np.zeros((0, 256), np.float32)])

    def embed(self, spans: Sequence[np.ndarray],
              progress: Callable[[float], None] = lambda _done: None) -> np.ndarray:
        """One unit-length embedding per span of audio: the mean of its windows'. A span
        shorter than a window is one window of its own length (to 0.1 s below, ``SHORTEST`` at
        least)."""
        batches: dict[int, list[tuple[int, np.ndarray]]] = {}  # by frames
        for owner, span in enumerate(spans):
            spectrogram = mel(normalise(span))
            if len(spectrogram) >= WINDOW:
                batches.setdefault(WINDOW, []).extend(
                    (owner, window) for window in windows(spectrogram))
                continue
            frames = max(SHORTEST, len(spectrogram) // 10 * 10)
            spectrogram = np.pad(spectrogram, ((0, max(0, frames - len(spectrogram))), (0, 0)))
            batches.setdefault(frames, []).append((owner, spectrogram[:frames]))
        total = sum(frames * len(items) for frames, items in batches.items())
        sums = np.zeros((len(spans), 256), dtype=np.float64)
        done = 0
        for frames, items in sorted(batches.items()):
            found = self._run(np.stack([window for _, window in items]).astype(np.float32,
                                                                                copy=False))
            np.add.at(sums, [owner for owner, _ in items], found)
            done += frames * len(items)
            progress(done / total)
        return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)

    def diarize(self, audio: WavReader, *, regions: Sequence[tuple[float, float]],
                speakers: Speakers, progress: Callable[[float], None] = lambda _done: None
                ) -> list[Turn]:
        embeddings = self.embed([audio.seconds(start, end) for start, end in regions],
                                lambda done: progress(0.9 * done))
        durations = np.array([end - start for start, end in regions])
        # A span shorter than a window says less of its voice: unless a number of speakers is
        # given, it joins the voices rather than makes one.
        labels = cluster.cluster(embeddings, durations, threshold=THRESHOLD, speakers=speakers,
                                 reliable_s=WINDOW * HOP / SAMPLE_RATE)
        turns = [Turn(start, end, int(label))
                 for (start, end), label in zip(regions, labels, strict=True)]
        voices = cluster.centroids(embeddings, labels)
        near = [k for k, (before, after) in enumerate(itertools.pairwise(turns))
                if before.speaker != after.speaker and after.start - before.end < NEAR_S]
        found: dict[int, float | None] = {}
        for lo in range(0, len(near), PAIRS):
            group = near[lo:lo + PAIRS]
            found.update(zip(group, self.changes(
                [(audio.seconds(turns[k].start, turns[k + 1].end), voices[turns[k].speaker],
                  voices[turns[k + 1].speaker]) for k in group]), strict=True))
            progress(0.9 + 0.1 * (lo + len(group)) / len(near))
        progress(1.0)
        return retime(turns, found)

    def changes(self, pieces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
                ) -> list[float | None]:
        """For each ``(audio, first voice, second voice)`` (the voices as embeddings), the
        seconds into the audio where the first hands over to the second (``handover``), its
        windows embedded together with the others'."""
        spectrograms = [mel(normalise(audio)) for audio, _, _ in pieces]
        starts = [np.arange(0, len(s) - CHANGE_WINDOW + 1, CHANGE_STEP) for s in spectrograms]
        found = self._run(np.array([s[i:i + CHANGE_WINDOW] for s, at in
                                    zip(spectrograms, starts, strict=True) for i in at],
                                   dtype=np.float32).reshape(-1, CHANGE_WINDOW, N_MELS))
        found /= np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
        out = []
        offsets = np.cumsum([0, *map(len, starts)])[:-1]
        for (_, first, second), at, lo in zip(pieces, starts, offsets, strict=True):
            lean = found[lo:lo + len(at)] @ (first - second)  # above 0: more like the first
            out.append(handover(lean, (at + CHANGE_WINDOW / 2) * HOP / SAMPLE_RATE))
        return out


def handover(lean: np.ndarray, centres: np.ndarray) -> float | None:
    """Where windows centred at ``centres`` (seconds) turn from one voice to another, given
    how much more each is like the first voice than the second (``lean``): the split that
    leaves the most lean to the first voice before it and to the second after it. None where
    the windows before it do not lean to the first voice on average, or those after it to the
    second, or there are not two windows."""
    if len(lean) < 2:
        return None
    # The split before window m keeps sum(lean[:m]) - sum(lean[m:]) = 2 cumsum - total.
    m = int(np.argmax(2 * np.cumsum(lean)[:-1] - lean.sum())) + 1
    if lean[:m].mean() <= 0 or lean[m:].mean() >= 0:
        return None
    return float(centres[m - 1] + centres[m]) / 2


def retime(turns: Sequence[Turn], changes: Mapping[int, float | None]) -> list[Turn]:
    """``turns`` with the handover from turn k to turn k + 1 moved to ``changes[k]`` (seconds
    from turn k's start). A change in the pause between the two, or None, leaves them as they
    are, and so does one that would leave a turn no time (a neighbouring change moved past)."""
    out = list(turns)
    for k, offset in sorted(changes.items()):
        if offset is None:
            continue
        before, after = out[k], out[k + 1]
        at = round(turns[k].start + offset, 3)
        if before.end <= at <= after.start or not before.start < at < after.end:
            continue
        out[k], out[k + 1] = replace(before, end=at), replace(after, start=at)
    return out
