"""Stage 04: audio + speech regions → ``transcript.json`` (with Whisper's word times)."""

from pathlib import Path
from typing import Any

from cpwhisperx import fsutil, media, models
from cpwhisperx.engines import asr as asr_engines
from cpwhisperx.jobs import Job
from cpwhisperx.stages import StageContext, StageResult, demux, vad
from cpwhisperx.transcript import Transcript, clamp_times

NAME = "asr"
INPUTS = ("demux", "vad")


def transcript_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "transcript.json"


def model_name(ctx: StageContext) -> str:
    name = ctx.settings.whisper_model
    return models.default_model(ctx.settings.source_language) if name == "auto" else name


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    s, r = ctx.settings, ctx.resolved
    return {"model": model_name(ctx), "language": s.source_language, "backend": r.backend,
            "device": r.device, "compute_type": r.compute_type, "beam_size": s.beam_size,
            "batch_size": s.batch_size, "words": s.alignment_backend != "none"}


def run(ctx: StageContext) -> StageResult:
    regions = vad.load_regions(ctx.job)
    language = None if ctx.settings.source_language == "auto" else ctx.settings.source_language
    out = transcript_path(ctx.job)
    if not regions:
        fsutil.write_json(out, Transcript(language=language or "und", segments=()).to_dict())
        return StageResult(outputs=[out], backend="none (no speech found)",
                           warnings=["no speech found by VAD: the transcript is empty"])
    ref = models.resolve(model_name(ctx))
    ctx.log.info("model %s from %s: %s", ref.name, ref.source, ref.path)
    engine = asr_engines.create(ctx.resolved, model=ref, beam_size=ctx.settings.beam_size,
                                batch_size=ctx.settings.batch_size)
    audio = media.load_wav(demux.audio_path(ctx.job))
    transcript = engine.transcribe(audio, regions=regions, language=language,
                                   word_timestamps=ctx.settings.alignment_backend != "none",
                                   on_progress=ctx.progress)
    transcript = clamp_times(transcript, len(audio) / media.SAMPLE_RATE)
    fsutil.write_json(out, transcript.to_dict())
    meta = {"model": ref.name, "model_source": ref.source, "language": transcript.language,
            **transcript.meta}
    ctx.log.info("%d segments, language %s", len(transcript.segments), transcript.language)
    return StageResult(outputs=[out], backend=engine.name, meta=meta)
