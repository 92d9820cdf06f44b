"""Progress: a bar per stage on a terminal, plain lines otherwise, and the final table."""

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Row:
    stage: str
    status: str  # ran | reused | failed
    seconds: float | None
    backend: str
    notes: str = ""  # fallbacks and other warnings


class Reporter:
    def __init__(self) -> None:
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = Console(highlight=False, soft_wrap=True)
        if not self.out.is_terminal:  # logs and pipes: don't squeeze the table into 80 columns
            self.out.width = 160

    def info(self, message: str) -> None:
        self.err.print(message, markup=False)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[float], None]]:
        if self.err.is_terminal:
            columns = (TextColumn(f"{name:<8}"), BarColumn(), TaskProgressColumn(),
                       TimeElapsedColumn())
            with Progress(*columns, console=self.err, transient=True) as bar:
                task = bar.add_task(name, total=1.0)
                yield lambda fraction: bar.update(task, completed=fraction)
            return
        shown = [0]

        def plain(fraction: float) -> None:
            step = int(fraction * 4) * 25  # a line every quarter, not a flood
            if step > shown[0]:
                shown[0] = step
                print(f"{name}: {step}%", file=sys.stderr, flush=True)

        yield plain

    def table(self, rows: list[Row], *, duration: float | None) -> None:
        table = Table(title="stages")
        for column in ("stage", "status", "seconds", "backend", "RTF", "notes"):
            table.add_column(column, justify="right" if column in ("seconds", "RTF") else "left")
        for row in rows:
            rtf = (f"{row.seconds / duration:.3f}" if row.seconds is not None and duration
                   and row.status == "ran" else "-")
            seconds = "-" if row.seconds is None else f"{row.seconds:.2f}"
            table.add_row(row.stage, row.status, seconds, row.backend, rtf, row.notes)
        ran = sum(r.seconds or 0.0 for r in rows if r.status == "ran")
        if duration:
            table.caption = (f"media {duration:.1f} s; stages ran {ran:.1f} s; "
                             f"RTF = stage seconds / media seconds")
        self.out.print(table)


class LogReporter(Reporter):
    """For the Python API: messages go to the ``cpwhisperx`` logger, no bars, no table."""

    def __init__(self) -> None:
        super().__init__()
        self.log = logging.getLogger("cpwhisperx")

    def info(self, message: str) -> None:
        if message.startswith("warning"):
            self.log.warning(message.removeprefix("warning").lstrip(": "))
        else:
            self.log.info(message)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[float], None]]:
        yield lambda _fraction: None

    def table(self, rows: list[Row], *, duration: float | None) -> None:
        pass
