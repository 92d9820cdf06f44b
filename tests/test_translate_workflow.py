"""The translate and subtitle workflows for real: Whisper's translation of Hindi speech, the LLM
engine against llama.cpp's server running the small Gemma GGUF on loopback, and the subtitle
workflow's acceptance run (SRT and VTT per language, muxed soft tracks, burn-in, cache)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    assert_times_valid,
    cli,
    clip,
    error_line,
    ffprobe_streams,
    job_of,
    job_root,
    no_hub,
    stage_dir,
    translate_jfk,
)
from cpwhisperx import translation
from cpwhisperx.engines.translate import llama_server, llm
from cpwhisperx.text import scripts
from cpwhisperx.transcript import Transcript

FILM = "media_film_mp4"


@pytest.fixture(scope="module")
def gguf() -> Path:
    """The [llm] extra's small model, assembled into the cache as the translate stage does."""
    if not llama_server.bundled_installed():
        pytest.skip("the [llm] extra (llama-server and its small model) is not installed")
    return llama_server.bundled_model()


@pytest.fixture(scope="module")
def server(gguf: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with llama_server.serve(gguf, threads=2, log_file=log) as url:
        yield url


def test_llm_engine_talks_to_a_real_llama_server(server: str) -> None:
    texts = ["Where were you last night?", "I waited at the station.", "My phone died."]
    translator = llm.LlmTranslator(base_url=server, model="gemma")
    out = translator.translate(texts, source="en", target="hi", context=" ".join(texts))
    assert len(out) == len(texts) and any(out)
    for text, source in zip(out, texts, strict=True):
        # The schema's pattern holds the model to Devanagari; a 270M base model is not asked
        # to translate well, only to answer the protocol.
        assert text == "" or (scripts.share(text, "Devanagari") == 1.0
                              and len(text) <= 3 * len(source) + 20)


def _gray_frame(path: Path, at: float) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at:.3f}", "-i", str(path),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    streams, _ = ffprobe_streams(path)
    video = next(s for s in streams if s["codec_type"] == "video")
    return np.frombuffer(raw, np.uint8).reshape(video["height"], video["width"]).astype(float)


def _nothing_set_up() -> dict[str, str]:
    """No LLM set up and no Hub to download IndicTrans2 from."""
    return {**no_hub(), "LLM_MODEL": "", "LLM_BASE_URL": ""}


def test_subtitle_workflow_translates_muxes_and_burns_in(tmp_path: Path, gguf: Path) -> None:
    """The acceptance run, ``cpwhisperx subtitle media_film_mp4.mp4 -t en,hi``, with nothing
    set up and no Hub to download IndicTrans2 from: English into Hindi by the [llm] extra's
    small model, on a llama-server the stage starts itself."""
    source = clip(FILM)
    proc = cli(tmp_path, "subtitle", str(source), "-t", "en,hi", "--burn-in", "hi",
               env=_nothing_set_up(), timeout=900)
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    outputs = root / "outputs"
    for language in ("en", "hi"):
        for ext in ("srt", "vtt"):
            assert (outputs / f"{FILM}.{language}.{ext}").stat().st_size > 0
    assert (outputs / f"{FILM}.hi.srt").read_text(encoding="utf-8").startswith("1\n")

    before, duration = ffprobe_streams(source)
    after, muxed_duration = ffprobe_streams(outputs / f"{FILM}.subtitled.mp4")
    kept = [(s["codec_type"], s["codec_name"]) for s in after if s["codec_type"] != "subtitle"]
    assert kept == [(s["codec_type"], s["codec_name"]) for s in before]
    assert abs(muxed_duration - duration) <= 0.1
    tracks = [s for s in after if s["codec_type"] == "subtitle"]
    assert [(t["codec_name"], t["tags"]["language"]) for t in tracks] == \
        [("mov_text", "eng"), ("mov_text", "hin")]

    # The Hindi transcript sits on the English sentences' spans, in Devanagari.
    english = Transcript.from_dict(json.loads((root / "06_clean/transcript.json").read_text()))
    spans = {(u.start, u.end) for u in translation.sentences(english)}
    hindi = json.loads((stage_dir(root, "translate") / "transcript.hi.json").read_text())
    assert_times_valid(hindi, duration)
    assert hindi["segments"]
    for segment in hindi["segments"]:
        assert (segment["start"], segment["end"]) in spans
        assert scripts.share(segment["text"], "Devanagari") == 1.0
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"]["subtitles"]["meta"]["conformance"]["en"]["all_rules"] >= 0.98
    translate = manifest["stages"]["translate"]
    assert translate["meta"]["hi"]["engine"] == "llm"
    assert translate["meta"]["hi"]["model"] == llama_server.BUNDLED_NAME
    assert any("mostly wrong" in w for w in translate["warnings"])

    # Burn-in: a second file, the Hindi drawn into the re-encoded picture, the audio copied.
    burned = outputs / f"{FILM}.hi.burned.mp4"
    streams, burned_duration = ffprobe_streams(burned)
    assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264"),
                                                                     ("audio", "aac")]
    assert abs(burned_duration - duration) <= 0.1
    event = hindi["segments"][0]
    at = (event["start"] + event["end"]) / 2
    change = np.abs(_gray_frame(burned, at) - _gray_frame(source, at))
    third = change.shape[0] // 3
    assert change[-third:].mean() > 3 * change[:third].mean()  # text at the bottom only
    fonts = subprocess.run(["fc-list", ":lang=hi"], capture_output=True, text=True).stdout
    warned = any("no installed font covers Hindi" in w
                 for w in manifest["stages"]["mux"]["warnings"])
    assert warned == (not fonts.strip())

    # Another job of the same film: every sentence comes from the translation cache.
    again = cli(tmp_path, "translate", str(source), "-t", "hi", env=_nothing_set_up(), timeout=600)
    assert again.returncode == 0, again.stderr
    meta = json.loads((job_root(tmp_path, job_of(again)) / "manifest.json").read_text())
    hi = meta["stages"]["translate"]["meta"]["hi"]
    assert hi["translated"] == 0 and hi["cached"] == meta["stages"]["translate"]["meta"][
        "sentences"] - hi["untranslated"]


