"""What the HTTP routes share: the job folders under ``out``, the queue, the scheduler, and
the checks on what clients send (uploads, server-side paths, job ids, output names)."""

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from faster_whisper.utils import available_models
from starlette.concurrency import run_in_threadpool

from cpwhisperx import api, jobs, media
from cpwhisperx.errors import CpwError, MediaError
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.web.jobqueue import FINAL, Entry, Queue
from cpwhisperx.web.scheduler import Scheduler

# What an HTTP client may set: choices about its own job. Files, URLs and what the machine
# gives (threads, timeouts, devices, engines' models) stay the server's: its config file and
# environment.
CLIENT_SETTINGS = frozenset({
    "SOURCE_LANGUAGE", "TARGET_LANGUAGES", "WHISPER_MODEL", "HINDI_SCRIPT", "AUDIO_STREAM",
    "SOURCE_SEPARATION", "BEAM_SIZE", "INITIAL_PROMPT", "HOTWORDS", "ALIGNMENT_BACKEND",
    "VAD_THRESHOLD", "VAD_MIN_SILENCE_MS", "VAD_SPEECH_PAD_MS", "CLEAN_RULES",
    "CLEAN_REPEAT_LIMIT", "CLEAN_MAX_CPS", "CLEAN_MIN_CPS", "OUTPUT_FORMAT",
    "TRANSLATION_BACKEND", "SUBTITLE_AUDIENCE", "SUBTITLE_MAX_CHARS", "SUBTITLE_MAX_CPS",
    "SUBTITLE_MAX_LINES", "BURN_IN", "DIARIZATION", "NUM_SPEAKERS", "MIN_SPEAKERS",
    "MAX_SPEAKERS", "SPEAKER_NAMES"})
# Containers a job may come in. Not playlists or concat lists: they name other files, which
# ffmpeg would read on the server's behalf.
CONTAINERS = frozenset({
    "mov", "mp4", "m4a", "3gp", "matroska", "webm", "wav", "w64", "flac", "mp3", "ogg", "aac",
    "avi", "mpegts", "asf", "aiff", "caf", "amr", "wv", "ape", "au", "mpeg", "flv", "dv", "mxf"})


class HttpError(CpwError):
    """A request we refuse: its status code and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    out: Path
    host: str = "127.0.0.1"  # where it listens
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

    def host_ok(self, name: str) -> bool:
        """A Host header's name that is this server's: loopback's names, or the address it
        listens on (any, when it listens on every address: a token is required then)."""
        listening = self.config.host
        return listening in ("0.0.0.0", "::") or name in (
            listening.strip("[]"), "127.0.0.1", "localhost", "::1")

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
        try:
            with path.open("wb") as fh:
                shutil.copyfileobj(data, fh, 1 << 20)
            self.sniff(path, shown=safe)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return path

    @staticmethod
    def sniff(path: Path, *, shown: str) -> None:
        try:
            info = media.probe(path)
        except MediaError as exc:
            raise HttpError(415, exc.message.replace(str(path), shown)) from None
        if not set(info.container.split(",")) & CONTAINERS:
            raise HttpError(415, f"{shown} is {info.container}, not an audio or video file")
        if not info.audio:
            raise HttpError(415, f"{shown} has no audio stream: nothing to transcribe")

    def server_path(self, given: str) -> Path:
        """A path on this machine, allowed only inside ``allowed_roots`` (after resolving
        ``..`` and symlinks)."""
        try:
            path = Path(os.path.realpath(Path(given).expanduser()))
        except ValueError:  # a NUL byte
            raise HttpError(400, "path is not a file name") from None
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
        """A queued job for the media with a client's settings (``CLIENT_SETTINGS`` only); an
        upload it refuses is removed."""
        try:
            keys = api.settings_keys(settings)
            if refused := sorted(set(keys) - CLIENT_SETTINGS):
                raise HttpError(400, f"{refused[0]} cannot be set over HTTP: it is the "
                                     "server's own (its config file or environment)")
            model = keys.get("WHISPER_MODEL", "auto")
            if model != "auto" and model not in (names := available_models()):
                raise HttpError(400, f"unknown model {model!r}: one of auto, {', '.join(names)}")
            job = api.Pipeline(keys, out=self.out).prepare(path, workflow=workflow)
        except CpwError:
            self.drop_upload(path)
            raise
        self.queue.add(job.id, workflow)
        return job

    def delete(self, job: Job) -> None:
        """The job, its folder and its upload, gone; a running job is stopped first."""
        if self.queue.cancel(job.id) == "running":
            self.scheduler.cancel(job.id)
        with contextlib.suppress(CpwError):  # its folder may be gone already
            self.drop_upload(Path(job.info()["media"]))
        self.queue.remove(job.id)
        shutil.rmtree(job.root, ignore_errors=True)

    def drop_upload(self, media: Path) -> None:
        """The folder of an upload, when ``media`` is one; a server-side file is left alone."""
        if media.parent.parent == self.uploads:
            shutil.rmtree(media.parent, ignore_errors=True)

    async def finished(self, job_id: str, *, abandoned: Callable[[], Awaitable[bool]],
                       poll: float = 0.2) -> Entry:
        """The job once it reached a final state; cancelled if its client went away first."""
        while True:
            entry = await run_in_threadpool(self.queue.get, job_id)
            if entry is None:
                raise HttpError(404, f"job {job_id} was deleted")
            if entry.state in FINAL:
                return entry
            if await abandoned():
                if await run_in_threadpool(self.queue.cancel, job_id) == "running":
                    await run_in_threadpool(self.scheduler.cancel, job_id)
                raise HttpError(400, "the client went away: its job was cancelled")
            await asyncio.sleep(poll)
