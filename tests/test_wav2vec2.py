"""wav2vec2 CTC forced alignment: the Viterbi against known answers, and the aligner end to end
on real audio with a tiny randomly initialised model loaded the way a real one is."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import cli, clip, job_of, job_root, no_hub  # noqa: E402
from cpwhisperx.engines.align import AlignmentFailed  # noqa: E402
from cpwhisperx.engines.align.wav2vec2 import (  # noqa: E402
    Wav2Vec2Aligner,
    check_obtainable,
    ctc_path,
    token_spans,
)
from cpwhisperx.errors import CpwError, ModelNotFound  # noqa: E402
from cpwhisperx.media import SAMPLE_RATE  # noqa: E402

JFK = ["and", "so", "my", "fellow", "americans", "ask", "not", "what", "your", "country",
       "can", "do", "for", "you"]


def _emission(frames: list[int], vocab: int = 4, p: float = 0.9) -> np.ndarray:
    """Log-probabilities where frame t strongly prefers label frames[t]."""
    out = np.full((len(frames), vocab), np.log((1 - p) / (vocab - 1)))
    out[np.arange(len(frames)), frames] = np.log(p)
    return out


def _collapse(labels: tuple[int, ...], blank: int) -> list[int]:
    merged = [k for i, k in enumerate(labels) if i == 0 or k != labels[i - 1]]
    return [k for k in merged if k != blank]


def test_viterbi_known_path_with_repeated_token() -> None:
    # "a a b" (a=1, b=2, blank=0): the two a's need a blank between them, so frames
    # a a _ a _ b b give a=[0,2), a=[3,4), b=[5,7).
    emission = _emission([1, 1, 0, 1, 0, 2, 2])
    path = ctc_path(emission, [1, 1, 2], blank=0)
    assert path.tolist() == [0, 0, -1, 1, -1, 2, 2]
    assert token_spans(path, 3) == [(0, 2), (3, 4), (5, 7)]


def test_viterbi_follows_the_evidence_not_the_text() -> None:
    # Frames say "_ a a a _"; the text "a a" needs a blank between the a's, and the cheapest
    # place to put it is the middle frame (one mismatch; anywhere else costs two).
    emission = _emission([0, 1, 1, 1, 0])
    assert ctc_path(emission, [1, 1], blank=0).tolist() == [-1, 0, -1, 1, -1]


def test_viterbi_tight_fit_and_impossible() -> None:
    # n tokens + 1 per repeated neighbour is the fewest frames a CTC path can use.
    emission = _emission([0, 0, 0])
    assert ctc_path(emission, [1, 1], blank=0).tolist() == [0, -1, 1]
    with pytest.raises(AlignmentFailed):
        ctc_path(emission[:2], [1, 1], blank=0)
    with pytest.raises(AlignmentFailed):
        ctc_path(emission, [1, 2, 3, 1], blank=0)


@pytest.mark.parametrize("seed", range(20))
def test_viterbi_is_the_best_path_by_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_frames, vocab = 6, 3
    tokens = [int(t) for t in rng.integers(1, vocab, size=int(rng.integers(1, 4)))]
    logits = rng.normal(size=(n_frames, vocab)) * 3
    emission = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    best = max((sum(emission[t, k] for t, k in enumerate(labels)), labels)
               for labels in itertools.product(range(vocab), repeat=n_frames)
               if _collapse(labels, 0) == tokens)
    path = ctc_path(emission, tokens, blank=0)
    labels = [tokens[i] if i >= 0 else 0 for i in path]
    assert _collapse(tuple(labels), 0) == tokens
    assert sum(emission[t, k] for t, k in enumerate(labels)) == pytest.approx(best[0])
    spans = token_spans(path, len(tokens))
    assert all(a < b for a, b in spans) and all(
        spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Wav2Vec2ForCTC saved like a hub checkpoint (upper-case vocab,
    as facebook/wav2vec2-base-960h)."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
    )

    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    symbols = ["<pad>", "<s>", "</s>", "<unk>", "|", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    (folder / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    Wav2Vec2CTCTokenizer(str(folder / "vocab.json")).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                             do_normalize=True, return_attention_mask=False
                             ).save_pretrained(folder)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(symbols), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            pad_token_id=0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(clip("en_jfk")),
                          "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def aligner(tiny_model: Path) -> Wav2Vec2Aligner:
    return Wav2Vec2Aligner(language="en", model=str(tiny_model))


def _check(times: list[tuple[float, float]], n: int, lo: float, hi: float) -> None:
    assert len(times) == n
    for a, b in times:
        assert lo - 1e-3 <= a <= b <= hi + 1e-3
    for (_, b), (c, _) in itertools.pairwise(times):
        assert b <= c + 1e-3


def test_aligner_spans_on_real_audio(aligner: Wav2Vec2Aligner, jfk: np.ndarray) -> None:
    duration = len(jfk) / SAMPLE_RATE
    times = aligner.align_segment(jfk, start=0.0, end=duration, words=JFK)
    _check(times, len(JFK), 0.0, duration)
    # A window inside the file: every word within the padded window.
    words = ["Ask", "not", "what", "your", "country", "can", "do", "for", "you,"]
    times = aligner.align_segment(jfk, start=3.0, end=6.0, words=words)
    _check(times, len(words), 3.0 - 0.15, 6.0 + 0.15)
    assert all(b - a >= 0.02 - 1e-3 for a, b in times)  # each word spans >= one 20 ms frame


def test_frames_map_to_exact_seconds(aligner: Wav2Vec2Aligner, jfk: np.ndarray,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Window 1.0-2.0 s padded by 0.15 s: 0.85-2.15 s, 1.3 s; 65 frames of 20 ms. Emissions that
    # spell "ASK|NOT" at known frames must come back as those frames in seconds, in lower case
    # text with a comma (folded to the upper-case vocabulary, punctuation dropped).
    vocab = aligner._chars
    frames = [0] * 65
    for frame, char in {10: "A", 11: "S", 12: "K", 14: "|", 16: "N", 17: "O", 18: "O",
                        19: "T"}.items():
        frames[frame] = 4 if char == "|" else vocab[char]
    seen: list[int] = []

    def fake(window: np.ndarray) -> np.ndarray:
        seen.append(len(window))
        return _emission(frames, vocab=len(vocab) + 5)

    monkeypatch.setattr(aligner, "emissions", fake)
    times = aligner.align_segment(jfk, start=1.0, end=2.0, words=["ask,", "not"])
    assert seen == [round(1.3 * SAMPLE_RATE)]
    assert times == [pytest.approx((0.85 + 0.20, 0.85 + 0.26)),
                     pytest.approx((0.85 + 0.32, 0.85 + 0.40))]


def test_words_without_letters_take_their_neighbours_gap(aligner: Wav2Vec2Aligner,
                                                         jfk: np.ndarray) -> None:
    words = ["ask", "62,000", "not", "what", "%", "$5", "your", "country"]
    times = aligner.align_segment(jfk, start=3.0, end=6.0, words=words)
    _check(times, len(words), 3.0 - 0.15, 6.0 + 0.15)
    assert times[1] == pytest.approx((times[0][1], times[2][0]), abs=1e-3)
    assert times[4][0] == pytest.approx(times[3][1], abs=1e-3)
    assert times[5][1] == pytest.approx(times[6][0], abs=1e-3)
    assert times[4][1] == pytest.approx(times[5][0], abs=1e-3)


def test_alignment_failures(aligner: Wav2Vec2Aligner, jfk: np.ndarray) -> None:
    with pytest.raises(AlignmentFailed):  # ~10 frames for ~50 characters
        aligner.align_segment(jfk, start=0.0, end=0.05, words=JFK)
    with pytest.raises(AlignmentFailed):
        aligner.align_segment(jfk, start=1.0, end=2.0, words=["62", "%", "--"])
    assert aligner.align_segment(jfk, start=1.0, end=2.0, words=[]) == []


def test_missing_model_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CpwError) as err:  # the suite runs with HF_HUB_OFFLINE=1
        Wav2Vec2Aligner(language="en", model="nobody/no-such-wav2vec2")
    assert "\n" not in err.value.message and "HF_HUB_OFFLINE" in err.value.message
    with pytest.raises(CpwError) as err:
        Wav2Vec2Aligner(language="en", model=str(tmp_path))
    assert "\n" not in err.value.message and "folder" in err.value.message
    with pytest.raises(CpwError, match="no default"):
        Wav2Vec2Aligner(language="xx")


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes the import fail
    with pytest.raises(CpwError, match=r"pip install 'cpwhisperx\[torch\]'"):
        Wav2Vec2Aligner(language="en")


def test_pipeline_aligns_with_wav2vec2_in_the_worker(tiny_model: Path, tmp_path: Path) -> None:
    """ALIGNMENT_BACKEND=wav2vec2 through the CLI: the worker loads the model named by
    ALIGNMENT_MODEL and every word gets a time."""
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "en", "--align", "wav2vec2",
               "--set", f"ALIGNMENT_MODEL={tiny_model}")
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"]["align"]["backend"] == "wav2vec2"
    assert manifest["stages"]["align"]["warnings"] == []
    transcript = json.loads((root / "outputs" / "en_jfk.json").read_text())
    assert transcript["meta"]["word_times"] == "wav2vec2"
    assert all(seg["words"] for seg in transcript["segments"])


def test_only_hub_models_are_checked_before_the_worker() -> None:
    check_obtainable(language="hi", model="/mnt/nowhere/w2v-hi")  # a folder: the aligner says
    check_obtainable(language="xx", model="")  # no default model: the aligner says
    with pytest.raises(ModelNotFound, match="'nobody/w2v-hi' is not in the Hugging Face cache "
                       "and HF_HUB_OFFLINE is set"):
        check_obtainable(language="hi", model="nobody/w2v-hi")
    with pytest.raises(ModelNotFound, match="'not a repo id' is not in the Hugging Face cache"):
        check_obtainable(language="hi", model="not a repo id")


@pytest.mark.parametrize("offline", [True, False])
def test_auto_falls_back_when_the_ctc_model_cannot_be_had(tmp_path: Path, offline: bool) -> None:
    """auto picks wav2vec2 for Hindi. With an empty cache, and HF_HUB_OFFLINE set or no Hub
    that answers, the job still finishes, with Whisper's word times and the reason in the
    manifest; no worker waits on the network first."""
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-hub"), **({} if offline else no_hub())}
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "hi", env=env)
    assert proc.returncode == 0, proc.stderr
    align = json.loads((job_root(tmp_path, job_of(proc)) / "manifest.json").read_text())[
        "stages"]["align"]
    assert align["backend"] == "whisper"
    why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
    assert align["warnings"][0] == (
        "fallback: wav2vec2: wav2vec2 alignment model 'theainerd/Wav2Vec2-large-xlsr-hindi' is "
        f"not in the Hugging Face cache and {why}: fetch it once online, or set ALIGNMENT_MODEL "
        "to a local folder")
