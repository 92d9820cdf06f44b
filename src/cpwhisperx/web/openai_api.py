"""``/v1/audio/transcriptions`` and ``/v1/audio/translations`` as OpenAI's API answers them,
so that its clients work unchanged; each request is a job in the queue like any other."""

import zlib
from typing import Annotated, Any

import pycountry
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from cpwhisperx import writers
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import demux, diarize, translate
from cpwhisperx.transcript import Transcript
from cpwhisperx.web.service import HttpError, Service

router = APIRouter(prefix="/v1/audio")
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
# OpenAI's model names, and Whisper's: ours picks the model for the language, as `auto` does.
AUTO_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "auto", "")


def _language_name(code: str) -> str:
    """OpenAI's verbose_json names the language ("english"), not its code."""
    found = pycountry.languages.get(alpha_2=code) if len(code) == 2 else None
    return found.name.lower() if found else code


def _compression_ratio(text: str) -> float:
    """As Whisper computes it: the text's length over its zlib-compressed length."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def verbose(transcript: Transcript, *, task: str, duration: float, words: bool,
            segments: bool) -> dict[str, Any]:
    spoken = [s for s in transcript.segments if s.text.strip()]
    body: dict[str, Any] = {"task": task, "language": _language_name(transcript.language),
                            "duration": round(duration, 3), "text": transcript.text}
    if segments:
        body["segments"] = [
            {"id": i, "seek": int(s.start * 100), "start": s.start, "end": s.end,
             "text": s.text, "tokens": [], "temperature": 0.0,
             "avg_logprob": s.avg_logprob or 0.0,
             "compression_ratio": _compression_ratio(s.text),
             "no_speech_prob": s.no_speech_prob or 0.0} for i, s in enumerate(spoken)]
    if words:
        body["words"] = [{"word": w.text, "start": w.start, "end": w.end}
                         for s in spoken for w in s.words]
    return body


def _answer(job: Job, *, task: str, response_format: str, granularities: list[str]
            ) -> Response:
    transcript = Transcript.from_dict(fsutil.read_json(diarize.transcript_path(job)))
    translated = translate.transcript_path(job, "en")
    if task == "translate" and translated.is_file():
        transcript = Transcript.from_dict(fsutil.read_json(translated))
    duration = fsutil.read_json(demux.info_path(job))["duration"]
    cues = [(s.start, s.end, s.text) for s in transcript.segments if s.text.strip()]
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format in ("srt", "vtt"):
        exported = job.outputs / f"{job.info()['output_stem']}.{response_format}"
        if task == "transcribe" and exported.is_file():  # the lines wrapped as subtitles
            text = exported.read_text(encoding="utf-8")
        else:
            text = (writers.srt_text if response_format == "srt" else writers.vtt_text)(cues)
        return PlainTextResponse(text)
    if response_format == "verbose_json":
        return JSONResponse(verbose(transcript, task=task, duration=duration,
                                    words="word" in granularities,
                                    segments="segment" in granularities or not granularities))
    return JSONResponse({"text": transcript.text})


async def _handle(request: Request, *, task: str, file: UploadFile, model: str,
                  language: str | None, prompt: str | None, response_format: str,
                  granularities: list[str]) -> Response:
    service: Service = request.app.state.service
    if response_format not in FORMATS:
        raise HttpError(400, f"response_format {response_format!r} is not one of "
                             f"{', '.join(FORMATS)}")
    if set(granularities) - {"word", "segment"}:
        raise HttpError(400, "timestamp_granularities[] takes word and segment")
    path = await run_in_threadpool(service.save_upload, file.filename or "audio", file.file)
    settings: dict[str, object] = {
        "language": language or "auto",
        "model": "auto" if model in AUTO_MODELS else model,
        "initial_prompt": prompt or None,
        "output_format": "json,txt,srt,vtt"}
    if task == "translate":
        settings["targets"] = "en"
    job = await run_in_threadpool(
        service.submit, path, workflow="translate" if task == "translate" else "transcribe",
        settings=settings)
    try:
        entry = await service.finished(job.id, abandoned=request.is_disconnected)
        if entry.state != "done":
            raise HttpError(400, entry.error or f"the job was {entry.state}")
        return await run_in_threadpool(_answer, job, task=task,
                                       response_format=response_format,
                                       granularities=granularities)
    finally:  # answered: nothing of the request stays on the server
        await run_in_threadpool(service.delete, job)


Granularities = Annotated[list[str], Form(alias="timestamp_granularities[]")]


@router.post("/transcriptions")
async def transcriptions(request: Request, file: Annotated[UploadFile, File()],
                         model: Annotated[str, Form()] = "whisper-1",
                         language: Annotated[str | None, Form()] = None,
                         prompt: Annotated[str | None, Form()] = None,
                         response_format: Annotated[str, Form()] = "json",
                         temperature: Annotated[float, Form()] = 0.0,
                         granularities: Granularities = []) -> Response:  # noqa: B006
    """``temperature`` is taken and not used: decoding starts at 0 and rises only where a
    window fails Whisper's checks, as Whisper's own does."""
    return await _handle(request, task="transcribe", file=file, model=model,
                         language=language, prompt=prompt, response_format=response_format,
                         granularities=granularities)


@router.post("/translations")
async def translations(request: Request, file: Annotated[UploadFile, File()],
                       model: Annotated[str, Form()] = "whisper-1",
                       prompt: Annotated[str | None, Form()] = None,
                       response_format: Annotated[str, Form()] = "json",
                       temperature: Annotated[float, Form()] = 0.0) -> Response:
    """Into English, from the language heard."""
    return await _handle(request, task="translate", file=file, model=model, language=None,
                         prompt=prompt, response_format=response_format, granularities=[])
