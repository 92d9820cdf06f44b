"""What a user meets when the machine lets a job down: a full disk (while the manifest is saved,
or inside the ASR worker), a read-only job folder, a media name as long as a file name may be,
and a run stopped by SIGTERM. Each ends in one line, and nothing already made is lost."""

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO, cli, clip, error_line, job_of, job_root, stage_status, wait_for
from cpwhisperx import jobs, pipeline
from cpwhisperx.errors import CpwError
from cpwhisperx.languages import LANGUAGES
from cpwhisperx.progress import Reporter
from cpwhisperx.runtime import fsutil


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
    with (folder / "filler").open("ab", buffering=0) as fh, contextlib.suppress(OSError):
        while True:  # unbuffered: nothing is left to write (and fail) when it is closed
            fh.write(b"\0" * 65536)


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


def _assert_no_temp_files(root: Path) -> None:
    """A write that failed leaves no temp file of ours behind (``fsutil.atomic_open``)."""
    assert not [p for p in root.rglob(".cpw-*")], sorted(root.rglob(".cpw-*"))


def test_disk_full_while_a_failure_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A stage fills the disk and fails writing its output; neither its failure nor the run's
    end can be saved then. The stage's error is the one told, the last manifest saved stays
    whole, and once space is freed the job runs on from it. (The stage is a fake that fills the
    disk itself: a real one frees a page or two as it cleans up, which the save then takes.)"""
    with _tmpfs(tmp_path / "small", "4m") as out:
        job_id = cli(out, "prepare", "--media", str(clip("en_jfk")), "-s", "en").stdout.strip()
        job = jobs.find(out, job_id)
        output = job.stage_dir("demux") / "audio.wav"
        saved: list[bytes] = []

        def run(ctx: object) -> None:
            saved.append(job.manifest_path.read_bytes())  # demux recorded as running
            _fill(out)
            fsutil.write_text(output, "x" * 100)

        monkeypatch.setitem(sys.modules, "cpwhisperx.stages.demux", SimpleNamespace(
            NAME="demux", INPUTS=(), fingerprint_config=lambda ctx: {}, run=run))
        monkeypatch.setattr(logging, "raiseExceptions", False)  # the stage's log is full too
        with pytest.raises(CpwError) as failed:
            pipeline.run_job(job, out_root=out, overrides={}, reporter=Reporter())
        assert failed.value.message == (f"disk full while writing {output}: free some space "
                                        "and run again")
        assert "the manifest records the failure" not in capsys.readouterr().err  # it could not
        assert job.manifest_path.read_bytes() == saved[0]  # whole: the last one saved
        _assert_no_temp_files(job.root)
        seen = jobs.Manifest.seen(job).data  # no process holds the lock: it was interrupted
        assert seen.stages["demux"].status == seen.runs[-1].status == "interrupted"

        (out / "filler").unlink()
        again = cli(out, "run", "-j", job_id)
        assert again.returncode == 0, again.stderr
        data = json.loads(job.manifest_path.read_text())
        assert [r["status"] for r in data["runs"]] == ["interrupted", "done"]
        _assert_no_temp_files(job.root)


def test_output_stems_fit_every_name_built_on_them() -> None:
    """The longest suffix a stage puts after the stem (mux's ``.<lang>.burned.mkv``) fits in
    the room ``fit_stem`` keeps."""
    longest = max(len(f".{code}.burned.mkv".encode()) for code in LANGUAGES)
    assert longest <= fsutil.SUFFIX_ROOM
    assert len(".subtitled.mkv") <= fsutil.SUFFIX_ROOM


# 1- to 4-byte characters, and bytes of a name that is not UTF-8 as Python holds them.
_NAME_CHARS = st.sampled_from(["a", ".", " ", "é", "क", "ि", "中", "😀", "\udce9", "\udcff"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_NAME_CHARS, max_size=130).map("".join))
def test_fit_stem_cuts_on_a_character_and_keeps_names_apart(stem: str) -> None:
    fitted = fsutil.fit_stem(stem)
    clean = stem.replace("\udce9", "_").replace("\udcff", "_")
    size = len(fitted.encode())  # strict UTF-8: JSON and every file system take it
    assert size <= fsutil.NAME_MAX - fsutil.SUFFIX_ROOM
    if len(clean.encode()) <= fsutil.NAME_MAX - fsutil.SUFFIX_ROOM:
        assert fitted == clean
        return
    cut, tag = fitted[:-9], fitted[-9:]
    assert re.fullmatch(r"-[0-9a-f]{8}", tag)
    assert clean.startswith(cut)  # whole characters of the stem, in order
    # As many as fit: one character more would not.
    assert len((cut + clean[len(cut)] + tag).encode()) > fsutil.NAME_MAX - fsutil.SUFFIX_ROOM
    assert fsutil.fit_stem(stem + "x")[-9:] != tag  # long names that share a start differ


@pytest.mark.parametrize("name", [
    "क" * 83 + "x.flac",  # 255 bytes, as long as a file name may be
    os.fsdecode(b"caf\xe9.flac"),  # Latin-1, not UTF-8
], ids=["255-bytes", "not-utf8"])
def test_media_names_that_output_names_cannot_copy(tmp_path: Path, name: str) -> None:
    media = tmp_path / name
    assert len(os.fsencode(media.name)) <= 255
    shutil.copyfile(clip("en_jfk"), media)
    proc = cli(tmp_path / "out", "transcribe", str(media), "-s", "en")
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path / "out", job_of(proc))
    job = json.loads((root / "job.json").read_text(encoding="utf-8"))
    assert job["media"] == str(media)  # the path itself, read back
    stem = job["output_stem"]  # which name the outputs have instead of the media's
    assert stem == fsutil.fit_stem(media.stem) != media.stem
    names = sorted(p.name for p in (root / "outputs").iterdir())
    assert names == sorted(f"{stem}.{ext}" for ext in ("json", "srt", "tsv", "txt", "vtt"))
    assert all(len(name.encode()) <= 255 for name in names)
    _assert_no_temp_files(root)


def test_a_read_only_job_folder_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    job_id = cli(out, "prepare", "--media", str(clip("en_jfk")), "-s", "en").stdout.strip()
    if not _mount("--bind", str(out), str(out)):
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        assert _mount("-o", "remount,ro,bind", str(out))
        proc = cli(out, "run", "-j", job_id)
        assert proc.returncode == 1
        assert error_line(proc) == (
            f"error: the job folder {job_root(out, job_id)} cannot be written (Read-only file "
            "system): make it writable, or copy the job folder to a writable place and run it "
            "there with --out")
        assert "the manifest records the failure" not in proc.stderr
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
