"""``python -m cpwhisperx.runtime.worker LOG``: model tasks in their own process.

Reads a task file's path per line on stdin and answers on stdout (``progress 0.5``,
``error <message>``, ``exit <code>`` when the task is done); its stderr, where the logs of ours
and of the native libraries go, is each task's log file (``LOG`` until the first task). The
engines it loads stay loaded for the next task (``isolation.reuse``); stdin's EOF ends it.
"""

import json
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, cast

from cpwhisperx import registry
from cpwhisperx.errors import CpwError, EngineUnavailable
from cpwhisperx.runtime import faults, fsutil
from cpwhisperx.runtime.isolation import ERROR_EXIT, RETRY_EXIT, Task

if TYPE_CHECKING:
    from cpwhisperx.stages import WorkerStage


def _progress(fraction: float) -> None:
    print(f"progress {fraction:.4f}", flush=True)


def _read_tasks(tasks: "queue.Queue[str]") -> None:
    """The parent holds our stdin open; EOF means it is done with us, or died (even by kill
    -9): stop at once, rather than keep a model busy for a job nobody is running."""
    with os.fdopen(0, "rb", buffering=0) as stdin:  # unbuffered: lines as they come
        pending = b""
        while chunk := stdin.read(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                tasks.put(line.decode())
    os._exit(0)


def _log_to(path: str) -> None:
    """Point stderr (fd 2, so native libraries' messages too) at the task's log file."""
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def load(task_file: Path) -> tuple["WorkerStage", Task]:
    """The task's stage module and the task, as that stage's ``Task`` model."""
    data = json.loads(task_file.read_text(encoding="utf-8"))
    stage = cast("WorkerStage", registry.module(data["kind"]))
    return stage, stage.Task.model_validate(data)


def run(stage: "WorkerStage", task: Task) -> int:
    fault = faults.active(task.kind, task.attempt)
    try:
        if fault in ("segv", "oom", "hang"):
            faults.crash(fault)
        fsutil.write_json(Path(task.result), stage.work(task, _progress))
        if fault == "segv-after-write":
            faults.crash("segv")  # like MLX/CTranslate2 dying while freeing the model
    except CpwError as exc:
        print(f"error {exc.message}", flush=True)
        return RETRY_EXIT if isinstance(exc, EngineUnavailable) else ERROR_EXIT
    except OSError as exc:  # a full or read-only disk: no other configuration helps
        print(f"error {fsutil.os_error(exc)}", flush=True)
        return ERROR_EXIT
    return 0


def main(argv: list[str]) -> int:
    tasks: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_tasks, args=(tasks,), daemon=True).start()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s worker[%(process)d] %(name)s: %(message)s")
    while True:
        stage, task = load(Path(tasks.get()))
        _log_to(task.log)
        print(f"exit {run(stage, task)}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
