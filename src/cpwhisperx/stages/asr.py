"""Stage: audio + speech regions → ``transcript.json`` (with Whisper's word times).

The engine runs in a worker process (``work``), retried once with the fallback configuration
if it crashes or hangs. Speech is decoded in chunks of ``BATCH_SIZE`` lanes (``lanes``), read
from disk as needed; ``chunks.jsonl`` keeps every finished chunk and every decoding step of the
chunk in progress (30 s of each lane, decoded together; what is left at the lanes' ends, packed
together; a lane decoded again in another language), so a crash or a kill at hour 1:50 of a
film loses at most one step of each lane, for the retry and for the next ``run`` alike.
Indic languages come out in their own script (``HINDI_SCRIPT``, see ``_in_native_script``).
"""

import functools
import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from cpwhisperx import hardware, media, models
from cpwhisperx.config import Settings
from cpwhisperx.engines import asr as asr_engines
from cpwhisperx.errors import CpwError
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil, isolation
from cpwhisperx.runtime.journal import Journal
from cpwhisperx.stages import StageContext, StageResult, demux, separate, vad
from cpwhisperx.text import scripts
from cpwhisperx.transcript import Segment, Transcript, tidy

log = logging.getLogger(__name__)

NAME = "asr"
INPUTS = ("demux", "separate", "vad")


def transcript_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "transcript.json"


def journal_path(job: Job) -> Path:
    return job.stage_dir(NAME) / "chunks.jsonl"


def model_name(ctx: StageContext) -> str:
    name = ctx.settings.whisper_model
    return models.default_model(ctx.settings.source_language) if name == "auto" else name


def prompt(settings: Settings) -> asr_engines.Prompt:
    """``INITIAL_PROMPT``, and ``HOTWORDS`` with the glossary's terms: names spelled as there."""
    words = settings.hotwords.strip()
    if settings.translation_glossary:
        from cpwhisperx import translation

        terms = translation.glossary_terms(Path(settings.translation_glossary))
        words = ", ".join(filter(None, (words, *terms)))
    return asr_engines.Prompt(text=settings.initial_prompt.strip(), hotwords=words)


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    s, r = ctx.settings, ctx.resolved
    return {"model": model_name(ctx), "language": s.source_language, "backend": r.backend,
            "device": r.device, "compute_type": r.compute_type,
            "beam_size": asr_engines.beam_size(s.beam_size, s.source_language),
            "prompt": asdict(prompt(s)),
            "batch_size": r.batch_size, "decoders": r.decoders, "lane_s": asr_engines.LANE_S,
            "words": s.alignment_backend != "none",
            # English is never redone for a change of HINDI_SCRIPT.
            "script": None if s.source_language == "en" else s.hindi_script}


@functools.lru_cache(maxsize=1)  # a worker kept up for many files (isolation.reuse) loads once
def _engine(resolved: hardware.Resolved, *, model: models.ModelRef, beam_size: int,
            prompt: asr_engines.Prompt, lanes: int) -> asr_engines.AsrEngine:
    log.info("loading %s from %s", model.name, model.path)
    return asr_engines.create(resolved, model=model, beam_size=beam_size, prompt=prompt,
                              lanes=lanes)


class Task(isolation.Task):
    audio: Path
    regions: list[tuple[float, float]]  # speech, in seconds
    model: models.ModelRef
    resolved: hardware.Resolved
    language: str | None  # None: detected on the first speech
    beam_size: int
    word_timestamps: bool
    prompt: asr_engines.Prompt
    native_script: bool  # Indic languages in their own script (HINDI_SCRIPT=devanagari)
    journal: Path
    journal_key: str  # the stage's fingerprint: a journal of other inputs is not resumed


