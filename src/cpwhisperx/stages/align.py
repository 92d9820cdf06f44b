"""Stage: transcript + audio → ``transcript.json`` with word times from the chosen aligner.

A forced aligner runs in a worker process with a timeout. If it crashes or hangs, the job
keeps Whisper's own word times; if there are none, words are spread evenly over each segment
and the transcript is flagged (``meta.word_times = "interpolated"``).
"""

import concurrent.futures
import functools
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cpwhisperx import media
from cpwhisperx.engines import align as aligners
from cpwhisperx.errors import CpwError
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil, isolation
from cpwhisperx.stages import StageContext, StageResult, asr, demux, separate
from cpwhisperx.transcript import Segment, Transcript, Word, interpolate, tidy

NAME = "align"
INPUTS = ("demux", "separate", "asr")
AUTO = ("auto", "whisperx")  # settings under which an aligner that cannot start falls back


def transcript_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "transcript.json"


def _chosen(ctx: StageContext, language: str) -> str:
    return aligners.choose(ctx.settings.alignment_backend, language,
                           model=ctx.settings.alignment_model)


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    # The aligner actually chosen: installing an extra changes it, and so does the language.
    language = fsutil.read_json(asr.transcript_path(ctx.job))["language"]
    return {"aligner": _chosen(ctx, language), "model": ctx.settings.alignment_model}


@functools.lru_cache(maxsize=1)  # a worker kept up for many files loads it once
def _aligner(name: str, *, language: str, model: str) -> aligners.Aligner:
    if name == "pocketsphinx":
        from cpwhisperx.engines.align.pocketsphinx import PocketsphinxAligner

        return PocketsphinxAligner()
    from cpwhisperx.engines.align.wav2vec2 import Wav2Vec2Aligner

    return Wav2Vec2Aligner(language=language, model=model or None)


class Task(isolation.Task):
    audio: Path
    transcript: Path
    aligner: str
    model: str  # ALIGNMENT_MODEL; "" for the aligner's default
    processes: int = 1


def work(task: Task, progress: Callable[[float], None]) -> dict[str, Any]:
    """In the worker: align every segment, in ``task.processes`` processes at once (runs of
    segments of about equal length, one in this process); a segment that fails keeps
    Whisper's words."""
    transcript = Transcript.from_dict(fsutil.read_json(task.transcript))
    segments = transcript.segments
    runs = _runs([s.end - s.start for s in segments], task.processes)
    args = (task.aligner, transcript.language, task.model, task.audio)
    # Forked, a process starts at once with this one's imports; elsewhere forking is unsafe.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with concurrent.futures.ProcessPoolExecutor(max(1, len(runs) - 1),
                                                mp_context=context) as pool:
        others = [pool.submit(_align, *args, segments[lo:hi]) for lo, hi in runs[1:]]
        lo, hi = runs[0]
        parts = [_align(*args, segments[lo:hi], lambda done: progress(done * (hi - lo)
                                                                      / len(segments)))]
        parts += [future.result() for future in others]
    aligned = [seg for part, _ in parts for seg in part]
    failed = [why for _, part in parts for why in part]
    with media.WavReader(task.audio) as audio:
        duration = len(audio) / media.SAMPLE_RATE
    result = tidy(Transcript(transcript.language, tuple(aligned), transcript.meta), duration)
    meta = {**transcript.meta, "word_times": task.aligner, "unaligned_segments": failed}
    progress(1.0)
    return Transcript(result.language, result.segments, meta).to_dict()


