"""``cpwhisperx batch --ray``: many files' jobs on a Ray cluster (the ``[ray]`` extra).

Where every node sees the job root (``--out`` on shared storage), each job runs in three
steps, each scheduled where its resources are: the stages before ASR as CPU tasks; ASR and
alignment on a decoder (an actor per GPU; without GPUs, one per node) that keeps its models
loaded from file to file; the stages after them as CPU tasks again. So the decoders are busy
while CPUs demux the next files. A task lost with its node runs again on another, and resumes
from the job's manifest and ASR journal; a decoder lost with its node is dropped, and its file
goes to the next free one. Where some node does not see the job root, each file's job runs
whole on one node, and its outputs come back to the driver.
"""

import contextlib
import dataclasses
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpwhisperx import batch, jobs, registry
from cpwhisperx.api import Pipeline
from cpwhisperx.batch import FileOutcome
from cpwhisperx.errors import ConfigError, CpwError, reason
from cpwhisperx.jobs import Job
from cpwhisperx.progress import LogReporter
from cpwhisperx.runtime import fsutil

DECODED = ("asr", "align")  # the stages a decoder runs: on a GPU, where the node has one
LOSSES = 3  # decoders a file may lose before it is reported as failed
SUSPECT_S = 60.0  # no decoder is started on a node whose decoder died, for this long: time
# for Ray to tell a node lost (its health checks take about 15-30 s) from a worker that crashed
LOCK_WAIT_S = 180.0  # for the lock a process on a lost node held (an NFS lease outlives it)


def _wait_unlocked(job: Job) -> None:
    deadline = time.monotonic() + LOCK_WAIT_S
    while job.running() and time.monotonic() < deadline:
        time.sleep(1.0)


def _step(overrides: dict[str, str], out: str, job_id: str, first: str | None, until: str
          ) -> tuple[float, str | None]:
    """Run a job's stages from ``first`` to ``until`` here: the seconds it took, and the
    error if any."""
    started = time.monotonic()
    try:
        job = jobs.find(Path(out), job_id)
        _wait_unlocked(job)
        Pipeline(overrides, out=out, reporter=LogReporter()).run_stages(job, first=first,
                                                                        until=until)
    except (CpwError, OSError) as exc:
        return time.monotonic() - started, batch.failure(exc)
    return time.monotonic() - started, None


def _finish(overrides: dict[str, str], out: str, media: str, job_id: str, workflow: str,
            first: str, spent: float) -> FileOutcome:
    try:
        job = jobs.find(Path(out), job_id)
    except CpwError as exc:
        return FileOutcome(Path(media), job_id, exc.message, None, spent)
    _wait_unlocked(job)
    return batch.run_one(Pipeline(overrides, out=out, reporter=LogReporter()), Path(media),
                         workflow=workflow, output_dir=None, job=job, first=first, spent=spent)


def _whole(overrides: dict[str, str], out: str, media: str, workflow: str
           ) -> tuple[FileOutcome, dict[str, bytes]]:
    """A file's job run whole on this node, under its own job root: the outcome and the
    outputs' bytes by name."""
    batch.keep_workers()
    pipeline = Pipeline(overrides, out=out, reporter=LogReporter())
    path = Path(media)
    job = batch.earlier_jobs(pipeline, workflow=workflow).get(path)
    outcome = batch.run_one(pipeline, path, workflow=workflow, output_dir=None, job=job)
    if outcome.error or outcome.job is None:
        return outcome, {}
    outputs = jobs.find(Path(out), outcome.job).outputs
    return outcome, {p.name: p.read_bytes() for p in sorted(outputs.iterdir())}


def _sees(path: str) -> bool:
    return Path(path).exists()


class Decoder:
    """A job's decoding stages, one job at a time; its model workers stay up between jobs."""

    def __init__(self, overrides: dict[str, str], out: str) -> None:
        batch.keep_workers()
        self.overrides, self.out = overrides, out

    def run(self, job_id: str) -> tuple[float, str | None]:
        return _step(self.overrides, self.out, job_id, DECODED[0], DECODED[-1])


@dataclass(slots=True)
class _File:
    media: Path
    job: Job
    spent: float = 0.0  # seconds its steps took so far
    losses: int = 0


