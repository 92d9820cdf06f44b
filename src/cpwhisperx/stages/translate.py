"""Stage: transcript → one translated transcript per target language
(``NN_translate/transcript.<lang>.json``, and ``outputs/<stem>.<lang>.json`` and ``.txt``).

The transcript is translated sentence by sentence, each translation re-timed onto its source
sentence's span (``translation.retime``). Finished sentences go into a cache shared by every
job, so an interrupted run, or a rerun with other subtitle settings, asks the engine only for
what is missing. Whisper's translation (any language → English, from the audio), NLLB and
IndicTrans2 run in a worker process like ASR; the LLM client runs here.
"""

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cpwhisperx import hardware, media, models, translation, writers
from cpwhisperx.engines import asr as asr_engines
from cpwhisperx.engines.translate import indictrans2, llama_server, nllb
from cpwhisperx.errors import CpwError, EngineUnavailable
from cpwhisperx.jobs import Job
from cpwhisperx.runtime import fsutil, isolation
from cpwhisperx.stages import StageContext, StageResult, asr, clean, diarize, separate
from cpwhisperx.text import scripts
from cpwhisperx.transcript import Transcript

NAME = "translate"
INPUTS = ("separate", "diarize")
WORKER_ENGINES = ("whisper", "nllb", "indictrans2")  # native code: in a worker process, like ASR


def transcript_path(job: Job, language: str) -> Path:
    return job.stage_dir(NAME) / f"transcript.{language}.json"


def cache() -> translation.Cache:
    return translation.Cache(models.cache_root() / "translations.sqlite")


def _targets(ctx: StageContext, source: str) -> list[str]:
    return [t for t in ctx.settings.targets if t != source]


def _glossary(ctx: StageContext, target: str) -> dict[str, str]:
    path = ctx.settings.translation_glossary
    return translation.load_glossary(Path(path), target=target) if path else {}


def _loop_limit(ctx: StageContext) -> int | None:
    """The clean stage's loop rule holds for translations too (``None``: it is off)."""
    options = clean.options(ctx)
    return options.repeat_limit if "loops" in options.rules else None


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    s = ctx.settings
    glossary = Path(s.translation_glossary) if s.translation_glossary else None
    return {"targets": s.targets, "backend": s.translation_backend,
            "asr_model": asr.model_name(ctx),
            "llm": [s.llm_base_url, s.llm_model, s.llm_context_chars],
            "model": s.translation_model,
            "glossary": fsutil.sha256_file(glossary) if glossary and glossary.is_file() else None,
            "loops": _loop_limit(ctx), "script": s.hindi_script,
            "stem": ctx.stem}


def run(ctx: StageContext) -> StageResult:
    transcript = Transcript.from_dict(fsutil.read_json(diarize.transcript_path(ctx.job)))
    source = transcript.language
    targets = _targets(ctx, source)
    if not targets:
        ctx.progress(1.0)
        return StageResult(outputs=[], backend="none (no target other than the spoken language)")
    # Every pair's engines are chosen before any work: a missing one fails the stage at once.
    engines = {t: translation.engines(ctx.settings, source=source, target=t) for t in targets}
    units = translation.sentences(transcript)
    outputs: list[Path] = []
    warnings: list[str] = []
    meta: dict[str, Any] = {"sentences": len(units)}
    loop_limit = _loop_limit(ctx)
    for n, target in enumerate(targets):
        def progress(fraction: float, n: int = n) -> None:
            ctx.progress((n + fraction) / len(targets))

        name, model, texts, asked = _first_that_runs(ctx, engines[target], units,
                                                     source=source, target=target,
                                                     progress=progress, warnings=warnings)
        # A loop that Whisper, NLLB or IndicTrans2 wrote (the LLM is asked again) is kept once,
        # as the clean stage does in a transcript.
        unlooped = [translation.unloop(text, language=target, source=unit.text,
                                       source_language=source, limit=loop_limit)
                    for text, unit in zip(texts, units, strict=True)]
        texts = [text for text, _ in unlooped]
        if ctx.settings.hindi_script == "devanagari" and target in scripts.NATIVE_SCRIPTS:
            # As in a transcript: every letter in the target's script, or an English word's.
            texts = [scripts.to_native(text, target) for text in texts]
        if loops := [loop for _, loop in unlooped if loop]:
            warnings.append(f"{target}: {len(loops)} of {len(units)} translations repeat a "
                            f"word or phrase ({loops[0]}); each loop kept once")
        if units and not any(texts):
            raise CpwError(f"{name} gave no translation into {target} for any of the "
                           f"{len(units)} sentences; details in {ctx.job.log_file(NAME)}")
        if model == llama_server.BUNDLED_NAME:
            warnings.append(f"{target}: translated by the {model}, a model for trying the "
                            "workflow out whose translations are mostly wrong: for real ones set "
                            "TRANSLATION_MODEL (IndicTrans2, NLLB), LLM_BASE_URL or LLM_MODEL, "
                            "or let IndicTrans2's model download (online)")
        if missing := sum(not t for t in texts):
            warnings.append(f"{target}: {missing} of {len(units)} sentences have no translation "
                            f"({name} gave none); details in {ctx.job.log_file(NAME)}")
        result = translation.translated(transcript, units, texts, language=target,
                                        meta={"engine": name, "model": model})
        path = transcript_path(ctx.job, target)
        fsutil.write_json(path, result.to_dict())
        outputs.append(path)
        for ext in ("json", "txt"):
            out = ctx.job.outputs / f"{ctx.stem}.{target}.{ext}"
            fsutil.write_text(out, writers.WRITERS[ext](result))
            outputs.append(out)
        meta[target] = {"engine": name, "model": model, "segments": len(result.segments),
                        "translated": asked, "cached": len(units) - asked,
                        "untranslated": missing, "loops": len(loops)}
    backends = sorted({meta[t]["engine"] for t in targets})
    return StageResult(outputs=outputs, backend=", ".join(backends), warnings=warnings,
                       meta=meta)


