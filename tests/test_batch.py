"""``cpwhisperx batch``: a job per file, resumed or skipped when run again, locally and on a
real Ray cluster (a head and one more node, on loopback)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EVAL, REPO, cli, clip, wait_for
from cpwhisperx import batch, evaluation
from cpwhisperx.api import Pipeline
from cpwhisperx.batch import FileOutcome
from cpwhisperx.jobs import Job
from cpwhisperx.stages import asr


@pytest.mark.fast
def test_lists_folders_and_files_expand_in_order_each_once(tmp_path: Path) -> None:
    films = tmp_path / "films"
    (films / ".hidden").mkdir(parents=True)
    for name in ("b.mkv", "a.MP4", "notes.txt", ".hidden/c.wav"):
        (films / name).write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("# tonight's films\nfilms/a.MP4\n\n  missing.wav  # fails alone\n"
                       f"{films / 'b.mkv'}\n", encoding="utf-8")
    assert batch.expand([str(listing), str(films)]) == [
        films / "a.MP4", tmp_path / "missing.wav", films / "b.mkv"]


@pytest.mark.fast
def test_the_total_counts_files_and_hours_of_the_audio_run() -> None:
    outcomes = [FileOutcome(Path("a.mp4"), "job-a", None, 5400.0, 600.0, "..."),
                FileOutcome(Path("b.mp4"), "job-b", None, 1800.0, 0.0, "...", earlier=True),
                FileOutcome(Path("c.mp4"), None, "corrupt", None, 1.0)]
    assert batch.total(outcomes, 900.0) == (
        "3 files: 1 done, 1 done earlier, 1 failed; 1.50 h of audio in 900 s "
        "(6.0x real time)")


@pytest.mark.fast
def test_earlier_jobs_are_those_with_the_same_media_workflow_and_settings(
        tmp_path: Path) -> None:
    jfk, news = clip("en_jfk"), clip("en_news_flood")
    english = Pipeline({"language": "en"}, out=tmp_path)
    first, newest = english.prepare(jfk), english.prepare(jfk)
    Pipeline({"language": "hi"}, out=tmp_path).prepare(jfk)  # other settings: not this batch's
    other = english.prepare(news)
    assert first.id < newest.id
    assert batch.earlier_jobs(english, workflow="transcribe") == {jfk: newest, news: other}
    assert batch.earlier_jobs(english, workflow="subtitle") == {}
    assert not batch.finished(newest)


def _outputs(out: Path) -> dict[str, str]:
    """Every job's transcript under ``out``, by media file name."""
    found = {}
    for path in out.glob("*/*/job-*/outputs/*.json"):
        media = Path(json.loads((path.parents[1] / "job.json").read_text())["media"])
        found[media.name] = path.read_text(encoding="utf-8")
    return found


def test_batch_again_skips_finished_jobs_and_resumes_the_others(tmp_path: Path) -> None:
    listing = tmp_path / "tonight.txt"
    listing.write_text(f"{clip('en_jfk')}\n{clip('bad_truncated_mp4')}\n{clip('en_news_flood')}\n")
    out = tmp_path / "out"
    first = cli(out, "batch", str(listing), "-s", "en")
    assert first.returncode == 1, first.stderr
    assert f"error: 1 of 3 files failed: {clip('bad_truncated_mp4')}" in first.stderr
    assert "3 files: 2 done, 0 done earlier, 1 failed; 0.01 h of audio in" in first.stdout
    made = _outputs(out)
    assert sorted(made) == ["en_jfk.flac", "en_news_flood.flac"]

    # A new file joins the list; one finished job loses an output, as a user deleting it.
    listing.write_text(listing.read_text() + f"{clip('en_lecture_plants')}\n")
    news = next(out.glob("*/*/job-*/outputs/en_news_flood.srt"))
    news.unlink()
    again = cli(out, "batch", str(listing), "-s", "en")
    assert again.returncode == 1, again.stderr
    assert "4 files: 2 done, 1 done earlier, 1 failed" in again.stdout
    assert news.is_file()  # its job was resumed, not a new one made
    assert len(list(out.glob("*/*/job-*"))) == 4  # the bad file's job is tried again too
    assert {k: v for k, v in _outputs(out).items() if k in made} == made


