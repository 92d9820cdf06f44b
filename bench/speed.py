"""Speed against peers, on long-form English built from the ../shared/eval clips.

    .venv/bin/python bench/speed.py [--minutes 10] [--model tiny.en] [--runs 2]
                                    [--set BATCH_SIZE=8 ...] [--whisperx PATH]

Runs, alternating A B C A B C ...: `cpwhisperx transcribe` (demux → VAD → ASR with Whisper's
word times → clean → export), plain faster-whisper sequential ``transcribe(vad_filter=True,
word_timestamps=True)`` with the same model and compute type, and the WhisperX CLI
(``--no_align``, pyannote VAD) when it is installed (``--whisperx``: its executable, by default
``whisperx`` on the PATH; bench/RESULTS.md says how to install it offline on CPU). Each run is
a fresh process; the table gives its wall time, real-time factor, peak RSS of its largest
process and WER against the concatenated references, then the medians and the ratios.
Numbers, never pass/fail.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpwhisperx import evaluation, models

# Peak RSS of the largest process the command starts (ru_maxrss is in KiB on Linux).
_MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")

_FASTER_WHISPER = """
import sys
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", compute_type="int8", local_files_only=True)
segments, _ = model.transcribe(sys.argv[2], language="en", vad_filter=True, word_timestamps=True)
print(" ".join(s.text.strip() for s in segments))
"""


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, stdout."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.strip().splitlines()[-2:]}")
    rss_kib = int(proc.stderr.strip().splitlines()[-1])
    return wall, rss_kib / 1024, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a cpwhisperx setting (repeatable)")
    parser.add_argument("--whisperx", default=shutil.which("whisperx"),
                        help="the WhisperX CLI (default: whisperx on the PATH)")
    args = parser.parse_args()
    model = models.resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        media, reference, duration = evaluation.long_form(args.minutes, folder)
        out = folder / "out"

        def ours() -> tuple[float, float, str, str]:
            shutil.rmtree(out, ignore_errors=True)
            wall, rss, _ = run([sys.executable, "-m", "cpwhisperx", "--out", str(out),
                                "transcribe", str(media), "-s", "en", "--model", args.model,
                                "--align", "whisper",
                                *(arg for kv in args.set for arg in ("--set", kv))])
            job = next(out.glob("*/*/job-*"))
            stages = json.loads((job / "manifest.json").read_text())["stages"]
            per_stage = " ".join(f"{k} {v['seconds']:.1f}" for k, v in stages.items()
                                 if v.get("seconds") is not None)
            text = (job / "outputs" / f"{media.stem}.txt").read_text()
            return wall, rss, text, per_stage

        def faster_whisper() -> tuple[float, float, str, str]:
            wall, rss, text = run([sys.executable, "-c", _FASTER_WHISPER, str(model.path),
                                   str(media)])
            return wall, rss, text, ""

        def whisperx() -> tuple[float, float, str, str]:
            wall, rss, _ = run([args.whisperx, str(media), "--model", str(model.path),
                                "--compute_type", "int8", "--language", "en", "--no_align",
                                "--output_dir", str(folder / "wx"), "--output_format", "txt"],
                               env={"HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "0",
                                    "PYTHONWARNINGS": "ignore"})
            text = (folder / "wx" / f"{media.stem}.txt").read_text()
            return wall, rss, text, ""

        systems = {"cpwhisperx": ours, "faster-whisper": faster_whisper}
        if args.whisperx:
            systems["whisperx --no_align"] = whisperx
        else:
            print("whisperx CLI not installed: skipped")
        print(f"{media.name}: {duration / 60:.1f} min, model {args.model} int8, "
              f"{os.cpu_count()} CPUs")
        walls: dict[str, list[float]] = {name: [] for name in systems}
        for round_ in range(args.runs):
            for name, measure in systems.items():
                wall, rss, text, detail = measure()
                walls[name].append(wall)
                wer = evaluation.wer(reference, text, "en")
                print(f"run {round_ + 1} {name:<20} {wall:7.1f} s  RTF {wall / duration:.3f}  "
                      f"peak RSS {rss:6.0f} MB  WER {wer:5.1%}  {detail}", flush=True)
        medians = {name: statistics.median(w) for name, w in walls.items()}
        for name, median in medians.items():
            print(f"median {name:<20} {median:7.1f} s  ({duration / median:.1f}x real time)")
        for name, median in medians.items():
            if name != "cpwhisperx":
                print(f"cpwhisperx is {median / medians['cpwhisperx']:.2f}x as fast as {name}")


if __name__ == "__main__":
    main()