class _Cluster:
    """The driver's side: Ray, the remote functions, and the decoders by node."""

    def __init__(self, ray: Any, overrides: dict[str, str], out: Path) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.overrides, self.out = ray, overrides, str(out)
        self.on_node = lambda node: NodeAffinitySchedulingStrategy(node, soft=False)
        # A CPU task lost with its node runs again elsewhere (Ray's retries); it resumes.
        self.step = ray.remote(num_cpus=1, max_retries=3)(_step)
        self.finish = ray.remote(num_cpus=1, max_retries=3)(_finish)
        self.whole = ray.remote(num_cpus=1, max_retries=3)(_whole)
        self.decoder_class = ray.remote(max_restarts=0)(Decoder)
        self.decoders: dict[Any, str] = {}  # handle: node id
        self.suspect: dict[str, float] = {}  # node id: when its decoder died

    def nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n["Alive"]]

    def gpus(self) -> bool:
        return any(n["Resources"].get("GPU") for n in self.nodes())

    def check(self) -> None:
        if not any(n["Resources"].get("CPU") for n in self.nodes()):
            raise CpwError("no node of the Ray cluster offers a CPU to run tasks on: start "
                           "one with `ray start --address=<head address>`")

    def shared(self) -> bool:
        """Whether every node that runs tasks sees the job root, as the driver does."""
        marker = Path(self.out) / f".cluster-{uuid.uuid4().hex}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        try:
            sees = self.ray.remote(num_cpus=0)(_sees)
            return all(self.ray.get([
                sees.options(scheduling_strategy=self.on_node(n["NodeID"])).remote(str(marker))
                for n in self.nodes() if n["Resources"].get("CPU")]))
        finally:
            marker.unlink(missing_ok=True)

    def add_decoders(self) -> list[Any]:
        """Decoders on the live nodes that have none (new nodes too): one per GPU; on a
        cluster without GPUs, one per node (with no CPU of its own reserved, so that the
        node's CPU tasks still run beside it)."""
        now = time.monotonic()
        busy = set(self.decoders.values())
        nodes = [n for n in self.nodes() if n["NodeID"] not in busy
                 and now - self.suspect.get(n["NodeID"], -SUSPECT_S) >= SUSPECT_S]
        gpus_anywhere = self.gpus()
        made = []
        for node in nodes:
            gpus = int(node["Resources"].get("GPU", 0))
            if not (gpus if gpus_anywhere else node["Resources"].get("CPU")):
                continue
            for _ in range(max(gpus, 1)):
                handle = self.decoder_class.options(
                    num_cpus=0, num_gpus=1 if gpus else 0,
                    scheduling_strategy=self.on_node(node["NodeID"])).remote(self.overrides,
                                                                             self.out)
                self.decoders[handle] = node["NodeID"]
                made.append(handle)
        return made

    def drop(self, decoder: Any) -> None:
        """Forget a decoder that died; its node gets none for a while (see ``SUSPECT_S``)."""
        self.suspect[self.decoders.pop(decoder)] = time.monotonic()
        with contextlib.suppress(Exception):  # it died with its node: nothing left to kill
            self.ray.kill(decoder)

    def waiting_for_nodes(self) -> bool:
        """Whether a node whose decoder died may still get a new one."""
        live = {n["NodeID"] for n in self.nodes()}
        return any(node in live for node in self.suspect)


def connect(address: str | None) -> Any:
    """Ray, connected to the cluster at ``address`` (or ``RAY_ADDRESS``), or to a new local
    one when neither is given."""
    try:
        import ray
    except ImportError:
        raise ConfigError("batch --ray needs the [ray] extra: pip install 'cpwhisperx[ray]'"
                          ) from None
    host, colon, port = (address or "").rpartition(":")
    if colon and port.isdigit() and "://" not in host:  # else Ray waits minutes for it
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as exc:
            raise CpwError(f"cannot start or reach a Ray cluster at {address}: "
                           f"{exc.strerror or exc}; start one with `ray start --head`, or "
                           "check the address") from None
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "here"
        raise CpwError(f"cannot start or reach a Ray cluster {where}: {reason(exc)}; start "
                       "one with `ray start --head`, or check the address") from None
    return ray


def run_files(files: Sequence[Path], *, pipeline: Pipeline, workflow: str,
              address: str | None, output_dir: Path | None,
              on_done: Callable[[FileOutcome], None]) -> list[FileOutcome]:
    """As ``batch.run_files`` with ``resume``, on the Ray cluster at ``address``."""
    pipeline.check()
    earlier = batch.earlier_jobs(pipeline, workflow=workflow)
    ray = connect(address)
    try:
        cluster = _Cluster(ray, pipeline.overrides, pipeline.out)
        cluster.check()
        if cluster.shared():
            return _staged(cluster, files, pipeline=pipeline, workflow=workflow,
                           earlier=earlier, output_dir=output_dir, on_done=on_done)
        output_dir = output_dir or pipeline.out / "returned"
        pipeline.reporter.info(f"warning: some Ray node does not see {pipeline.out}: each job "
                               f"runs whole on one node, its outputs come back to {output_dir}")
        return _whole_jobs(cluster, files, workflow=workflow, output_dir=output_dir,
                           on_done=on_done)
    finally:
        ray.shutdown()


