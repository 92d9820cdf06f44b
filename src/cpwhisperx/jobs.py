"""Job folders: race-free ids, job.json, the per-stage manifest, and a run lock."""

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from cpwhisperx import __version__, config, registry
from cpwhisperx.config import Settings
from cpwhisperx.errors import ConfigError, CpwError
from cpwhisperx.runtime import fsutil

JOB_ID = re.compile(r"^job-(\d{4})(\d{2})(\d{2})-([a-z0-9][a-z0-9_-]*)-(\d{4,})$")


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="milliseconds")


def current_user() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    name = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")
    return name or "user"


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    root: Path

    @property
    def job_json(self) -> Path:
        return self.root / "job.json"

    @property
    def env_file(self) -> Path:
        return self.root / ".env.pipeline"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    def log_file(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage}.log"

    def stage_dir(self, stage: str) -> Path:
        return self.root / f"{registry.number(stage):02d}_{stage}"

    def info(self) -> dict[str, Any]:
        try:
            return fsutil.read_json(self.job_json)
        except (OSError, ValueError) as exc:
            raise CpwError(f"cannot read {self.job_json}: {exc}; prepare the job again"
                           ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive while a run is going; the OS releases it if the process dies (kill -9)."""
        try:
            fh = (self.root / ".lock").open("a+")
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CpwError(fsutil.os_error(exc)) from None
            raise CpwError(f"the job folder {self.root} cannot be written ({exc.strerror}): "
                           "make it writable, or copy the job folder to a writable place and "
                           "run it there with --out") from None
        with fh:
            deadline = time.monotonic() + 1.0  # `status` holds it shared for an instant
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CpwError(f"job {self.id} is being run by another process: wait "
                                       "for it or stop it first") from None
                    time.sleep(0.05)
            yield

    def running(self) -> bool:
        """Whether a live process runs the job now: one holds its lock. A run recorded as
        running without one died (kill -9, a power cut)."""
        try:
            fh = (self.root / ".lock").open("r")
        except FileNotFoundError:
            return False
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False


def _ensure_dir(path: Path, out_root: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A name of its own: threads of one process (the server's) create jobs at once too.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CpwError(f"cannot write to output folder {out_root}: "
                       f"{exc.strerror or exc}; choose another with --out or CPWHISPERX_OUT"
                       ) from None


def create(out_root: Path, *, media: Path, workflow: str, settings: Settings) -> Job:
    """Allocate the next id for today and this user; mkdir is atomic, so concurrent callers
    never share an id."""
    today = dt.date.today()
    user = current_user()
    parent = out_root / today.isoformat() / user
    _ensure_dir(parent, out_root)
    prefix = f"job-{today:%Y%m%d}-{user}-"
    taken = [int(p.name[len(prefix):]) for p in parent.glob(prefix + "*")
             if p.name[len(prefix):].isdigit()]
    number = max(taken, default=0) + 1
    while True:
        job = Job(id=f"{prefix}{number:04d}", root=parent / f"{prefix}{number:04d}")
        try:
            job.root.mkdir()
            break
        except FileExistsError:
            number += 1
    (job.root / "logs").mkdir()
    job.outputs.mkdir()
    fsutil.write_json(job.job_json, {
        "id": job.id, "media": str(media), "output_stem": fsutil.fit_stem(media.stem),
        "workflow": workflow,
        "source_language": settings.source_language, "target_languages": settings.targets,
        "user": user, "created": now(), "tool_version": __version__})
    config.write_job_env(job.env_file, settings)
    Manifest.new(job, registry.WORKFLOWS[workflow]).save()
    return job


def find(out_root: Path, job_id: str) -> Job:
    match = JOB_ID.match(job_id)
    if not match:
        raise ConfigError(f"not a job id: {job_id!r} (expected job-YYYYMMDD-user-NNNN)")
    year, month, day, user, _ = match.groups()
    root = out_root / f"{year}-{month}-{day}" / user / job_id
    if not (root / "job.json").is_file():
        raise ConfigError(f"unknown job id {job_id}: no job folder at {root} "
                          "(check --out / CPWHISPERX_OUT)")
    return Job(id=job_id, root=root)


class OutputFile(pydantic.BaseModel):
    """An output as its stage left it: a later run reuses it only while it is unchanged."""

    sha256: str
    size: int
    mtime_ns: int


class StageEntry(pydantic.BaseModel):
    status: str = "pending"  # pending | running | done | failed | interrupted
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    outputs: dict[str, OutputFile] = {}  # by path relative to the job's folder
    fingerprint: str | None = None  # of the inputs and settings the outputs were made from
    backend: str | None = None
    warnings: list[str] = []
    error: str | None = None
    attempts: int = 0
    meta: dict[str, Any] = {}


class RunRecord(pydantic.BaseModel):
    started: str
    ended: str | None = None
    status: str = "running"  # running, done, partial (the stages asked for), failed, interrupted
    stages: dict[str, str] = {}  # what each stage did in this run: ran, reused, failed, ...


class ManifestData(pydantic.BaseModel):
    """``manifest.json``."""

    job_id: str
    stages: dict[str, StageEntry]
    runs: list[RunRecord] = []


class Manifest:
    """Per-stage status, timings, outputs and fingerprints, saved atomically on each change."""

    def __init__(self, job: Job, data: ManifestData) -> None:
        self.job = job
        self.data = data

    @classmethod
    def new(cls, job: Job, stages: tuple[str, ...]) -> "Manifest":
        return cls(job, ManifestData(job_id=job.id, stages={s: StageEntry() for s in stages}))

    @classmethod
    def load(cls, job: Job) -> "Manifest":
        try:
            data = ManifestData.model_validate(fsutil.read_json(job.manifest_path))
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            reason = "not a manifest" if isinstance(exc, pydantic.ValidationError) else exc
            raise CpwError(f"cannot read {job.manifest_path}: {reason}; prepare the job again"
                           ) from None
        return cls(job, data)

    @classmethod
    def seen(cls, job: Job) -> "Manifest":
        """The manifest as ``status`` tells it: what it records as running, when no process
        held the job's lock before or after it was read, was interrupted (a run that ends
        while it is read is not)."""
        live = job.running()
        manifest = cls.load(job)
        if live or job.running():
            return manifest
        for entry in manifest.data.stages.values():
            if entry.status == "running":
                entry.status = "interrupted"
        for run in manifest.data.runs:
            if run.status == "running":
                run.status = "interrupted"
            run.stages = {k: "interrupted" if v == "running" else v
                          for k, v in run.stages.items()}
        return manifest

    def save(self) -> None:
        """Atomic: a save that fails (a full disk) leaves the last one on disk whole."""
        try:
            fsutil.write_json(self.job.manifest_path, self.data.model_dump(mode="json"))
        except OSError as exc:
            raise CpwError(fsutil.os_error(exc, self.job.manifest_path)) from None

    def stage(self, name: str) -> StageEntry:
        return self.data.stages.setdefault(name, StageEntry())

    @property
    def run_record(self) -> RunRecord:
        return self.data.runs[-1]

    def start_run(self) -> None:
        for run in self.data.runs:  # we hold the lock: a "running" record is a dead run
            if run.status == "running":
                run.status = "interrupted"
        self.data.runs.append(RunRecord(started=now()))
        self.save()

    def end_run(self, status: str) -> None:
        self.run_record.ended, self.run_record.status = now(), status
        self.save()

    def mark_running(self, name: str, fingerprint: str) -> None:
        attempts = self.stage(name).attempts
        self.data.stages[name] = StageEntry(status="running", started=now(),
                                            fingerprint=fingerprint, attempts=attempts + 1)
        self.run_record.stages[name] = "running"
        self.save()

    def mark_done(self, name: str, *, seconds: float, outputs: dict[str, OutputFile],
                  backend: str, warnings: list[str], meta: dict[str, Any]) -> None:
        entry = self.stage(name)
        entry.status, entry.ended, entry.seconds = "done", now(), round(seconds, 3)
        entry.outputs, entry.backend, entry.warnings, entry.meta = (outputs, backend,
                                                                    warnings, meta)
        self.run_record.stages[name] = "ran"
        self.save()

    def mark_reused(self, name: str) -> None:
        self.run_record.stages[name] = "reused"
        self.save()

    def mark_failed(self, name: str, error: str, seconds: float) -> None:
        entry = self.stage(name)
        entry.status, entry.ended, entry.seconds = "failed", now(), round(seconds, 3)
        entry.error = error
        self.run_record.stages[name] = "failed"
        self.save()
