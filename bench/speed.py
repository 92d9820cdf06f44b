"""Speed against peers, on long-form English built from the ../shared/eval clips.

    .venv/bin/python bench/speed.py [--minutes 10] [--model tiny.en] [--runs 3]
        [--device cpu|cuda] [--compute-type int8] [--set BATCH_SIZE=8 ...] [--whisperx PATH]

Runs, alternating A B C ... A B C ...: `cpwhisperx transcribe` as users run it (demux → VAD →
ASR → alignment, pocketsphinx for English → clean → export), the same with Whisper's own word
times (``--align whisper``), faster-whisper's sequential ``transcribe`` and its
``BatchedInferencePipeline`` (``batch_size`` 8, 16 on CUDA), both with ``vad_filter=True,
word_timestamps=True`` and their other defaults (5 beams), and the WhisperX CLI (``--no_align``,
pyannote VAD) when it is installed (``--whisperx``: its executable, by default ``whisperx`` on
the PATH; bench/RESULTS.md says how to install it offline on CPU). Each run is a fresh process;
the table gives its wall time, real-time factor, peak RSS of its largest process, WER against
the concatenated references and the words it wrote against faster-whisper's sequential decoding
of the same round (what batching drops), then the medians and the ratios. Numbers, never
pass/fail.

On a CUDA machine, unattended: ``bench/speed.py --device cuda --compute-type float16 --model
large-v3-turbo`` (or any model at hand: a size, a repo id in the Hugging Face cache, a folder).
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

# argv: model path, media, device, compute type, batch size (0: sequential).
_FASTER_WHISPER = """
import sys
from faster_whisper import BatchedInferencePipeline, WhisperModel
path, media, device, compute, batch = sys.argv[1:]
model = WhisperModel(path, device=device, compute_type=compute, local_files_only=True)
if int(batch):
    segments, _ = BatchedInferencePipeline(model).transcribe(
        media, language="en", vad_filter=True, word_timestamps=True, batch_size=int(batch))
else:
    segments, _ = model.transcribe(media, language="en", vad_filter=True, word_timestamps=True)
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
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compute-type", default=None,
                        help="default: int8 on CPU, float16 on CUDA")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a cpwhisperx setting (repeatable)")
    parser.add_argument("--whisperx", default=shutil.which("whisperx"),
                        help="the WhisperX CLI (default: whisperx on the PATH)")
    args = parser.parse_args()
    compute = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    batch = "16" if args.device == "cuda" else "8"
    model = models.resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        media, reference, duration = evaluation.long_form(args.minutes, folder)
        out = folder / "out"

        def ours(*extra: str) -> tuple[float, float, str, str]:
            shutil.rmtree(out, ignore_errors=True)
            wall, rss, _ = run([sys.executable, "-m", "cpwhisperx", "--out", str(out),
                                "transcribe", str(media), "-s", "en", "--model", args.model,
                                "--device", args.device, "--compute-type", compute, *extra,
                                *(arg for kv in args.set for arg in ("--set", kv))])
            job = next(out.glob("*/*/job-*"))
            stages = json.loads((job / "manifest.json").read_text())["stages"]
            per_stage = " ".join(f"{k} {v['seconds']:.1f}" for k, v in stages.items()
                                 if v.get("seconds") is not None)
            text = (job / "outputs" / f"{media.stem}.txt").read_text()
            return wall, rss, text, per_stage

        def faster_whisper(batch_size: str) -> tuple[float, float, str, str]:
            wall, rss, text = run([sys.executable, "-c", _FASTER_WHISPER, str(model.path),
                                   str(media), args.device, compute, batch_size])
            return wall, rss, text, ""

        def whisperx() -> tuple[float, float, str, str]:
            wall, rss, _ = run([args.whisperx, str(media), "--model", str(model.path),
                                "--device", args.device, "--compute_type", compute,
                                "--language", "en", "--no_align",
                                "--output_dir", str(folder / "wx"), "--output_format", "txt"],
                               env={"HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "0",
                                    "PYTHONWARNINGS": "ignore"})
            text = (folder / "wx" / f"{media.stem}.txt").read_text()
            return wall, rss, text, ""

        sequential = "faster-whisper"
        systems = {"cpwhisperx": ours, "cpwhisperx --align whisper": lambda: ours(
                       "--align", "whisper"),
                   sequential: lambda: faster_whisper("0"),
                   f"faster-whisper batched {batch}": lambda: faster_whisper(batch)}
        if args.whisperx:
            systems["whisperx --no_align"] = whisperx
        else:
            print("whisperx CLI not installed: skipped")
        print(f"{media.name}: {duration / 60:.1f} min, model {args.model} {compute} on "
              f"{args.device}, {os.cpu_count()} CPUs")
        walls: dict[str, list[float]] = {name: [] for name in systems}
        kept: dict[str, list[float]] = {name: [] for name in systems}
        for round_ in range(args.runs):
            results = {name: measure() for name, measure in systems.items()}
            words = len(evaluation.normalize(results[sequential][2], "en").split())
            for name, (wall, rss, text, detail) in results.items():
                walls[name].append(wall)
                kept[name].append(len(evaluation.normalize(text, "en").split()) / words)
                wer = evaluation.wer(reference, text, "en")
                print(f"run {round_ + 1} {name:<26} {wall:7.1f} s  RTF {wall / duration:.3f}  "
                      f"peak RSS {rss:6.0f} MB  WER {wer:5.1%}  words {kept[name][-1]:6.1%}  "
                      f"{detail}", flush=True)
        medians = {name: statistics.median(w) for name, w in walls.items()}
        for name, median in medians.items():
            print(f"median {name:<26} {median:7.1f} s  ({duration / median:.1f}x real time)  "
                  f"words {statistics.median(kept[name]):6.1%} of {sequential}'s")
        for name, median in medians.items():
            if name != "cpwhisperx":
                print(f"cpwhisperx is {median / medians['cpwhisperx']:.2f}x as fast as {name}")


if __name__ == "__main__":
    main()
