"""Stage: media → 16 kHz mono ``audio.wav`` (+ ``media.json`` describing the source)."""

from pathlib import Path
from typing import Any

from cpwhisperx import media
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageContext, StageResult

NAME = "demux"
INPUTS: tuple[str, ...] = ()


def audio_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "audio.wav"


def info_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "media.json"


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    media.check_file(ctx.media)
    return {"media": str(ctx.media), "media_sha256": fsutil.sha256_sampled(ctx.media),
            "audio_stream": ctx.settings.audio_stream}


def run(ctx: StageContext) -> StageResult:
    info = media.probe(ctx.media)
    stream = media.select_stream(info, ctx.settings.audio_stream)
    ctx.log.info("audio stream %d: %s, language %s", stream.position, stream.codec,
                 stream.language or "und")
    out = audio_path(ctx.job)
    media.extract_wav(info, stream, out, on_progress=ctx.progress)
    duration = media.wav_frames(out) / media.SAMPLE_RATE
    fsutil.write_json(info_path(ctx.job), {
        "media": str(ctx.media), "container_duration": info.duration, "duration": duration,
        "has_video": info.has_video, "fps": info.fps, "stream": {"position": stream.position,
                                                "codec": stream.codec,
                                                "language": stream.language},
        "audio_streams": len(info.audio)})
    return StageResult(outputs=[out, info_path(ctx.job)], backend="ffmpeg",
                       meta={"duration": duration, "stream": stream.position})
