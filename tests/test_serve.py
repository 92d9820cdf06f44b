"""``cpwhisperx serve``: the OpenAI-compatible API through OpenAI's own client, our jobs API,
the queue surviving a kill, a bounded load, and every refusal as a 4xx with one JSON line."""

import concurrent.futures
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import srt

from conftest import assert_times_valid, clip, job_root, stage_status, wait_for, wer_against

pytest.importorskip("openai")
pytest.importorskip("fastapi")
from web_server import Server, free_port, start, stop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    running = start(root / "out", "--max-upload-mb", "3",
                    "--allow-root", str(clip("en_jfk").parent))
    yield running
    stop(running)


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the runner and its model worker)."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
            if int(fields["Pid"]) == pid or _descends(int(fields["Pid"]), pid):
                total += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    return total


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


def test_listening_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "cpwhisperx", "--out", str(tmp_path), "serve",
                           "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items()
                               if k != "CPWHISPERX_API_TOKEN"})
    assert proc.returncode == 2
    assert "CPWHISPERX_API_TOKEN" in proc.stderr.strip().splitlines()[-1]


def _processes_of(out: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if str(out).encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
    return found


def test_openai_client_gets_text_and_word_times(server: Server) -> None:
    client = server.openai()
    with clip("en_jfk").open("rb") as fh:
        result = client.audio.transcriptions.create(
            file=fh, model="tiny.en", response_format="verbose_json",
            timestamp_granularities=["word"])
    assert wer_against("en_jfk", result.text) <= 0.1
    assert result.language == "english" and abs(result.duration - 11.0) < 0.1
    words = result.words or []
    assert len(words) >= 20
    assert all(0 <= w.start < w.end <= result.duration for w in words)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))
    assert " ".join(w.word for w in words).split() == result.text.split()

    with clip("en_jfk").open("rb") as fh:
        subtitles = client.audio.transcriptions.create(file=fh, model="tiny.en",
                                                       response_format="srt")
    cues = list(srt.parse(subtitles))
    assert cues and all(c.start < c.end for c in cues)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert wer_against("en_jfk", " ".join(c.content for c in cues)) <= 0.1

    with clip("en_jfk").open("rb") as fh:
        plain = client.audio.transcriptions.create(file=fh, model="whisper-1", language="en")
    assert wer_against("en_jfk", plain.text) <= 0.1
    # Answered, nothing of the requests stays: no job folder, no upload.
    assert not list(server.out.glob("*/*/job-*")) and not any((server.out / "uploads").iterdir())


def test_openai_translation_is_english(server: Server) -> None:
    with clip("hi_kitchen").open("rb") as fh:
        result = server.openai().audio.translations.create(file=fh, model="base",
                                                           response_format="verbose_json")
    assert result.text.strip() and result.text.isascii()  # English, not Devanagari
    assert result.language == "english"  # as OpenAI's: the output's language


def test_jobs_api_from_a_path_with_progress_events_and_outputs(server: Server) -> None:
    with server.client() as client:
        made = client.post("/api/jobs", data={"path": str(clip("en_jfk")),
                                              "workflow": "transcribe", "source_language": "en"})
        assert made.status_code == 201, made.text
        job_id = made.json()["id"]
        assert job_id in [j["id"] for j in client.get("/api/jobs").json()]
        events = []
        with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert events[-1]["state"] == "done", events[-1]
        # Live progress on the way (a stage and how far it is), every stage done at the end.
        assert any(e["state"] == "running" and e["stage"] and 0 <= e["fraction"] <= 1
                   for e in events)
        assert {e["status"] for e in events[-1]["manifest"]["stages"].values()} == {"done"}
        detail = client.get(f"/api/jobs/{job_id}").json()
        assert "en_jfk.srt" in detail["outputs"]
        got = client.get(f"/api/jobs/{job_id}/outputs/en_jfk.json")
        assert got.status_code == 200
        assert got.headers["x-content-type-options"] == "nosniff"
        played = client.get(f"/api/jobs/{job_id}/media")
        assert played.headers["content-type"] == "audio/flac" and played.content
        transcript = got.json()
        assert_times_valid(transcript, 11.0)

        deleted = client.delete(f"/api/jobs/{job_id}")
        assert deleted.status_code == 200
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert not list(server.out.glob(f"*/*/{job_id}"))