@pytest.fixture
def ray_cluster() -> Iterator[evaluation.RayCluster]:
    """`ray start --head` and one more node, each with one CPU, on loopback."""
    pytest.importorskip("ray", reason="the [ray] extra")
    cluster = evaluation.RayCluster(nodes=2, cpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_ray_batch_matches_local_transcribe_and_skips_finished_jobs(
        ray_cluster: evaluation.RayCluster, tmp_path: Path) -> None:
    english = [i.path for i in evaluation.items() if i.id.startswith("en_")]
    media = [EVAL / "media" / "media_film_mp4.mp4", EVAL / "media" / "media_en_hi_mkv.mkv"]
    files = [*english, *media, clip("bad_text_as_mp4")]
    local = cli(tmp_path / "local", "transcribe", *map(str, files), "-s", "en", timeout=900)
    assert local.returncode == 1, local.stderr

    out = tmp_path / "shared"
    run = cli(out, "batch", "--ray", ray_cluster.address, *map(str, files), "-s", "en",
              "--output-dir", str(tmp_path / "copies"), timeout=900)
    assert run.returncode == 1, run.stderr
    assert f"error: 1 of {len(files)} files failed: {clip('bad_text_as_mp4')}" in run.stderr
    assert "not a media file" in run.stderr
    for path in files[:-1]:  # one line each as it ends, and a total
        assert re.search(rf"\] {re.escape(str(path))}: \d+ segments", run.stderr), run.stderr
    assert re.search(rf"{len(files)} files: {len(files) - 1} done, 0 done earlier, 1 failed; "
                     r"0\.\d\d h of audio in \d+ s \(\d+\.\dx real time\)", run.stdout)
    transcripts = _outputs(out)
    assert transcripts == _outputs(tmp_path / "local")
    assert sorted(transcripts) == sorted(p.name for p in files[:-1])
    assert sorted(p.name for p in (tmp_path / "copies").glob("*.json")) == sorted(
        f"{p.stem}.json" for p in files[:-1])
    # A decoder per node loaded the model once, for all the files it decoded.
    logs = "".join(p.read_text() for p in out.glob("*/*/*/logs/asr.log"))
    loads = re.findall(r"worker\[(\d+)\] cpwhisperx.stages.asr: loading", logs)
    assert 1 <= len(loads) <= 2 and len(set(loads)) == len(loads), loads
    # Every job ran its stages in three parts: before ASR, ASR and alignment, the rest.
    [jfk] = [m for m in out.glob("*/*/job-*/manifest.json")
             if json.loads((m.parent / "job.json").read_text())["media"] == str(files[0])]
    runs = json.loads(jfk.read_text())["runs"]
    assert [list(r["stages"]) for r in runs] == [
        ["demux", "separate", "vad"], ["asr", "align"], ["clean", "diarize", "export"]]
    assert [r["status"] for r in runs] == ["partial", "partial", "done"]

    # The dashboard lists each file's steps by name.
    from ray.util.state import list_tasks

    def named() -> bool:
        tasks = list_tasks(address=ray_cluster.dashboard, limit=10000,
                           raise_on_missing_output=False)
        steps = {"prepare en_jfk.flac", "decode en_jfk.flac", "finish en_jfk.flac"}
        return steps <= {task.name for task in tasks}
    wait_for(named, timeout=60)

    again = cli(out, "batch", "--ray", ray_cluster.address, *map(str, files), "-s", "en")
    assert f"{len(files) - 1} done earlier, 1 failed" in again.stdout, again.stderr
    assert _outputs(out) == transcripts


def test_on_a_cluster_with_gpus_only_gpu_nodes_decode(tmp_path: Path) -> None:
    """The second node declares a GPU (Ray schedules by what a node declares; with no CUDA
    device here, Whisper still runs on the CPU): every file is decoded there, none on the
    head, which has no GPU."""
    pytest.importorskip("ray", reason="the [ray] extra")
    from ray.util.state import list_nodes, list_tasks

    cluster = evaluation.RayCluster(nodes=2, cpus=1, gpus=(0, 1))
    try:
        files = [clip("en_jfk"), clip("en_news_flood"), clip("en_lecture_plants")]
        run = cli(tmp_path, "batch", "--ray", cluster.address, *map(str, files), "-s", "en")
        assert run.returncode == 0, run.stderr
        [gpu_node] = [n.node_id for n in list_nodes(address=cluster.dashboard, detail=True)
                      if n.resources_total.get("GPU")]

        def steps() -> dict[str, set[str]]:
            where: dict[str, set[str]] = {}
            for task in list_tasks(address=cluster.dashboard, limit=10000,
                                   raise_on_missing_output=False):
                if task.name.split()[0] in ("prepare", "decode", "finish") and task.node_id:
                    where.setdefault(task.name.split()[0], set()).add(task.node_id)
            return where
        wait_for(lambda: sum(len(steps().get(s, ())) > 0 for s in ("decode", "finish")) == 2,
                 timeout=60)
        assert steps()["decode"] == {gpu_node}
    finally:
        cluster.stop()


def test_a_node_lost_during_asr_costs_no_file_and_no_finished_work(
        ray_cluster: evaluation.RayCluster, tmp_path: Path) -> None:
    """The second node's raylet is killed while its decoder transcribes a 4-minute file: every
    job still finishes, no stage done before is done again, and the lost ASR resumes from its
    journal. Three long files: the second node's decoder surely gets one."""
    long, _, _ = evaluation.long_form(3, tmp_path)
    files = [long, *(shutil.copyfile(long, tmp_path / f"copy{n}.flac") for n in (1, 2)),
             clip("en_jfk")]
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "cpwhisperx", "--out", str(out), "batch",
                            "--ray", ray_cluster.address, *map(str, files), "-s", "en"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    raylet = ray_cluster.raylet(1)

    def decoding_there() -> Path | None:
        """The job whose ASR the second node's decoder has journaled steps of, if any."""
        for worker in evaluation.children(raylet):
            for model in evaluation.children(worker):
                try:
                    log = Path(os.readlink(f"/proc/{model}/fd/2"))  # the task's log file
                except OSError:
                    continue
                if log.name != "asr.log":
                    continue
                job = Job(id=log.parents[1].name, root=log.parents[1])
                if len(_lines(asr.journal_path(job))) >= 3:
                    return job.root
        return None

    def done_stages() -> dict[Path, dict[str, int]]:
        """Each job's finished stages, and the attempts each took."""
        found = {}
        for manifest in out.glob("*/*/job-*/manifest.json"):
            stages = json.loads(manifest.read_text())["stages"]
            found[manifest.parent] = {name: entry["attempts"] for name, entry in stages.items()
                                      if entry["status"] == "done"}
        return found

    wait_for(lambda: decoding_there() is not None, timeout=300)
    lost = decoding_there()
    before = done_stages()
    os.kill(raylet, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    assert "4 files: 4 done, 0 done earlier, 0 failed" in stdout
    assert "its decoder was lost" in stderr
    after = done_stages()
    for job, stages in before.items():  # nothing finished before the loss was redone
        assert {name: after[job][name] for name in stages} == stages
    assert lost is not None and "asr" not in before[lost]
    assert after[lost]["asr"] == 2
    kept = re.findall(r"(\d+) chunks and (\d+) decoding steps kept from an earlier run",
                      (lost / "logs" / "asr.log").read_text())
    assert kept and kept[-1] != ("0", "0"), kept


def test_nodes_that_do_not_see_the_job_root_run_whole_jobs_and_send_outputs_back(
        ray_cluster: evaluation.RayCluster, tmp_path: Path) -> None:
    """The driver's ``--out`` is a tmpfs in a mount namespace of its own, which no node sees:
    each file's job runs whole on a node, under the node's own ``--out``, and its outputs come
    back to the driver's ``--output-dir``."""
    if subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                      capture_output=True, check=False).returncode:
        pytest.skip("no mount namespaces here (unshare needs CAP_SYS_ADMIN)")
    out, back = tmp_path / "out", tmp_path / "back"
    out.mkdir()
    files = [clip("en_jfk"), clip("en_news_flood")]
    command = [sys.executable, "-m", "cpwhisperx", "--out", str(out), "batch", "--ray",
               ray_cluster.address, *map(str, files), "-s", "en", "--output-dir", str(back)]

    def driver() -> subprocess.CompletedProcess[str]:
        script = 'mount -t tmpfs none "$1" && shift && exec "$@"'
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                               "sh", str(out), *command], capture_output=True, text=True,
                              cwd=REPO, timeout=600, check=False)

    first = driver()
    assert first.returncode == 0, first.stderr
    assert f"some Ray node does not see {out}" in first.stderr
    assert "2 files: 2 done, 0 done earlier, 0 failed" in first.stdout
    assert sorted(p.name for p in back.glob("*.json")) == ["en_jfk.json", "en_news_flood.json"]
    assert len(list(out.glob("*/*/job-*/outputs/*.json"))) == 2  # the nodes' own job root
    again = driver()
    assert "2 files: 0 done, 2 done earlier, 0 failed" in again.stdout, again.stderr


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def test_ray_batch_without_the_cluster_says_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the [ray] extra")
    address = f"127.0.0.1:{evaluation.free_port()}"  # nothing listens there
    proc = cli(tmp_path, "batch", "--ray", address, str(clip("en_jfk")), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot start or reach a Ray cluster at 127.0.0.1:")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr

