"""The transcribe workflow end to end, through the real CLI, on ../shared/eval."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    REPO,
    assert_times_valid,
    cli,
    clip,
    job_of,
    job_root,
    stage_status,
    wait_for,
    wer_against,
)
from cpwhisperx import evaluation

FORMATS = ("json", "txt", "srt", "vtt", "tsv")
CLEAN_ENGLISH = [i for i in evaluation.items() if i.language == "en" and i.kind == "tts"
                 and i.path.suffix == ".flac" and not i.meta.get("background")]


def transcript_of(out: Path, proc: subprocess.CompletedProcess[str], stem: str) -> dict:
    return json.loads((job_root(out, job_of(proc)) / "outputs" / f"{stem}.json").read_text())


@pytest.fixture(scope="module")
def jfk(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("jfk")
    proc = cli(out, "transcribe", str(clip("en_jfk")))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_jfk_yields_five_files_and_low_wer(jfk) -> None:
    out, proc = jfk
    outputs = job_root(out, job_of(proc)) / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == sorted(f"en_jfk.{f}" for f in FORMATS)
    for fmt in FORMATS:
        assert (outputs / f"en_jfk.{fmt}").stat().st_size > 0
    transcript = transcript_of(out, proc, "en_jfk")
    reference = next(i for i in evaluation.items() if i.id == "en_jfk")
    assert evaluation.wer(reference.text, transcript["text"], "en") <= 0.10
    assert_times_valid(transcript, reference.duration)
    assert all(seg["words"] for seg in transcript["segments"])
    # The final table and where the outputs are.
    assert "RTF" in proc.stdout and str(outputs) in proc.stdout


def test_auto_language_uses_multilingual_base_and_detects_english(jfk) -> None:
    out, proc = jfk
    manifest = json.loads((job_root(out, job_of(proc)) / "manifest.json").read_text())
    meta = manifest["stages"]["asr"]["meta"]
    assert meta["model"] == "base" and meta["language"] == "en"
    assert 0.5 < meta["language_probability"] <= 1


def test_status_shows_every_stage_done(jfk) -> None:
    out, proc = jfk
    status = cli(out, "status", "-j", job_of(proc))
    assert status.returncode == 0
    for stage in ("demux", "vad", "asr", "export"):
        assert stage in status.stdout
    data = json.loads(cli(out, "status", "-j", job_of(proc), "--json").stdout)
    assert {e["status"] for e in data["manifest"]["stages"].values()} == {"done"}


def test_rerun_reuses_every_stage(jfk) -> None:
    out, proc = jfk
    again = cli(out, "run", "-j", job_of(proc))
    assert again.returncode == 0, again.stderr
    manifest = json.loads((job_root(out, job_of(proc)) / "manifest.json").read_text())
    assert set(manifest["runs"][-1]["stages"].values()) == {"reused"}
    assert all(e["attempts"] == 1 for e in manifest["stages"].values())


def test_clean_english_passages_wer(tmp_path: Path) -> None:
    refs, hyps = [], []
    for item in CLEAN_ENGLISH:
        proc = cli(tmp_path, "transcribe", str(item.path), "-s", "en")
        assert proc.returncode == 0, proc.stderr
        transcript = transcript_of(tmp_path, proc, item.path.stem)
        assert_times_valid(transcript, item.duration)
        assert evaluation.wer(item.text, transcript["text"], "en") <= 0.12, item.id
        refs.append(item.text)
        hyps.append(transcript["text"])
    assert len(refs) >= 4
    assert evaluation.wer(" ".join(refs), " ".join(hyps), "en") <= 0.12


def _workers_of(root: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cpwhisperx.runtime.worker" in args and any(str(root).encode() in a for a in args):
            found.append(cmdline.parent.name)
    return found


def test_sigkill_during_asr_resumes_without_redoing_demux_and_vad(tmp_path: Path) -> None:
    prepared = cli(tmp_path, "prepare", "--media", str(clip("en_lecture_plants")), "-s", "en")
    job_id = prepared.stdout.strip()
    manifest = job_root(tmp_path, job_id) / "manifest.json"
    run = subprocess.Popen([sys.executable, "-m", "cpwhisperx", "--out", str(tmp_path), "run",
                            "-j", job_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=REPO)
    wait_for(lambda: stage_status(manifest, "asr") == "running")
    wait_for(lambda: bool(_workers_of(job_root(tmp_path, job_id))))
    time.sleep(0.5)  # into the model load / decoding
    run.send_signal(signal.SIGKILL)
    run.wait()
    # The worker notices at once (it would otherwise decode for seconds more): no orphan.
    wait_for(lambda: not _workers_of(job_root(tmp_path, job_id)), timeout=1)
    assert stage_status(manifest, "asr") == "running"
    assert not (job_root(tmp_path, job_id) / "04_asr" / "transcript.json").exists()
    # Its lock went with it: status does not call a dead run running.
    status = cli(tmp_path, "status", "-j", job_id, "--json")
    seen = json.loads(status.stdout)["manifest"]
    assert seen["stages"]["asr"]["status"] == "interrupted"
    assert seen["runs"][-1]["status"] == "interrupted"

    again = cli(tmp_path, "run", "-j", job_id)
    assert again.returncode == 0, again.stderr
    data = json.loads(manifest.read_text())
    assert data["runs"][-1]["stages"] == {"demux": "reused", "separate": "reused",
                                          "vad": "reused", "asr": "ran", "align": "ran",
                                          "clean": "ran", "diarize": "ran", "export": "ran"}
    assert [data["stages"][s]["attempts"] for s in ("demux", "vad", "asr", "align", "clean",
                                                    "export")] == [1, 1, 2, 1, 1, 1]
    assert (job_root(tmp_path, job_id) / "outputs" / "en_lecture_plants.srt").is_file()


def test_changed_setting_redoes_only_the_stages_it_affects(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "en")
    assert proc.returncode == 0, proc.stderr
    job_id = job_of(proc)
    manifest = job_root(tmp_path, job_id) / "manifest.json"

    def last_run() -> dict[str, str]:
        return json.loads(manifest.read_text())["runs"][-1]["stages"]

    # Threads change speed, not results: nothing is redone.
    assert cli(tmp_path, "run", "-j", job_id, "--set", "CPU_THREADS=1").returncode == 0
    assert set(last_run().values()) == {"reused"}
    # A VAD setting redoes VAD and what depends on it, not the demux.
    assert cli(tmp_path, "run", "-j", job_id, "--set", "VAD_SPEECH_PAD_MS=200").returncode == 0
    stages = last_run()
    assert (stages["demux"], stages["vad"], stages["asr"]) == ("reused", "ran", "ran")
    # The override is saved in the job: a plain run afterwards redoes nothing.
    assert "VAD_SPEECH_PAD_MS=200\n" in (job_root(tmp_path, job_id) / ".env.pipeline").read_text()
    assert cli(tmp_path, "run", "-j", job_id).returncode == 0
    assert set(last_run().values()) == {"reused"}


def test_media_path_with_spaces_quotes_and_non_ascii(tmp_path: Path) -> None:
    folder = tmp_path / "my films ü"
    folder.mkdir()
    media = folder / "it's a \"test\" $(x) फ़िल्म ñ.flac"
    shutil.copyfile(clip("en_jfk"), media)
    proc = cli(tmp_path / "o u t", "transcribe", str(media), "-s", "en")
    assert proc.returncode == 0, proc.stderr
    outputs = job_root(tmp_path / "o u t", job_of(proc)) / "outputs"
    assert sorted(p.suffix for p in outputs.iterdir()) == sorted(f".{f}" for f in FORMATS)
    assert wer_against("en_jfk", (outputs / f"{media.stem}.txt").read_text()) <= 0.15


def test_mkv_stream_selection_by_position_and_tag(tmp_path: Path) -> None:
    for choice in ("1", "hin"):
        proc = cli(tmp_path, "prepare", "--media", str(clip("media_en_hi_mkv")),
                   "--audio-stream", choice, "--set", "WHISPER_MODEL=tiny.en",
                   "--set", "VAD_BACKEND=none")
        job_id = proc.stdout.strip()
        # Only demux is needed to check the choice; run it and read media.json.
        run = cli(tmp_path, "run", "-j", job_id)
        assert run.returncode == 0, run.stderr
        info = json.loads((job_root(tmp_path, job_id) / "01_demux" / "media.json").read_text())
        assert info["stream"] == {"position": 1, "codec": "opus", "language": "hin"}


def test_help_is_lean() -> None:
    code = ("import sys\nfrom cpwhisperx import cli\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = {'ctranslate2', 'torch', 'faster_whisper', 'numpy', 'rich'} & "
            "set(sys.modules)\nassert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_doctor_reports_hardware_engines_and_models(tmp_path: Path) -> None:
    proc = cli(tmp_path, "doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["hardware"]["cpu_cores"] >= 1 and data["ffmpeg"]["path"]
    assert data["engines"]["faster-whisper"]["installed"]
    assert data["engines"]["nllb"]["installed"]  # CTranslate2 and tokenizers come with the core
    assert {"tiny.en", "base"} <= {m["name"] for m in data["models"]}
    assert (tmp_path / "hardware_cache.json").is_file()


def test_seed_wrappers(tmp_path: Path) -> None:
    env = {**os.environ, "CPWHISPERX_OUT": str(tmp_path)}
    prep = subprocess.run([str(REPO / "prepare-job.sh"), "--media", str(clip("en_jfk")),
                           "--workflow", "transcribe", "--source-language", "en",
                           "--backend", "whisperx"], capture_output=True, text=True, env=env,
                          check=False)
    assert prep.returncode == 0, prep.stderr
    job_id = prep.stdout.strip()
    run = subprocess.run([str(REPO / "run-pipeline.sh"), "-j", job_id], capture_output=True,
                         text=True, env=env, check=False)
    assert run.returncode == 0, run.stderr
    env_file = (job_root(tmp_path, job_id) / ".env.pipeline").read_text()
    assert "WHISPER_BACKEND=faster-whisper" in env_file and "SOURCE_LANGUAGE=en" in env_file


def test_media_moved_after_the_job_keeps_its_results(tmp_path: Path) -> None:
    media = tmp_path / "talk.flac"
    shutil.copyfile(clip("en_jfk"), media)
    proc = cli(tmp_path, "transcribe", str(media), "-s", "en")
    assert proc.returncode == 0, proc.stderr
    media.unlink()
    again = cli(tmp_path, "run", "-j", job_of(proc))
    assert again.returncode == 0, again.stderr
    assert f"media file not found: {media}; kept the earlier result" in again.stderr
    runs = json.loads((job_root(tmp_path, job_of(proc)) / "manifest.json").read_text())["runs"]
    assert set(runs[-1]["stages"].values()) == {"reused"}