def test_cancel_stops_a_running_job_and_the_next_one_runs(server: Server) -> None:
    with server.client() as client:
        def submit(name: str) -> str:
            made = client.post("/api/jobs", data={"path": str(clip(name)),
                                                  "workflow": "transcribe",
                                                  "source_language": "en"})
            assert made.status_code == 201, made.text
            return made.json()["id"]

        long, short = submit("en_lecture_plants"), submit("en_jfk")
        manifest = job_root(server.out, long) / "manifest.json"
        wait_for(lambda: stage_status(manifest, "asr") == "running")
        cancelled = client.post(f"/api/jobs/{long}/cancel").json()
        assert cancelled["state"] == "cancelled"
        wait_for(lambda: client.get(f"/api/jobs/{short}").json()["state"] == "done")
        assert client.get(f"/api/jobs/{long}").json()["state"] == "cancelled"
        assert not (job_root(server.out, long) / "04_asr" / "transcript.json").exists()
        # Run again, it resumes: what was done before the cancel is reused.
        assert client.post(f"/api/jobs/{long}/run").json()["state"] in ("queued", "running")
        assert _error(client.post(f"/api/jobs/{long}/run"), 409)
        wait_for(lambda: client.get(f"/api/jobs/{long}").json()["state"] == "done")
        run = json.loads(manifest.read_text())["runs"][-1]["stages"]
        assert run["demux"] == run["vad"] == "reused" and run["asr"] == "ran"


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


def test_refusals_are_4xx_with_one_json_line(server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        assert "token" in _error(anonymous.get("/api/jobs"), 401)
        assert "token" in _error(anonymous.post("/v1/audio/transcriptions"), 401)
        wrong = anonymous.get("/api/jobs", headers={"Authorization": "Bearer nope"})
        _error(wrong, 401)

    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (4 * 1024 * 1024))
    text = tmp_path / "speech.mp3"
    text.write_text("this is not audio at all\n" * 20)
    with server.client() as client:
        with big.open("rb") as fh:
            assert "larger than 3 MB" in _error(
                client.post("/v1/audio/transcriptions", files={"file": fh},
                            data={"model": "tiny.en"}), 413)

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"'
                   b"\r\n\r\n")
            yield from (b"\0" * (1 << 20) for _ in range(4))
            yield b"\r\n--b--\r\n"

        assert "larger than 3 MB" in _error(client.post(
            "/v1/audio/transcriptions", content=chunked(),
            headers={"Content-Type": "multipart/form-data; boundary=b"}), 413)
        with text.open("rb") as fh:
            assert "not a media file" in _error(
                client.post("/v1/audio/transcriptions", files={"file": fh},
                            data={"model": "tiny.en"}), 415)
        no_audio = clip("media_no_audio_mp4")
        with no_audio.open("rb") as fh:
            _error(client.post("/api/jobs", files={"file": fh}), 415)
        # Paths: only inside --allow-root, after resolving .. and symlinks.
        inside = clip("en_jfk").parent
        for path in ("/etc/passwd", f"{inside}/../../../etc/passwd", str(tmp_path)):
            _error(client.post("/api/jobs", data={"path": path}), 403)
        link = inside / ".." / "clips" / "missing.flac"
        _error(client.post("/api/jobs", data={"path": str(link)}), 404)
        # Ids and output names: nothing but what the server made.
        for bad in ("..", "..%2F..%2Fetc", "job-20261204-root-0001%2F..%2F.."):
            assert client.get(f"/api/jobs/{bad}").status_code == 404
        made = client.post("/api/jobs", data={"path": str(clip("en_jfk")),
                                              "workflow": "transcribe", "source_language": "en"})
        job_id = made.json()["id"]
        for name in ("..%2Fjob.json", "%2E%2E%2Fmanifest.json", "%2E%2E", "job.json"):
            response = client.get(f"/api/jobs/{job_id}/outputs/{name}")
            assert response.status_code == 404, (name, response.text)
        _error(client.post("/api/jobs", data={"path": str(clip("en_jfk")),
                                              "workflow": "dance"}), 400)
        _error(client.post("/api/jobs", data={"path": str(clip("en_jfk")),
                                              "source_language": "xx"}), 400)
        _error(client.post("/v1/audio/transcriptions", data={"model": "tiny.en"}), 400)
        # Settings that name files, URLs or the machine's resources are the server's own.
        for settings in ({"translation_glossary": "/etc/passwd"},
                         {"LLM_BASE_URL": "http://elsewhere/v1"}, {"cpu_threads": 64}):
            assert "cannot be set over HTTP" in _error(client.post("/api/jobs", data={
                "path": str(clip("en_jfk")), "settings": json.dumps(settings)}), 400)
        for model in ("/etc", "someone/any-repo", "../models/x"):
            with clip("en_jfk").open("rb") as fh:
                assert "unknown model" in _error(client.post(
                    "/v1/audio/transcriptions", files={"file": fh}, data={"model": model}), 400)
        # A playlist is media to ffprobe, and names other files: refused.
        playlist = tmp_path / "list.m3u8"
        playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:12\n#EXTINF:11,\n"
                            f"{clip('en_jfk')}\n#EXT-X-ENDLIST\n")
        with playlist.open("rb") as fh:
            assert "not an audio or video file" in _error(
                client.post("/api/jobs", files={"file": ("talk.mp3", fh)}), 415)
        # Another site's page, or a name rebound to this machine, is refused.
        _error(client.get("/api/jobs", headers={"Host": "evil.example:8000"}), 400)
        _error(client.post("/api/jobs", data={"path": str(clip("en_jfk"))},
                           headers={"Origin": "http://localhost:3000"}), 403)
        _error(client.post(f"/api/jobs/{job_id}/cancel",
                           headers={"Sec-Fetch-Site": "cross-site"}), 403)
        # A body that is not an upload is small.
        huge = json.dumps({"events": [{"start": 0, "end": 1, "text": "x" * 100}] * 120_000})
        _error(client.post(f"/api/jobs/{job_id}/subtitles/en/check", content=huge,
                           headers={"Content-Type": "application/json"}), 413)
        with clip("en_jfk").open("rb") as fh:
            _error(client.post("/v1/audio/transcriptions", files={"file": fh},
                               data={"response_format": "docx"}), 400)
        client.post(f"/api/jobs/{job_id}/cancel")


