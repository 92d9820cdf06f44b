"""Many files: ``cpwhisperx batch`` locally against ``batch --ray`` on a Ray cluster of this
machine (a head and more nodes on loopback, one CPU each).

    .venv/bin/python bench/batch.py [--files 12] [--model tiny.en] [--nodes 2] [--jobs 1]

The files are the English eval clips and the two videos, copied in turn under new names up
to ``--files``. Each run has a job root of its own. It prints, per run: wall time, audio hours,
times real time, and the peak resident memory of each process tree (the local command; on the
cluster, the driver and each node: its raylet and every worker process under it, models
included), sampled every 0.2 s. Numbers, never pass/fail.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cpwhisperx import evaluation


def files(count: int, folder: Path) -> list[Path]:
    root = evaluation.eval_root()
    sources = [i.path for i in evaluation.items() if i.id.startswith("en_")]
    sources += [root / "media" / "media_film_mp4.mp4", root / "media" / "media_en_hi_mkv.mkv"]
    made = []
    for index in range(count):
        source = sources[index % len(sources)]
        made.append(Path(shutil.copyfile(source, folder / f"{index + 1:02d}_{source.name}")))
    return made


class Peaks:
    """The peak of each named process tree's resident memory, sampled in a thread."""

    def __init__(self, trees: Callable[[], dict[str, list[int]]]) -> None:
        self.trees, self.peak = trees, {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            for name, pids in self.trees().items():
                rss = sum(evaluation.tree_rss(pid) for pid in pids)
                self.peak[name] = max(self.peak.get(name, 0), rss)

    def stop(self) -> dict[str, int]:
        self.done.set()
        self.thread.join()
        return self.peak


def run(name: str, command: list[str], trees: Callable[[subprocess.Popen], dict[str, list[int]]],
        *, audio: float) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = Peaks(lambda: trees(proc))
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    peak = peaks.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{stderr[-2000:]}")
    total = next(line for line in stdout.splitlines() if " files: " in line)
    memory = ", ".join(f"{tree} {rss / 2**20:.0f} MB" for tree, rss in peak.items())
    print(f"{name:<22} {wall:6.1f} s  {audio / 3600:.3f} h of audio  "
          f"{audio / wall:5.1f}x real time  peak RSS: {memory}")
    print(f"{'':<22} {total}", flush=True)


def _tops(cluster: evaluation.RayCluster) -> list[int]:
    """The cluster's processes that no other of its processes started: the raylets, the GCS,
    the dashboard and the like."""
    pids = evaluation.processes(str(cluster.temp))
    parents = {}
    for pid in pids:
        try:  # the parent's pid is the field after the (parenthesised) name
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return [pid for pid, parent in parents.items() if parent not in parents]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--nodes", type=int, default=2, help="Ray nodes, one CPU each")
    parser.add_argument("--jobs", type=int, default=1, help="local processes")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temp:
        folder = Path(temp)
        media = files(args.files, folder)
        audio = sum(float(subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
             str(path)], capture_output=True, text=True, check=True).stdout) for path in media)
        print(f"{len(media)} files, {audio / 60:.1f} min of audio, model {args.model}, "
              f"{os.cpu_count()} CPUs", flush=True)
        base = [sys.executable, "-m", "cpwhisperx"]
        settings = ["-s", "en", "--model", args.model, *map(str, media)]
        run(f"local --jobs {args.jobs}",
            [*base, "--out", str(folder / "local"), "batch", "--jobs", str(args.jobs),
             *settings], lambda proc: {"command": [proc.pid]}, audio=audio)
        cluster = evaluation.RayCluster(nodes=args.nodes, cpus=1)
        try:
            raylets = [cluster.raylet(node) for node in range(args.nodes)]
            run(f"ray, {args.nodes} nodes",
                [*base, "--out", str(folder / "ray"), "batch", "--ray", cluster.address,
                 *settings],
                lambda proc: {"driver": [proc.pid],
                              **{f"node {n}": [pid] for n, pid in enumerate(raylets)},
                              "head services": [pid for pid in _tops(cluster)
                                                if pid not in raylets]},
                audio=audio)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
