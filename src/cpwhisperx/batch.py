"""Many media files in one command: a job each, one after another or in N processes, each
process's workers keeping their models loaded from file to file (``isolation.reuse``); a file
that fails is reported and the others go on. ``cpwhisperx batch`` also resumes each file's
earlier job, and skips it when finished (``earlier_jobs``); ``--ray`` runs the same jobs on a
cluster (``ray_batch``)."""

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cpwhisperx import config, registry
from cpwhisperx.api import Pipeline
from cpwhisperx.errors import CpwError
from cpwhisperx.jobs import Job, Manifest
from cpwhisperx.pipeline import media_duration
from cpwhisperx.progress import LogReporter
from cpwhisperx.runtime import fsutil, isolation

# What ffmpeg reads that a folder of films, lectures or podcasts holds.
MEDIA_SUFFIXES = frozenset({
    ".aac", ".ac3", ".aif", ".aiff", ".amr", ".ape", ".avi", ".dts", ".eac3", ".flac", ".flv",
    ".m2ts", ".m4a", ".m4v", ".mka", ".mkv", ".mov", ".mp2", ".mp3", ".mp4", ".mpeg", ".mpg",
    ".mts", ".oga", ".ogg", ".ogv", ".opus", ".ts", ".vob", ".wav", ".webm", ".wma", ".wmv",
})


def expand(paths: Sequence[str]) -> list[Path]:
    """The files named, the media files under each folder named (by extension, hidden ones
    skipped) and the files a ``.txt`` list names (a path per line, relative to the list's
    folder; ``#`` starts a comment), in order, each once. A path that does not exist stays, to
    fail as one file."""
    files: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.suffix.lower() == ".txt" and path.is_file():
            try:
                listed = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeError) as exc:
                raise CpwError(f"cannot read the list {path}: {exc}") from None
            lines = (line.split("#", 1)[0].strip() for line in listed)
            files += [path.parent / Path(line).expanduser() for line in lines if line]
        elif path.is_dir():
            files += sorted(f for f in path.rglob("*")
                            if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file()
                            and not any(p.startswith(".") for p in f.relative_to(path).parts))
        else:
            files.append(path)
    return list(dict.fromkeys(Path(os.path.abspath(f)) for f in files))


@dataclass(frozen=True, slots=True)
class FileOutcome:
    media: Path
    job: str | None
    error: str | None  # one line, when the file failed
    duration: float | None
    seconds: float
    summary: str = ""
    earlier: bool = False  # finished by an earlier run: skipped


def total(outcomes: Sequence[FileOutcome], seconds: float) -> str:
    """The batch in one line: files done, skipped and failed, hours of audio, times real time."""
    ran = [o for o in outcomes if not o.error and not o.earlier]
    hours = sum(o.duration or 0 for o in ran) / 3600
    line = (f"{len(outcomes)} files: {len(ran)} done, {sum(o.earlier for o in outcomes)} done "
            f"earlier, {sum(bool(o.error) for o in outcomes)} failed; {hours:.2f} h of audio "
            f"in {seconds:.0f} s")
    return line + (f" ({hours * 3600 / seconds:.1f}x real time)" if hours and seconds else "")