def test_twenty_concurrent_requests_none_lost_memory_flat(server: Server) -> None:
    client = server.openai()

    def ask(_n: int) -> str:
        with clip("en_jfk").open("rb") as fh:
            return client.audio.transcriptions.create(file=fh, model="tiny.en",
                                                      language="en").text

    ask(0)  # the model loaded
    before = _rss_mb(server.proc.pid)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        texts = list(pool.map(ask, range(20)))
    after = _rss_mb(server.proc.pid)
    assert len(texts) == 20 and all(wer_against("en_jfk", t) <= 0.1 for t in texts)
    assert after - before < 150, (before, after)


def test_killed_during_asr_the_restarted_server_finishes_without_redoing_demux_and_vad(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    port = free_port()
    first = start(out, "--allow-root", str(clip("en_lecture_plants").parent), port=port)
    try:
        with first.client() as client:
            job_id = client.post("/api/jobs", data={
                "path": str(clip("en_lecture_plants")), "workflow": "transcribe",
                "source_language": "en"}).json()["id"]
        manifest = job_root(out, job_id) / "manifest.json"
        wait_for(lambda: stage_status(manifest, "asr") == "running")
        time.sleep(1.0)  # into the model load / decoding
    finally:
        first.proc.kill()  # kill -9: no shutdown of any kind
        first.proc.wait()
    # Its runner and model worker see it gone and stop: nothing decodes for a dead server.
    wait_for(lambda: not _processes_of(out), timeout=10)
    assert stage_status(manifest, "asr") == "running"

    second = start(out, port=port)
    try:
        with second.client() as client:
            wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["state"] == "done",
                     timeout=300)
    finally:
        stop(second)
    runs = json.loads(manifest.read_text())["runs"]
    assert runs[-1]["stages"]["demux"] == runs[-1]["stages"]["vad"] == "reused"
    assert runs[-1]["stages"]["asr"] == "ran"
