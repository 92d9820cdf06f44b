"""``python -m cpwhisperx.worker TASK.json``: one model task in its own process.

Speaks to the parent on stdout (``progress 0.5``, ``error <message>``); logs go to stderr,
which the parent points at the stage's log file.
"""

import logging
import os
import sys
import threading
from pathlib import Path

from cpwhisperx import faults, fsutil
from cpwhisperx.errors import CpwError, EngineUnavailable
from cpwhisperx.isolation import ERROR_EXIT, RETRY_EXIT


def _progress(fraction: float) -> None:
    print(f"progress {fraction:.4f}", flush=True)


def _die_with_parent() -> None:
    """The parent holds our stdin open; EOF means it died (even by kill -9): stop too, rather
    than keep a model busy for a job nobody is running."""
    while os.read(0, 4096):  # unbuffered: a daemon thread must not hold stdin's lock at exit
        pass
    os._exit(1)


def main(argv: list[str]) -> int:
    from cpwhisperx.stages import align, asr, separate, translate

    threading.Thread(target=_die_with_parent, daemon=True).start()

    runners = {"separate": separate.work, "asr": asr.work, "align": align.work,
               "translate": translate.work}
    task = fsutil.read_json(Path(argv[0]))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s worker %(name)s: %(message)s")
    fault = faults.active(task["kind"], task["attempt"])
    try:
        if fault in ("segv", "oom", "hang"):
            faults.crash(fault)
        result = runners[task["kind"]](task, _progress)
        fsutil.write_json(Path(task["result"]), result)
        if fault == "segv-after-write":
            faults.crash("segv")  # like MLX/CTranslate2 dying while freeing the model
    except CpwError as exc:
        print(f"error {exc.message}", flush=True)
        return RETRY_EXIT if isinstance(exc, EngineUnavailable) else ERROR_EXIT
    except OSError as exc:  # a full or read-only disk: no other configuration helps
        print(f"error {fsutil.os_error(exc)}", flush=True)
        return ERROR_EXIT
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
