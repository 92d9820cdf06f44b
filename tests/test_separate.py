"""The separate stage: DeepFilterNet takes the noise out, keeps the speech and its timing, and a
crash costs only the denoising, never the job."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, clip, job_of, job_root, wer_against
from cpwhisperx import evaluation, media
from cpwhisperx.engines import separate
from cpwhisperx.engines.separate import deepfilternet

NOISY = next(i for i in evaluation.items() if i.id == "en_eggs_noise10")


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-12)


def _spans(audio: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    return np.concatenate([audio[int(s * media.SAMPLE_RATE):int(e * media.SAMPLE_RATE)]
                           for s, e in spans])


@pytest.fixture(scope="module")
def denoised(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray, dict]:
    folder = tmp_path_factory.mktemp("dfn")
    src, dst = folder / "in.wav", folder / "out.wav"
    media.extract_wav(media.probe(NOISY.path), media.probe(NOISY.path).audio[0], src)
    progress: list[float] = []
    stats = separate.create("deepfilternet", model="", cpu_threads=2).process(
        src, dst, on_progress=progress.append)
    assert progress and progress[-1] == 1.0
    with media.WavReader(src) as before, media.WavReader(dst) as after:
        return before[:], after[:], stats


def test_deepfilternet_removes_noise_and_keeps_speech_in_place(denoised) -> None:
    noisy, clean, stats = denoised
    assert len(clean) == len(noisy) and stats["engine"].startswith("deepfilternet")
    assert NOISY.sentences
    speech = [(s["start"], s["end"]) for s in NOISY.sentences]
    pauses = [(a[1] + 0.05, b[0] - 0.05) for a, b in itertools.pairwise(speech)
              if b[0] - a[1] > 0.2]
    # Between sentences there is only pink noise: it drops by far more than the speech does
    # (by at most ~10 dB, since 0.3 of the original is mixed back).
    noise_drop = _db(_spans(noisy, pauses)) - _db(_spans(clean, pauses))
    speech_drop = _db(_spans(noisy, speech)) - _db(_spans(clean, speech))
    assert noise_drop > 8 and speech_drop < 3, (noise_drop, speech_drop)
    # No time shift: the enhanced part (the original mixed back taken out) correlates best
    # with the input at lag 0 (±1 sample).
    enhanced = clean - deepfilternet.OBSERVATION_WEIGHT * noisy
    a, b = noisy[:10 * media.SAMPLE_RATE], enhanced[:10 * media.SAMPLE_RATE]
    lags = range(-40, 41)
    best = max(lags, key=lambda d: float(np.dot(a[max(0, -d):len(a) - max(0, d)],
                                                b[max(0, d):len(b) - max(0, -d)])))
    assert abs(best) <= 1


def _manifest(out: Path, job_id: str) -> dict:
    return json.loads((job_root(out, job_id) / "manifest.json").read_text())


def test_separation_in_the_pipeline_and_switched_off_again(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(NOISY.path), "-s", "en",
               "--set", "SOURCE_SEPARATION=deepfilternet")
    assert proc.returncode == 0, proc.stderr
    job_id = job_of(proc)
    root = job_root(tmp_path, job_id)
    stages = _manifest(tmp_path, job_id)["stages"]
    assert stages["separate"]["backend"].startswith("deepfilternet")
    assert (root / "02_separate" / "vocals.wav").is_file()
    text = (root / "outputs" / f"{NOISY.path.stem}.txt").read_text()
    assert evaluation.wer(NOISY.text or "", text, "en") <= 0.12

    off = cli(tmp_path, "run", "-j", job_id, "--set", "SOURCE_SEPARATION=none")
    assert off.returncode == 0, off.stderr
    runs = _manifest(tmp_path, job_id)["runs"][-1]["stages"]
    assert (runs["demux"], runs["separate"], runs["vad"]) == ("reused", "ran", "ran")
    assert not (root / "02_separate" / "vocals.wav").exists()


def test_separation_crash_keeps_the_job(tmp_path: Path) -> None:
    proc = cli(tmp_path, "transcribe", str(clip("en_jfk")), "-s", "en",
               "--set", "SOURCE_SEPARATION=deepfilternet",
               env={"CPWHISPERX_FAULT": "separate:segv"})
    assert proc.returncode == 0, proc.stderr
    job_id = job_of(proc)
    separation = _manifest(tmp_path, job_id)["stages"]["separate"]
    assert separation["warnings"] == ["fallback: deepfilternet killed by SIGSEGV",
                                      "deepfilternet failed: the original audio is used"]
    root = job_root(tmp_path, job_id)
    assert not (root / "02_separate" / "vocals.wav").exists()
    assert wer_against("en_jfk", (root / "outputs" / "en_jfk.txt").read_text()) <= 0.15
