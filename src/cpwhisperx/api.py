"""The Python API, on which the CLI is built.

>>> import cpwhisperx
>>> transcript = cpwhisperx.transcribe("film.mp4", language="hi", model="base")
>>> pipeline = cpwhisperx.Pipeline({"language": "en", "targets": ["hi"]}, out="out")
>>> result = pipeline.run(pipeline.prepare("film.mp4", workflow="subtitle"))

Settings are the keys of ``config/.env.pipeline`` in any case (``whisper_model="base"``,
``BATCH_SIZE=4``), or the short names of ``SHORT``; lists are joined with commas. They go
over the config file and the environment, as the command line's flags do.
"""

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cpwhisperx import config, jobs, pipeline, registry
from cpwhisperx.errors import ConfigError, MediaError
from cpwhisperx.jobs import Job
from cpwhisperx.progress import LogReporter, Reporter, Row
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import diarize
from cpwhisperx.transcript import Transcript

SHORT = {"language": "SOURCE_LANGUAGE", "model": "WHISPER_MODEL", "backend": "WHISPER_BACKEND",
         "device": "WHISPER_DEVICE", "compute_type": "WHISPER_COMPUTE_TYPE",
         "align": "ALIGNMENT_BACKEND", "targets": "TARGET_LANGUAGES",
         "translator": "TRANSLATION_BACKEND"}


def settings_keys(values: Mapping[str, object]) -> dict[str, str]:
    """Keyword settings as config keys and text values; ``None`` leaves a key alone."""
    keys: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        keys[SHORT.get(name, name.upper())] = str(value)
    return keys


@dataclass(frozen=True, slots=True)
class Result:
    job: Job
    transcript: Transcript  # cleaned, as exported
    outputs: tuple[Path, ...]  # the files in the job's outputs folder
    stages: tuple[Row, ...]
    duration: float | None  # of the media, in seconds
    seconds: float  # this run's wall time

    @property
    def speed(self) -> float | None:
        """Times real time: media seconds per second of this run."""
        return self.duration / self.seconds if self.duration and self.seconds else None

    def summary(self) -> str:
        """What the run made, and how fast: segments, words, audio length, times real time."""
        words = sum(len(s.words) or len(s.text.split()) for s in self.transcript.segments)
        line = f"{len(self.transcript.segments)} segments, {words} words"
        if self.duration is not None:
            minutes, seconds = divmod(self.duration, 60)
            line += f", {int(minutes)}:{seconds:04.1f} of audio"
        line += f" in {self.seconds:.1f} s"
        return line + (f" ({self.speed:.1f}x real time)" if self.speed else "")


class Pipeline:
    """Jobs with one set of settings: ``prepare`` one per media file, ``run`` or resume it."""

    def __init__(self, settings: Mapping[str, object] | None = None, *,
                 out: str | os.PathLike[str] = "out", reporter: Reporter | None = None) -> None:
        self.overrides = settings_keys(settings or {})
        self.out = Path(os.path.abspath(os.path.expanduser(out)))
        self.reporter = reporter or LogReporter()
        self._settings: config.Settings | None = None

    def check(self) -> config.Settings:
        """The settings new jobs get (config file, environment, these), checked; what was
        translated from another tool's spelling is told the first time."""
        if self._settings is None:
            notes: list[str] = []
            self._settings = config.load_settings(cli=self.overrides, notes=notes)
            for note in notes:
                self.reporter.info(f"warning: {note}")
        return self._settings

    def prepare(self, media: str | os.PathLike[str], *, workflow: str = "transcribe") -> Job:
        """A new job for ``media``; its settings are saved in the job folder."""
        if workflow not in registry.WORKFLOWS:
            raise ConfigError(f"unknown workflow {workflow!r}: expected "
                              f"{', '.join(registry.WORKFLOWS)}")
        path = Path(media).expanduser()
        if not path.exists():
            raise MediaError(f"media file not found: {path}")
        if path.is_dir():
            raise MediaError(f"{path} is a folder, not a media file")
        settings = self.check()
        if workflow == "translate" and not settings.targets:
            raise ConfigError("the translate workflow needs target languages: -t en,hi,...")
        if (source := settings.source_language) != "auto":  # else checked once ASR has run
            from cpwhisperx import translation

            for target in settings.targets:
                if target != source:
                    translation.choose(settings, source=source, target=target)
        # Absolute, but symlinks kept: messages name the file as the user knows it.
        return jobs.create(self.out, media=Path(os.path.abspath(path)), workflow=workflow,
                           settings=settings)

    def run(self, job: Job | str, *, first: str | None = None) -> Result:
        """Run or resume a job (a ``Job`` or its id) to the end, from ``first`` (``run_stages``)
        or the start; raise ``CpwError`` with a one-line message if a stage fails (what was made
        is kept: ``run`` again resumes)."""
        if isinstance(job, str):
            job = jobs.find(self.out, job)
        started = time.monotonic()
        rows = self.run_stages(job, first=first)
        seconds = time.monotonic() - started
        transcript = Transcript.from_dict(fsutil.read_json(diarize.transcript_path(job)))
        return Result(job=job, transcript=transcript,
                      outputs=tuple(sorted(job.outputs.iterdir())), stages=tuple(rows),
                      duration=pipeline.media_duration(job), seconds=seconds)

    def run_stages(self, job: Job, *, first: str | None = None, until: str | None = None
                   ) -> list[Row]:
        """Run or resume the job's stages from ``first`` to ``until`` (all, by default), as
        ``run``; those before ``first`` must be done, and are taken as they are."""
        return pipeline.run_job(job, out_root=self.out, overrides=self.overrides,
                                reporter=self.reporter, first=first, until=until)


def transcribe(media: str | os.PathLike[str], *, language: str = "auto", model: str = "auto",
               out: str | os.PathLike[str] | None = None, **settings: object) -> Transcript:
    """The transcript of ``media``: segments with word times, cleaned, in the spoken
    language's script. Its job goes under ``out`` when given (kept, resumable), else into a
    temporary folder removed afterwards."""
    with (contextlib.nullcontext(out) if out is not None
          else tempfile.TemporaryDirectory(prefix="cpwhisperx-")) as root:
        runner = Pipeline({"language": language, "model": model, **settings}, out=root)
        return runner.run(runner.prepare(media)).transcript
