"""What a user meets when the machine lets a job down: a full disk (while the manifest is saved,
or inside the ASR worker), a read-only job folder, a media name as long as a file name may be,
and a run stopped by SIGTERM. Each ends in one line, and nothing already made is lost."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, cli, clip, error_line, job_of, job_root, stage_status, wait_for


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small file system of its own, to fill; skipped where this process may not mount."""
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> None:
    """Write until the file system is full."""
    with (folder / "filler").open("ab") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def test_disk_full_while_the_manifest_is_saved(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "2m") as out:
        job_id = cli(out, "prepare", "--media", str(clip("en_jfk")), "-s", "en").stdout.strip()
        manifest = job_root(out, job_id) / "manifest.json"
        before = manifest.read_bytes()
        _fill(out)
        proc = cli(out, "run", "-j", job_id)
        assert proc.returncode == 1
        assert error_line(proc) == (f"error: disk full while writing {manifest}: free some "
                                    "space and run again")
        assert manifest.read_bytes() == before  # the last consistent one
        assert not [p for p in manifest.parent.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_inside_the_asr_worker_is_told_not_retried(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "6m") as out:
        job_id = cli(out, "prepare", "--media", str(clip("en_lecture_plants")),
                     "-s", "en").stdout.strip()
        manifest = job_root(out, job_id) / "manifest.json"
        # Full once the ASR worker runs: its journal cannot be written.
        filler = threading.Thread(target=lambda: (wait_for(
            lambda: stage_status(manifest, "asr") == "running"), _fill(out)))
        filler.start()
        proc = cli(out, "run", "-j", job_id)
        filler.join()
        assert proc.returncode == 1
        line = error_line(proc)
        assert "disk full while writing" in line and "free some space" in line, line
        assert "float32" not in proc.stderr  # no fallback for what no configuration helps


def test_a_media_name_of_255_bytes(tmp_path: Path) -> None:
    media = tmp_path / ("क" * 83 + ".flac")  # 249 + 5 bytes: as long as a file name may be
    shutil.copyfile(clip("en_jfk"), media)
    proc = cli(tmp_path / "out", "transcribe", str(media), "-s", "en")
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path / "out", job_of(proc))
    stem = json.loads((root / "job.json").read_text())["output_stem"]
    assert stem != media.stem and stem.startswith("क" * 70)
    names = sorted(p.name for p in (root / "outputs").iterdir())
    assert names == sorted(f"{stem}.{ext}" for ext in ("json", "srt", "tsv", "txt", "vtt"))
    assert all(len(name.encode()) <= 255 for name in names)


def test_a_read_only_job_folder_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    job_id = cli(out, "prepare", "--media", str(clip("en_jfk")), "-s", "en").stdout.strip()
    if not _mount("--bind", str(out), str(out)):
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        assert _mount("-o", "remount,ro,bind", str(out))
        proc = cli(out, "run", "-j", job_id)
        assert proc.returncode == 1
        assert "Read-only file system" in error_line(proc)
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path: Path) -> None:
    job_id = cli(tmp_path, "prepare", "--media", str(clip("en_lecture_plants")),
                 "-s", "en").stdout.strip()
    manifest = job_root(tmp_path, job_id) / "manifest.json"
    run = subprocess.Popen([sys.executable, "-m", "cpwhisperx", "--out", str(tmp_path), "run",
                            "-j", job_id], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, cwd=REPO, env=os.environ)
    wait_for(lambda: stage_status(manifest, "asr") == "running")
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130
    assert "Traceback" not in stderr
    assert f"error: interrupted; run cpwhisperx run -j {job_id} to continue" in stderr
    data = json.loads(manifest.read_text())
    assert data["runs"][-1]["status"] == "interrupted"
    assert data["stages"]["asr"]["status"] == "failed"
    assert data["stages"]["asr"]["error"] == "interrupted"
