"""Every bad input: one line naming the file and the problem, non-zero exit, manifest updated,
nothing produced earlier lost."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import cli, clip, error_line, job_of, job_root


def failed_stage(out: Path, job_id: str) -> dict:
    manifest = json.loads((job_root(out, job_id) / "manifest.json").read_text())
    failed = [(n, e) for n, e in manifest["stages"].items() if e["status"] == "failed"]
    assert len(failed) == 1, manifest
    return {"stage": failed[0][0], **failed[0][1]}


@pytest.mark.parametrize(("name", "problem"), [
    ("bad_empty_mp4", "is an empty file (0 bytes)"),
    ("bad_truncated_mp4", "is corrupt or truncated"),
    ("bad_text_as_mp4", "is not a media file (it contains text)"),
    ("media_no_audio_mp4", "has no audio stream (video only)"),
])
def test_unusable_media(tmp_path: Path, name: str, problem: str) -> None:
    media = clip(name)
    proc = cli(tmp_path, "transcribe", str(media))
    assert proc.returncode == 1
    line = error_line(proc)
    assert str(media) in line and problem in line
    entry = failed_stage(tmp_path, job_of(proc))
    assert entry["stage"] == "demux" and problem in entry["error"]
    assert problem in (job_root(tmp_path, job_of(proc)) / "logs" / "demux.log").read_text()
    status = cli(tmp_path, "status", "-j", job_of(proc))
    assert status.returncode == 1 and "failed" in status.stdout


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    for args in (["transcribe", str(missing)], ["prepare", "--media", str(missing)]):
        proc = cli(tmp_path, *args)
        assert proc.returncode == 1
        assert error_line(proc) == f"error: media file not found: {missing}"
    assert not list(tmp_path.glob("*/*/job-*"))  # no job for a file that does not exist


def test_media_removed_after_prepare(tmp_path: Path) -> None:
    media = tmp_path / "gone.flac"
    shutil.copyfile(clip("en_jfk"), media)
    job_id = cli(tmp_path, "prepare", "--media", str(media)).stdout.strip()
    media.unlink()
    proc = cli(tmp_path, "run", "-j", job_id)
    assert proc.returncode == 1
    assert error_line(proc) == f"error: media file not found: {media}"
    assert failed_stage(tmp_path, job_id)["error"] == f"media file not found: {media}"


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli(blocker / "out", "transcribe", str(clip("en_jfk")))
    assert proc.returncode == 1
    line = error_line(proc)
    assert f"cannot write to output folder {blocker / 'out'}" in line and "--out" in line
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        proc = cli(locked, "transcribe", str(clip("en_jfk")))
        assert proc.returncode == 1 and "Permission denied" in error_line(proc)


@pytest.mark.parametrize(("job_id", "problem"), [
    ("../x", "not a job id: '../x'"),
    ("job-20260101-nobody-0001", "unknown job id job-20260101-nobody-0001"),
])
def test_bad_job_id(tmp_path: Path, job_id: str, problem: str) -> None:
    for command in ("run", "status"):
        proc = cli(tmp_path, command, "-j", job_id)
        assert proc.returncode == 2
        assert problem in error_line(proc)


def test_config_value_with_shell_characters_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    value = f"$(touch {marker})`touch {marker}`;touch {marker}"
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--set", f"WHISPER_MODEL={value}")
    assert proc.returncode == 1
    assert "model" in error_line(proc) and value in error_line(proc)
    assert not marker.exists()
    env_file = (job_root(tmp_path, job_of(proc)) / ".env.pipeline").read_text()
    assert f"WHISPER_MODEL={value}\n" in env_file
    assert failed_stage(tmp_path, job_of(proc))["stage"] == "asr"


def test_bad_config_value_fails_before_any_work(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "--device", "gpu")
    assert proc.returncode == 2
    assert error_line(proc) == ("error: WHISPER_DEVICE='gpu' from the command line is not "
                                "allowed: allowed values: 'auto', 'cpu', 'cuda' or 'mps'")
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), env={"BEAM_SIZE": "many"})
    assert proc.returncode == 2 and "BEAM_SIZE='many' from the environment" in error_line(proc)


def test_failed_rerun_keeps_earlier_outputs(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "en")
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    before = {p.name: p.read_bytes() for p in (root / "outputs").iterdir()}
    again = cli(tmp_path, "run", "-j", job_of(proc), "--set", "WHISPER_MODEL=large-v3")
    assert again.returncode == 1 and "large-v3" in error_line(again)
    assert {p.name: p.read_bytes() for p in (root / "outputs").iterdir()} == before
    assert (root / "01_demux" / "audio.wav").is_file()


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", "/mnt"],
                           capture_output=True, check=False)
    if probe.returncode == 0:
        subprocess.run(["umount", "/mnt"], check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and tmpfs mounts")
def test_full_disk(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(small)], check=True)
    try:
        proc = cli(small, "transcribe", str(clip("en_jfk")))  # its WAV alone is 352 kB
        assert proc.returncode == 1
        assert "disk full while writing" in error_line(proc)
        assert failed_stage(small, job_of(proc))["stage"] == "demux"
    finally:
        subprocess.run(["umount", str(small)], check=False)
