"""An append-only record of finished work (JSON lines), so an interrupted stage resumes where
it stopped instead of starting over.

The first line holds a key (the stage's fingerprint): a journal written for other inputs or
settings is discarded. Each entry is flushed and fsynced before the next piece of work starts;
a line torn by a crash is dropped on the next open.
"""

import json
import os
from pathlib import Path
from typing import Any

from cpwhisperx.runtime import fsutil


class Journal:
    def __init__(self, path: Path, *, key: str) -> None:
        self.path = path
        self.key = key

    def load(self) -> list[dict[str, Any]]:
        """The entries a previous run with this key finished; the file is rewritten to hold
        exactly those, ready for ``append``."""
        entries: list[dict[str, Any]] = []
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []
        if lines and _parse(lines[0]) == {"key": self.key}:
            for line in lines[1:]:
                if (entry := _parse(line)) is None:
                    break
                entries.append(entry)
        fsutil.write_text(self.path, "".join(_line(e) for e in [{"key": self.key}, *entries]))
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(_line(entry))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # a write's error names no file: the user is told this one
            exc.filename = str(self.path)
            raise


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _parse(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None
