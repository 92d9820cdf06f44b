"""Run a model task in a child process (``python -m cpwhisperx.runtime.worker``), so that a native
crash, an OOM kill or a hang costs a retry, not the job.

The worker writes its result atomically before it tears the model down; the parent enforces a
timeout, tells death by signal apart, keeps a result written before a crash, and otherwise
tries the next configuration of the fallback chain. Under ``reuse()`` (many files in a row) a
worker that finished a task cleanly stays up for the next task of its kind, its model loaded.
"""

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydantic

from cpwhisperx.errors import CpwError
from cpwhisperx.runtime import fsutil

ERROR_EXIT = 3  # the worker failed cleanly and said why on stdout: no other engine helps
RETRY_EXIT = 4  # the engine could not start here (e.g. CUDA out of memory): try the next one


class Task(pydantic.BaseModel):
    """A worker's task: a stage's subclass (its module's ``Task``) adds the fields its ``work``
    reads; ``run_chain`` fills these in. Written to a file once, read back in the worker."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    kind: str = ""  # the stage
    attempt: int = 0  # its place in the fallback chain
    result: str = ""  # where the worker writes what ``work`` returns
    log: str = ""  # the task's log file, the worker's stderr


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


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a child started in a session of its own, and what it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def let_go(proc: subprocess.Popen, *, timeout: float) -> bool:
    """Close the child's stdin, whose EOF ends it; whether it ended within ``timeout``."""
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


class _Worker:
    """A worker process: tasks go in on its stdin (a task file per line), and it answers on
    stdout (``progress 0.5``, ``error <message>``, ``exit <code>`` when a task is done)."""

    def __init__(self, log_file: Path) -> None:
        with log_file.open("a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cpwhisperx.runtime.worker", str(log_file)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.PIPE, text=True,
                start_new_session=True)
        self.events: queue.Queue[int | None] = queue.Queue()  # exit codes; None: EOF
        self.on_progress: Callable[[float], None] = lambda _fraction: None
        self.errors: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # read to EOF, so the worker never blocks on a full pipe
            kind, _, value = line.rstrip("\n").partition(" ")
            with contextlib.suppress(ValueError):
                if kind == "progress":
                    self.on_progress(float(value))
                elif kind == "error":
                    self.errors.append(value)
                elif kind == "exit":
                    self.events.put(int(value))
        self.events.put(None)

    def run(self, task_file: Path, *, timeout: float,
            on_progress: Callable[[float], None]) -> tuple[int, str]:
        """The task's exit code and, where the worker died on it, how."""
        self.on_progress, self.errors = on_progress, []
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{task_file}\n")
            self.proc.stdin.flush()
            code = self.events.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return -signal.SIGKILL, f"timed out after {timeout:.0f} s"
        except BrokenPipeError:  # it died while idle
            code = None
        except BaseException:  # Ctrl-C: never leave a worker behind
            self.kill()
            raise
        if code is None:
            returncode = self.proc.wait()
            return returncode, _death(returncode)
        return code, _death(code)

    def kill(self) -> None:
        kill_group(self.proc)
        self.reader.join(timeout=5)

    def close(self) -> None:
        """Let it go: stdin's EOF ends it."""
        if not let_go(self.proc, timeout=30):
            kill_group(self.proc)
        self.reader.join(timeout=5)


_idle: dict[str, _Worker] | None = None  # under reuse(): per task kind, a worker kept up


@contextlib.contextmanager
def reuse() -> Iterator[None]:
    """While it lasts, a worker that finished a task cleanly serves the next one of its kind,
    with the model it loaded: for many files in one command."""
    global _idle
    if _idle is not None:
        yield
        return
    _idle = {}
    try:
        yield
    finally:
        workers, _idle = _idle, None
        for worker in workers.values():
            worker.close()


def run_task(task: Task, *, result: Path, timeout: float, log_file: Path,
             on_progress: Callable[[float], None]) -> Outcome:
    """Run one task; ``ok`` when ``result`` was written, even if the worker died afterwards.
    The worker writes beside ``result``; a failed attempt leaves an earlier result in place."""
    fresh = result.with_name(f".{result.name}.new")
    fresh.unlink(missing_ok=True)
    task_file = result.with_name(f".{result.name}.task.json")
    task = task.model_copy(update={"result": str(fresh), "log": str(log_file)})
    fsutil.write_text(task_file, task.model_dump_json())
    kind = task.kind
    worker = (_idle or {}).pop(kind, None) or _Worker(log_file)
    try:
        returncode, why = worker.run(task_file, timeout=timeout, on_progress=on_progress)
    finally:
        task_file.unlink(missing_ok=True)
    if returncode == 0 and _idle is not None and worker.proc.poll() is None:
        _idle[kind] = worker
    elif returncode >= 0:
        worker.close()  # a clean failure: the next task gets a fresh process
    else:
        worker.kill()
    errors = worker.errors
    if returncode == ERROR_EXIT and errors:
        raise CpwError(errors[-1])
    if returncode == RETRY_EXIT and errors:
        why = errors[-1]
    if fresh.is_file():
        fresh.replace(result)
        return Outcome(ok=True, why="" if returncode == 0 else why)
    return Outcome(ok=False, why=why)


def run_chain(kind: str, attempts: Sequence[tuple[str, Task]], *, result: Path,
              timeout: float, log_file: Path, on_progress: Callable[[float], None]
              ) -> tuple[str | None, list[str]]:
    """Try each ``(label, task)`` until one writes ``result``; return its label (None when all
    failed) and what happened on the way, for the manifest."""
    warnings: list[str] = []
    for attempt, (label, task) in enumerate(attempts):
        outcome = run_task(task.model_copy(update={"kind": kind, "attempt": attempt}),
                           result=result, timeout=timeout, log_file=log_file,
                           on_progress=on_progress)
        if outcome.ok:
            if outcome.why:
                warnings.append(f"{label} {outcome.why} after writing its result: result kept")
            return label, warnings
        following = attempts[attempt + 1][0] if attempt + 1 < len(attempts) else None
        warnings.append(f"fallback: {label} {outcome.why}"
                        + (f"; retrying with {following}" if following else ""))
    return None, warnings