def work(task: Task, progress: Callable[[float], None]) -> dict[str, Any]:
    """In the worker: load the model once, decode the speech chunk by chunk (each decoding step
    and each chunk journaled as it finishes, so a rerun picks up after the last step), return
    the transcript as a dict."""
    resolved, ref = task.resolved, task.model
    size = resolved.batch_size
    windows = asr_engines.lanes(task.regions, batch_size=size, decoders=resolved.decoders)
    chunks = [windows[i:i + size] for i in range(0, len(windows), size)]
    engine = _engine(resolved, model=ref, beam_size=task.beam_size, prompt=task.prompt,
                     lanes=min(max(map(len, chunks)), resolved.decoders))
    asr_engines.check_language(task.language, multilingual=engine.multilingual)
    journal = Journal(task.journal, key=task.journal_key)
    loaded = journal.load()
    entries = [e for e in loaded if "segments" in e]  # finished chunks
    resumed = len(entries)

    def steps(kind: str, where: dict[str, Any]) -> asr_engines.Steps:
        """The chunk's decoding steps of one kind (``step``, or ``retry`` for the lanes decoded
        again in another language): those an interrupted run finished, and where new ones go."""
        done = [e[kind] for e in loaded if kind in e and e["chunk"] == where["chunk"]]
        return asr_engines.Steps(done=done, record=lambda step: journal.append({**where,
                                                                                kind: step}))

    kept_steps = sum(e["chunk"] == resumed for e in loaded if "segments" not in e)
    log.info("%d windows in %d chunks; %d chunks and %d decoding steps kept from an earlier run",
             len(windows), len(chunks), resumed, kept_steps)
    language, probability = task.language, None
    if language is None and loaded:  # detected by the run that journaled them
        language, probability = loaded[0]["language"], loaded[0]["language_probability"]
    with media.WavReader(task.audio) as audio:
        for index in range(resumed, len(chunks)):
            audios = [window.read(audio) for window in chunks[index]]
            if language is None:  # detected once, on the first window of speech
                language, probability = (engine.detect_language(audios[0])
                                         if engine.multilingual else ("en", 1.0))

            where = {"chunk": index, "language": language, "language_probability": probability}
            def chunk_progress(done: float, index: int = index) -> None:
                progress((index + done) / len(chunks))

            decoded = engine.decode(audios, language=language,
                                    word_timestamps=task.word_timestamps,
                                    on_progress=chunk_progress, steps=steps("step", where))
            redecoded = 0
            if task.native_script and language in scripts.NATIVE_SCRIPTS:
                decoded, redecoded = _in_native_script(engine, audios, decoded, language=language,
                                                       word_timestamps=task.word_timestamps,
                                                       steps=steps("retry", where))
            placed = [window.place(_nfc(seg)) for window, segs
                        in zip(chunks[index], decoded, strict=True) for seg in segs]
            entry = {"chunk": index, "language": language, "language_probability": probability,
                     "redecoded": redecoded, "segments": [seg.to_dict() for seg in placed]}
            journal.append(entry)
            entries.append(entry)
            progress((index + 1) / len(chunks))
        duration = audio.duration
    segments = tuple(Segment.from_dict(s) for e in entries for s in e["segments"])
    meta = {"model": ref.name, "model_source": ref.source, "engine": engine.name,
            "language_probability": None if probability is None else round(probability, 3),
            "chunks": len(chunks), "resumed_chunks": resumed, "resumed_steps": kept_steps,
            "redecoded_windows": sum(e.get("redecoded", 0) for e in entries)}
    return tidy(Transcript(language or "und", segments, meta), duration).to_dict()


def _in_native_script(engine: asr_engines.AsrEngine, audios: Sequence,
                      decoded: list[list[Segment]], *, language: str, word_timestamps: bool,
                      steps: asr_engines.Steps) -> tuple[list[list[Segment]], int]:
    """Windows in the language's own script, and how many were decoded again: one the model
    wrote in English (Latin) is decoded again as ``RETRY_LANGUAGE`` (its steps recorded in
    ``steps``) and kept if that is not Latin too; the words then go into the native script
    (``scripts.to_native``: English words stay as spoken, any other letter is transliterated
    or dropped)."""
    retry = scripts.RETRY_LANGUAGE.get(language)
    latin = [i for i, segs in enumerate(decoded)
             if retry and scripts.mostly_latin(_text(segs))]
    if latin and retry:
        again = engine.decode([audios[i] for i in latin], language=retry,
                              word_timestamps=word_timestamps, steps=steps)
        for i, segs in zip(latin, again, strict=True):
            if not scripts.mostly_latin(_text(segs)):
                decoded[i] = segs
    return [[_to_native(seg, language) for seg in segs] for segs in decoded], len(latin)


def _text(segments: list[Segment]) -> str:
    return " ".join(seg.text for seg in segments)


def _nfc(segment: Segment) -> Segment:
    """Composed Unicode (NFC), so that every writer and the subtitle rules see one spelling of
    a Devanagari letter with a nukta (क़ is one code point or two)."""
    words = tuple(replace(w, text=unicodedata.normalize("NFC", w.text)) for w in segment.words)
    return replace(segment, text=unicodedata.normalize("NFC", segment.text), words=words)


def _to_native(segment: Segment, language: str) -> Segment:
    """The segment in the language's script; a word that was only stray letters is gone."""
    words = tuple(replace(w, text=text) for w in segment.words
                  if (text := scripts.to_native(w.text, language)))
    return replace(segment, text=scripts.to_native(segment.text, language), words=words)


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
    chain = [ctx.resolved]
    if (retry := hardware.fallback(ctx.resolved)) is not None:
        chain.append(retry)
    attempts = [(f"{r.backend} {r.device}/{r.compute_type}", Task(
        audio=separate.audio_path(ctx.job), regions=regions, language=language, resolved=r,
        model=replace(ref, path=_model_path(ref, r)),
        beam_size=asr_engines.beam_size(ctx.settings.beam_size, language or "auto"),
        word_timestamps=ctx.settings.alignment_backend != "none", prompt=prompt(ctx.settings),
        native_script=ctx.settings.hindi_script == "devanagari",
        journal=journal_path(ctx.job), journal_key=ctx.fingerprint)) for r in chain]
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
