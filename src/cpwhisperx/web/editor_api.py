"""The subtitle editor's API: a job's subtitle tracks as events, the timing and line rules
checked as a person edits (the same ``subtitles.check`` the pipeline reports with), and a save
that reruns the subtitles and mux stages, never the speech."""

import mimetypes
from pathlib import Path
from typing import Any

import pydantic
import srt
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from cpwhisperx.jobs import Job, now
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import demux
from cpwhisperx.stages import subtitles as subtitles_stage
from cpwhisperx.text import subtitles
from cpwhisperx.web.service import HttpError, Service

router = APIRouter(prefix="/api/jobs/{job_id}")


class EventIn(pydantic.BaseModel):
    start: float
    end: float
    text: str  # lines joined by "\n"


class Track(pydantic.BaseModel):
    events: list[EventIn] = pydantic.Field(min_length=1)


def _tracks(job: Job) -> list[str]:
    path = subtitles_stage.tracks_path(job)
    return [t["language"] for t in fsutil.read_json(path)] if path.is_file() else []


def _style(job: Job, language: str) -> subtitles.Style:
    report = job.stage_dir(subtitles_stage.NAME) / f"{language}.conformance.json"
    return subtitles.Style(**fsutil.read_json(report)["style"])


def _events(job: Job, language: str) -> list[subtitles.Event]:
    if (edited := subtitles_stage.edited(job, language)) is not None:
        return edited
    path = job.outputs / f"{job.info()['output_stem']}.{language}.srt"
    return [subtitles.Event(start=c.start.total_seconds(), end=c.end.total_seconds(),
                            lines=tuple(c.content.split("\n")))
            for c in srt.parse(path.read_text(encoding="utf-8"))]


def _checked(events: list[subtitles.Event], style: subtitles.Style, language: str
             ) -> dict[str, Any]:
    report = subtitles.check(events, style, language=language)
    return {"all_rules": report.share(), "failures": report.failures}


def _track(service: Service, job_id: str, language: str) -> tuple[Job, subtitles.Style]:
    job, _ = service.job(job_id)
    if language not in _tracks(job):
        raise HttpError(404, f"job {job_id} has no {language!r} subtitles (yet)")
    return job, _style(job, language)


def _from(track: Track, duration: float) -> list[subtitles.Event]:
    """The events as sent, refused where a player could not show them."""
    events = [subtitles.Event(start=round(e.start, 3), end=round(e.end, 3),
                              lines=tuple(line.strip() for line in e.text.strip().split("\n")
                                          if line.strip()))
              for e in track.events]
    for n, (event, sent) in enumerate(zip(events, track.events, strict=True), start=1):
        if not event.lines:
            raise HttpError(400, f"event {n} has no text")
        if not 0 <= event.start < event.end <= duration + 1e-3:
            raise HttpError(400, f"event {n} must start before it ends, inside the media "
                                 f"(0 to {duration:.3f} s): {sent.start} to {sent.end}")
        if n > 1 and event.start < events[n - 2].end:
            raise HttpError(400, f"event {n} starts before event {n - 1} ends")
    return events


@router.get("/subtitles")
def tracks(request: Request, job_id: str) -> dict[str, Any]:
    service: Service = request.app.state.service
    job, _ = service.job(job_id)
    found = {}
    for language in _tracks(job):
        style = _style(job, language)
        events = _events(job, language)
        found[language] = {
            "style": {"max_chars": style.max_chars, "max_lines": style.max_lines,
                      "max_cps": style.max_cps, "min_duration": style.min_duration,
                      "max_duration": style.max_duration},
            "edited": subtitles_stage.edits_path(job, language).is_file(),
            "events": [{"start": e.start, "end": e.end, "text": e.text} for e in events],
            **_checked(events, style, language)}
    return {"languages": list(found), "tracks": found}


@router.post("/subtitles/{language}/check")
def check(request: Request, job_id: str, language: str, track: Track) -> dict[str, Any]:
    """The rules' verdict on events being edited; nothing is saved."""
    _, style = _track(request.app.state.service, job_id, language)
    events = [subtitles.Event(start=e.start, end=e.end, lines=tuple(e.text.split("\n")))
              for e in track.events]
    return _checked(events, style, language)


@router.put("/subtitles/{language}")
def save(request: Request, job_id: str, language: str, track: Track) -> dict[str, Any]:
    """Save the edited events and run the job again: the subtitle files and the muxed video
    are made anew from them; everything before is reused."""
    service: Service = request.app.state.service
    job, style = _track(service, job_id, language)
    duration = fsutil.read_json(demux.info_path(job))["duration"]
    events = _from(track, duration)
    fsutil.write_json(subtitles_stage.edits_path(job, language), {
        "edited": now(), "events": [{"start": e.start, "end": e.end, "text": e.text}
                                    for e in events]})
    if not service.queue.requeue(job_id):
        raise HttpError(409, f"job {job_id} is queued or running: the edit is saved, and used "
                             "from its next run on")
    return {"id": job_id, "state": "queued", **_checked(events, style, language)}


@router.get("/media")
def media(request: Request, job_id: str) -> FileResponse:
    """The job's own media, for the page's player."""
    job, _ = request.app.state.service.job(job_id)
    path = Path(job.info()["media"])
    if not path.is_file():
        raise HttpError(404, f"the media of job {job_id} is gone")
    # Its type from its name only where that says audio or video: an upload named .html is
    # never served as a page.
    kind = mimetypes.guess_type(path.name)[0] or ""
    return FileResponse(path, media_type=kind if kind.startswith(("audio/", "video/"))
                        else "application/octet-stream")
