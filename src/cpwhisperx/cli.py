"""The ``cpwhisperx`` command. Heavy libraries load only inside the commands that use them."""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cpwhisperx import __version__
from cpwhisperx.errors import ConfigError, CpwError
from cpwhisperx.registry import WORKFLOWS

if TYPE_CHECKING:
    from cpwhisperx.api import Pipeline, Result
    from cpwhisperx.progress import Reporter

FLAG_KEYS = {"source_language": "SOURCE_LANGUAGE", "backend": "WHISPER_BACKEND",
             "model": "WHISPER_MODEL", "device": "WHISPER_DEVICE",
             "compute_type": "WHISPER_COMPUTE_TYPE", "audio_stream": "AUDIO_STREAM",
             "batch_size": "BATCH_SIZE", "align": "ALIGNMENT_BACKEND",
             "initial_prompt": "INITIAL_PROMPT", "hotwords": "HOTWORDS",
             "output_format": "OUTPUT_FORMAT", "max_line_width": "SUBTITLE_MAX_CHARS",
             "max_line_count": "SUBTITLE_MAX_LINES",
             "target_languages": "TARGET_LANGUAGES", "translator": "TRANSLATION_BACKEND",
             "burn_in": "BURN_IN", "diarize": "DIARIZATION", "speakers": "NUM_SPEAKERS",
             "min_speakers": "MIN_SPEAKERS", "max_speakers": "MAX_SPEAKERS"}


def _out_root(args: argparse.Namespace) -> Path:
    return Path(os.path.abspath(os.path.expanduser(
        args.out or os.environ.get("CPWHISPERX_OUT") or "out")))


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    values = {key: str(value) for flag, key in FLAG_KEYS.items()
              if (value := getattr(args, flag, None)) is not None}
    if {"NUM_SPEAKERS", "MIN_SPEAKERS", "MAX_SPEAKERS"} & values.keys():
        values.setdefault("DIARIZATION", "auto")  # --speakers N says: tell them apart
    for item in getattr(args, "set", None) or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = value
    return values


def _pipeline(args: argparse.Namespace, reporter: "Reporter | None" = None) -> "Pipeline":
    from cpwhisperx.api import Pipeline

    return Pipeline(_overrides(args), out=_out_root(args), reporter=reporter)


def _show(result: "Result", reporter: "Reporter") -> None:
    reporter.table(list(result.stages), duration=result.duration)
    reporter.out.print(f"outputs: {result.job.outputs}", markup=False)
    for path in result.outputs:
        reporter.out.print(f"  {path.name}", markup=False)
    reporter.out.print(result.summary(), markup=False)


def cmd_prepare(args: argparse.Namespace) -> int:
    media = args.media or args.media_flag
    if not media or (args.media and args.media_flag):
        raise ConfigError("name one media file: cpwhisperx prepare FILE (or --media FILE)")
    from cpwhisperx.progress import Reporter

    job = _pipeline(args, Reporter()).prepare(media, workflow=args.workflow)
    print(job.id)
    print(f"prepared {job.root}; run it with: cpwhisperx run -j {job.id}", file=sys.stderr)
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from cpwhisperx import batch
    from cpwhisperx.progress import Reporter

    reporter = Reporter()
    output_dir = Path(args.output_dir).expanduser() if args.output_dir else None
    files = batch.expand(args.media)
    if len(files) == 1 and not Path(args.media[0]).expanduser().is_dir():
        pipeline = _pipeline(args, reporter)
        job = pipeline.prepare(files[0], workflow=args.workflow)
        args.job = job.id  # named in the message if the run is interrupted
        print(f"job {job.id} in {job.root}", file=sys.stderr)
        result = pipeline.run(job)
        _show(result, reporter)
        if output_dir is not None:
            batch.copy_outputs(result.outputs, output_dir)
        return 0
    if not files:
        raise ConfigError(f"no media files in {', '.join(args.media)}")
    return _many(args, files, output_dir, reporter)


