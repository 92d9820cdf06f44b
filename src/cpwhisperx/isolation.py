"""Run a model task in a child process (``python -m cpwhisperx.worker``), so that a native
crash, an OOM kill or a hang costs a retry, not the job.

The worker writes its result atomically before it tears the model down; the parent enforces a
timeout, tells death by signal apart, keeps a result written before a crash, and otherwise
tries the next configuration of the fallback chain.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpwhisperx import fsutil
from cpwhisperx.errors import CpwError

ERROR_EXIT = 3  # the worker failed cleanly and said why on stdout: no other engine helps
RETRY_EXIT = 4  # the engine could not start here (e.g. CUDA out of memory): try the next one


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    why: str = ""  # how the worker died, when it did


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with code {returncode}"


def run_task(task: dict[str, Any], *, result: Path, timeout: float, log_file: Path,
             on_progress: Callable[[float], None]) -> Outcome:
    """Run one task; ``ok`` when ``result`` was written, even if the worker died afterwards.
    The worker writes beside ``result``; a failed attempt leaves an earlier result in place."""
    fresh = result.with_name(f".{result.name}.new")
    fresh.unlink(missing_ok=True)
    task_file = result.with_name(f".{result.name}.task.json")
    fsutil.write_json(task_file, {**task, "result": str(fresh)})
    errors: list[str] = []
    with log_file.open("a", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cpwhisperx.worker", str(task_file)],
                                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE,
                                text=True, start_new_session=True)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # read to EOF, so the worker never blocks on a full pipe
                kind, _, value = line.rstrip("\n").partition(" ")
                if kind == "progress":
                    with contextlib.suppress(ValueError):
                        on_progress(float(value))
                elif kind == "error":
                    errors.append(value)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        with proc:
            try:
                returncode = proc.wait(timeout=timeout)
                why = _death(returncode)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                returncode, why = proc.wait(), f"timed out after {timeout:.0f} s"
            except BaseException:  # Ctrl-C: never leave a worker behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            finally:
                reader.join(timeout=5)
                task_file.unlink(missing_ok=True)
    if returncode == ERROR_EXIT and errors:
        raise CpwError(errors[-1])
    if returncode == RETRY_EXIT and errors:
        why = errors[-1]
    if fresh.is_file():
        fresh.replace(result)
        return Outcome(ok=True, why="" if returncode == 0 else why)
    return Outcome(ok=False, why=why)


def run_chain(kind: str, attempts: list[tuple[str, dict[str, Any]]], *, result: Path,
              timeout: float, log_file: Path, on_progress: Callable[[float], None]
              ) -> tuple[str | None, list[str]]:
    """Try each ``(label, task)`` until one writes ``result``; return its label (None when all
    failed) and what happened on the way, for the manifest."""
    warnings: list[str] = []
    for attempt, (label, task) in enumerate(attempts):
        outcome = run_task({**task, "kind": kind, "attempt": attempt}, result=result,
                           timeout=timeout, log_file=log_file, on_progress=on_progress)
        if outcome.ok:
            if outcome.why:
                warnings.append(f"{label} {outcome.why} after writing its result: result kept")
            return label, warnings
        following = attempts[attempt + 1][0] if attempt + 1 < len(attempts) else None
        warnings.append(f"fallback: {label} {outcome.why}"
                        + (f"; retrying with {following}" if following else ""))
    return None, warnings
