"""Diarization benchmark: who speaks when, on conversations with exact speaker turns.

    .venv/bin/python bench/diarization.py [--model auto] [--seed 0] [--num-speakers]
                                          [--set KEY=VALUE ...] [--keep DIR]
    .venv/bin/python bench/diarization.py --minutes 10 [--runs 2]

Builds three English conversations from speech that ships: three speakers (Piper joe, the real
JFK recording, espeak-ng f3; 18 turns) and two (joe and espeak-ng m1, the closer pair; 12
turns), 0.2-0.8 s between turns (``evaluation.conversation``); and two espeak-ng voices (m1, f3)
taking over from each other in the middle of sentences with no pause (``evaluation.relay``, 12
turns). Each is transcribed twice as users run it, in fresh output folders: ``--set
DIARIZATION=none`` (the baseline's wall time) and ``--set DIARIZATION=auto`` (with
``--num-speakers``: also ``NUM_SPEAKERS`` = the true count), whose ``outputs/<stem>.rttm`` is
scored against the reference turns. One row per conversation: length, speakers (true/found), DER
with a ±0.25 s collar (NIST md-eval ``-c 0.25``, overlap scored), WER of the diarized run's
transcript, wall seconds with and without diarization and the diarize stage's own seconds. Needs
espeak-ng (``make speech-deps``) and the ``[dev]`` extra (pyannote.metrics). Numbers, never
pass/fail.

``--minutes N``: what diarization costs instead, on the eval set's English speech joined to
about N minutes (``evaluation.long_form``): ``DIARIZATION=none`` and ``auto`` alternating,
``--runs`` times each; median wall of each, the diarize stage's median seconds and its share
of the run without it (the ASR stage alone varies by seconds from run to run on 2 cores, so the
stage's own time says more than the difference of two walls).
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

from cpwhisperx import evaluation

CONVERSATIONS: dict[str, Callable[[Path, int], tuple[Path, list[evaluation.Turn]]]] = {
    "3 speakers": lambda folder, seed: evaluation.conversation(
        folder, voices=("joe", "jfk", "espeak-f3"), turns=18, seed=seed),
    "2 speakers": lambda folder, seed: evaluation.conversation(
        folder, voices=("joe", "espeak-m1"), turns=12, seed=seed),
    "2 speakers, mid-sentence": lambda folder, seed: evaluation.relay(folder, seed=seed),
}


def transcribe(media: Path, out: Path, *args: str) -> tuple[Path, float]:
    """``cpwhisperx transcribe`` in a fresh output folder (no job to resume); the job's folder
    and the wall time of the whole process."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "cpwhisperx", "--out", str(out), "transcribe", str(media),
           "-s", "en", *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"{media.name}: cpwhisperx {' '.join(args)} failed: {last}")
    outputs = next(out.glob(f"*/*/*/outputs/{media.stem}.json"), None)
    if outputs is None:
        raise SystemExit(f"{media.name}: no transcript under {out}/*/*/*/outputs/")
    return outputs.parent.parent, seconds


def stage_seconds(job: Path, stage: str) -> float | None:
    stages = json.loads((job / "manifest.json").read_text(encoding="utf-8")).get("stages", {})
    return (stages.get(stage) or {}).get("seconds")


def cost(minutes: float, runs: int, settings: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        media, _, length = evaluation.long_form(minutes, Path(tmp))
        walls: dict[str, list[float]] = {"none": [], "auto": []}
        stage: list[float] = []
        for _ in range(runs):
            for mode in walls:
                job, seconds = transcribe(media, Path(tmp) / mode, *settings,
                                          "--set", f"DIARIZATION={mode}")
                walls[mode].append(seconds)
                if mode == "auto":
                    stage.append(stage_seconds(job, "diarize") or 0.0)
        off, on = statistics.median(walls["none"]), statistics.median(walls["auto"])
        spent = statistics.median(stage)
        print(f"| audio | runs | wall without | wall with | diarize stage | stage / wall without |"
              f"\n|---|---|---|---|---|---|\n| {length / 60:.1f} min | {runs} | {off:.1f} s "
              f"| {on:.1f} s | {spent:.2f} s | {spent / off:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="the conversations' seed")
    parser.add_argument("--num-speakers", action="store_true",
                        help="tell the diarizer the true count (NUM_SPEAKERS)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline setting for every run (repeatable)")
    parser.add_argument("--keep", type=Path, help="build and transcribe here, and keep it all")
    parser.add_argument("--minutes", type=float,
                        help="measure the cost on this much long-form speech instead")
    parser.add_argument("--runs", type=int, default=2, help="with --minutes: runs of each")
    args = parser.parse_args()
    settings = ["--model", args.model, *(arg for kv in args.set for arg in ("--set", kv))]
    if args.minutes:
        cost(args.minutes, args.runs, settings)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print("| conversation | length | speakers (true/found) | DER (±0.25 s) | WER "
              "| wall with diarization | wall without | diarize stage |\n|" + "---|" * 8)
        for label, build in CONVERSATIONS.items():
            media, reference = build(folder, args.seed)
            voices = list(dict.fromkeys(t.speaker for t in reference))
            with wave.open(str(media)) as audio:
                length = audio.getnframes() / audio.getframerate()
            _, off = transcribe(media, folder / f"{media.stem}.none", *settings,
                                    "--set", "DIARIZATION=none")
            count = ["--set", f"NUM_SPEAKERS={len(voices)}"] if args.num_speakers else []
            job, on = transcribe(media, folder / f"{media.stem}.auto", *settings,
                                    "--set", "DIARIZATION=auto", *count)
            rttm = job / "outputs" / f"{media.stem}.rttm"
            if not rttm.is_file():
                raise SystemExit(f"{media.name}: DIARIZATION=auto ran but wrote no {rttm.name} "
                                 f"in {rttm.parent}: is the diarize stage in this build, and "
                                 "does export write RTTM?")
            hypothesis = evaluation.read_rttm(rttm)
            transcript = json.loads((job / "outputs" / f"{media.stem}.json").read_text())
            text = media.with_suffix(".txt").read_text(encoding="utf-8")
            diarize = stage_seconds(job, "diarize")
            print(f"| {label}: {', '.join(voices)} | {length:.1f} s "
                  f"| {len(voices)}/{evaluation.speakers_found(hypothesis)} "
                  f"| {evaluation.der(reference, hypothesis):.1%} "
                  f"| {evaluation.wer(text, transcript['text'], 'en'):.1%} "
                  f"| {on:.1f} s | {off:.1f} s "
                  f"| {'-' if diarize is None else f'{diarize:.1f} s'} |", flush=True)


if __name__ == "__main__":
    main()