def cmd_batch(args: argparse.Namespace) -> int:
    from cpwhisperx import batch
    from cpwhisperx.progress import Reporter

    files = batch.expand(args.media)
    if not files:
        raise ConfigError(f"no media files in {', '.join(args.media)}")
    output_dir = Path(args.output_dir).expanduser() if args.output_dir else None
    return _many(args, files, output_dir, Reporter(), resume=True)


def _many(args: argparse.Namespace, files: list[Path], output_dir: Path | None,
          reporter: "Reporter", *, resume: bool = False) -> int:
    """A job per file, a line as each ends, a table and a total at the end; exit 1 naming the
    files that failed, if any did."""
    import time

    from rich.table import Table

    from cpwhisperx import batch

    ended = [0]
    started = time.monotonic()

    def done(outcome: "batch.FileOutcome") -> None:
        ended[0] += 1
        what = f"failed: {outcome.error}" if outcome.error else outcome.summary
        reporter.info(f"[{ended[0]}/{len(files)}] {outcome.media}: {what}")

    pipeline = _pipeline(args, reporter)
    if getattr(args, "ray", None) is not None:
        from cpwhisperx import ray_batch

        outcomes = ray_batch.run_files(files, pipeline=pipeline, workflow=args.workflow,
                                       address=args.ray or None, output_dir=output_dir,
                                       on_done=done)
    else:
        outcomes = batch.run_files(files, pipeline=pipeline, workflow=args.workflow,
                                   jobs=args.jobs, output_dir=output_dir, on_done=done,
                                   resume=resume)
    table = Table(title=f"{len(files)} files")
    NUMBERS = ("audio s", "seconds", "x real time")
    for column in ("file", "job", "status", *NUMBERS, "notes"):
        table.add_column(column, justify="right" if column in NUMBERS else "left")
    for o in outcomes:
        speed = f"{o.duration / o.seconds:.1f}" if o.duration and o.seconds else "-"
        table.add_row(str(o.media), o.job or "-",
                      "failed" if o.error else "skipped" if o.earlier else "done",
                      f"{o.duration:.1f}" if o.duration else "-", f"{o.seconds:.1f}", speed,
                      o.error or "")
    reporter.out.print(table)
    reporter.out.print(batch.total(outcomes, time.monotonic() - started), markup=False)
    if failed := [o for o in outcomes if o.error]:
        names = ", ".join(str(o.media) for o in failed)
        print(f"error: {len(failed)} of {len(files)} files failed: {names}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from cpwhisperx.progress import Reporter

    reporter = Reporter()
    _show(_pipeline(args, reporter).run(args.job), reporter)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cpwhisperx import jobs

    job = jobs.find(_out_root(args), args.job)
    manifest = jobs.Manifest.seen(job)
    if args.json:
        print(json.dumps({"job": job.info(), "manifest": manifest.data.model_dump(mode="json")},
                         ensure_ascii=False, indent=2))
        return 0
    info = job.info()
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"job {job.id} ({info['workflow']}): {info['media']}", markup=False)
    table = Table()
    for column in ("stage", "status", "seconds", "backend", "attempts", "notes"):
        table.add_column(column)
    stages = manifest.data.stages
    for name, entry in stages.items():
        notes = entry.error or "; ".join(entry.warnings)
        seconds = "-" if entry.seconds is None else f"{entry.seconds:.2f}"
        table.add_row(name, entry.status, seconds, entry.backend or "-", str(entry.attempts),
                      notes)
    console.print(table)
    conformance = stages["subtitles"].meta if "subtitles" in stages else {}
    for language, report in (conformance.get("conformance") or {}).items():
        rules = ", ".join(f"{rule} {share:.0%}" for rule, share in report["rules"].items())
        console.print(f"subtitles {language}: {report['all_rules']:.1%} of {report['events']} "
                      f"events meet every rule ({rules})", markup=False)
    failed = any(e.status == "failed" for e in stages.values())
    return 1 if failed else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from cpwhisperx import doctor

    return doctor.main(out_root=_out_root(args), as_json=args.json)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from cpwhisperx.web import app
    except ImportError as exc:
        raise CpwError(f"serve needs the [web] extra ({exc.name} is missing): "
                       "pip install 'cpwhisperx[web]'") from None
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    token = os.environ.get("CPWHISPERX_API_TOKEN", "")
    if not token and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"--host {args.host} lets other machines in: set "
                          "CPWHISPERX_API_TOKEN first, or listen on 127.0.0.1")
    roots = tuple(Path(os.path.abspath(os.path.expanduser(r))) for r in args.allow_root)
    config = app.ServerConfig(out=_out_root(args), host=args.host, workers=args.workers,
                              token=token, max_upload_mb=args.max_upload_mb,
                              allowed_roots=roots)
    print(f"serving http://{args.host}:{args.port}/ (jobs in {config.out})", file=sys.stderr)
    app.serve(config, port=args.port)
    return 0


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--source-language", metavar="LANG",
                        help="spoken language code (en, hi, ...) or auto (default: auto)")
    parser.add_argument("--backend", help="ASR backend: auto, faster-whisper (alias whisperx), mlx")
    parser.add_argument("--model", help="Whisper model: auto, tiny.en, base, a repo id or a folder")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--compute-type", help="auto, int8, float16, float32, ...")
    parser.add_argument("--audio-stream", metavar="N|TAG",
                        help="audio stream by position (0, 1, ...) or language tag (eng, hin)")
    parser.add_argument("--batch-size", type=int, help="decode N windows at once (default 1)")
    parser.add_argument("--align",
                        help="word timing: auto, pocketsphinx, wav2vec2, whisper, same or none")
    parser.add_argument("--initial-prompt", metavar="TEXT",
                        help="text the speech follows: names, spelling, punctuation")
    parser.add_argument("--hotwords", metavar="WORDS", help="words and names to favour")
    parser.add_argument("--diarize", action="store_const", const="auto",
                        help="tell speakers apart (DIARIZATION=auto)")
    parser.add_argument("--speakers", type=int, metavar="N",
                        help="how many speakers there are, when known (NUM_SPEAKERS)")
    parser.add_argument("--min-speakers", type=int, metavar="N",
                        help="at least N speakers (MIN_SPEAKERS)")
    parser.add_argument("--max-speakers", type=int, metavar="N",
                        help="at most N speakers (MAX_SPEAKERS)")
    parser.add_argument("--output-format", metavar="FORMATS",
                        help="the transcript's files: all, or a comma list of json, txt, tsv, "
                             "srt, vtt, rttm")
    parser.add_argument("--max-line-width", type=int, metavar="N",
                        help="characters per subtitle line (SUBTITLE_MAX_CHARS)")
    parser.add_argument("--max-line-count", type=int, metavar="N",
                        help="lines per subtitle, 1 or 2 (SUBTITLE_MAX_LINES)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="any config key (see config/.env.pipeline); repeatable")


def _add_target_flags(parser: argparse.ArgumentParser, *, subtitles: bool) -> None:
    parser.add_argument("-t", "--to", dest="target_languages", metavar="LANGS",
                        help="languages to translate into (and subtitle), comma-separated; the "
                             "spoken one may be among them")
    parser.add_argument("--translator",
                        help="translation engine: auto, whisper (into English), llm, nllb or "
                             "indictrans2 (English/Indic)")
    if subtitles:
        parser.add_argument("--burn-in", metavar="LANG",
                            help="also draw this language's subtitles into the picture")


def _add_files_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("media", nargs="+",
                        help="audio or video files, folders of them, or .txt lists of them: "
                             "a job each")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="files run at once, each process keeping its models loaded "
                             "(default 1)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="also copy each job's outputs into this folder")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", default=argparse.SUPPRESS,
                        help="root of job folders (default ./out, or CPWHISPERX_OUT)")
    parser = argparse.ArgumentParser(
        prog="cpwhisperx", parents=[common],
        description="Offline transcripts with word times, in resumable jobs.")
    parser.add_argument("--version", action="version", version=f"cpwhisperx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = sub.add_parser("prepare", parents=[common], help="create a job from a media file")
    prepare.add_argument("media", nargs="?", help="audio or video file")
    prepare.add_argument("--media", dest="media_flag", metavar="MEDIA",
                         help="the same, as a flag")
    chosen = prepare.add_mutually_exclusive_group()
    chosen.add_argument("--workflow", default="transcribe",
                        choices=list(WORKFLOWS))
    for workflow in WORKFLOWS:
        chosen.add_argument(f"--{workflow}", dest="workflow", action="store_const",
                            const=workflow, help=f"the same as --workflow {workflow}")
    _add_settings_flags(prepare)
    _add_target_flags(prepare, subtitles=True)
    prepare.set_defaults(func=cmd_prepare)

    run = sub.add_parser("run", parents=[common], help="run or resume a job")
    run.add_argument("-j", "--job", required=True, help="job id (job-YYYYMMDD-user-NNNN)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="change a config key of the job (saved); repeatable")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", parents=[common], help="show a job's stages")
    status.add_argument("-j", "--job", required=True)
    status.add_argument("--json", action="store_true", help="print job and manifest as JSON")
    status.set_defaults(func=cmd_status)

    doctor = sub.add_parser("doctor", parents=[common],
                            help="show hardware, engines and local models")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)

    transcribe = sub.add_parser("transcribe", parents=[common], help="prepare and run in one go")
    _add_files_flags(transcribe)
    _add_settings_flags(transcribe)
    transcribe.set_defaults(func=cmd_transcribe, workflow="transcribe")

    translate = sub.add_parser("translate", parents=[common],
                               help="prepare and run in one go: transcript and its translations")
    _add_files_flags(translate)
    _add_settings_flags(translate)
    _add_target_flags(translate, subtitles=False)
    translate.set_defaults(func=cmd_transcribe, workflow="translate")

    subtitle = sub.add_parser("subtitle", parents=[common],
                              help="prepare and run in one go: transcript, translations, "
                                   "subtitles, muxed video")
    _add_files_flags(subtitle)
    _add_settings_flags(subtitle)
    _add_target_flags(subtitle, subtitles=True)
    subtitle.set_defaults(func=cmd_transcribe, workflow="subtitle")

    many = sub.add_parser("batch", parents=[common],
                          help="a job per file, resumed or skipped when run again; on a Ray "
                               "cluster with --ray")
    _add_files_flags(many)
    many.add_argument("--workflow", default="transcribe", choices=list(WORKFLOWS))
    many.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                      help="run on the Ray cluster at ADDRESS (else RAY_ADDRESS, the one "
                           "started on this machine, or a new local one); the [ray] extra")
    _add_settings_flags(many)
    _add_target_flags(many, subtitles=True)
    many.set_defaults(func=cmd_batch)

    serve = sub.add_parser("serve", parents=[common],
                           help="the web app and an OpenAI-compatible API ([web] extra)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1,
                       help="jobs run at once (default 1: one per device)")
    serve.add_argument("--max-upload-mb", type=int, default=2048)
    serve.add_argument("--allow-root", action="append", default=[], metavar="FOLDER",
                       help="a folder whose files jobs may name by path (repeatable)")
    serve.set_defaults(func=cmd_serve)
    return parser


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a service manager) stops a run as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    import logging
    import signal

    from cpwhisperx.runtime import fsutil

    args = build_parser().parse_args(argv)
    args.out = getattr(args, "out", None)
    signal.signal(signal.SIGTERM, _terminated)
    logging.raiseExceptions = False  # a log that cannot be written (a full disk) is no traceback
    try:
        return args.func(args)
    except CpwError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # what no stage caught: still one line
        print(f"error: {fsutil.os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        job = getattr(args, "job", None)
        again = f"cpwhisperx run -j {job}" if job else "`cpwhisperx run -j <job id>`"
        print(f"error: interrupted; run {again} to continue", file=sys.stderr)
        return 130
