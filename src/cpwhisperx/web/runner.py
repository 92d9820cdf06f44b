"""``python -m cpwhisperx.web.runner OUT``: runs the server's jobs, one at a time, in a process
of its own (a cancel stops it, not the server: SIGTERM unwinds the job as Ctrl-C would).

Reads a job id per line on stdin and answers on stdout: ``stage <name>``, ``progress <name>
<fraction>``, ``info <message>`` while the job runs, then ``done <id>`` or ``failed <id>
<message>``. Engines stay loaded for the next job (``isolation.reuse``). stdin's EOF (the
server is done with it, or died) ends it at once; the job's manifest then shows where it
stopped, and the next run resumes there.
"""

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from cpwhisperx import api
from cpwhisperx.errors import CpwError
from cpwhisperx.progress import Reporter, Row
from cpwhisperx.runtime import isolation


def _say(*parts: object) -> None:
    print(*(str(p).replace("\n", " ") for p in parts), flush=True)


class LineReporter(Reporter):
    """Progress as lines for the server: a new line per percent of a stage."""

    def info(self, message: str) -> None:
        _say("info", message)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[float], None]]:
        _say("stage", name)
        shown = [-1]

        def update(fraction: float) -> None:
            if int(fraction * 100) > shown[0]:
                shown[0] = int(fraction * 100)
                _say("progress", name, f"{fraction:.3f}")

        yield update

    def table(self, rows: list[Row], *, duration: float | None) -> None:
        pass


def _read(jobs: "queue.Queue[str]") -> None:
    """Job ids from stdin, in a thread, so that EOF ends us even while a job runs: nobody
    waits for this process any more."""
    for line in sys.stdin:
        jobs.put(line.strip())
    os._exit(0)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a cancel or a stop: the job unwinds as from Ctrl-C


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    jobs: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read, args=(jobs,), daemon=True).start()
    pipeline = api.Pipeline(out=Path(argv[0]), reporter=LineReporter())
    with isolation.reuse():
        while True:
            job_id = jobs.get()
            try:
                pipeline.run(job_id)
            except CpwError as exc:
                _say("failed", job_id, exc.message)
            except Exception as exc:  # a bug: the server must hear of it, and go on
                logging.exception("job %s", job_id)
                _say("failed", job_id, f"{type(exc).__name__}: {exc}")
            else:
                _say("done", job_id)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