def test_llm_base_url_uses_a_running_server(tmp_path: Path, server: str) -> None:
    proc = cli(tmp_path, "translate", str(clip("en_jfk")), "-s", "en", "-t", "hi",
               "--translator", "llm", env={"LLM_BASE_URL": server, "LLM_MODEL": "gemma"})
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    text = (root / "outputs" / "en_jfk.hi.txt").read_text(encoding="utf-8")
    assert text.strip() and scripts.share(text, "Devanagari") == 1.0


def test_whisper_translates_hindi_speech_into_english(tmp_path: Path) -> None:
    # The base model judged this clip's whole window "no speech" and gave nothing: the stage
    # failed. Now a sentence it leaves out is a warning; the rest is translated.
    proc = cli(tmp_path, "translate", str(clip("hi_news_rain")), "-s", "hi", "-t", "hi,en",
               timeout=600)
    assert proc.returncode == 0, proc.stderr
    root = job_root(tmp_path, job_of(proc))
    assert not (root / "outputs" / "hi_news_rain.hi.txt").exists()  # the spoken language
    english = json.loads((stage_dir(root, "translate") / "transcript.en.json").read_text())
    assert english["language"] == "en" and english["meta"]["engine"] == "whisper"
    assert english["segments"]
    stage = json.loads((root / "manifest.json").read_text())["stages"]["translate"]
    missing = stage["meta"]["en"]["untranslated"]
    assert bool(missing) == any("have no translation" in w for w in stage["warnings"])
    duration = json.loads((root / "01_demux/media.json").read_text())["duration"]
    assert_times_valid(english, duration)
    hindi = Transcript.from_dict(json.loads((root / "06_clean/transcript.json").read_text()))
    spans = {(u.start, u.end) for u in translation.sentences(hindi)}
    for segment in english["segments"]:
        assert (segment["start"], segment["end"]) in spans
        assert scripts.share(segment["text"], "Latin") > 0.9


def _dying_server(folder: Path) -> Path:
    """A llama-server that dies as one built for another CPU does: SIGILL while loading."""
    script = folder / "llama-server"
    script.write_text("#!/bin/sh\nkill -ILL $$\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("server,cause", [
    ("sigill", "llama-server died with SIGILL, built for another CPU: rebuild it portable"),
    ("missing", "is not an executable file"),
    # Built for another machine: the kernel will not run it (ENOEXEC).
    ("foreign", "cannot run llama-server"),
])
def test_an_llm_that_cannot_start_is_one_line_when_asked_for(tmp_path: Path, gguf: Path,
                                                             server: str, cause: str) -> None:
    binary = {"sigill": _dying_server(tmp_path), "missing": tmp_path / "no-such-binary",
              "foreign": tmp_path / "llama-server-arm64"}[server]
    if server == "foreign":
        binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(57))
        binary.chmod(0o755)
    proc = translate_jfk(tmp_path, "--translator", "llm", "--set", f"LLM_MODEL={gguf}",
                         env={"CPWHISPERX_LLAMA_SERVER": str(binary)})
    assert proc.returncode == 1
    line = error_line(proc)
    assert line.startswith("error: translation into hi: ") and cause in line, line
    assert "CPWHISPERX_LLAMA_SERVER" in line or "Portable builds" in line  # what to do


def test_auto_moves_on_from_an_llm_that_dies_at_start(tmp_path: Path, gguf: Path) -> None:
    # LLM_MODEL set: auto tries the LLM first, then Whisper's own translation into English.
    proc = cli(tmp_path, "translate", str(clip("hi_news_rain")), "-s", "hi", "-t", "en",
               "--set", f"LLM_MODEL={gguf}",
               env={"CPWHISPERX_LLAMA_SERVER": str(_dying_server(tmp_path))}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    stage = json.loads((job_root(tmp_path, job_of(proc)) / "manifest.json").read_text()
                       )["stages"]["translate"]
    assert stage["meta"]["en"]["engine"] == "whisper"
    assert any("fallback: llm cannot run here (llama-server died with SIGILL" in w
               for w in stage["warnings"]), stage["warnings"]


def test_doctor_runs_llama_server_for_one_token(tmp_path: Path, gguf: Path) -> None:
    ok = cli(tmp_path, "doctor", "--json")
    assert json.loads(ok.stdout)["engines"]["llama-server"]["smoke_test"].startswith("ok")
    dying = cli(tmp_path, "doctor", env={"CPWHISPERX_LLAMA_SERVER": str(_dying_server(tmp_path))})
    assert dying.returncode == 1
    assert "problem: llama-server smoke test failed: llama-server died with SIGILL" in dying.stdout