def _first_that_runs(ctx: StageContext, engines: Sequence[str],
                     units: Sequence[translation.Sentence], *, source: str, target: str,
                     progress: Callable[[float], None], warnings: list[str]
                     ) -> tuple[str, str, list[str], int]:
    """``_translate`` with the first engine that starts: one that cannot (a llama-server that
    dies loading its model, a missing binary, a worker that crashes) is a fault like the ASR
    worker's, and the next engine of ``auto`` takes over, with a warning naming the cause."""
    for n, engine in enumerate(engines):
        try:
            return _translate(ctx, engine, units, source=source, target=target,
                              progress=progress)
        except EngineUnavailable as exc:
            if n + 1 == len(engines):
                raise CpwError(f"translation into {target}: {exc.message}") from None
            warnings.append(f"{target}: fallback: {engine} cannot run here ({exc.message}); "
                            f"trying {engines[n + 1]}")
            ctx.log.warning(warnings[-1])
    raise AssertionError("a pair has at least one engine")


def _translate(ctx: StageContext, engine: str, units: Sequence[translation.Sentence], *,
               source: str, target: str, progress: Callable[[float], None]
               ) -> tuple[str, str, list[str], int]:
    """(engine, model, one translation per sentence ("" where the engine gave none), how many
    the engine was asked for). Only translations are cached: a rerun asks again for the rest."""
    s = ctx.settings
    model = {"whisper": asr.model_name(ctx), "nllb": s.translation_model,
             "llm": s.llm_model or s.llm_base_url or llama_server.BUNDLED_NAME}.get(engine, "")
    if engine == "indictrans2":  # TRANSLATION_MODEL, else the pair's direction's default
        model = indictrans2.model_for(s.translation_model, source, target)
    if engine == "nllb" and not model:
        raise CpwError("TRANSLATION_BACKEND=nllb needs TRANSLATION_MODEL: a CTranslate2 NLLB "
                       "folder or a Hugging Face repo id")
    glossary = _glossary(ctx, target)
    store = cache()
    # A glossary changes what a sentence becomes: it is part of the model's identity.
    identity = model + (f" glossary {sorted(glossary.items())}" if glossary else "")
    keys = [store.key(engine=engine, model=identity, source=source, target=target,
                      text=u.text) for u in units]
    found = store.get(keys)
    missing = [i for i, k in enumerate(keys) if k not in found]
    ctx.log.info("%s → %s with %s %s: %d of %d sentences cached", source, target, engine, model,
                 len(units) - len(missing), len(units))
    if missing and engine in WORKER_ENGINES:
        _in_worker(ctx, engine, model, [units[i] for i in missing],
                   [keys[i] for i in missing], source=source, target=target,
                   progress=progress)
    elif missing:
        with _llm(ctx, glossary) as translator:
            size = translator.batch_size
            for done in range(0, len(missing), size):
                batch = missing[done:done + size]
                texts = translator.translate(
                    [units[i].text for i in batch], source=source, target=target,
                    context=translation.context(units, batch[0], batch[-1] + 1,
                                                chars=s.llm_context_chars))
                store.put({keys[i]: text for i, text in zip(batch, texts, strict=True) if text})
                progress((done + len(batch)) / len(missing))
    found = store.get(keys)
    return engine, model, [found.get(k, "") for k in keys], len(missing)


@contextlib.contextmanager
def _llm(ctx: StageContext, glossary: dict[str, str]) -> Iterator[Any]:
    from cpwhisperx.engines.translate import llama_server
    from cpwhisperx.engines.translate.llm import LlmTranslator

    s = ctx.settings
    api_key = os.environ.get("LLM_API_KEY") or os.environ.get("OPENAI_API_KEY", "")

    def translator(url: str) -> LlmTranslator:
        return LlmTranslator(base_url=url, model=s.llm_model, api_key=api_key,
                             glossary=glossary, timeout=s.llm_timeout_s,
                             loop_limit=_loop_limit(ctx))

    if s.llm_base_url:
        yield translator(s.llm_base_url)
    elif s.llm_model.endswith(".gguf") or (not s.llm_model and llama_server.bundled_installed()):
        gguf = Path(s.llm_model).expanduser() if s.llm_model else llama_server.bundled_model()
        with llama_server.serve(gguf, threads=ctx.resolved.cpu_threads,
                                log_file=ctx.job.log_file(NAME)) as url:
            yield translator(url)
    else:
        raise CpwError("TRANSLATION_BACKEND=llm needs LLM_BASE_URL (an OpenAI-compatible "
                       "server) or LLM_MODEL set to a local .gguf file, or the [llm] extra")


