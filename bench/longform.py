"""Long-form: a film-length file in bounded memory, killed half way and resumed.

    .venv/bin/python bench/longform.py [--minutes 60] [--model base] [--kill-at 0.5]
                                       [--batch-size 8]

Builds the file from the ../shared/eval English clips, prepares a job (a chunk is
``--batch-size`` lanes decoded together, 30 s of each a step), runs it and kills it (SIGKILL,
no warning) once ``--kill-at`` of the lanes' speech is decoded in journaled steps, then runs it
again to the end (``--kill-at 0`` runs it once, uninterrupted). Prints for each run its wall
time and the peak memory of the whole process tree (the CLI plus its workers, sampled every
50 ms), then the chunks and decoding steps the second run took up from the first, and the WER.
Numbers, never pass/fail.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpwhisperx import config, evaluation, hardware
from cpwhisperx.engines.asr import lanes


def _journaled(root: Path, lane_s: list[float], batch: int) -> tuple[float, int, int, int]:
    """(share of the lanes' speech decoded in journaled steps, steps, chunks finished, chunks)
    of the job's ASR stage so far; ``lane_s``, the lanes' speech, is filled in once VAD is
    done."""
    speech, journal = root / "03_vad" / "speech.json", root / "04_asr" / "chunks.jsonl"
    if not lane_s:
        if not speech.is_file():
            return 0.0, 0, 0, 0
        regions = [(r["start"], r["end"]) for r in json.loads(speech.read_text())["regions"]]
        decoders = hardware.resolve(config.Settings(batch_size=batch),
                                    hardware.detect()).decoders
        lane_s += [sum(e - s for s, e in lane.regions)
                   for lane in lanes(regions, batch_size=batch, decoders=decoders)]
    reached, steps, done = [0.0] * len(lane_s), 0, 0
    for line in journal.read_text().splitlines()[1:] if journal.is_file() else []:
        try:
            entry = json.loads(line)
        except ValueError:  # being written
            break
        done += "segments" in entry
        steps += "step" in entry
        for key, window in entry.get("step", {}).items():
            lane = entry["chunk"] * batch + int(key)
            reached[lane] = min(window["seek"] / 100, lane_s[lane])  # 100 mel frames a second
    return sum(reached) / sum(lane_s), steps, done, math.ceil(len(lane_s) / batch)


def run(cmd: list[str], *, stop: float, root: Path, lane_s: list[float], batch: int
        ) -> tuple[float, float, bool]:
    """Wall seconds and peak tree RSS (MB); killed once ``stop`` of the speech is journaled."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, killed = 0.0, False
    while proc.poll() is None:
        peak = max(peak, evaluation.tree_rss(proc.pid) / 2**20)
        if stop and _journaled(root, lane_s, batch)[0] >= stop:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    _, stderr = proc.communicate()
    if proc.returncode != 0 and not killed:
        raise SystemExit(f"run failed: {stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - started, peak, killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--model", default="base")
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=8, help="lanes per chunk")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        media, reference, duration = evaluation.long_form(args.minutes, folder)
        base = [sys.executable, "-m", "cpwhisperx", "--out", str(folder / "out")]
        job = subprocess.run([*base, "prepare", "--media", str(media), "-s", "en", "--set",
                              f"WHISPER_MODEL={args.model}", "--set",
                              f"BATCH_SIZE={args.batch_size}"], capture_output=True, text=True,
                             check=True).stdout.strip()
        root = next((folder / "out").glob(f"*/*/{job}"))
        print(f"{media.name}: {duration / 60:.1f} min, model {args.model}, {os.cpu_count()} CPUs")
        total_wall, lane_s = 0.0, []
        for attempt in (1, 2):
            stop = args.kill_at if attempt == 1 else 0.0
            wall, peak, killed = run([*base, "run", "-j", job], stop=stop, root=root,
                                     lane_s=lane_s, batch=args.batch_size)
            total_wall += wall
            share, steps, done, total = _journaled(root, lane_s, args.batch_size)
            print(f"run {attempt}: {wall:7.1f} s  peak RSS {peak:6.0f} MB (process tree)  "
                  f"{'killed' if killed else 'finished'} with {share:.0%} of the speech in "
                  f"{steps} journaled steps, {done}/{total} chunks", flush=True)
            if not killed:
                break
        meta = json.loads((root / "04_asr" / "transcript.json").read_text())["meta"]
        stages = json.loads((root / "manifest.json").read_text())["stages"]
        text = (root / "outputs" / f"{media.stem}.txt").read_text()
        print(f"ASR chunks: {meta['chunks']}, kept from the killed run {meta['resumed_chunks']} "
              f"and {meta['resumed_steps']} decoding steps of the next")
        print("stage seconds, as last run: " + " ".join(f"{k} {v['seconds']:.1f} s" for k, v in
                                               stages.items() if v.get("seconds") is not None))
        print(f"total wall {total_wall:.1f} s (RTF {total_wall / duration:.3f}), "
              f"WER {evaluation.wer(reference, text, 'en'):.1%}")


if __name__ == "__main__":
    main()
