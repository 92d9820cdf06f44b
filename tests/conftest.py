import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpwhisperx import evaluation
from cpwhisperx.jobs import Job

REPO = Path(__file__).resolve().parents[1]
EVAL = evaluation.eval_root()


def pytest_configure(config: pytest.Config) -> None:
    # Tests never touch the network or the user's caches; children inherit this.
    os.environ["HF_HUB_OFFLINE"] = "1"
    cache = Path(config.rootpath) / ".pytest_cache" / "cpwhisperx-cache"
    os.environ.setdefault("CPWHISPERX_CACHE", str(cache))
    os.environ.setdefault("HF_HOME", str(cache / "hf"))
    assert (EVAL / "manifest.json").is_file(), f"evaluation data missing at {EVAL}"


def clip(name: str) -> Path:
    for folder in ("clips", "media"):
        for path in (EVAL / folder).glob(f"{name}.*"):
            return path
    raise FileNotFoundError(name)


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stage_status(manifest: Path, stage: str) -> str | None:
    """A stage's status in a manifest that another process is writing."""
    try:
        return json.loads(manifest.read_text())["stages"][stage]["status"]
    except (OSError, ValueError):
        return None


def wer_against(item_id: str, text: str) -> float:
    """WER of ``text`` against an eval item's reference: tests bound it, since another CPU
    decodes differently (CTranslate2 picks its kernels by CPU)."""
    item = next(i for i in evaluation.items() if i.id == item_id)
    return evaluation.wer(item.text, text, item.language)


def cli(out: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
        cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process, as a user would."""
    return subprocess.run([sys.executable, "-m", "cpwhisperx", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})}, check=False)


def no_hub() -> dict[str, str]:
    """Online as far as the settings go, but the Hub's address is a closed loopback port."""
    return {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": f"http://127.0.0.1:{evaluation.free_port()}"}


def translate_jfk(out: Path, *args: str, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
    """``cpwhisperx translate`` of en_jfk into Hindi, as the translation engines' workflow tests
    run it."""
    return cli(out, "translate", str(clip("en_jfk")), "-s", "en", "-t", "hi", *args, env=env)


def translated_jfk(out: Path, proc: subprocess.CompletedProcess[str]) -> dict:
    """The translate stage's meta of a finished ``translate_jfk`` run, its Hindi text checked
    to be there."""
    assert proc.returncode == 0, proc.stderr
    root = job_root(out, job_of(proc))
    assert (root / "outputs" / "en_jfk.hi.txt").read_text(encoding="utf-8").strip()
    return json.loads((root / "manifest.json").read_text())["stages"]["translate"]["meta"]


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a failure prints; no traceback anywhere."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def ffprobe_streams(path: Path) -> tuple[list[dict], float]:
    """A media file's streams and its duration, as ffprobe sees them."""
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams",
                          "-show_format", str(path)], capture_output=True, text=True,
                         check=True).stdout
    data = json.loads(out)
    return data["streams"], float(data["format"]["duration"])


def job_root(out: Path, job_id: str) -> Path:
    return next(out.glob(f"*/*/{job_id}"))


def job_of(proc: subprocess.CompletedProcess[str]) -> str:
    for line in proc.stderr.splitlines():
        if line.startswith("job job-"):
            return line.split()[1]
    raise AssertionError(proc.stderr)


def assert_times_valid(transcript: dict, duration: float) -> None:
    last = 0.0
    for seg in transcript["segments"]:
        assert last <= seg["start"] <= seg["end"] <= duration + 1e-6
        last = seg["start"]
        word_last = seg["start"]
        for w in seg["words"]:
            assert word_last <= w["start"] <= w["end"] <= seg["end"]
            word_last = w["start"]
    assert transcript["text"] == " ".join(s["text"] for s in transcript["segments"])


def stage_dir(root: Path, stage: str) -> Path:
    """A stage's folder in the job folder ``root`` (numbered by the registry)."""
    return Job(root.name, root).stage_dir(stage)
