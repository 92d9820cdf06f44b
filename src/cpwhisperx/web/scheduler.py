"""Runs the queue's jobs: ``workers`` slots, each a thread feeding a runner process
(``web.runner``) one job at a time and keeping what it says about progress."""

import contextlib
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpwhisperx.runtime import isolation
from cpwhisperx.web.jobqueue import Entry, Queue

log = logging.getLogger(__name__)

MESSAGES_KEPT = 50  # a job's latest messages, for the page
JOBS_KEPT = 200  # jobs whose live state is kept after they end


@dataclass
class Live:
    """What a running job's runner last said."""

    stage: str = ""
    fraction: float = 0.0
    messages: list[str] = field(default_factory=list)
    version: int = 0  # bumped on each change: the event stream sends what is new


class _Runner:
    def __init__(self, out: Path, log: Path) -> None:
        with log.open("a", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cpwhisperx.web.runner", str(out)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                errors="replace", start_new_session=True)

    def stop(self, grace: float = 5.0) -> None:
        """Its job interrupted as Ctrl-C would (the manifest says so, llama-server and the
        model worker are let go); killed, with what it started, if that takes too long."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        isolation.kill_group(self.proc)

    def close(self) -> None:
        """An idle runner: stdin's EOF ends it."""
        if not isolation.let_go(self.proc, timeout=10):
            self.stop(grace=0)


class Scheduler:
    def __init__(self, queue: Queue, *, out: Path, workers: int) -> None:
        self.queue, self.out, self.workers = queue, out, workers
        self.live: dict[str, Live] = {}
        self._running: dict[str, _Runner] = {}  # job id → the runner it is on
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._slot, name=f"slot {n}", daemon=True)
                         for n in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Jobs running are interrupted and stay queued as running, for the next start of the
        server to resume."""
        self._stop.set()
        with self._lock:
            busy = list(self._running.values())
        for runner in busy:
            runner.stop()  # its job's output ends: the slot sees that we stop
        for thread in self._threads:
            thread.join(timeout=15)

    def cancel(self, job_id: str) -> None:
        """Stop the job where it is; the queue already says cancelled. Under the lock: the
        runner cannot be on to another job meanwhile."""
        with self._lock:
            if (runner := self._running.get(job_id)) is not None:
                runner.stop()

    def _slot(self) -> None:
        runner: _Runner | None = None
        try:
            while not self._stop.is_set():
                entry = None
                try:
                    entry = self.queue.take(timeout=0.5)
                    if entry is None:
                        continue
                    if runner is None or runner.proc.poll() is not None:
                        runner = _Runner(self.out, self.out / "serve.log")
                    state, error = self._run(runner, entry)
                    if state == "":  # stopping: the job stays running, to be resumed
                        return
                    self.queue.finish(entry.id, state, error)
                except Exception as exc:  # a bug, or the disk: the slot goes on with the next
                    log.exception("slot failed")
                    if entry is not None:
                        with contextlib.suppress(Exception):
                            self.queue.finish(entry.id, "failed", f"the server failed: {exc}")
                    if runner is not None:
                        runner.stop(grace=0)
                        runner = None
                    time.sleep(1)
        finally:
            if runner is not None:
                runner.close()

    def _run(self, runner: _Runner, entry: Entry) -> tuple[str, str | None]:
        """The job's final state and error; ("", None) when the server is stopping."""
        live = Live()
        with self._lock:
            self.live[entry.id] = live
            for old in list(self.live)[:-JOBS_KEPT]:
                del self.live[old]
            self._running[entry.id] = runner
        now = self.queue.get(entry.id)  # cancelled or deleted as it was taken: not run
        if now is None or now.state != "running":
            with self._lock:
                self._running.pop(entry.id, None)
            return "cancelled", None
        try:
            assert runner.proc.stdin is not None and runner.proc.stdout is not None
            runner.proc.stdin.write(entry.id + "\n")
            runner.proc.stdin.flush()
            for line in runner.proc.stdout:
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "stage":
                    live.stage, live.fraction = rest, 0.0
                elif kind == "progress":
                    with contextlib.suppress(ValueError):
                        live.fraction = float(rest.rpartition(" ")[2])
                elif kind == "info":
                    live.messages = [*live.messages[-MESSAGES_KEPT + 1:], rest]
                elif kind == "done":
                    return "done", None
                elif kind == "failed":
                    return "failed", rest.partition(" ")[2]
                live.version += 1
                if self._stop.is_set():
                    return "", None
        except BrokenPipeError:
            pass  # the runner died before it could read the job
        finally:
            with self._lock:
                self._running.pop(entry.id, None)
            live.version += 1
        if self._stop.is_set():
            return "", None
        code = runner.proc.wait()
        return "failed", f"the job's process died (exit {code}); run it again to resume"
