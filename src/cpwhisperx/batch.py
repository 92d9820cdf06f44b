"""Many media files in one command: a job each, one after another or in N processes, each
process's workers keeping their models loaded from file to file (``isolation.reuse``); a file
that fails is reported and the others go on."""

import concurrent.futures
import contextlib
import multiprocessing
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cpwhisperx.api import Pipeline, Result
from cpwhisperx.errors import CpwError
from cpwhisperx.progress import LogReporter
from cpwhisperx.runtime import fsutil, isolation

# What ffmpeg reads that a folder of films, lectures or podcasts holds.
MEDIA_SUFFIXES = frozenset({
    ".aac", ".ac3", ".aif", ".aiff", ".amr", ".ape", ".avi", ".dts", ".eac3", ".flac", ".flv",
    ".m2ts", ".m4a", ".m4v", ".mka", ".mkv", ".mov", ".mp2", ".mp3", ".mp4", ".mpeg", ".mpg",
    ".mts", ".oga", ".ogg", ".ogv", ".opus", ".ts", ".vob", ".wav", ".webm", ".wma", ".wmv",
})


def expand(paths: Sequence[str]) -> list[Path]:
    """The files named, and the media files under each folder named (by extension, hidden ones
    skipped), in order, each once. A path that does not exist stays, to fail as one file."""
    files: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            files += sorted(f for f in path.rglob("*")
                            if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file()
                            and not any(p.startswith(".") for p in f.relative_to(path).parts))
        else:
            files.append(path)
    return list(dict.fromkeys(files))


@dataclass(frozen=True, slots=True)
class FileOutcome:
    media: Path
    job: str | None
    error: str | None  # one line, when the file failed
    duration: float | None
    seconds: float
    summary: str = ""


def copy_outputs(result: Result, folder: Path) -> list[Path]:
    """The job's outputs copied into ``folder`` (created), as whisper's ``--output_dir``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy2(path, folder / path.name)) for path in result.outputs]
    except OSError as exc:
        raise CpwError(f"cannot copy the outputs to {folder}: {fsutil.os_error(exc)}") from None


def run_one(pipeline: Pipeline, media: Path, *, workflow: str,
            output_dir: Path | None) -> FileOutcome:
    started = time.monotonic()
    job = None
    try:
        job = pipeline.prepare(media, workflow=workflow)
        result = pipeline.run(job)
        if output_dir is not None:
            copy_outputs(result, output_dir)
    except (CpwError, OSError) as exc:
        why = exc.message if isinstance(exc, CpwError) else fsutil.os_error(exc)
        return FileOutcome(media, job.id if job else None, why, None, time.monotonic() - started)
    return FileOutcome(media, job.id, None, result.duration, result.seconds, result.summary())


def run_files(files: Sequence[Path], *, pipeline: Pipeline, workflow: str, jobs: int,
              output_dir: Path | None,
              on_done: Callable[[FileOutcome], None]) -> list[FileOutcome]:
    """Every file's outcome, in the order given; ``on_done`` hears of each as it ends. The
    settings are checked once, before any file."""
    pipeline.check()
    if jobs <= 1:
        outcomes = []
        reporter = pipeline.reporter
        with isolation.reuse():
            for media in files:
                reporter.info(f"{media}:")
                outcomes.append(run_one(pipeline, media, workflow=workflow,
                                        output_dir=output_dir))
                on_done(outcomes[-1])
        return outcomes
    context = multiprocessing.get_context("spawn")  # no model or lock inherited by a fork
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_in_process, pipeline.overrides, pipeline.out, media, workflow,
                               output_dir): media for media in files}
        done: dict[Path, FileOutcome] = {}
        try:
            for future in concurrent.futures.as_completed(futures):
                done[futures[future]] = future.result()
                on_done(done[futures[future]])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [done[media] for media in files]


_kept: contextlib.ExitStack | None = None  # this process's workers, kept from file to file


def _in_process(settings: dict[str, str], out: Path, media: Path, workflow: str,
                output_dir: Path | None) -> FileOutcome:
    global _kept
    if _kept is None:  # until the pool ends this process: then the workers' stdin closes
        _kept = contextlib.ExitStack()
        _kept.enter_context(isolation.reuse())
    return run_one(Pipeline(settings, out=out, reporter=LogReporter()), media,
                   workflow=workflow, output_dir=output_dir)
