"""Stages: each reads earlier stages' files from the job folder and writes its own."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cpwhisperx.config import Settings
from cpwhisperx.hardware import Resolved
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import isolation
from cpwhisperx.runtime.fsutil import fit_stem


@dataclass(frozen=True, slots=True, kw_only=True)
class StageContext:
    job: Job
    media: Path
    settings: Settings
    resolved: Resolved
    log: logging.Logger
    progress: Callable[[float], None]
    fingerprint: str = ""  # of this stage's inputs and settings, while it runs

    def dir(self, stage: str) -> Path:
        return self.job.stage_dir(stage)

    @property
    def stem(self) -> str:
        """The media's stem as output names hold it (``fsutil.fit_stem``)."""
        return fit_stem(self.media.stem)


@dataclass(frozen=True, slots=True, kw_only=True)
class StageResult:
    outputs: list[Path]
    backend: str
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    """What a stage module has (``registry`` lists them): the stages whose outputs it reads,
    the settings its result depends on (with those outputs, its fingerprint: an unchanged one
    is not run again) and how it runs. One that runs an engine in a worker process is a
    ``WorkerStage``; one that needs something slow to load in this process has ``warm(ctx)``,
    called in a thread once an earlier stage runs."""

    NAME: str
    INPUTS: tuple[str, ...]

    def fingerprint_config(self, ctx: StageContext) -> dict[str, Any]: ...

    def run(self, ctx: StageContext) -> StageResult: ...


class WorkerStage(Stage, Protocol):
    """A stage whose engine runs in a worker process (``isolation``): the worker reads the
    stage's ``Task`` from the task file and calls ``work``, whose result it writes."""

    Task: type[isolation.Task]

    def work(self, task: Any, progress: Callable[[float], None]) -> dict[str, Any]: ...
