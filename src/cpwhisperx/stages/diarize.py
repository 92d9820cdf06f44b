"""Stage: transcript + audio → ``transcript.json`` with a speaker for every word and
segment (``DIARIZATION``), segments split where the speaker changes; ``turns.json`` has the
engine's speaker turns. With ``DIARIZATION=none`` the transcript passes through unchanged.

The engine runs in a worker process, like the aligner: one that crashes or hangs costs the
job its speakers (with a warning, under ``auto``), never the transcript."""

import bisect
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cpwhisperx import media
from cpwhisperx.engines import diarize as diarizers
from cpwhisperx.errors import CpwError
from cpwhisperx.jobs import Job
from cpwhisperx.languages import SENTENCE_END, SPACELESS
from cpwhisperx.runtime import fsutil, isolation
from cpwhisperx.stages import StageContext, StageResult, clean, separate
from cpwhisperx.transcript import Segment, Transcript, Word, spoken_words

NAME = "diarize"
INPUTS = ("demux", "separate", "clean")
PAUSE_S = 0.15  # a pause this long between words may be a change of speaker
# Speech without a pause is embedded in parts of about one encoder window (1.6 s), so that a
# change of speaker in the middle of a sentence mixes few parts' voices; the engine then times
# the change. On conversations whose speakers take over mid-sentence (``evaluation.relay``),
# 8 s parts mixed two voices into one speaker on 3 of 5 seeds.
LONGEST_S = 2.0
# The worker's time limit: TIMEOUT_S, and SLOWEST seconds per second of audio. pyannote's
# pipeline, full-size models with random weights, took about 2 s per second of audio on one core
# of this project's machines (CPU, segmentation step 0.1 s).
TIMEOUT_S = 120.0
SLOWEST = {"ge2e": 1.0, "pyannote": 5.0}


def transcript_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "transcript.json"


def turns_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "turns.json"


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    s = ctx.settings
    if s.diarization == "none":
        return {"engine": "none"}
    engine = diarizers.choose(s.diarization)
    return {"engine": engine, "number": s.num_speakers, "low": s.min_speakers,
            "high": s.max_speakers, "names": s.speaker_names,
            **({"model": s.diarization_model} if engine == "pyannote" else {})}


class Task(isolation.Task):
    engine: str
    model: str = ""  # DIARIZATION_MODEL (pyannote)
    audio: Path
    regions: list[tuple[float, float]]
    number: int = 0
    low: int = 0
    high: int = 0
    threads: int = 1
    device: str = "cpu"
    offline: bool = False  # pyannote: from the Hugging Face cache alone


def work(task: Task, progress: Callable[[float], None]) -> dict[str, Any]:
    """In the worker: the engine's turns over the task's regions of speech."""
    engine: diarizers.Diarizer
    if task.engine == "pyannote":
        from cpwhisperx.engines.diarize.pyannote import Pyannote

        engine = Pyannote(model=task.model, threads=task.threads, device=task.device,
                          offline=task.offline)
    else:
        from cpwhisperx.engines.diarize.ge2e import GE2E

        engine = GE2E(threads=task.threads)
    speakers = diarizers.Speakers(number=task.number, low=task.low, high=task.high)
    with media.WavReader(task.audio) as audio:
        turns = engine.diarize(audio, regions=task.regions, speakers=speakers,
                               progress=progress)
    return {"engine": engine.name,
            "turns": [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in turns]}


def regions(transcript: Transcript) -> list[tuple[float, float]]:
    """Where words are spoken, in spans that one speaker likely holds: a span ends at a pause,
    at a sentence's end and at a segment's end, and is cut in parts past ``LONGEST_S``."""
    out: list[tuple[float, float]] = []
    for segment in transcript.segments:
        start = end = None
        for word in spoken_words(segment):
            if start is not None and end is not None and (
                    word.start - end >= PAUSE_S or end - start >= LONGEST_S):
                out.append((start, end))
                start = None
            start = word.start if start is None else start
            end = word.end
            if word.text.rstrip("\"')]\u201d\u2019").endswith(SENTENCE_END):
                out.append((start, end))
                start = None
        if start is not None and end is not None:
            out.append((start, end))
    return [(round(a, 3), round(b, 3)) for a, b in out if b > a]


def labels(count: int, names: str) -> list[str]:
    """``SPEAKER_00`` ... in order of first appearance, renamed by ``SPEAKER_NAMES`` (checked
    by the settings): a comma list of names in that order, or of ``SPEAKER_01=Name`` pairs."""
    out = [f"SPEAKER_{i:02d}" for i in range(count)]
    given = [n for n in names.split(",") if n]
    if any("=" in n for n in given):
        pairs = dict(n.split("=", 1) for n in given)
        return [pairs.get(label, label) for label in out]
    return [*given[:count], *out[len(given):]]


