"""Scoring against ``../shared/eval``: its manifest, text normalisation and WER/CER.

Needs the ``[dev]`` extra (jiwer, whisper-normalizer); used by tests and ``bench/``.
"""

import json
import os
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


def eval_root() -> Path:
    """``CPWHISPERX_EVAL`` or the ``shared/eval`` folder beside the repository."""
    if explicit := os.environ.get("CPWHISPERX_EVAL"):
        return Path(explicit)
    return Path(__file__).resolve().parents[3] / "shared" / "eval"


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    path: Path
    language: str | None
    kind: str
    duration: float | None
    text: str | None
    expect: str
    meta: dict[str, Any]
    words: list[dict[str, Any]] | None
    sentences: list[dict[str, Any]] | None


def items(root: Path | None = None) -> list[Item]:
    root = root or eval_root()
    entries = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    return [Item(id=e["id"], path=root / e["file"], language=e["language"], kind=e["kind"],
                 duration=e["duration"], text=e["text"], expect=e["expect"],
                 meta=e.get("meta") or {}, words=e.get("words"), sentences=e.get("sentences"))
            for e in entries]


@cache
def _english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str, language: str | None) -> str:
    """Whisper's English normaliser for English (numbers, spelling); NFC + lowercase + no
    punctuation otherwise (Devanagari vowel signs are marks and stay)."""
    if language == "en":
        return _english_normalizer()(text)
    text = unicodedata.normalize("NFC", text).lower()
    return " ".join("".join(c if unicodedata.category(c)[0] in "LMN" else " " for c in text)
                    .split())


def wer(reference: str, hypothesis: str, language: str | None) -> float:
    import jiwer

    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.wer(ref, hyp or "")


def cer(reference: str, hypothesis: str, language: str | None) -> float:
    import jiwer

    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.cer(ref, hyp or "")


def transcribe(item: Item, *args: str) -> tuple[dict[str, Any], float]:
    """Run ``cpwhisperx transcribe`` on a clip in a fresh output folder, as a user would;
    return the transcript JSON and the wall time of the whole process."""
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "cpwhisperx", "--out", out, "transcribe", str(item.path),
               "-s", item.language or "auto", *args]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{item.id}: {proc.stderr.strip().splitlines()[-1]}")
        result = next(Path(out).glob(f"*/*/*/outputs/{item.path.stem}.json"))
        return json.loads(result.read_text(encoding="utf-8")), seconds


def long_form(minutes: float, folder: Path) -> tuple[Path, str, float]:
    """The English clips joined end to end (FLAC, no re-encoding of the speech), repeated to
    about ``minutes``; returns the file, its reference text and its duration in seconds."""
    import subprocess

    clips = [i for i in items() if i.language == "en" and i.text and i.path.suffix == ".flac"]
    seconds = sum(i.duration or 0 for i in clips)
    repeats = max(1, round(minutes * 60 / seconds))
    order = clips * repeats
    path = folder / f"long_{minutes:g}min.flac"
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{i.path}'\n" for i in order), encoding="utf-8")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c:a", "flac", str(path)], check=True)
    return path, " ".join(i.text or "" for i in order), seconds * repeats
