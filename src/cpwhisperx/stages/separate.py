"""Stage (optional): audio → ``vocals.wav``, the speech without the noise or music under it.

Off unless ``SOURCE_SEPARATION`` is set. The engine runs in a worker process; when it crashes or
hangs, the job goes on with the original audio and the manifest says so (a missing model or
engine is an error: it was asked for). The output is at lag 0 with the demuxed audio, so later
times still refer to the original media.
"""

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpwhisperx.engines import separate as separators
from cpwhisperx.errors import CpwError
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil, isolation
from cpwhisperx.stages import StageContext, StageResult, demux

NAME = "separate"
INPUTS = ("demux",)


def vocals_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "vocals.wav"


def stats_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "separation.json"


def audio_path(job: Job) -> Path:
    """What the later stages listen to: the separated speech when there is one."""
    vocals = vocals_path(job)
    return vocals if vocals.is_file() else demux.audio_path(job)


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    method = ctx.settings.source_separation
    return {"method": method,
            "model": ctx.settings.separation_model if method == "demucs" else None}


class Task(isolation.Task):
    method: str
    model: str
    audio: Path
    vocals: Path  # written here
    cpu_threads: int


def work(task: Task, progress: Callable[[float], None]) -> dict[str, Any]:
    """In the worker: write the cleaned audio to ``task.vocals``, return its statistics."""
    separator = separators.create(task.method, model=task.model, cpu_threads=task.cpu_threads)
    return separator.process(task.audio, task.vocals, on_progress=progress)


def run(ctx: StageContext) -> StageResult:
    vocals, stats = vocals_path(ctx.job), stats_path(ctx.job)
    partial = vocals.with_name(f".{vocals.name}.partial.wav")
    for stale in (vocals, stats, partial):  # never let later stages read an old separation
        stale.unlink(missing_ok=True)
    method = ctx.settings.source_separation
    if method == "none":
        ctx.progress(1.0)
        return StageResult(outputs=[], backend="none (off)")
    if method == "demucs" and not all(importlib.util.find_spec(m) for m in ("torch", "demucs")):
        raise CpwError("SOURCE_SEPARATION=demucs needs torch and demucs: install a CPU torch, "
                       "then pip install 'cpwhisperx[torch]'; or use deepfilternet")
    duration = fsutil.read_json(demux.info_path(ctx.job))["duration"]
    task = Task(method=method, model=ctx.settings.separation_model,
                audio=demux.audio_path(ctx.job), vocals=partial,
                cpu_threads=ctx.resolved.cpu_threads)
    used, warnings = isolation.run_chain(NAME, [(method, task)], result=stats,
                                         timeout=300 + 2 * duration,
                                         log_file=ctx.job.log_file(NAME),
                                         on_progress=ctx.progress)
    if used is None:
        partial.unlink(missing_ok=True)
        return StageResult(outputs=[], backend="none (failed)",
                           warnings=[*warnings, f"{method} failed: the original audio is used"])
    partial.replace(vocals)
    meta = fsutil.read_json(stats)
    return StageResult(outputs=[vocals, stats], backend=meta["engine"], warnings=warnings,
                       meta=meta)