def copy_outputs(outputs: Sequence[Path], folder: Path) -> list[Path]:
    """The job's outputs copied into ``folder`` (created), as whisper's ``--output_dir``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy2(path, folder / path.name)) for path in outputs]
    except OSError as exc:
        raise CpwError(f"cannot copy the outputs to {folder}: {fsutil.os_error(exc)}") from None


def earlier_jobs(pipeline: Pipeline, *, workflow: str) -> dict[Path, Job]:
    """By media file, the newest job under ``pipeline.out`` with this workflow and the settings
    new jobs get: a batch run again resumes it, or skips it when it is finished."""
    settings = pipeline.check()
    found: list[tuple[str, Path, Job]] = []
    for path in pipeline.out.glob("*/*/job-*/job.json"):
        try:
            info = fsutil.read_json(path)
            job = Job(id=info["id"], root=path.parent)
            # The job's own settings: this environment is already in ``settings``.
            if (info["workflow"] == workflow
                    and config.load_settings(job_file=job.env_file, environ={}) == settings):
                found.append((info["created"], Path(info["media"]), job))
        except (OSError, ValueError, KeyError, CpwError):  # not a job this version can resume
            continue
    return {media: job for _, media, job in sorted(found, key=lambda f: (f[0], f[2].id))}


def finished(job: Job) -> bool:
    """Whether every stage of the job's workflow is done and its outputs are all there."""
    try:
        stages = Manifest.load(job).data.stages
        workflow = registry.WORKFLOWS[job.info()["workflow"]]
    except (CpwError, KeyError):
        return False
    return all(name in stages and stages[name].status == "done"
               and all((job.root / rel).is_file() for rel in stages[name].outputs)
               for name in workflow)


def run_one(pipeline: Pipeline, media: Path, *, workflow: str, output_dir: Path | None,
            job: Job | None = None, first: str | None = None, spent: float = 0.0
            ) -> FileOutcome:
    """A file's job (``job``, resumed or skipped when finished, else a new one) run to the end.
    On a cluster, the job's last part: from stage ``first``, its earlier parts having taken
    ``spent`` seconds elsewhere."""
    started = time.monotonic()
    try:
        if job is not None and first is None and finished(job):
            if output_dir is not None:
                copy_outputs(sorted(job.outputs.iterdir()), output_dir)
            return FileOutcome(media, job.id, None, media_duration(job), 0.0,
                               f"done earlier (job {job.id})", earlier=True)
        job = job or pipeline.prepare(media, workflow=workflow)
        result = pipeline.run(job, first=first)
        if output_dir is not None:
            copy_outputs(result.outputs, output_dir)
    except (CpwError, OSError) as exc:
        return FileOutcome(media, job.id if job else None, failure(exc), None,
                           spent + time.monotonic() - started)
    result = dataclasses.replace(result, seconds=spent + result.seconds)
    return FileOutcome(media, job.id, None, result.duration, result.seconds, result.summary())


def failure(exc: CpwError | OSError) -> str:
    """What a file's failure says, in one line."""
    return exc.message if isinstance(exc, CpwError) else fsutil.os_error(exc)


def run_files(files: Sequence[Path], *, pipeline: Pipeline, workflow: str, jobs: int,
              output_dir: Path | None, on_done: Callable[[FileOutcome], None],
              resume: bool = False) -> list[FileOutcome]:
    """Every file's outcome, in the order given; ``on_done`` hears of each as it ends. The
    settings are checked once, before any file. With ``resume``, a file's earlier job with
    these settings is resumed, or skipped when finished, rather than a new one started."""
    pipeline.check()
    earlier = earlier_jobs(pipeline, workflow=workflow) if resume else {}
    if jobs <= 1:
        outcomes = []
        reporter = pipeline.reporter
        with isolation.reuse():
            for media in files:
                reporter.info(f"{media}:")
                outcomes.append(run_one(pipeline, media, workflow=workflow,
                                        output_dir=output_dir, job=earlier.get(media)))
                on_done(outcomes[-1])
        return outcomes
    context = multiprocessing.get_context("spawn")  # no model or lock inherited by a fork
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_in_process, pipeline.overrides, pipeline.out, media, workflow,
                               output_dir, earlier.get(media)): media for media in files}
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


def keep_workers() -> None:
    """This process's model workers stay up from file to file, until the process ends (then
    their stdin closes): for pool and cluster processes that run many files."""
    global _kept
    if _kept is None:
        _kept = contextlib.ExitStack()
        _kept.enter_context(isolation.reuse())


def _in_process(settings: dict[str, str], out: Path, media: Path, workflow: str,
                output_dir: Path | None, job: Job | None) -> FileOutcome:
    keep_workers()
    return run_one(Pipeline(settings, out=out, reporter=LogReporter()), media,
                   workflow=workflow, output_dir=output_dir, job=job)
