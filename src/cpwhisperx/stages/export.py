"""Stage 07: transcript → ``outputs/<media stem>.{json,txt,tsv}``, a line per segment, and
``.srt``/``.vtt``, the subtitle events the subtitle workflow makes (lines wrapped, timed to be
read, inside the media), so that a player shows them as subtitles."""

from typing import Any

from cpwhisperx import fsutil, writers
from cpwhisperx.stages import StageContext, StageResult, clean
from cpwhisperx.stages import subtitles as subtitles_stage
from cpwhisperx.transcript import Transcript

NAME = "export"
INPUTS = ("demux", "clean")


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    return {"formats": sorted([*writers.WRITERS, *writers.CUE_WRITERS]), "stem": ctx.stem,
            **subtitles_stage.style_config(ctx)}


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(clean.transcript_path(ctx.job)))
    outputs = []
    for ext, write in writers.WRITERS.items():
        path = ctx.job.outputs / f"{ctx.stem}.{ext}"
        fsutil.write_text(path, write(transcript))
        outputs.append(path)
    events, _ = subtitles_stage.timed_events(ctx, transcript)
    cues = [(e.start, e.end, e.text) for e in events]
    for ext, write_cues in writers.CUE_WRITERS.items():
        path = ctx.job.outputs / f"{ctx.stem}.{ext}"
        fsutil.write_text(path, write_cues(cues))
        outputs.append(path)
    ctx.progress(1.0)
    return StageResult(outputs=outputs, backend="writers",
                       meta={"segments": len(transcript.segments), "cues": len(cues)})
