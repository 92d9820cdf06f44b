"""Forced alignment with a wav2vec2 CTC model, as WhisperX does it: the most likely CTC path of
a segment's characters through the model's per-frame character log-probabilities.

torch and transformers come from the ``torch`` extra and are imported only when the aligner is
built. The Viterbi search is our own (numpy): torchaudio's forced_align has no CPU build here.
"""

from pathlib import Path
from typing import Any

import numpy as np

from cpwhisperx import models
from cpwhisperx.engines.align import AlignmentFailed
from cpwhisperx.errors import CpwError, ModelNotFound
from cpwhisperx.media import SAMPLE_RATE, WavReader
from cpwhisperx.transcript import fill_gaps

# WhisperX's defaults, as Hugging Face checkpoints (it takes en/fr/de/es/it from torchaudio;
# these are the same fine-tuned weights: the "-ft-" VoxPopuli repos carry the CTC head).
DEFAULT_MODELS = {
    "en": "facebook/wav2vec2-base-960h",
    "fr": "facebook/wav2vec2-base-10k-voxpopuli-ft-fr",
    "de": "facebook/wav2vec2-base-10k-voxpopuli-ft-de",
    "es": "facebook/wav2vec2-base-10k-voxpopuli-ft-es",
    "it": "facebook/wav2vec2-base-10k-voxpopuli-ft-it",
    "hi": "theainerd/Wav2Vec2-large-xlsr-hindi",
    "ja": "jonatasgrosman/wav2vec2-large-xlsr-53-japanese",
    "zh": "jonatasgrosman/wav2vec2-large-xlsr-53-chinese-zh-cn",
    "nl": "jonatasgrosman/wav2vec2-large-xlsr-53-dutch",
    "pt": "jonatasgrosman/wav2vec2-large-xlsr-53-portuguese",
    "ru": "jonatasgrosman/wav2vec2-large-xlsr-53-russian",
    "pl": "jonatasgrosman/wav2vec2-large-xlsr-53-polish",
    "ar": "jonatasgrosman/wav2vec2-large-xlsr-53-arabic",
    "uk": "Yehor/wav2vec2-xls-r-300m-uk-with-small-lm",
    "ko": "kresnik/wav2vec2-large-xlsr-korean",
    "ur": "kingabzpro/wav2vec2-large-xls-r-300m-Urdu",
    "te": "anuragshas/wav2vec2-large-xlsr-53-telugu",
}
FILES = ("config.json", "preprocessor_config.json", "vocab.json")  # what from_pretrained reads
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
           "pytorch_model.bin.index.json")
PAD_S = 0.15  # ASR segment bounds are loose; a word cut at the edge would be squeezed to fit
MIN_SAMPLES = 400  # the conv feature encoder's receptive field (25 ms): less gives no frame


def _load_error(name: str, part: str, exc: Exception, offline: bool) -> ModelNotFound:
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    # A missing vocab.json surfaces as a TypeError about a None path: say what is missing.
    reason = first if isinstance(exc, OSError) and first else f"no usable {part}"
    if Path(name).expanduser().is_dir():
        hint = ("the folder needs config.json, the weights, vocab.json and "
                "preprocessor_config.json of a Wav2Vec2ForCTC model")
    elif offline:
        hint = ("HF_HUB_OFFLINE is set and it is not in the Hugging Face cache: fetch it once "
                "online (it is cached) or give a local model folder")
    else:
        hint = "check the name (a Hugging Face id or a local folder) and the network"
    return ModelNotFound(f"wav2vec2 alignment model {name!r} cannot be loaded ({reason}); {hint}")


