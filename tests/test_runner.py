"""The stage runner with fake stages (no media, no model): what is reused, what a changed
setting or a damaged output redoes, and how a failure or an interruption is recorded and
resumed from."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cpwhisperx import config, jobs, pipeline, registry
from cpwhisperx.errors import ConfigError, CpwError
from cpwhisperx.progress import LogReporter
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageResult

pytestmark = pytest.mark.fast
WORKFLOW = registry.WORKFLOWS["transcribe"]


class Fakes:
    """A fake of each stage: its output holds its inputs' outputs and the setting it reads
    (``depends``), so that a change travels downstream as a real one does; ``fail`` makes a
    stage raise."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.fail: dict[str, BaseException] = {}
        self.depends = {"asr": "beam_size", "clean": "clean_repeat_limit"}
        self.constant = {"export": "cpu_threads"}  # read, but its output does not show it

    def module(self, name: str) -> SimpleNamespace:
        inputs = registry.ORDER[:registry.ORDER.index(name)][-1:]

        def fingerprint_config(ctx: object) -> dict:
            key = self.depends.get(name) or self.constant.get(name)
            return {"setting": getattr(ctx.settings, key) if key else None}

        def run(ctx: object) -> StageResult:
            self.ran.append(name)
            if name in self.fail:
                raise self.fail[name]
            before = "".join((ctx.dir(i) / "out.txt").read_text() for i in inputs)
            key = self.depends.get(name)
            out = ctx.dir(name) / "out.txt"
            fsutil.write_text(out, f"{before}{name}={getattr(ctx.settings, key, '')}\n"
                              if key else f"{before}{name}\n")
            return StageResult(outputs=[out], backend="fake")

        return SimpleNamespace(NAME=name, INPUTS=inputs, fingerprint_config=fingerprint_config,
                               run=run)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    stages = Fakes()
    monkeypatch.setattr(registry, "module", stages.module)
    return stages


@pytest.fixture
def job(tmp_path: Path) -> jobs.Job:
    media = tmp_path / "talk.wav"
    media.write_bytes(b"RIFF")
    return jobs.create(tmp_path / "out", media=media, workflow="transcribe",
                       settings=config.Settings())


def _run(job: jobs.Job, **overrides: str) -> dict[str, str]:
    rows = pipeline.run_job(job, out_root=job.root.parents[2], overrides=overrides,
                            reporter=LogReporter())
    return {row.stage: row.status for row in rows}


def test_a_second_run_reuses_every_stage(fakes: Fakes, job: jobs.Job) -> None:
    assert _run(job) == dict.fromkeys(WORKFLOW, "ran")
    assert _run(job) == dict.fromkeys(WORKFLOW, "reused")
    assert fakes.ran == list(WORKFLOW)
    runs = json.loads(job.manifest_path.read_text())["runs"]
    assert [r["status"] for r in runs] == ["done", "done"]


def test_a_changed_setting_redoes_its_stage_and_what_its_output_changes(
        fakes: Fakes, job: jobs.Job) -> None:
    _run(job)
    fakes.ran.clear()
    # asr's output changes: everything after it runs again.
    assert _run(job, BEAM_SIZE="3") == {**dict.fromkeys(WORKFLOW[:3], "reused"),
                                        **dict.fromkeys(WORKFLOW[3:], "ran")}
    # export reads CPU_THREADS but writes the same: only export runs, and nothing after it.
    fakes.ran.clear()
    assert _run(job, CPU_THREADS="3") == {**dict.fromkeys(WORKFLOW[:-1], "reused"),
                                          "export": "ran"}
    assert "BEAM_SIZE=3" in job.env_file.read_text()  # saved: a plain run keeps it
    assert _run(job) == dict.fromkeys(WORKFLOW, "reused")


def test_a_damaged_output_is_made_again(fakes: Fakes, job: jobs.Job) -> None:
    _run(job)
    fsutil.write_text(job.stage_dir("vad") / "out.txt", "edited by hand\n")
    assert _run(job)["vad"] == "ran"
    (job.stage_dir("clean") / "out.txt").unlink()
    statuses = _run(job)
    assert statuses["clean"] == "ran" and statuses["asr"] == "reused"


def test_a_failure_is_recorded_and_the_next_run_resumes_after_what_finished(
        fakes: Fakes, job: jobs.Job) -> None:
    fakes.fail["align"] = CpwError("align broke: do this")
    with pytest.raises(CpwError, match="align broke"):
        _run(job)
    manifest = json.loads(job.manifest_path.read_text())
    assert manifest["stages"]["align"]["status"] == "failed"
    assert manifest["stages"]["align"]["error"] == "align broke: do this"
    assert manifest["stages"]["clean"]["status"] == "pending"
    assert manifest["runs"][-1]["status"] == "failed"
    del fakes.fail["align"]
    fakes.ran.clear()
    assert _run(job) == {**dict.fromkeys(WORKFLOW[:4], "reused"),
                         **dict.fromkeys(WORKFLOW[4:], "ran")}


def test_an_unexpected_error_is_one_line_naming_the_log(fakes: Fakes, job: jobs.Job) -> None:
    fakes.fail["vad"] = ValueError("bug")
    with pytest.raises(CpwError) as failed:
        _run(job)
    assert failed.value.message == (f"stage vad failed: ValueError: bug; details in "
                                    f"{job.log_file('vad')}")
    assert "Traceback" in job.log_file("vad").read_text()


def test_an_interruption_is_recorded_as_such(fakes: Fakes, job: jobs.Job) -> None:
    fakes.fail["asr"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        _run(job)
    manifest = json.loads(job.manifest_path.read_text())
    assert manifest["runs"][-1]["status"] == "interrupted"
    assert manifest["stages"]["asr"]["error"] == "interrupted"


def test_a_stage_in_a_renumbered_folder_runs_again(fakes: Fakes, job: jobs.Job,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A job from a version with fewer stages: the folders after a new one are numbered
    otherwise, and what the stages there made is not taken as made."""
    _run(job)
    number = registry.number
    monkeypatch.setattr(registry, "number", lambda name: number(name) + (name == "export"))
    assert _run(job) == {**dict.fromkeys(WORKFLOW[:-1], "reused"), "export": "ran"}


def test_a_job_runs_in_parts_each_taking_the_earlier_parts_as_they_are(
        fakes: Fakes, job: jobs.Job) -> None:
    """As a batch on a cluster runs it: up to VAD, ASR and alignment, the rest. A part does
    not judge the stages before it again (another node resolves other hardware)."""
    out = job.root.parents[2]

    def part(first: str | None, until: str | None, **overrides: str) -> list[str]:
        rows = pipeline.run_job(job, out_root=out, overrides=overrides, reporter=LogReporter(),
                                first=first, until=until)
        return [row.stage for row in rows]

    with pytest.raises(CpwError, match=r"stage demux of job .* is not done"):
        part("asr", "align")
    assert part(None, "vad") == ["demux", "separate", "vad"]
    assert part("asr", "align") == ["asr", "align"]
    # A setting that changes ASR's fingerprint: the last part still takes ASR as it was.
    assert part("clean", None, BEAM_SIZE="3") == list(WORKFLOW[WORKFLOW.index("clean"):])
    assert fakes.ran == list(WORKFLOW)
    runs = json.loads(job.manifest_path.read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed", "partial", "partial", "done"]
    with pytest.raises(ConfigError, match="no stage translate in job"):
        part(None, "translate")