def assign(transcript: Transcript, turns: Sequence[diarizers.Turn], names: Sequence[str]
           ) -> Transcript:
    """Each word the speaker of the turn it overlaps most (the nearest turn where it overlaps
    none), each segment split where its words' speaker changes."""
    if not turns:
        return transcript
    turns = sorted(turns, key=lambda t: t.start)
    starts = [t.start for t in turns]
    # Of the turns up to each, the one that ends last.
    latest: list[int] = []
    for k, turn in enumerate(turns):
        latest.append(k if not latest or turn.end > turns[latest[-1]].end else latest[-1])

    def speaker_at(start: float, end: float) -> str:
        # Those that may overlap [start, end] (starting before its end, back to where none
        # before reaches its start), the nearest before it and the first after it.
        hi = bisect.bisect_right(starts, end)
        lo = hi
        while lo > 0 and turns[latest[lo - 1]].end >= start:
            lo -= 1
        near = turns[lo:hi + 1] + ([turns[latest[lo - 1]]] if lo else [])
        best = max(near, key=lambda t: (min(end, t.end) - max(start, t.start),
                                        -abs((t.start + t.end) / 2 - (start + end) / 2)))
        return names[best.speaker]

    joiner = "" if transcript.language in SPACELESS else " "
    segments: list[Segment] = []
    for segment in transcript.segments:
        if not segment.words:
            segments.append(replace(segment, speaker=speaker_at(segment.start, segment.end)))
            continue
        # A word without text takes the speaker of the spoken word after it (or before).
        spoken = [speaker_at(w.start, w.end) if w.text.strip() else None for w in segment.words]
        fill: list[str | None] = []
        for speaker in reversed(spoken):
            fill.append(speaker or (fill[-1] if fill else None))
        last = next((x for x in reversed(spoken) if x), None)
        words = [replace(w, speaker=x or last) for w, x in zip(segment.words, fill[::-1],
                                                                strict=True)]
        runs: list[list[Word]] = [[words[0]]]
        for word in words[1:]:
            if word.speaker == runs[-1][-1].speaker:
                runs[-1].append(word)
            else:
                runs.append([word])
        if len(runs) == 1:
            segments.append(replace(segment, words=tuple(words), speaker=words[0].speaker))
            continue
        segments += [replace(segment, start=run[0].start, end=run[-1].end, words=tuple(run),
                             text=joiner.join(w.text.strip() for w in run if w.text.strip()),
                             speaker=run[0].speaker) for run in runs]
    return Transcript(transcript.language, tuple(segments), transcript.meta)


def _earlier_key(job: Job) -> str | None:
    try:
        return fsutil.read_json(turns_path(job)).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(clean.transcript_path(ctx.job)))
    out = transcript_path(ctx.job)
    s = ctx.settings
    spans = regions(transcript)
    if s.diarization == "none" or not spans:
        turns_path(ctx.job).unlink(missing_ok=True)  # an earlier run's, not this one's
        fsutil.write_json(out, transcript.to_dict())
        ctx.progress(1.0)
        return StageResult(outputs=[out], backend="none" if s.diarization == "none"
                           else "none (no words to tell speakers apart by)")
    name = diarizers.choose(s.diarization)
    task = Task(engine=name, model=s.diarization_model if name == "pyannote" else "",
                audio=separate.audio_path(ctx.job), regions=spans, number=s.num_speakers,
                low=s.min_speakers, high=s.max_speakers, threads=ctx.resolved.cpu_threads,
                device="cuda" if ctx.resolved.device == "cuda" else "cpu")
    # The turns depend on all but the names: a rename relabels the last run's turns.
    key = hashlib.sha256(json.dumps([name, task.model, task.regions, task.number, task.low,
                                     task.high, fsutil.sha256_file(task.audio)]).encode()
                         ).hexdigest()
    used: str | None
    warnings: list[str] = []
    if _earlier_key(ctx.job) == key:
        ctx.log.info("speaker turns kept from the last run: only the names changed")
        used = fsutil.read_json(turns_path(ctx.job))["engine"]
    else:
        turns_path(ctx.job).unlink(missing_ok=True)  # an earlier run's, not this one's
        if name == "pyannote":
            from cpwhisperx.engines.diarize import pyannote

            try:
                task = task.model_copy(update={
                    "offline": pyannote.check_obtainable(s.diarization_model)})
            except CpwError as exc:
                raise CpwError(f"DIARIZATION=pyannote: {exc.message}; DIARIZATION=none goes on "
                               "without speakers") from exc
        with media.WavReader(task.audio) as audio:
            timeout = TIMEOUT_S + SLOWEST[name] * audio.duration
        try:
            used, warnings = isolation.run_chain(NAME, [(name, task)],
                                                 result=turns_path(ctx.job), timeout=timeout,
                                                 log_file=ctx.job.log_file(NAME),
                                                 on_progress=ctx.progress)
        except CpwError as exc:  # the engine's own one-line error
            used, warnings = None, [exc.message]
        if used is not None:
            fsutil.write_json(turns_path(ctx.job),
                              {**fsutil.read_json(turns_path(ctx.job)), "key": key})
    if used is None:
        if s.diarization != "auto":
            raise CpwError(f"DIARIZATION={name} failed ({'; '.join(warnings)}): details in "
                           f"{ctx.job.log_file(NAME)}; DIARIZATION=none goes on without "
                           "speakers")
        fsutil.write_json(out, transcript.to_dict())
        return StageResult(outputs=[out], backend="none",
                           warnings=[*warnings, "the transcript is kept without speakers"])
    found = fsutil.read_json(turns_path(ctx.job))
    turns = [diarizers.Turn(t["start"], t["end"], t["speaker"]) for t in found["turns"]]
    if not turns:  # pyannote heard nobody where Whisper wrote words (music, noise)
        fsutil.write_json(out, transcript.to_dict())
        ctx.progress(1.0)
        return StageResult(outputs=[out, turns_path(ctx.job)], backend=used, warnings=[
            *warnings, f"{used} found nobody speaking: the transcript is kept without speakers"],
            meta={"speakers": 0, "turns": 0})
    count = max(t.speaker for t in turns) + 1
    result = assign(transcript, turns, labels(count, s.speaker_names))
    fsutil.write_json(out, {**result.to_dict(),
                            "meta": {**result.meta, "speakers": list(dict.fromkeys(
                                seg.speaker for seg in result.segments if seg.speaker))}})
    ctx.progress(1.0)
    return StageResult(outputs=[out, turns_path(ctx.job)], backend=used, warnings=warnings,
                       meta={"speakers": count, "turns": len(turns)})