def _in_worker(ctx: StageContext, engine: str, model: str,
               units: Sequence[translation.Sentence], keys: Sequence[str], *, source: str,
               target: str, progress: Callable[[float], None]) -> None:
    """Whisper, NLLB or IndicTrans2 (native code) in a worker process, retried with the
    fallback configuration; the worker puts each translation into the cache as it finishes.
    Models are found (or downloaded) here; IndicTrans2's is converted in the worker."""
    if engine == "whisper":
        ref = models.resolve(model)
    else:
        resolve = nllb.resolve if engine == "nllb" else indictrans2.resolve
        ref = models.ModelRef(name=model, path=resolve(model, offline=models.offline()),
                              source=engine)
    chain = [ctx.resolved]
    if (retry := hardware.fallback(ctx.resolved)) is not None:
        chain.append(retry)
    attempts = [(f"{engine} {r.device}/{r.compute_type}", Task(
        engine=engine, model=ref, resolved=r, audio=separate.audio_path(ctx.job),
        source=source, target=target,
        beam_size=asr_engines.beam_size(ctx.settings.beam_size, source),
        spans=[(u.start, u.end) for u in units], texts=[u.text for u in units],
        keys=list(keys), cache=cache().path)) for r in chain]
    timeout = 600 + 5 * sum(u.end - u.start for u in units)
    used, warnings = isolation.run_chain(NAME, attempts, result=ctx.dir(NAME) / f"{engine}.json",
                                         timeout=timeout, log_file=ctx.job.log_file(NAME),
                                         on_progress=progress)
    if used is None:  # the next engine of auto may run
        raise EngineUnavailable(f"{engine} translation failed and no fallback is left "
                                f"({'; '.join(warnings)}); details in {ctx.job.log_file(NAME)}")


class Task(isolation.Task):
    engine: str  # one of WORKER_ENGINES
    model: models.ModelRef
    resolved: hardware.Resolved
    source: str
    target: str
    texts: list[str]  # the sentences to translate,
    keys: list[str]  # their keys in the cache at ``cache``,
    spans: list[tuple[float, float]]  # and their times, for Whisper (which hears ``audio``)
    audio: Path
    beam_size: int
    cache: Path


def work(task: Task, progress: Callable[[float], None]) -> dict[str, Any]:
    """In the worker: translate, putting what is done into the cache as it is done."""
    resolved = task.resolved
    store = translation.Cache(task.cache)
    if task.engine in ("nllb", "indictrans2"):
        engine = (nllb.NllbTranslator if task.engine == "nllb"
                  else indictrans2.IndicTrans2Translator)
        translator = engine(model=task.model.path, device=resolved.device,
                            compute_type=resolved.compute_type,
                            cpu_threads=resolved.cpu_threads)
        texts, keys, size = task.texts, task.keys, translator.batch_size
        for done in range(0, len(texts), size):
            out = translator.translate(texts[done:done + size], source=task.source,
                                       target=task.target, context="")
            store.put({k: t for k, t in zip(keys[done:done + size], out, strict=True) if t})
            progress(min(1.0, (done + size) / len(texts)))
        return {"sentences": len(texts)}
    texts = _whisper(task, progress)
    store.put({k: t for k, t in zip(task.keys, texts, strict=True) if t})
    return {"sentences": len(texts)}


def _whisper(task: Task, progress: Callable[[float], None]) -> list[str]:
    """Whisper's translate task on the sentences' audio, packed into windows of at most 30 s;
    each translated segment goes to the sentence holding its middle."""
    ref = task.model
    # Window after window: one decoder with every thread.
    engine = asr_engines.create(replace(task.resolved, decoders=1), model=ref,
                                beam_size=task.beam_size)
    if not engine.multilingual:
        raise CpwError(f"Whisper translation needs a multilingual model, and {ref.name} is "
                       "English-only: set WHISPER_MODEL to base, small, ...")
    spans = task.spans
    parts: list[list[str]] = [[] for _ in spans]
    windows = asr_engines.speech_windows(spans)
    with media.WavReader(task.audio) as audio:
        for n, window in enumerate(windows):
            for segment in engine.translate(window.read(audio), language=task.source):
                placed = window.place(segment)
                middle = (placed.start + placed.end) / 2
                nearest = min(range(len(spans)), key=lambda i: _distance(spans[i], middle))
                parts[nearest].append(segment.text)
            progress((n + 1) / len(windows))
    return [" ".join(p) for p in parts]


def _distance(span: tuple[float, float], t: float) -> float:
    return max(span[0] - t, t - span[1], 0.0)
