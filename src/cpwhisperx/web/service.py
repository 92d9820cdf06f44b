"""What the HTTP routes share: the job folders under ``out``, the queue, the scheduler, and
the checks on what clients send (uploads, server-side paths, job ids, output names)."""

import asyncio
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cpwhisperx import api, jobs, media
from cpwhisperx.errors import CpwError, MediaError
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.web.jobqueue import FINAL, Entry, Queue
from cpwhisperx.web.scheduler import Scheduler


class HttpError(CpwError):
    """A request we refuse: its status code and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    out: Path
    workers: int = 1  # jobs at once; one per device is what a model-bound machine holds
    token: str = ""  # required on every request when set (CPWHISPERX_API_TOKEN)
    max_upload_mb: int = 2048
    allowed_roots: tuple[Path, ...] = ()  # where a job's ``path`` may point on this machine


class Service:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.out = config.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.uploads = self.out / "uploads"
        self.queue = Queue(self.out / "serve.sqlite")
        self.scheduler = Scheduler(self.queue, out=self.out, workers=config.workers)

    def token_ok(self, given: str) -> bool:
        want = self.config.token
        return not want or secrets.compare_digest(given.encode(), want.encode())

    @property
    def cookie(self) -> str:
        """What the page's cookie holds: a digest of the token, not the token."""
        return hashlib.sha256(f"cpwhisperx cookie {self.config.token}".encode()).hexdigest()

    def cookie_ok(self, given: str) -> bool:
        return bool(self.config.token) and secrets.compare_digest(given.encode(),
                                                                  self.cookie.encode())

    # What clients send.

    def save_upload(self, name: str, data: BinaryIO) -> Path:
        """The upload in a folder of its own under ``uploads``, its name made safe, its
        content checked by ffprobe (never trusted by its name)."""
        safe = re.sub(r"[^\w.-]+", "_", Path(name or "upload").name).lstrip(".") or "upload"
        folder = self.uploads / secrets.token_hex(8)
        folder.mkdir(parents=True)
        path = folder / fsutil.fit_stem(safe)
        with path.open("wb") as fh:
            shutil.copyfileobj(data, fh, 1 << 20)
        try:
            self.sniff(path, shown=safe)
        except HttpError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return path

    @staticmethod
    def sniff(path: Path, *, shown: str) -> None:
        try:
            info = media.probe(path)
        except MediaError as exc:
            raise HttpError(415, exc.message.replace(str(path), shown)) from None
        if not info.audio:
            raise HttpError(415, f"{shown} has no audio stream: nothing to transcribe")

    def server_path(self, given: str) -> Path:
        """A path on this machine, allowed only inside ``allowed_roots`` (after resolving
        ``..`` and symlinks)."""
        path = Path(os.path.realpath(Path(given).expanduser()))
        if not any(path.is_relative_to(os.path.realpath(root))
                   for root in self.config.allowed_roots):
            raise HttpError(403, f"{given} is outside the folders this server may read "
                                 "(serve --allow-root)")
        if not path.is_file():
            raise HttpError(404, f"no such file: {given}")
        self.sniff(path, shown=given)
        return path

    def job(self, job_id: str) -> tuple[Job, Entry]:
        """A job this server runs; 404 for anything else (a malformed id included)."""
        entry = self.queue.get(job_id) if jobs.JOB_ID.match(job_id) else None
        if entry is None:
            raise HttpError(404, f"no job {job_id!r}")
        try:
            return jobs.find(self.out, job_id), entry
        except CpwError:
            raise HttpError(404, f"job {job_id} has no folder any more") from None

    @staticmethod
    def output(job: Job, name: str) -> Path:
        """One of the job's output files, by name; only names found in its folder."""
        found = {p.name: p for p in job.outputs.iterdir() if p.is_file()}
        if name not in found:
            raise HttpError(404, f"no output {name!r} in job {job.id}")
        return found[name]

    # Jobs.

    def submit(self, path: Path, *, workflow: str, settings: Mapping[str, object]) -> Job:
        """A queued job for the media; an upload it refuses (bad settings) is removed."""
        try:
            job = api.Pipeline(settings, out=self.out).prepare(path, workflow=workflow)
        except CpwError:
            self.drop_upload(path)
            raise
        self.queue.add(job.id, workflow)
        return job

    def drop_upload(self, media: Path) -> None:
        """The folder of an upload, when ``media`` is one; a server-side file is left alone."""
        if media.parent.parent == self.uploads:
            shutil.rmtree(media.parent, ignore_errors=True)

    async def finished(self, job_id: str, *, poll: float = 0.2) -> Entry:
        """The job once it reached a final state."""
        while True:
            entry = self.queue.get(job_id)
            if entry is None or entry.state in FINAL:
                if entry is None:
                    raise HttpError(404, f"job {job_id} was deleted")
                return entry
            await asyncio.sleep(poll)
