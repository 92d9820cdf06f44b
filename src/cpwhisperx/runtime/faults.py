"""Fault injection for tests, off unless ``CPWHISPERX_FAULT`` is set.

``CPWHISPERX_FAULT=asr:segv,align:hang``: a fault per task kind, hitting the first attempt only
(so the fallback is exercised); add ``:every`` (``asr:segv:every``) to hit every attempt.
Faults: ``segv`` (crash before writing a result), ``segv-after-write`` (crash in teardown),
``oom`` (SIGKILL, as the kernel's OOM killer sends), ``hang`` (never finish).
"""

import os
import resource
import signal
import time

KINDS = ("segv", "segv-after-write", "oom", "hang")


def active(task: str, attempt: int) -> str | None:
    for spec in filter(None, os.environ.get("CPWHISPERX_FAULT", "").split(",")):
        parts = spec.strip().split(":")
        hits = attempt == 0 or parts[2:] == ["every"]
        if parts[0] == task and len(parts) >= 2 and parts[1] in KINDS and hits:
            return parts[1]
    return None


def crash(fault: str) -> None:
    """Die the way a native library does: by a signal, with no Python cleanup."""
    if fault == "hang":
        while True:
            time.sleep(3600)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from a test crash
    os.kill(os.getpid(), signal.SIGKILL if fault == "oom" else signal.SIGSEGV)
