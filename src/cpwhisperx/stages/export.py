"""Stage 07: transcript → ``outputs/<media stem>.{json,txt,srt,vtt,tsv}``."""

from typing import Any

from cpwhisperx import fsutil, writers
from cpwhisperx.stages import StageContext, StageResult, clean
from cpwhisperx.transcript import Transcript

NAME = "export"
INPUTS = ("clean",)


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    return {"formats": sorted(writers.WRITERS), "stem": ctx.media.stem}


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(clean.transcript_path(ctx.job)))
    outputs = []
    for ext, write in writers.WRITERS.items():
        path = ctx.job.outputs / f"{ctx.media.stem}.{ext}"
        fsutil.write_text(path, write(transcript))
        outputs.append(path)
    ctx.progress(1.0)
    return StageResult(outputs=outputs, backend="writers",
                       meta={"segments": len(transcript.segments)})
