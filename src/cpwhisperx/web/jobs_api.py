"""``/api/jobs``: our own API, the job system as it is (folders, manifest, resume), over HTTP."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from cpwhisperx import jobs
from cpwhisperx.jobs import Job
from cpwhisperx.web.jobqueue import FINAL, Entry
from cpwhisperx.web.service import HttpError, Service

router = APIRouter(prefix="/api/jobs")


def _service(request: Request) -> Service:
    return request.app.state.service


def _summary(service: Service, job: Job, entry: Entry) -> dict[str, Any]:
    info = job.info()
    live = service.scheduler.live.get(job.id) if entry.state == "running" else None
    return {"id": job.id, "workflow": entry.workflow, "state": entry.state,
            "error": entry.error, "created": entry.created, "started": entry.started,
            "ended": entry.ended, "media": Path(info["media"]).name,
            "source_language": info["source_language"],
            "target_languages": info["target_languages"],
            "stage": live.stage if live else None, "fraction": live.fraction if live else None}


def _detail(service: Service, job: Job, entry: Entry) -> dict[str, Any]:
    manifest = jobs.Manifest.seen(job).data.model_dump(mode="json")
    live = service.scheduler.live.get(job.id)
    return {**_summary(service, job, entry), "manifest": manifest,
            "messages": live.messages if live else [],
            "outputs": sorted(p.name for p in job.outputs.iterdir() if p.is_file())}


@router.post("", status_code=201)
async def create(request: Request, file: Annotated[UploadFile | None, File()] = None,
                 path: Annotated[str | None, Form()] = None,
                 workflow: Annotated[str, Form()] = "subtitle",
                 source_language: Annotated[str, Form()] = "auto",
                 target_languages: Annotated[str, Form()] = "",
                 settings: Annotated[str, Form()] = "{}") -> dict[str, Any]:
    """A job from an upload (``file``) or a file on this machine (``path``, inside the
    server's allowed roots); ``settings`` is a JSON object of config keys."""
    service = _service(request)
    try:
        extra = json.loads(settings)
    except ValueError:
        raise HttpError(400, "settings is not JSON: send an object of config keys") from None
    if not isinstance(extra, dict):
        raise HttpError(400, "settings must be a JSON object of config keys")
    if (file is None) == (path is None):
        raise HttpError(400, "send either a file or a path")
    media = (await run_in_threadpool(service.save_upload, file.filename or "media", file.file)
             if file is not None else await run_in_threadpool(service.server_path, path or ""))
    values = {**extra, "language": source_language, "targets": target_languages or None}
    job = await run_in_threadpool(service.submit, media, workflow=workflow, settings=values)
    return await run_in_threadpool(lambda: _detail(service, *service.job(job.id)))


@router.get("")
def listing(request: Request) -> list[dict[str, Any]]:
    service = _service(request)
    found = []
    for entry in reversed(service.queue.all()):  # newest first
        try:
            found.append(_summary(service, *service.job(entry.id)))
        except (HttpError, OSError):  # deleted meanwhile, or its folder removed by hand
            continue
    return found


@router.get("/{job_id}")
def detail(request: Request, job_id: str) -> dict[str, Any]:
    service = _service(request)
    return _detail(service, *service.job(job_id))


@router.get("/{job_id}/events")
async def events(request: Request, job_id: str) -> StreamingResponse:
    """Server-Sent Events: the job's state each time it changes, until it is final."""
    service = _service(request)
    service.job(job_id)

    async def stream() -> AsyncIterator[str]:
        last: tuple[Any, ...] = ()
        while not await request.is_disconnected():
            try:
                job, entry = await run_in_threadpool(service.job, job_id)
                live = service.scheduler.live.get(job_id)
                now = (entry.state, live.version if live else -1)
                body = (await run_in_threadpool(_detail, service, job, entry)
                        if now != last else None)
            except (HttpError, OSError):  # deleted meanwhile
                return
            if body is not None:
                last = now
                yield f"event: job\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
                if entry.state in FINAL:
                    return
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.get("/{job_id}/outputs/{name}")
def output(request: Request, job_id: str, name: str) -> FileResponse:
    job, _ = _service(request).job(job_id)
    return FileResponse(Service.output(job, name), filename=name)


@router.post("/{job_id}/cancel")
def cancel(request: Request, job_id: str) -> dict[str, Any]:
    service = _service(request)
    service.job(job_id)
    if service.queue.cancel(job_id) == "running":
        service.scheduler.cancel(job_id)
    return _detail(service, *service.job(job_id))


@router.post("/{job_id}/run")
def rerun(request: Request, job_id: str) -> dict[str, Any]:
    """Run a finished job again: what changed is redone, the rest reused."""
    service = _service(request)
    service.job(job_id)
    if not service.queue.requeue(job_id):
        raise HttpError(409, f"job {job_id} is queued or running already")
    return _detail(service, *service.job(job_id))


@router.delete("/{job_id}")
def delete(request: Request, job_id: str) -> JSONResponse:
    """The job, its folder and its upload, gone; a running job is stopped first."""
    service = _service(request)
    service.delete(service.job(job_id)[0])
    return JSONResponse({"id": job_id, "deleted": True})