def _staged(cluster: _Cluster, files: Sequence[Path], *, pipeline: Pipeline, workflow: str,
            earlier: dict[Path, Job], output_dir: Path | None,
            on_done: Callable[[FileOutcome], None]) -> list[FileOutcome]:
    stages = registry.WORKFLOWS[workflow]
    before = stages[stages.index(DECODED[0]) - 1]
    after = stages[stages.index(DECODED[-1]) + 1]
    overrides, out, ray = cluster.overrides, cluster.out, cluster.ray
    outcomes: dict[Path, FileOutcome] = {}
    pending: dict[Any, tuple[str, _File, Any]] = {}  # object ref: step, file, decoder
    waiting: deque[_File] = deque()  # decoded next
    idle = cluster.add_decoders()
    if not idle:
        raise CpwError("no node of the Ray cluster can decode: start one with "
                       "`ray start --address=<head address>`")

    def end(outcome: FileOutcome) -> None:
        if output_dir is not None and not outcome.error and outcome.job:
            try:
                batch.copy_outputs(sorted(jobs.find(pipeline.out, outcome.job).outputs
                                          .iterdir()), output_dir)
            except (CpwError, OSError) as exc:
                outcome = dataclasses.replace(outcome, error=batch.failure(exc))
        outcomes[outcome.media] = outcome
        on_done(outcome)

    def fail(file: _File, why: str) -> None:
        end(FileOutcome(file.media, file.job.id, why, None, file.spent))

    for media in files:
        job = earlier.get(media)
        if job is not None and batch.finished(job):
            end(batch.run_one(pipeline, media, workflow=workflow, output_dir=None, job=job))
            continue
        try:
            job = job or pipeline.prepare(media, workflow=workflow)
        except (CpwError, OSError) as exc:
            end(FileOutcome(media, None, batch.failure(exc), None, 0.0))
            continue
        ref = cluster.step.options(name=f"prepare {media.name}").remote(
            overrides, out, job.id, None, before)
        pending[ref] = ("prepare", _File(media, job), None)

    while pending or waiting:
        if waiting and not idle:  # nodes that joined, or whose decoder died a while ago
            idle += cluster.add_decoders()
        while idle and waiting:
            decoder, file = idle.pop(), waiting.popleft()
            ref = decoder.run.options(name=f"decode {file.media.name}").remote(file.job.id)
            pending[ref] = ("decode", file, decoder)
        if not pending:  # files wait, and no decoder is left
            if cluster.waiting_for_nodes():
                time.sleep(1.0)
                continue
            for file in waiting:
                fail(file, "no node of the Ray cluster is left to decode on")
            break
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0 if waiting else None)
        if not ready:
            continue
        step, file, decoder = pending.pop(ready[0])
        try:
            value = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            if step != "decode" or isinstance(exc, ray.exceptions.RayTaskError):
                if step == "decode":  # a bug, not a lost worker: the decoder is still up
                    idle.append(decoder)
                fail(file, f"{step} failed on the cluster: {reason(exc)}")
                continue
            cluster.drop(decoder)  # its process or its node died
            file.losses += 1
            if file.losses >= LOSSES:
                fail(file, f"lost {LOSSES} decoders on the cluster: {reason(exc)}")
            else:
                pipeline.reporter.info(f"warning: {file.media}: its decoder was lost "
                                       f"({reason(exc)}); it resumes on another")
                waiting.appendleft(file)
            continue
        if step == "finish":
            end(value)
            continue
        seconds, error = value
        file.spent += seconds
        if step == "decode":
            idle.append(decoder)
        if error:
            fail(file, error)
        elif step == "prepare":
            waiting.append(file)
        else:
            ref = cluster.finish.options(name=f"finish {file.media.name}").remote(
                overrides, out, str(file.media), file.job.id, workflow, after, file.spent)
            pending[ref] = ("finish", file, None)
    return [outcomes[media] for media in files]


def _whole_jobs(cluster: _Cluster, files: Sequence[Path], *, workflow: str,
                output_dir: Path, on_done: Callable[[FileOutcome], None]) -> list[FileOutcome]:
    ray = cluster.ray
    gpus = 1 if cluster.gpus() else 0  # a whole job decodes too: where there are GPUs, on one
    pending = {cluster.whole.options(name=f"job {media.name}", num_gpus=gpus).remote(
        cluster.overrides, cluster.out, str(media), workflow): media for media in files}
    outcomes: dict[Path, FileOutcome] = {}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        media = pending.pop(ref)
        try:
            outcome, outputs = ray.get(ref)
            output_dir.mkdir(parents=True, exist_ok=True)
            for name, data in outputs.items():
                with fsutil.atomic_open(output_dir / name) as fh:
                    fh.write(data)
        except ray.exceptions.RayError as exc:
            outcome = FileOutcome(media, None, f"failed on the cluster: {reason(exc)}", None, 0)
        except OSError as exc:
            outcome = dataclasses.replace(outcome, error=f"cannot write its outputs: "
                                                         f"{fsutil.os_error(exc)}")
        outcomes[media] = outcome
        on_done(outcome)
    return [outcomes[media] for media in files]
