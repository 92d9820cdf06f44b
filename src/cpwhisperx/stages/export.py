"""Stage: transcript → ``outputs/<media stem>.{json,txt,tsv}``, a line per segment,
``.srt``/``.vtt``, the subtitle events the subtitle workflow makes (lines wrapped, timed to be
read, inside the media), so that a player shows them as subtitles, and ``.rttm`` once
diarized."""

from typing import Any

from cpwhisperx import writers
from cpwhisperx.config import OUTPUT_FORMATS
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageContext, StageResult, diarize
from cpwhisperx.stages import subtitles as subtitles_stage
from cpwhisperx.text import linebreaks
from cpwhisperx.transcript import Transcript

NAME = "export"
INPUTS = ("demux", "diarize")


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    return {"formats": ctx.settings.formats, "stem": ctx.stem,
            **subtitles_stage.style_config(ctx)}


def warm(ctx: StageContext) -> None:
    """While earlier stages run: the parser that breaks the SRT/VTT's lines."""
    if set(ctx.settings.formats) & set(writers.CUE_WRITERS):
        linebreaks.warm([ctx.settings.source_language])


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(diarize.transcript_path(ctx.job)))
    diarized = any(s.speaker for s in transcript.segments)
    formats = [f for f in ctx.settings.formats if f != "rttm" or diarized]
    for ext in set(OUTPUT_FORMATS) - set(formats):
        # One a run before wrote and this one does not: gone, not left stale.
        (ctx.job.outputs / f"{ctx.stem}.{ext}").unlink(missing_ok=True)
    texts = {ext: write(transcript) for ext, write in writers.WRITERS.items() if ext in formats}
    if "rttm" in formats:
        texts["rttm"] = writers.to_rttm(transcript, file_id=ctx.stem)
    cues = []
    if set(formats) & set(writers.CUE_WRITERS):
        events, _ = subtitles_stage.timed_events(ctx, transcript)
        cues = [(e.start, e.end, e.text) for e in events]
        texts |= {ext: write_cues(cues) for ext, write_cues in writers.CUE_WRITERS.items()
                  if ext in formats}
    outputs = [ctx.job.outputs / f"{ctx.stem}.{ext}" for ext in formats]
    for path in outputs:
        fsutil.write_text(path, texts[path.suffix[1:]])
    ctx.progress(1.0)
    return StageResult(outputs=outputs, backend="writers",
                       meta={"segments": len(transcript.segments), "cues": len(cues)})
