"""SOURCE_SEPARATION=demucs: the real Demucs loaders and block-wise separation, on a tiny
HTDemucs built here (no Demucs weights can be downloaded on this machine)."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, clip, error_line, job_of, job_root
from cpwhisperx import media

torch = pytest.importorskip("torch")
pytest.importorskip("demucs")

from cpwhisperx.engines.separate import demucs  # noqa: E402 -- needs the extra

SOURCES = ["drums", "bass", "other", "vocals"]
TINY = {"sources": SOURCES, "channels": 8, "depth": 2, "t_layers": 1, "t_heads": 1,
        "nfft": 512, "segment": 4, "dconv_comp": 2}


def _export(path: Path) -> Path:
    """A tiny HTDemucs with random weights, in Demucs's own safetensors export format."""
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = HTDemucs(**TINY)
    metadata = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(TINY)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata=metadata)
    return path


def test_blocks_with_context_cover_the_audio_once() -> None:
    audio = np.arange(2 * 23, dtype=np.float32).reshape(2, 23)
    blocks = iter([audio[:, i:i + 5] for i in range(0, 23, 5)])
    parts = list(demucs._with_context(blocks, 3))
    np.testing.assert_array_equal(np.concatenate([b for _, b, _ in parts], axis=1), audio)
    at = 0
    for before, block, after in parts:
        np.testing.assert_array_equal(before, audio[:, max(0, at - 3):at])
        np.testing.assert_array_equal(after, audio[:, at + 5:at + 8])
        at += block.shape[1]


def test_demucs_separates_a_file_block_by_block(tmp_path: Path, monkeypatch) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    info = media.probe(clip("en_jfk"))
    media.extract_wav(info, info.audio[0], src)
    monkeypatch.setattr(demucs, "BLOCK_S", 4.0)
    monkeypatch.setattr(demucs, "CONTEXT_S", 1.0)
    engine = demucs.Demucs(model=str(_export(tmp_path / "tiny.safetensors")), cpu_threads=2)
    progress: list[float] = []
    stats = engine.process(src, dst, on_progress=progress.append)
    assert stats["engine"] == "demucs (tiny.safetensors, cpu)"
    assert len(progress) == 3 and progress[-1] == 1.0  # 11 s in blocks of 4 s
    with media.WavReader(src) as before, media.WavReader(dst) as after:
        assert abs(len(after) - len(before)) <= 2  # resampled there and back
        out = after[:]
    assert np.isfinite(out).all() and np.abs(out).max() > 0


def _hf_cache(home: Path, model: Path) -> None:
    """The model where the Hugging Face hub client caches ``adefossez/HTDemucs``."""
    snapshot = home / "hub" / "models--adefossez--HTDemucs" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "htdemucs.yaml").write_text("models: ['tiny']\n")
    (snapshot / "tiny.safetensors").write_bytes(model.read_bytes())
    (home / "hub" / "models--adefossez--HTDemucs" / "refs").mkdir()
    (home / "hub" / "models--adefossez--HTDemucs" / "refs" / "main").write_text("0" * 40)


def test_demucs_from_the_hub_cache_in_the_pipeline_and_missing_offline(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    _hf_cache(home, _export(tmp_path / "tiny.safetensors"))
    proc = cli(tmp_path / "out", "transcribe", str(clip("en_jfk")), "-s", "en",
               "--set", "SOURCE_SEPARATION=demucs", env={"HF_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path / "out", job_of(proc))
    stage = json.loads((root / "manifest.json").read_text())["stages"]["separate"]
    assert stage["backend"] == "demucs (htdemucs, cpu)" and not stage["warnings"]
    assert (root / "02_separate" / "vocals.wav").is_file()

    empty = cli(tmp_path / "out2", "transcribe", str(clip("en_jfk")), "-s", "en",
                "--set", "SOURCE_SEPARATION=demucs", env={"HF_HOME": str(tmp_path / "none")})
    assert empty.returncode != 0
    assert "Demucs model 'htdemucs' is not in the Hugging Face cache" in error_line(empty)
