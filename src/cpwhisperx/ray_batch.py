"""``cpwhisperx batch --ray``: many files' jobs on a Ray cluster (the ``[ray]`` extra).

Where every node sees the job root (``--out`` on shared storage), each job runs in three
steps, each scheduled where its resources are: the stages before ASR as CPU tasks; ASR and
alignment on a decoder (an actor per GPU, or one per node without a GPU) that keeps its models
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
LOSSES = 3  # decoders a file may lose with their nodes before it is reported as failed


def _step(overrides: dict[str, str], out: str, job_id: str, until: str
          ) -> tuple[float, str | None]:
    """Run a job's stages up to ``until`` here: the seconds it took, and the error if any."""
    started = time.monotonic()
    try:
        Pipeline(overrides, out=out, reporter=LogReporter()).run_stages(
            jobs.find(Path(out), job_id), until=until)
    except (CpwError, OSError) as exc:
        return time.monotonic() - started, batch.failure(exc)
    return time.monotonic() - started, None


def _finish(overrides: dict[str, str], out: str, media: str, job_id: str, workflow: str,
            spent: float) -> FileOutcome:
    pipeline = Pipeline(overrides, out=out, reporter=LogReporter())
    return batch.run_one(pipeline, Path(media), workflow=workflow, output_dir=None,
                         job=jobs.find(Path(out), job_id), spent=spent)


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

    def run(self, job_id: str, until: str) -> tuple[float, str | None]:
        return _step(self.overrides, self.out, job_id, until)


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

    def nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n["Alive"]]

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
        """Decoders on the live nodes that have none: one per GPU, else one per node (with
        no CPU of its own reserved, so that the node's CPU tasks still run beside it)."""
        busy = set(self.decoders.values())
        made = []
        for node in self.nodes():
            resources, node_id = node["Resources"], node["NodeID"]
            if node_id in busy or not (resources.get("CPU") or resources.get("GPU")):
                continue
            gpus = int(resources.get("GPU", 0))
            for _ in range(max(gpus, 1)):
                handle = self.decoder_class.options(
                    num_cpus=0, num_gpus=1 if gpus else 0,
                    scheduling_strategy=self.on_node(node_id)).remote(self.overrides, self.out)
                self.decoders[handle] = node_id
                made.append(handle)
        if not self.decoders:
            raise CpwError("the Ray cluster has no live node with a CPU or GPU: start one with "
                           "`ray start --address=<head>`")
        return made

    def drop(self, decoder: Any) -> None:
        self.decoders.pop(decoder, None)
        with contextlib.suppress(Exception):  # it died with its node: nothing left to kill
            self.ray.kill(decoder)


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
    overrides, out, ray = cluster.overrides, cluster.out, cluster.ray
    outcomes: dict[Path, FileOutcome] = {}
    pending: dict[Any, tuple[str, _File, Any]] = {}  # object ref: step, file, decoder
    waiting: deque[_File] = deque()  # decoded next
    idle = cluster.add_decoders()

    def end(outcome: FileOutcome) -> None:
        if output_dir is not None and not outcome.error and outcome.job:
            batch.copy_outputs(sorted(jobs.find(pipeline.out, outcome.job).outputs.iterdir()),
                               output_dir)
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
        except CpwError as exc:
            end(FileOutcome(media, None, exc.message, None, 0.0))
            continue
        ref = cluster.step.options(name=f"prepare {media.name}").remote(
            overrides, out, job.id, before)
        pending[ref] = ("prepare", _File(media, job), None)

    while pending or waiting:
        while idle and waiting:
            decoder, file = idle.pop(), waiting.popleft()
            ref = decoder.run.options(name=f"decode {file.media.name}").remote(
                file.job.id, DECODED[-1])
            pending[ref] = ("decode", file, decoder)
        [ref], _ = ray.wait(list(pending), num_returns=1)
        step, file, decoder = pending.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.RayError as exc:
            if step != "decode" or isinstance(exc, ray.exceptions.RayTaskError):
                fail(file, f"{step} failed on the cluster: {reason(exc)}")
                continue
            cluster.drop(decoder)  # with its node, most likely: the file goes elsewhere
            idle += cluster.add_decoders()
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
                overrides, out, str(file.media), file.job.id, workflow, file.spent)
            pending[ref] = ("finish", file, None)
    return [outcomes[media] for media in files]


def _whole_jobs(cluster: _Cluster, files: Sequence[Path], *, workflow: str,
                output_dir: Path, on_done: Callable[[FileOutcome], None]) -> list[FileOutcome]:
    ray = cluster.ray
    pending = {cluster.whole.options(name=f"job {media.name}").remote(
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