def _runs(lengths: list[float], processes: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` runs of segments, at most ``processes``, of about equal total length."""
    total, lo, done = sum(lengths), 0, 0.0
    runs: list[tuple[int, int]] = []
    for i, length in enumerate(lengths):
        done += length
        if done >= total * (len(runs) + 1) / processes and i + 1 < len(lengths):
            runs.append((lo, i + 1))
            lo = i + 1
    return [*runs, (lo, len(lengths))]


def _align(name: str, language: str, model: str, audio_path: Path, segments: Sequence[Segment],
           progress: Callable[[float], None] = lambda _done: None
           ) -> tuple[list[Segment], list[str]]:
    """The segments with the aligner's word times, and why each that kept Whisper's failed."""
    aligner = _aligner(name, language=language, model=model)
    aligned, failed = [], []
    with media.WavReader(audio_path) as audio:  # each segment read as aligned
        for i, seg in enumerate(segments):
            texts = [w.text for w in seg.words] or seg.text.split()
            try:
                times = aligner.align_segment(audio, start=seg.start, end=seg.end, words=texts)
            except aligners.AlignmentFailed as exc:
                failed.append(f"{seg.start:.2f}-{seg.end:.2f} s: {exc}")
                aligned.append(seg)
            else:
                probs = [w.probability for w in seg.words] or [1.0] * len(texts)
                words = tuple(Word(start=s, end=e, text=t, probability=p)
                              for (s, e), t, p in zip(times, texts, probs, strict=True))
                aligned.append(replace(seg, words=words))
            progress((i + 1) / len(segments))
    return aligned, failed


def _without_aligner(transcript: Transcript, setting: str, duration: float
                     ) -> tuple[Transcript, str]:
    """Whisper's words where the ASR gave them, else evenly spread words (flagged)."""
    if setting == "none":
        segments = tuple(replace(s, words=()) for s in transcript.segments)
        return tidy(Transcript(transcript.language, segments, transcript.meta), duration), "none"
    if all(s.words for s in transcript.segments):
        return tidy(transcript, duration), "whisper"
    segments = tuple(s if s.words else interpolate(s) for s in transcript.segments)
    meta = {**transcript.meta, "word_times": "interpolated"}
    return tidy(Transcript(transcript.language, segments, meta), duration), "interpolated"


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(asr.transcript_path(ctx.job)))
    out = transcript_path(ctx.job)
    name = _chosen(ctx, transcript.language)
    duration = fsutil.read_json(demux.info_path(ctx.job))["duration"]
    if name in ("whisper", "none") or not transcript.segments:
        result, kept = _without_aligner(transcript, name, duration)
        fsutil.write_json(out, result.to_dict())
        return StageResult(outputs=[out], backend=kept)
    if not aligners.available(name):
        raise CpwError(f"ALIGNMENT_BACKEND={name} is not installed: {aligners.INSTALL[name]}")
    task = Task(audio=separate.audio_path(ctx.job), transcript=asr.transcript_path(ctx.job),
                aligner=name, model=ctx.settings.alignment_model,
                # pocketsphinx is one thread: a process per core (wav2vec2 has torch's threads).
                processes=ctx.resolved.cpu_threads if name == "pocketsphinx" else 1)
    try:
        if name == "wav2vec2" and ctx.settings.alignment_backend in AUTO:
            from cpwhisperx.engines.align import wav2vec2

            wav2vec2.check_obtainable(language=transcript.language,
                                      model=ctx.settings.alignment_model)
        used, warnings = isolation.run_chain(
            NAME, [(name, task)], result=out,
            timeout=ctx.settings.align_timeout_s or 60 + duration,
            log_file=ctx.job.log_file(NAME), on_progress=ctx.progress)
    except CpwError as exc:  # e.g. its model is not downloaded: asked for, so say it
        if ctx.settings.alignment_backend not in AUTO:
            raise
        used, warnings = None, [f"fallback: {name}: {exc.message}"]
    if used is None:
        result, used = _without_aligner(transcript, "whisper", duration)
        warnings.append(f"kept {used} word times instead")
        fsutil.write_json(out, result.to_dict())
    failed = fsutil.read_json(out)["meta"].get("unaligned_segments") or []
    if failed:
        warnings.append(f"{len(failed)} segment(s) kept Whisper's word times: {failed[0]}")
    return StageResult(outputs=[out], backend=used, warnings=warnings)
