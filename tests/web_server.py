"""A ``cpwhisperx serve`` in a child process, for the server's and the page's tests."""

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from conftest import REPO, wait_for
from cpwhisperx.evaluation import free_port

TOKEN = "test-token-1234"


@dataclass
class Server:
    url: str
    out: Path
    proc: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=300)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=TOKEN, max_retries=0)


def start(out: Path, *args: str, port: int | None = None,
          env: dict[str, str] | None = None) -> Server:
    port = port or free_port()
    out.mkdir(parents=True, exist_ok=True)
    stderr = out / f"serve-{port}.stderr"  # a file, not a pipe that could fill and block it
    with stderr.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cpwhisperx", "--out", str(out), "serve", "--port",
             str(port), *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
            env={**os.environ, **(env or {}), "CPWHISPERX_API_TOKEN": TOKEN})
    server = Server(f"http://127.0.0.1:{port}", out, proc)

    def up() -> bool:
        assert proc.poll() is None, stderr.read_text()
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(server.url + "/api/jobs").status_code == 401
        return False

    wait_for(up, timeout=60)
    return server


def stop(server: Server) -> None:
    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
