"""The server's queue: order, a restart taking up the running job, cancel, and no job taken
twice by slots at once."""

import concurrent.futures
from pathlib import Path

import pytest

from cpwhisperx.web.jobqueue import Queue

pytestmark = pytest.mark.fast


def test_first_come_first_taken_and_a_restart_requeues_the_running_one(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.sqlite")
    for n in range(3):
        queue.add(f"job-{n}", "transcribe")
    taken = queue.take(timeout=0)
    assert taken is not None and (taken.id, taken.state) == ("job-0", "running")
    queue.finish("job-0", "done")
    assert queue.take(timeout=0).id == "job-1"  # type: ignore[union-attr]

    again = Queue(tmp_path / "q.sqlite")  # the server started anew: job-1 was running
    assert [(e.id, e.state) for e in again.all()] == [("job-0", "done"), ("job-1", "queued"),
                                                      ("job-2", "queued")]
    assert again.take(timeout=0).id == "job-1"  # type: ignore[union-attr]


def test_cancel_and_requeue(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.sqlite")
    queue.add("a", "subtitle")
    queue.add("b", "subtitle")
    assert queue.cancel("b") == "queued"
    assert queue.take(timeout=0).id == "a"  # type: ignore[union-attr]
    assert queue.take(timeout=0) is None  # b was cancelled
    assert queue.cancel("a") == "running"
    queue.finish("a", "failed", "the runner died")  # what the killed runner's slot says
    assert queue.get("a").state == "cancelled"  # type: ignore[union-attr]
    assert queue.cancel("missing") is None
    assert queue.requeue("a") and not queue.requeue("a")  # queued already
    assert queue.take(timeout=0).id == "a"  # type: ignore[union-attr]
    assert not queue.requeue("a")  # running
    queue.remove("a")
    assert queue.get("a") is None


def test_slots_never_take_the_same_job(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "q.sqlite")
    for n in range(40):
        queue.add(f"job-{n:02d}", "transcribe")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        taken = list(pool.map(lambda _: queue.take(timeout=0), range(50)))
    ids = [e.id for e in taken if e is not None]
    assert sorted(ids) == [f"job-{n:02d}" for n in range(40)]
