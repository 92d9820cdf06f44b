"""Run a job's stages in order, skipping those whose inputs and settings are unchanged."""

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cpwhisperx import __version__, config, hardware, registry
from cpwhisperx.errors import ConfigError, CpwError, MediaError
from cpwhisperx.jobs import Job, Manifest, OutputFile
from cpwhisperx.progress import Reporter, Row
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import Stage, StageContext, asr, demux


def _file_record(path: Path) -> OutputFile:
    stat = path.stat()
    return OutputFile(sha256=fsutil.sha256_file(path), size=stat.st_size,
                      mtime_ns=stat.st_mtime_ns)


def _intact(root: Path, outputs: dict[str, OutputFile], folder: Path) -> bool:
    """Every output as it was written, where the stage writes now (an older version numbered
    the stage folders otherwise)."""
    for rel, record in outputs.items():
        path = root / rel
        if path.parent not in (folder, root / "outputs"):
            return False
        if not path.is_file() or path.stat().st_size != record.size:
            return False
        if path.stat().st_mtime_ns != record.mtime_ns and fsutil.sha256_file(path) != record.sha256:
            return False
    return True


def _fingerprint(module: Stage, ctx: StageContext, manifest: Manifest) -> str:
    payload = {"stage": module.NAME, "version": __version__,
               "config": module.fingerprint_config(ctx),
               "inputs": {up: {rel: rec.sha256 for rel, rec in manifest.stage(up).outputs.items()}
                          for up in module.INPUTS}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _remove_partials(*folders: Path) -> None:
    """Temp files left by a run that was killed mid-write."""
    for folder in folders:
        for leftover in folder.glob(".*"):
            if leftover.suffix in (".tmp", ".wav") and leftover.is_file():
                leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def _stage_log(job: Job, name: str):
    """Everything logged while a stage runs (ours and the engines') goes to logs/<stage>.log."""
    job.log_file(name).parent.mkdir(exist_ok=True)
    handler = logging.FileHandler(job.log_file(name), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("faster_whisper").setLevel(logging.INFO)
    try:
        yield logging.getLogger(f"cpwhisperx.{name}")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def _warm(module: Stage, ctx: StageContext) -> None:
    """The stage's ``warm`` in a thread; what fails there is left for the stage to meet."""
    if (warm := getattr(module, "warm", None)) is None:
        return

    def run() -> None:
        try:
            warm(ctx)
        except Exception:
            logging.getLogger("cpwhisperx").debug("warming %s failed", module.NAME, exc_info=True)

    threading.Thread(target=run, name=f"warm {module.NAME}", daemon=True).start()


def _run_stage(name: str, ctx: StageContext, manifest: Manifest, reporter: Reporter, *,
               starting: Callable[[str], None] = lambda _name: None) -> Row:
    module = registry.module(name)
    job = ctx.job
    started = time.monotonic()
    with _stage_log(job, name) as log:
        ctx = replace(ctx, log=log)
        try:
            entry = manifest.stage(name)
            done = entry.status == "done" and _intact(job.root, entry.outputs, ctx.dir(name))
            try:
                fingerprint = _fingerprint(module, ctx, manifest)
            except MediaError as exc:
                if not done:
                    raise
                # The media moved or went away after demux: what was made from it still holds.
                reporter.info(f"warning ({name}): {exc.message}; kept the earlier result")
                fingerprint = entry.fingerprint or ""
            if done and entry.fingerprint == fingerprint:
                manifest.mark_reused(name)
                log.info("reused: inputs and settings unchanged")
                return Row(name, "reused", entry.seconds, entry.backend or "-",
                           "; ".join(entry.warnings))
            _remove_partials(ctx.dir(name), job.outputs)
            ctx.dir(name).mkdir(parents=True, exist_ok=True)
            manifest.mark_running(name, fingerprint)
            starting(name)
            log.info("started")
            with reporter.stage(name) as update:
                result = module.run(replace(ctx, progress=update, fingerprint=fingerprint))
            seconds = time.monotonic() - started
            outputs = {str(p.relative_to(job.root)): _file_record(p) for p in result.outputs}
            for warning in result.warnings:
                log.warning(warning)
                reporter.info(f"warning ({name}): {warning}")
            manifest.mark_done(name, seconds=seconds, outputs=outputs, backend=result.backend,
                               warnings=result.warnings, meta=result.meta)
            log.info("done in %.2f s", seconds)
            reporter.info(f"{name}: done in {seconds:.1f} s")
            return Row(name, "ran", seconds, result.backend, "; ".join(result.warnings))
        except KeyboardInterrupt:
            _fail(manifest, log, name, "interrupted", started)
            raise
        except CpwError as exc:
            _fail(manifest, log, name, exc.message, started)
            raise
        except OSError as exc:
            message = fsutil.os_error(exc, job.root)
            _fail(manifest, log, name, message, started)
            raise CpwError(message) from None
        except Exception as exc:
            log.exception("unexpected error")
            message = (f"stage {name} failed: {type(exc).__name__}: {exc}; "
                       f"details in {job.log_file(name)}")
            _fail(manifest, log, name, message, started)
            raise CpwError(message) from exc


def _fail(manifest: Manifest, log: logging.Logger, name: str, message: str,
          started: float) -> None:
    """Record a stage's failure; where even that cannot be saved (the disk is full), the
    manifest on disk stays the last one saved, and the failure itself is what the user hears."""
    log.error(message)
    try:
        manifest.mark_failed(name, message, time.monotonic() - started)
    except CpwError as exc:
        log.error("the failure is not recorded: %s", exc.message)


def _check_pairs(ctx: StageContext, manifest: Manifest) -> None:
    """With ``-s auto``, a pair no engine can do is known once ASR has detected the language:
    the run stops there (exit 1), not after the stages before translation."""
    from cpwhisperx import translation

    language = fsutil.read_json(asr.transcript_path(ctx.job))["language"]
    try:
        for target in ctx.settings.targets:
            if target != language:
                translation.engines(ctx.settings, source=language, target=target)
    except ConfigError as exc:
        message = f"the speech is in {language}: {exc.message}"
        manifest.mark_failed("translate", message, 0.0)
        raise CpwError(message) from None


def _part(job: Job, workflow: tuple[str, ...], manifest: Manifest, *, first: str | None,
          until: str | None) -> tuple[str, ...]:
    """The workflow's stages from ``first`` to ``until``. Those before ``first`` must be done;
    they are taken as they are, not judged again: a CPU node does not redo the decoding a GPU
    node did because it would have resolved another device."""
    for name in (first, until):
        if name is not None and name not in workflow:
            raise ConfigError(f"no stage {name} in job {job.id}'s workflow: "
                              f"{', '.join(workflow)}")
    lo = workflow.index(first) if first else 0
    hi = workflow.index(until) + 1 if until else len(workflow)
    if undone := [name for name in workflow[:lo] if manifest.stage(name).status != "done"]:
        raise CpwError(f"stage {undone[0]} of job {job.id} is not done: run the job from the "
                       "start (cpwhisperx run)")
    return workflow[lo:hi]


def run_job(job: Job, *, out_root: Path, overrides: dict[str, str], reporter: Reporter,
            first: str | None = None, until: str | None = None) -> list[Row]:
    """Run or resume the stages of the job's workflow: all of them, or those from ``first`` to
    ``until`` (a batch on a cluster runs each part where its resources are); raise CpwError on
    a failed stage."""
    info = job.info()
    notes: list[str] = []
    settings = config.load_settings(job_file=job.env_file, cli=overrides, notes=notes)
    hw = hardware.load(out_root)
    resolved = hardware.resolve(settings, hw)
    reporter.info(f"job {job.id}: {info['media']}")
    for note in [*notes, *resolved.notes]:
        reporter.info(f"warning: {note}")
    reporter.info(f"hardware: {hw.describe()}")
    reporter.info(f"engine: {resolved.backend} on {resolved.device}, {resolved.compute_type}, "
                  f"{resolved.cpu_threads} threads ({resolved.why})")
    ctx = StageContext(job=job, media=Path(info["media"]), settings=settings, resolved=resolved,
                       log=logging.getLogger("cpwhisperx"),
                       progress=lambda _fraction: None)
    rows: list[Row] = []
    with job.lock():
        if overrides:  # saved, so that the next plain `run` resumes with the same settings
            config.write_job_env(job.env_file, settings)
        manifest = Manifest.load(job)
        manifest.start_run()
        status = "failed"
        try:
            workflow = registry.WORKFLOWS[info["workflow"]]
            stages = _part(job, workflow, manifest, first=first, until=until)
            warming: list[str] = []

            def starting(name: str) -> None:
                """The first stage that runs: the later ones get ready meanwhile."""
                if not warming:
                    warming.extend(stages[stages.index(name) + 1:])
                    for later in warming:
                        _warm(registry.module(later), ctx)

            for name in stages:
                rows.append(_run_stage(name, ctx, manifest, reporter, starting=starting))
                if name == "asr" and "translate" in workflow:
                    _check_pairs(ctx, manifest)
            status = "done" if stages[-1] == workflow[-1] else "partial"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            try:
                manifest.end_run(status)  # saves the failure with it, where one was not
            except CpwError:
                if status == "done":  # else the run's own error is the one to tell
                    raise
            else:
                if status == "failed":
                    reporter.info(f"the manifest records the failure: {job.manifest_path}")
    return rows


def media_duration(job: Job) -> float | None:
    path = demux.info_path(job)
    return fsutil.read_json(path)["duration"] if path.is_file() else None
