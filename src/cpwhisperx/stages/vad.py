"""Stage: audio → ``speech.json``, the speech regions in seconds."""

from pathlib import Path
from typing import Any

from cpwhisperx import media
from cpwhisperx.engines import vad as vad_engines
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageContext, StageResult, separate

NAME = "vad"
INPUTS = ("demux", "separate")


def speech_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "speech.json"


def load_regions(job: Job) -> list[tuple[float, float]]:
    return [(r["start"], r["end"]) for r in fsutil.read_json(speech_path(job))["regions"]]


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    s = ctx.settings
    return {"backend": s.vad_backend, "threshold": s.vad_threshold,
            "min_silence_ms": s.vad_min_silence_ms, "speech_pad_ms": s.vad_speech_pad_ms}


def run(ctx: StageContext) -> StageResult:
    engine = vad_engines.create(ctx.settings)
    with media.WavReader(separate.audio_path(ctx.job)) as audio:
        # A few blocks at a time: each one read ahead is up to 40 MB of audio.
        regions = vad_engines.detect_blocks(engine, audio,
                                            workers=min(4, ctx.resolved.cpu_threads),
                                            on_progress=ctx.progress)
        duration = audio.duration
    speech = sum(end - start for start, end in regions)
    fsutil.write_json(speech_path(ctx.job), {
        "duration": duration, "speech_seconds": round(speech, 3),
        "regions": [{"start": start, "end": end} for start, end in regions]})
    ctx.log.info("%d speech regions, %.1f s of %.1f s", len(regions), speech, duration)
    return StageResult(outputs=[speech_path(ctx.job)], backend=engine.name,
                       meta={"regions": len(regions), "speech_seconds": round(speech, 3)})
