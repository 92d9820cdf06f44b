import concurrent.futures
import fcntl
import multiprocessing as mp
import threading
from pathlib import Path
from typing import IO

import pytest

from conftest import clip
from cpwhisperx import jobs
from cpwhisperx.config import Settings
from cpwhisperx.errors import ConfigError, CpwError

pytestmark = pytest.mark.fast


def _prepare_at_once(out: str, barrier, queue) -> None:
    barrier.wait()  # every process calls create() at the same instant
    job = jobs.create(Path(out), media=clip("en_jfk"), workflow="transcribe",
                      settings=Settings())
    queue.put(job.id)


def test_concurrent_prepares_get_different_ids(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    n = 8
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_prepare_at_once, args=(str(tmp_path), barrier, queue))
             for _ in range(n)]
    for p in procs:
        p.start()
    ids = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(ids)) == n
    assert all(jobs.JOB_ID.match(i) for i in ids)
    assert sorted(int(i.rsplit("-", 1)[1]) for i in ids) == list(range(1, n + 1))


def test_concurrent_prepares_in_threads_of_one_process(tmp_path: Path) -> None:
    """As the server's request threads do: no thread trips over another's write test."""
    n = 16
    barrier = threading.Barrier(n)

    def prepare(_: int) -> str:
        barrier.wait()
        return jobs.create(tmp_path, media=clip("en_jfk"), workflow="transcribe",
                           settings=Settings()).id

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(prepare, range(n)))
    assert len(set(ids)) == n


def test_job_layout(tmp_path: Path) -> None:
    job = jobs.create(tmp_path, media=clip("en_jfk"), workflow="transcribe",
                      settings=Settings(source_language="en"))
    assert job.root.parent.parent.parent == tmp_path
    for name in ("job.json", ".env.pipeline", "manifest.json", "logs", "outputs"):
        assert (job.root / name).exists(), name
    manifest = jobs.Manifest.load(job)
    assert list(manifest.data.stages) == ["demux", "separate", "vad", "asr", "align", "clean",
                                          "diarize", "export"]
    assert {e.status for e in manifest.data.stages.values()} == {"pending"}
    assert job.info()["source_language"] == "en"
    assert jobs.find(tmp_path, job.id) == job


@pytest.mark.parametrize("bad", ["../x", "job-2026-x-1", "job-20261124-../../etc-0001", ""])
def test_find_rejects_what_is_not_a_job_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="not a job id"):
        jobs.find(tmp_path, bad)


def test_find_unknown_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown job id job-20260101-nobody-0001"):
        jobs.find(tmp_path, "job-20260101-nobody-0001")


def _held(job: jobs.Job, mode: int) -> IO[str]:
    """The job's lock held as another process would hold it (an open file of its own)."""
    fh = (job.root / ".lock").open("a+")
    fcntl.flock(fh, mode)
    return fh


def test_a_status_probe_does_not_stop_a_run_from_starting(tmp_path: Path) -> None:
    job = jobs.create(tmp_path, media=clip("en_jfk"), workflow="transcribe", settings=Settings())
    probe = _held(job, fcntl.LOCK_SH)  # `status` asking whether a run is live
    threading.Timer(0.2, probe.close).start()
    with job.lock():
        assert job.running()
    runner = _held(job, fcntl.LOCK_EX)  # a real run stays in the way
    try:
        with pytest.raises(CpwError, match="is being run by another process"), job.lock():
            pass
    finally:
        runner.close()


def test_status_does_not_call_a_run_that_ends_while_it_reads_interrupted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = jobs.create(tmp_path, media=clip("en_jfk"), workflow="transcribe", settings=Settings())
    manifest = jobs.Manifest.load(job)
    manifest.start_run()
    manifest.mark_running("demux", "f")
    runner = _held(job, fcntl.LOCK_EX)
    read_json = jobs.fsutil.read_json

    def read_then_end(path: Path) -> object:
        data = read_json(path)
        runner.close()  # the run ends just after status read what it had saved
        return data

    monkeypatch.setattr(jobs.fsutil, "read_json", read_then_end)
    seen = jobs.Manifest.seen(job).data
    assert seen.stages["demux"].status == seen.runs[-1].status == "running"
    monkeypatch.undo()
    seen = jobs.Manifest.seen(job).data  # now no process holds it: that run died
    assert seen.stages["demux"].status == seen.runs[-1].status == "interrupted"