def check_obtainable(*, language: str, model: str) -> None:
    """ModelNotFound, at once, for a Hub model that is not cached and cannot be downloaded now
    (rather than after the worker has imported torch and transformers has retried). A folder,
    there or not, is for the aligner to check."""
    name = model or DEFAULT_MODELS.get(language)
    if name is None or models.looks_like_path(name) or \
            models.obtainable(name, files=FILES, weights=WEIGHTS):
        return
    why = "HF_HUB_OFFLINE is set" if models.offline() else "the Hugging Face Hub cannot be reached"
    raise ModelNotFound(f"wav2vec2 alignment model {name!r} is not in the Hugging Face cache and "
                        f"{why}: fetch it once online, or set ALIGNMENT_MODEL to a local folder")


class Wav2Vec2Aligner:
    name = "wav2vec2"

    def __init__(self, *, language: str, model: str | None = None, device: str = "cpu") -> None:
        try:
            import torch
            from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC
        except ImportError as exc:
            raise CpwError("ALIGNMENT_BACKEND=wav2vec2 needs the torch extra: "
                           "pip install 'cpwhisperx[torch]'") from exc
        name = model or DEFAULT_MODELS.get(language)
        if name is None:
            raise ModelNotFound(f"no default wav2vec2 alignment model for language {language!r}: "
                                "give a wav2vec2 CTC model fine-tuned on it (Hugging Face id or "
                                "local folder)")
        local = models.offline()  # transformers reads HF_HUB_OFFLINE too; this makes it explicit
        # The model first: its errors are the clearest (not cached, no weights in the folder).
        # Tokenizer and feature extractor separately, not Wav2Vec2Processor: repos that ship a
        # processor with a language model (pyctcdecode) still have both parts.
        parts = (("model", Wav2Vec2ForCTC), ("feature extractor", Wav2Vec2FeatureExtractor),
                 ("tokenizer", Wav2Vec2CTCTokenizer))
        loaded: list[Any] = []
        for part, cls in parts:
            try:
                loaded.append(cls.from_pretrained(name, local_files_only=local))
            except Exception as exc:  # OSError, ValueError, TypeError: it varies by version
                raise _load_error(name, part, exc, local) from exc
        net, features, tokenizer = loaded
        if features.sampling_rate != SAMPLE_RATE:
            raise ModelNotFound(f"wav2vec2 model {name!r} expects {features.sampling_rate} Hz "
                                f"audio; the aligner feeds {SAMPLE_RATE} Hz")
        self._torch = torch
        self._device = device
        self._features = features
        # Half-precision checkpoints exist; CPU kernels and log_softmax want float32.
        self._net = net.float().to(device).eval()
        vocab: dict[str, int] = tokenizer.get_vocab()
        self._blank = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._delimiter = vocab.get(tokenizer.word_delimiter_token or "|")
        # Only single characters can be spelled from text; "<pad>", "<unk>" and the
        # delimiter never come from a word.
        self._chars = {t: i for t, i in vocab.items()
                       if len(t) == 1 and i not in (self._blank, self._delimiter)}
        upper = sum(t.isupper() for t in self._chars)
        lower = sum(t.islower() for t in self._chars)
        self._fold = str.upper if upper > lower else str.lower  # English 960h is upper-case

    def _ids(self, word: str) -> list[int]:
        """The word's characters as vocabulary ids; digits and symbols the model lacks drop."""
        ids = []
        for char in word.strip().replace("\u2019", "'"):
            found = self._chars.get(self._fold(char), self._chars.get(char))
            if found is not None:
                ids.append(found)
        return ids

    def emissions(self, window: np.ndarray) -> np.ndarray:
        """Per-frame log-probabilities (frames x vocabulary) for 16 kHz mono audio."""
        torch = self._torch
        inputs = self._features(window, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.inference_mode():
            logits = self._net(inputs.input_values.to(self._device)).logits[0]
            return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    def align_segment(self, audio: WavReader | np.ndarray, *, start: float, end: float,
                      words: list[str]) -> list[tuple[float, float]]:
        if not words:
            return []
        per_word = [self._ids(w) for w in words]
        tokens: list[int] = []
        bounds: list[tuple[int, int] | None] = []  # each word's first and last token index
        for ids in per_word:
            if not ids:
                bounds.append(None)
                continue
            if tokens and self._delimiter is not None:
                tokens.append(self._delimiter)  # the model emits "|" between words
            bounds.append((len(tokens), len(tokens) + len(ids) - 1))
            tokens.extend(ids)
        if not tokens:
            raise AlignmentFailed("no character of the segment is in the model's vocabulary")
        lo = max(0, int((start - PAD_S) * SAMPLE_RATE))
        hi = min(len(audio), int(np.ceil((end + PAD_S) * SAMPLE_RATE)))
        if hi - lo < MIN_SAMPLES:
            raise AlignmentFailed("window too short for the model")
        window = np.ascontiguousarray(audio[lo:hi], dtype=np.float32)
        emission = self.emissions(window)
        spans = token_spans(ctc_path(emission, tokens, self._blank), len(tokens))
        frame_s = (hi - lo) / SAMPLE_RATE / len(emission)  # ~20 ms; exact for this window
        offset = lo / SAMPLE_RATE
        times = [None if b is None else (offset + spans[b[0]][0] * frame_s,
                                         offset + spans[b[1]][1] * frame_s) for b in bounds]
        return fill_gaps(times, words, start, end)


def ctc_path(emission: np.ndarray, tokens: list[int], blank: int) -> np.ndarray:
    """Viterbi CTC alignment: for each frame, the index in ``tokens`` it emits, or -1 (blank).

    ``emission`` is frames x vocabulary log-probabilities. The search runs over the usual CTC
    states (blank, t0, blank, t1, ..., blank): a state may stay, step to the next, or skip the
    blank between two different tokens; identical neighbours need a blank between them.
    """
    n_frames, n_tokens = len(emission), len(tokens)
    labels = np.full(2 * n_tokens + 1, blank, dtype=np.int64)
    labels[1::2] = tokens
    skip = np.zeros(len(labels), dtype=bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    if n_tokens + int(np.count_nonzero(~skip[3::2])) > n_frames:
        raise AlignmentFailed(f"{n_tokens} characters do not fit in {n_frames} frames")
    scores = emission[:, labels]  # frames x states
    dead = np.full(len(labels), -np.inf)
    best = dead.copy()
    best[:2] = scores[0, :2]  # start on the leading blank or the first token
    moves = np.zeros((n_frames, len(labels)), dtype=np.int8)  # 0 stay, 1 step, 2 skip
    for t in range(1, n_frames):
        step = np.concatenate(([-np.inf], best[:-1]))
        jump = np.where(skip, np.concatenate(([-np.inf, -np.inf], best[:-2])), dead)
        options = np.stack((best, step, jump))
        moves[t] = options.argmax(axis=0)
        best = np.take_along_axis(options, moves[t][None].astype(np.int64), 0)[0] + scores[t]
    state = len(labels) - 1 if best[-1] >= best[-2] else len(labels) - 2  # end: last token/blank
    if not np.isfinite(best[state]):
        raise AlignmentFailed("no CTC path through the segment")
    path = np.empty(n_frames, dtype=np.int64)
    for t in range(n_frames - 1, -1, -1):
        path[t] = (state - 1) // 2 if state % 2 else -1
        state -= int(moves[t, state])  # int8 would overflow on numpy 2
    return path


def token_spans(path: np.ndarray, n_tokens: int) -> list[tuple[int, int]]:
    """Each token's (first frame, last frame + 1) on a path from ``ctc_path``."""
    frames = np.arange(len(path))
    emitting = path >= 0
    first = np.full(n_tokens, len(path))
    last = np.full(n_tokens, -1)
    np.minimum.at(first, path[emitting], frames[emitting])
    np.maximum.at(last, path[emitting], frames[emitting])
    return [(int(a), int(b) + 1) for a, b in zip(first, last, strict=True)]
