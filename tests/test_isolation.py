"""Crash-proofing: every injected fault ends with the job done (or one clear error), the
manifest saying what happened, and every output that could be produced present."""

import contextlib
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import cli, clip, error_line, job_of, job_root, wait_for
from cpwhisperx.runtime import faults

FORMATS = {"json", "txt", "srt", "vtt", "tsv"}


def run_with_fault(out: Path, fault: str, *args: str):
    proc = cli(out, "transcribe", str(clip("en_jfk")), "-s", "en", *args,
               env={"CPWHISPERX_FAULT": fault})
    root = job_root(out, job_of(proc))
    return proc, json.loads((root / "manifest.json").read_text()), root


def outputs_of(root: Path) -> set[str]:
    return {p.suffix[1:] for p in (root / "outputs").iterdir()}


def test_fault_spec_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPWHISPERX_FAULT", "asr:segv, align:hang:every,bogus:segv,asr")
    assert faults.active("asr", 0) == "segv" and faults.active("asr", 1) is None
    assert faults.active("align", 0) == faults.active("align", 3) == "hang"
    assert faults.active("vad", 0) is None
    monkeypatch.delenv("CPWHISPERX_FAULT")
    assert faults.active("asr", 0) is None


def test_asr_crash_after_writing_keeps_the_result(tmp_path: Path) -> None:
    proc, manifest, root = run_with_fault(tmp_path, "asr:segv-after-write")
    assert proc.returncode == 0, proc.stderr
    asr = manifest["stages"]["asr"]
    assert asr["warnings"] == ["faster-whisper cpu/int8 killed by SIGSEGV after writing its "
                               "result: result kept"]
    assert "cpu/int8" in asr["backend"] and outputs_of(root) == FORMATS
    assert "result kept" in proc.stdout  # the final table says it too


@pytest.mark.parametrize(("fault", "death"), [("asr:segv", "killed by SIGSEGV"),
                                              ("asr:oom", "killed by SIGKILL (out of memory?)")])
def test_asr_crash_falls_back_once(tmp_path: Path, fault: str, death: str) -> None:
    proc, manifest, root = run_with_fault(tmp_path, fault)
    assert proc.returncode == 0, proc.stderr
    asr = manifest["stages"]["asr"]
    assert asr["warnings"] == [f"fallback: faster-whisper cpu/int8 {death}; retrying with "
                               "faster-whisper cpu/float32"]
    assert asr["backend"].endswith("cpu/float32") and outputs_of(root) == FORMATS
    text = (root / "outputs" / "en_jfk.txt").read_text().lower()
    assert "ask not what your country can do for you" in text


def test_asr_crash_with_no_fallback_left_fails_clearly(tmp_path: Path) -> None:
    proc, manifest, root = run_with_fault(tmp_path, "asr:segv:every")
    assert proc.returncode == 1
    line = error_line(proc)
    assert line.startswith("error: speech recognition failed and no fallback is left")
    assert "cpu/float32 killed by SIGSEGV" in line
    assert manifest["stages"]["asr"]["status"] == "failed"
    assert manifest["stages"]["vad"]["status"] == "done"  # earlier work kept for the next run
    assert (root / "01_demux" / "audio.wav").is_file()


def test_aligner_crash_keeps_whisper_word_times(tmp_path: Path) -> None:
    proc, manifest, root = run_with_fault(tmp_path, "align:segv")
    assert proc.returncode == 0, proc.stderr
    align = manifest["stages"]["align"]
    assert align["warnings"][:2] == ["fallback: pocketsphinx killed by SIGSEGV",
                                     "kept whisper word times instead"]
    assert align["backend"] == "whisper" and outputs_of(root) == FORMATS
    transcript = json.loads((root / "outputs" / "en_jfk.json").read_text())
    assert all(seg["words"] for seg in transcript["segments"])


def test_aligner_hang_finishes_within_timeout_plus_10s(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, manifest, root = run_with_fault(tmp_path, "align:hang", "--set", "ALIGN_TIMEOUT_S=3")
    assert proc.returncode == 0, proc.stderr
    align = manifest["stages"]["align"]
    assert align["warnings"][0] == "fallback: pocketsphinx timed out after 3 s"
    assert align["seconds"] < 3 + 10
    assert time.monotonic() - started < 60
    assert outputs_of(root) == FORMATS


def test_disk_full_inside_the_asr_worker_is_its_one_line_not_a_fallback(tmp_path: Path) -> None:
    """The ASR stage's folder is a small file system of its own, full once the worker has
    started its journal: the worker's own error reaches the user as one line naming the file,
    and no fallback configuration is tried (float32 kernels free no disk space)."""
    out = tmp_path / "out"
    job_id = cli(out, "prepare", "--media", str(clip("en_lecture_plants")),
                 "-s", "en").stdout.strip()
    root = job_root(out, job_id)
    folder = root / "04_asr"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                      capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        journal = folder / "chunks.jsonl"

        def fill() -> None:  # once the worker has written the journal's first line
            wait_for(journal.is_file)
            with (folder / "filler").open("ab", buffering=0) as fh, \
                    contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)

        filler = threading.Thread(target=fill)
        filler.start()
        proc = cli(out, "run", "-j", job_id)
        filler.join()
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    assert proc.returncode == 1
    message = f"disk full while writing {journal}: free some space and run again"
    assert error_line(proc) == f"error: {message}"
    asr = json.loads((root / "manifest.json").read_text())["stages"]["asr"]
    assert asr["status"] == "failed" and asr["error"] == message
    assert not asr.get("warnings")  # no "fallback: ... retrying with ..."
    log = (root / "logs" / "asr.log").read_text()
    assert log.count("windows in") == 1, log  # one worker, one attempt
