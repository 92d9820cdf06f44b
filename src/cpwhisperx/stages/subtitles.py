"""Stage: transcript → subtitles per language (``outputs/<stem>.<lang>.srt`` and ``.vtt``)
with a conformance report (``NN_subtitles/<lang>.conformance.json``, summed up in the
manifest)."""

from dataclasses import asdict
from pathlib import Path
from typing import Any

from cpwhisperx import writers
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageContext, StageResult, demux, diarize, translate
from cpwhisperx.text import linebreaks, subtitles
from cpwhisperx.transcript import Transcript

NAME = "subtitles"
INPUTS = ("demux", "diarize", "translate")


def tracks_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "tracks.json"


def edits_path(job: Job, language: str) -> Path:
    """A language's events as a person edited them (the web app): used as they are, instead
    of the events made from the transcript, until the file is removed."""
    return _edits(job) / f"subtitles.{language}.json"


def _edits(job: Job) -> Path:
    return job.root / "edits"


def edited(job: Job, language: str) -> list[subtitles.Event] | None:
    path = edits_path(job, language)
    if not path.is_file():
        return None
    return [subtitles.Event(start=e["start"], end=e["end"], lines=tuple(e["text"].split("\n")))
            for e in fsutil.read_json(path)["events"]]


def style_config(ctx: StageContext) -> dict[str, Any]:
    """The settings subtitle events depend on (this stage's, and the export's plain SRT)."""
    s = ctx.settings
    return {"audience": s.subtitle_audience, "max_chars": s.subtitle_max_chars,
            "max_cps": s.subtitle_max_cps, "max_lines": s.subtitle_max_lines}


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    edits = {path.name: fsutil.sha256_file(path)
             for path in sorted(_edits(ctx.job).glob("subtitles.*.json"))}
    return {"targets": ctx.settings.targets, **style_config(ctx), "stem": ctx.stem,
            **({"edits": edits} if edits else {})}


def timed_events(ctx: StageContext, transcript: Transcript
                 ) -> tuple[list[subtitles.Event], subtitles.Style]:
    """A transcript's subtitle events by the job's style, inside the media."""
    info = fsutil.read_json(demux.info_path(ctx.job))
    s, language = ctx.settings, transcript.language
    max_chars, max_cps = s.subtitle_limits(language)
    style = subtitles.style_for(language, fps=info.get("fps"),
                                children=s.subtitle_audience == "children",
                                max_chars=max_chars, max_cps=max_cps,
                                max_lines=s.subtitle_max_lines)
    events = subtitles.events(transcript.segments, language=language, style=style,
                              until=info["duration"])
    return events, style


def warm(ctx: StageContext) -> None:
    """While earlier stages run: the parsers that break the subtitles' lines."""
    linebreaks.warm(ctx.settings.targets or [ctx.settings.source_language])


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(diarize.transcript_path(ctx.job)))
    fps = fsutil.read_json(demux.info_path(ctx.job)).get("fps")
    s = ctx.settings
    outputs, tracks, summary, warnings = [], [], {}, []
    for language in s.targets or [transcript.language]:
        source = (transcript if language == transcript.language else Transcript.from_dict(
            fsutil.read_json(translate.transcript_path(ctx.job, language))))
        events, style = timed_events(ctx, source)
        events = edited(ctx.job, language) or events
        report = subtitles.check(events, style, language=language)
        cues = [(e.start, e.end, e.text) for e in events]
        srt_path = ctx.job.outputs / f"{ctx.stem}.{language}.srt"
        vtt_path = srt_path.with_suffix(".vtt")
        report_path = ctx.dir(NAME) / f"{language}.conformance.json"
        fsutil.write_text(srt_path, writers.srt_text(cues))
        fsutil.write_text(vtt_path, writers.vtt_text(cues))
        fsutil.write_json(report_path, {"style": asdict(style), **report.to_dict()})
        outputs += [srt_path, vtt_path, report_path]
        tracks.append({"language": language, "srt": str(srt_path)})
        summary[language] = {k: v for k, v in report.to_dict().items() if k != "failures"}
        if report.failures:
            warnings.append(f"{language}: {len(report.failures)} of {report.events} events break "
                            f"a rule ({report.share():.1%} meet all); see {report_path}")
    fsutil.write_json(tracks_path(ctx.job), tracks)
    ctx.progress(1.0)
    return StageResult(outputs=[*outputs, tracks_path(ctx.job)], backend="netflix rules",
                       warnings=warnings, meta={"conformance": summary, "fps": fps or 25.0})

