"""Stage: transcript → ``transcript.json`` without hallucinations, and ``removed.json``
saying what each rule removed and why (also in the manifest)."""

from collections import Counter
from pathlib import Path
from typing import Any

from cpwhisperx import hallucinations
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageContext, StageResult, align, vad
from cpwhisperx.transcript import Transcript

NAME = "clean"
INPUTS = ("vad", "align")
MANIFEST_LIMIT = 50  # removals listed in the manifest; removed.json has them all


def transcript_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "transcript.json"


def removed_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "removed.json"


def options(ctx: StageContext) -> hallucinations.Options:
    s = ctx.settings
    rules = frozenset() if s.clean_rules == "none" else frozenset(s.clean_rules.split(","))
    return hallucinations.Options(rules=rules, repeat_limit=s.clean_repeat_limit,
                                  max_cps=s.clean_max_cps, min_cps=s.clean_min_cps)


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    o = options(ctx)
    return {"rules": sorted(o.rules), "repeat_limit": o.repeat_limit, "max_cps": o.max_cps,
            "min_cps": o.min_cps}


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(align.transcript_path(ctx.job)))
    cleaned, removed = hallucinations.clean(transcript, speech=vad.load_regions(ctx.job),
                                            options=options(ctx))
    listed = [r.to_dict() for r in removed]
    fsutil.write_json(removed_path(ctx.job), listed)
    fsutil.write_json(transcript_path(ctx.job), cleaned.to_dict())
    for r in removed:
        ctx.log.info("%s %.2f-%.2f s %r: %s", r.rule, r.start, r.end, r.text, r.why)
    ctx.progress(1.0)
    counts = Counter(r.rule for r in removed)
    by_rule = ", ".join(f"{n} by {rule}" for rule, n in counts.items())
    where = f"{ctx.job.stage_dir(NAME).name}/{removed_path(ctx.job).name}"
    notes = [f"removed as hallucinations: {by_rule} (see {where})"] if removed else []
    return StageResult(outputs=[transcript_path(ctx.job), removed_path(ctx.job)],
                       backend=f"rules: {ctx.settings.clean_rules}",
                       warnings=notes,
                       meta={"removed_counts": dict(counts), "removed": listed[:MANIFEST_LIMIT],
                             "segments_kept": len(cleaned.segments)})
