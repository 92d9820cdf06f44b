"""Stage 04: audio + speech regions → ``transcript.json`` (with Whisper's word times).

The engine runs in a worker process (``work``), retried once with the fallback configuration
if it crashes or hangs.
"""

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cpwhisperx import fsutil, hardware, isolation, media, models
from cpwhisperx.engines import asr as asr_engines
from cpwhisperx.errors import CpwError
from cpwhisperx.jobs import Job
from cpwhisperx.stages import StageContext, StageResult, demux, separate, vad
from cpwhisperx.transcript import Transcript, clamp_times

NAME = "asr"
INPUTS = ("demux", "separate", "vad")


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


def work(task: dict[str, Any], progress: Callable[[float], None]) -> dict[str, Any]:
    """In the worker: load the model, transcribe, return the transcript as a dict."""
    resolved = hardware.Resolved(**task["resolved"])
    ref = models.ModelRef(name=task["model"], path=Path(task["model_path"]),
                          source=task["model_source"])
    engine = asr_engines.create(resolved, model=ref, beam_size=task["beam_size"],
                                batch_size=task["batch_size"])
    audio = media.load_wav(Path(task["audio"]))
    transcript = engine.transcribe(audio, regions=[tuple(r) for r in task["regions"]],
                                   language=task["language"],
                                   word_timestamps=task["word_timestamps"], on_progress=progress)
    transcript = clamp_times(transcript, len(audio) / media.SAMPLE_RATE)
    meta = {**transcript.meta, "model": ref.name, "model_source": ref.source,
            "engine": engine.name}
    return Transcript(transcript.language, transcript.segments, meta).to_dict()


def _model_path(ref: models.ModelRef, resolved: hardware.Resolved) -> Path:
    if resolved.backend == "mlx":
        from cpwhisperx.engines.asr import mlx_convert

        return mlx_convert.ensure(ref)
    return ref.path


def run(ctx: StageContext) -> StageResult:
    regions = vad.load_regions(ctx.job)
    language = None if ctx.settings.source_language == "auto" else ctx.settings.source_language
    out = transcript_path(ctx.job)
    if not regions:
        fsutil.write_json(out, Transcript(language=language or "und", segments=()).to_dict())
        return StageResult(outputs=[out], backend="none (no speech found)",
                           warnings=["no speech found by VAD: the transcript is empty"])
    duration = fsutil.read_json(demux.info_path(ctx.job))["duration"]
    # Found (or downloaded) here, not in the worker: a download must not count against the
    # worker's timeout, and a retry must not fetch it again.
    ref = models.resolve(model_name(ctx))
    ctx.log.info("model %s from %s: %s", ref.name, ref.source, ref.path)
    task = {"audio": str(separate.audio_path(ctx.job)), "regions": regions, "model": ref.name,
            "model_source": ref.source, "language": language,
            "beam_size": ctx.settings.beam_size, "batch_size": ctx.settings.batch_size,
            "word_timestamps": ctx.settings.alignment_backend != "none"}
    chain = [ctx.resolved]
    if (retry := hardware.fallback(ctx.resolved)) is not None:
        chain.append(retry)
    attempts = [(f"{r.backend} {r.device}/{r.compute_type}",
                 {**task, "resolved": asdict(r), "model_path": str(_model_path(ref, r))})
                for r in chain]
    timeout = ctx.settings.asr_timeout_s or 600 + 5 * duration
    used, warnings = isolation.run_chain(NAME, attempts, result=out, timeout=timeout,
                                         log_file=ctx.job.log_file(NAME),
                                         on_progress=ctx.progress)
    if used is None:
        raise CpwError(f"speech recognition failed and no fallback is left ({'; '.join(warnings)})"
                       f"; details in {ctx.job.log_file(NAME)}")
    transcript = Transcript.from_dict(fsutil.read_json(out))
    ctx.log.info("%d segments, language %s", len(transcript.segments), transcript.language)
    return StageResult(outputs=[out], backend=transcript.meta["engine"], warnings=warnings,
                       meta={"language": transcript.language, **transcript.meta})
