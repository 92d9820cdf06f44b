"""The MLX backend: the CTranslate2 → MLX converter, and mlx-whisper run for real where MLX
installs (its CPU build on Linux)."""

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, clip, job_of, job_root, wer_against
from cpwhisperx import evaluation, models
from cpwhisperx.engines.asr import mlx_convert
from cpwhisperx.errors import CpwError

TINY_EN_DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
                "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384,
                "n_text_head": 6, "n_text_layer": 4}


@pytest.fixture(scope="module")
def tiny_en() -> models.ModelRef:
    return models.resolve("tiny.en")


@pytest.fixture(scope="module")
def ct2(tiny_en: models.ModelRef) -> dict[str, np.ndarray]:
    return mlx_convert.read_ct2(tiny_en.path / "model.bin")


def test_converter_maps_every_tensor(ct2: dict[str, np.ndarray]) -> None:
    dims, tensors = mlx_convert.to_mlx(ct2)
    assert dims == TINY_EN_DIMS
    # Per layer: q, k, v, out (k has no bias) + 3 norms + 2 MLP = 15 tensors in the encoder,
    # 7 + 2 more (cross-attention + its norm) in the decoder; then convs, final norms, embeddings.
    assert len(tensors) == 4 * 15 + 4 * 24 + 4 + 4 + 2
    assert tensors["encoder.conv1.weight"].shape == (384, 3, 80)  # MLX puts channels last
    assert tensors["decoder.blocks.3.cross_attn.value.weight"].shape == (384, 384)
    assert "encoder.blocks.0.attn.key.bias" not in tensors
    # CT2 fuses q|k|v: the key's slice of the fused bias is the zero padding it added.
    fused = ct2["encoder/layer_0/self_attention/linear_0/bias"]
    assert not fused[384:768].any() and fused[:384].any() and fused[768:].any()
    np.testing.assert_array_equal(tensors["encoder.blocks.0.attn.value.bias"], fused[768:])


def test_converter_refuses_a_layout_it_does_not_know(ct2: dict[str, np.ndarray]) -> None:
    with pytest.raises(CpwError, match="unexpected: encoder/extra/weight"):
        mlx_convert.to_mlx({**ct2, "encoder/extra/weight": np.zeros((2, 2), np.float16)})


def test_conversion_is_cached_by_weights(tiny_en: models.ModelRef) -> None:
    first = mlx_convert.ensure(tiny_en)
    stamp = (first / mlx_convert.WEIGHTS).stat().st_mtime_ns
    assert mlx_convert.ensure(tiny_en) == first
    assert (first / mlx_convert.WEIGHTS).stat().st_mtime_ns == stamp
    assert json.loads((first / mlx_convert.CONFIG).read_text()) == TINY_EN_DIMS
    assert json.loads((first / mlx_convert.HEADS).read_text())[0] == [1, 0]
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp left


needs_mlx = pytest.mark.skipif(not __import__("importlib").util.find_spec("mlx_whisper"),
                               reason="the mlx extra is not installed")


@needs_mlx
def test_mlx_transcribes_with_word_times(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "en", "--backend", "mlx")
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    asr = json.loads((root / "manifest.json").read_text())["stages"]["asr"]
    assert asr["backend"] == "mlx-whisper tiny.en cpu/float32" and not asr["warnings"]
    transcript = json.loads((root / "04_asr" / "transcript.json").read_text())
    words = [w for s in transcript["segments"] for w in s["words"]]
    assert words and all(a["start"] <= a["end"] <= b["start"] + 1e-6
                         for a, b in itertools.pairwise(words))
    reference = ("And so my fellow Americans, ask not what your country can do for you, ask "
                 "what you can do for your country.")
    text = " ".join(s["text"] for s in transcript["segments"])
    assert evaluation.wer(reference, text, "en") <= 0.10


@needs_mlx
def test_mlx_crash_falls_back_to_ctranslate2(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "en", "--backend", "mlx",
               env={"CPWHISPERX_FAULT": "asr:segv"})
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    asr = json.loads((root / "manifest.json").read_text())["stages"]["asr"]
    assert asr["warnings"] == ["fallback: mlx cpu/float32 killed by SIGSEGV; retrying with "
                               "faster-whisper cpu/int8"]
    assert asr["backend"] == "faster-whisper tiny.en cpu/int8"
    assert wer_against("en_jfk", (root / "outputs" / "en_jfk.txt").read_text()) <= 0.15


@needs_mlx
def test_broken_mlx_install_falls_back(tmp_path: Path) -> None:
    # mlx-whisper's metadata is there but its import fails, as with a missing native library.
    shadow = tmp_path / "shadow" / "mlx_whisper"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("libmlx.so: cannot open")\n')
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(shadow.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    proc = cli(tmp_path / "out", "transcribe", str(clip("en_jfk")), "-s", "en", "--backend",
               "mlx", env=env)
    assert proc.returncode == 0, proc.stderr
    asr = json.loads((job_root(tmp_path / "out", job_of(proc)) / "manifest.json").read_text())
    assert asr["stages"]["asr"]["backend"] == "faster-whisper tiny.en cpu/int8"
    assert "libmlx.so: cannot open" in asr["stages"]["asr"]["warnings"][0]
