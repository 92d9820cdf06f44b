"""Scoring against ``../shared/eval``: its manifest, text normalisation and WER/CER.

Needs the ``[dev]`` extra (jiwer, whisper-normalizer); used by tests and ``bench/``.
"""

import json
import os
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np


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


# Speaker diarization: conversations with exact turns, RTTM, DER.

RATE = 16000


@dataclass(frozen=True, slots=True)
class Turn:
    """One speaker's stretch of speech, in seconds from the start of the file."""

    start: float
    end: float
    speaker: str
    text: str = ""


# What the espeak-ng voices say: short lines of dialogue, no numbers (so WER needs no number
# normalisation), written for this project (CC0 like the eval texts).
_DIALOGUE = (
    "Did anyone check the weather before we left this morning?",
    "I think the meeting moved to the small room upstairs.",
    "Could you send me the notes when you get a chance?",
    "That sounds fine to me, as long as we finish early.",
    "We should ask the others what they think about it.",
    "I left my umbrella on the train again yesterday.",
    "Let me read the last part of the letter out loud.",
    "Nobody told me the library closes early on Fridays.",
    "The coffee machine on the second floor is broken again.",
    "Maybe we can walk to the river after lunch.",
    "I would rather wait until the end of the week.",
    "Please remind me to call my sister tonight.",
)

# en_jfk split at its three long pauses (found by energy, see _jfk_pieces), with their words.
_JFK_PHRASES = ("And so, my fellow Americans,", "ask not",
                "what your country can do for you,", "ask what you can do for your country.")


def _decode(path: Path) -> np.ndarray:
    """Any media as 16 kHz mono float32 samples (numpy), through ffmpeg."""
    import subprocess

    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-ac", "1",
                           "-ar", str(RATE), "-f", "f32le", "-"], capture_output=True, check=True)
    return np.frombuffer(proc.stdout, np.float32).copy()


def _frames_db(samples: np.ndarray, hop: int) -> np.ndarray:
    n = len(samples) // hop
    power = (samples[:n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


def _trim(samples: np.ndarray, *, within_db: float = 45) -> np.ndarray:
    """From the first to the last 5 ms frame within ``within_db`` of the loudest one: the
    eval set's own rule for where a piece of speech starts and ends."""
    hop = RATE // 200
    db = _frames_db(samples, hop)
    active = np.flatnonzero(db > db.max() - within_db)
    return samples[active[0] * hop:(active[-1] + 1) * hop]


def _loud(samples: np.ndarray, *, dbfs: float = -23.0) -> np.ndarray:
    """RMS-normalised so no voice wins by loudness, with 3 ms fades so the cuts do not click."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1.0
    out = samples * (10 ** (dbfs / 20) / rms)
    fade = min(len(out) // 2, RATE * 3 // 1000)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out[:fade] *= ramp
    out[len(out) - fade:] *= ramp[::-1]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _joe() -> list[tuple[np.ndarray, str]]:
    """Single sentences cut out of the clean Piper clips at their exact times (clips with a
    background, and the one read word by word, are left out)."""
    pieces = []
    for item in items():
        if (item.kind != "tts" or item.language != "en" or item.path.suffix != ".flac"
                or item.meta.get("background") or item.words is not None or not item.sentences):
            continue
        samples = _decode(item.path)
        pieces += [(samples[round(s["start"] * RATE):round(s["end"] * RATE)], s["text"])
                   for s in item.sentences]
    return pieces


def _jfk_pieces() -> list[tuple[np.ndarray, str]]:
    """The real JFK recording split at its pauses: a pause is 0.5 s of 10 ms frames within
    8 dB of the recording's noise floor. The whole clip is one piece if the pauses do not
    give the four known phrases."""
    item = next(i for i in items() if i.id == "en_jfk")
    samples = _decode(item.path)
    hop = RATE // 100
    db = _frames_db(samples, hop)
    active = np.flatnonzero(db > np.percentile(db, 10) + 8)
    breaks = np.flatnonzero(np.diff(active) > 50)  # more than 0.5 s between active frames
    runs = np.split(active, breaks + 1)
    if len(runs) != len(_JFK_PHRASES) or " ".join(_JFK_PHRASES) != item.text:
        return [(_trim(samples), item.text or "")]
    margin = 2  # 20 ms either side: the recording has its room's noise, not digital silence
    return [(samples[max(0, (r[0] - margin) * hop):(r[-1] + 1 + margin) * hop], text)
            for r, text in zip(runs, _JFK_PHRASES, strict=True)]


def _espeak(variant: str, lines: Sequence[str]) -> list[tuple[np.ndarray, str]]:
    """``espeak-ng -v en-us+<variant>`` saying each line, resampled to 16 kHz by ffmpeg."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: make speech-deps (apt-get install "
                           "espeak-ng)")
    pieces = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, line in enumerate(lines):
            wav = Path(tmp) / f"{k}.wav"
            subprocess.run(["espeak-ng", "-v", f"en-us+{variant}", "-w", str(wav), line],
                           check=True, capture_output=True)
            pieces.append((_trim(_decode(wav)), line))
    return pieces


def _speaker_order(voices: Sequence[str], turns: int, rng: random.Random) -> list[str]:
    """Rounds of every voice in a shuffled order, a round never starting with the voice that
    ended the last one: counts stay within one of each other and nobody follows themselves."""
    order: list[str] = []
    while len(order) < turns:
        round_ = list(voices)
        rng.shuffle(round_)
        if order and round_[0] == order[-1]:
            round_[0], round_[-1] = round_[-1], round_[0]
        order += round_
    return order[:turns]


def conversation(folder: Path, *, voices: Sequence[str] = ("joe", "jfk", "espeak-f3"),
                 turns: int = 18, seed: int = 0, name: str | None = None,
                 ) -> tuple[Path, list[Turn]]:
    """A multi-speaker English conversation with exact turns, from speech that ships: Piper's
    joe (sentences of the eval clips), the real JFK clip (its phrases) and espeak-ng voices
    (``espeak-<variant>``, e.g. ``espeak-f3``, ``espeak-m1``). Each turn is one utterance at
    -23 dBFS RMS, turns are 0.2-0.8 s apart and no speaker follows itself.

    Writes ``<name>.wav`` (16 kHz mono 16-bit), ``<name>.rttm`` (the reference, speakers named
    after the voices) and ``<name>.txt`` (the words, in order) to ``folder``; returns the WAV
    and the turns. The same seed gives the same file, byte for byte, on the same machine."""
    _distinct(voices)
    if turns < len(voices):
        raise ValueError(f"{turns} turns cannot hold {len(voices)} speakers")
    if unknown := [v for v in voices if v not in ("joe", "jfk") and not v.startswith("espeak-")]:
        raise ValueError(f"unknown voice {unknown[0]!r}: joe, jfk or espeak-<variant>")
    rng = random.Random(seed)
    pools: dict[str, list[tuple[np.ndarray, str]]] = {}
    for voice in voices:
        if voice == "joe":
            pools[voice] = _joe()
        elif voice == "jfk":
            pools[voice] = _jfk_pieces()
        else:
            lines = list(_DIALOGUE)
            random.Random(f"{seed}-{voice}").shuffle(lines)
            pools[voice] = _espeak(voice.removeprefix("espeak-"), lines[:-(-turns // len(voices))])
    # Each voice goes through its utterances in a seeded order before any comes again.
    queues: dict[str, list[tuple[np.ndarray, str]]] = {voice: [] for voice in voices}
    said = []
    for speaker in _speaker_order(voices, turns, rng):
        if not queues[speaker]:
            queues[speaker] = rng.sample(pools[speaker], len(pools[speaker]))
        said.append((speaker, *queues[speaker].pop(), rng.uniform(0.2, 0.8)))
    return _join(folder, name or f"conversation_{'_'.join(voices)}_{seed}", said)


def _distinct(voices: Sequence[str]) -> None:
    if len(set(voices)) != len(voices) or len(voices) < 2:
        raise ValueError(f"voices must be two or more different ones: {list(voices)}")


def relay(folder: Path, *, voices: Sequence[str] = ("m1", "f3"), turns: int = 12,
          seed: int = 0, name: str | None = None) -> tuple[Path, list[Turn]]:
    """Espeak-ng voices (variants: ``m1``, ``f3``, ...) taking over from each other in the
    middle of sentences, with no pause: the dialogue lines read as one text, cut into turns of
    7-14 words at random, each turn said by the next voice (no voice follows itself) and joined
    to the last without a gap. Most changes of speaker fall inside a sentence, where neither a
    pause nor punctuation shows them. Written as ``conversation`` writes its files."""
    _distinct(voices)
    rng = random.Random(seed)
    words: list[str] = []
    said = []
    for voice in _speaker_order(voices, turns, rng):
        size = rng.randint(7, 14)
        while len(words) < size:
            words += " ".join(rng.sample(_DIALOGUE, len(_DIALOGUE))).split()
        text, words = " ".join(words[:size]), words[size:]
        said.append((f"espeak-{voice}", *_espeak(voice, [text])[0], 0.0))
    return _join(folder, name or f"relay_{'_'.join(voices)}_{seed}", said)


def dialogue(folder: Path, script: Sequence[tuple[str, str]], *, gap: float, name: str
             ) -> tuple[Path, list[Turn]]:
    """``(espeak variant, line)`` pairs said in turn, ``gap`` seconds apart (a quick exchange:
    "Coming?" "No."), written as ``conversation`` writes its files."""
    said = [(f"espeak-{variant}", *_espeak(variant, [line])[0], gap) for variant, line in script]
    return _join(folder, name, said)


def _join(folder: Path, stem: str, said: Sequence[tuple[str, np.ndarray, str, float]]
          ) -> tuple[Path, list[Turn]]:
    """``(speaker, samples, text, gap after)`` one after the other, 0.5 s of silence at each
    end: ``<stem>.wav``, ``.rttm`` and ``.txt`` in ``folder``; the WAV and the turns."""
    import wave

    chunks = [np.zeros(RATE // 2, np.float32)]
    position = len(chunks[0])
    result: list[Turn] = []
    for speaker, samples, text, after in said:
        speech = _loud(samples)
        result.append(Turn(start=position / RATE, end=(position + len(speech)) / RATE,
                           speaker=speaker, text=text))
        gap = np.zeros(round(after * RATE), np.float32)
        chunks += [speech, gap]
        position += len(speech) + len(gap)
    chunks[-1] = np.zeros(RATE // 2, np.float32)
    audio = np.concatenate(chunks)
    path = folder / f"{stem}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.round(audio * 32767)).astype("<i2").tobytes())
    write_rttm(folder / f"{stem}.rttm", result, file=stem)
    (folder / f"{stem}.txt").write_text(" ".join(t.text for t in result) + "\n", encoding="utf-8")
    return path, result


def write_rttm(path: Path, turns: Sequence[Turn], *, file: str) -> None:
    """Turns as RTTM SPEAKER lines (NIST's format, what md-eval and pyannote read)."""
    from cpwhisperx import writers

    path.write_text(writers.rttm_text(((t.start, t.end, t.speaker) for t in turns), file_id=file),
                    encoding="utf-8")


def read_rttm(path: Path, *, file: str | None = None) -> list[Turn]:
    """The SPEAKER lines of an RTTM file (of one ``file`` when it holds several), by start."""
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] != "SPEAKER" or (file and fields[1] != file):
            continue
        start, duration = float(fields[3]), float(fields[4])
        turns.append(Turn(start=start, end=start + duration, speaker=fields[7]))
    return sorted(turns, key=lambda t: (t.start, t.end))


def der(reference: Sequence[Turn], hypothesis: Sequence[Turn], *, collar: float = 0.25) -> float:
    """Diarization error rate: (missed + false alarm + confused speech) / reference speech, with
    speakers mapped one to one for the least error and ``collar`` seconds either side of each
    reference boundary not scored (NIST md-eval ``-c 0.25``); overlap is scored. Needs
    pyannote.metrics (the ``[dev]`` extra), whose own ``collar`` is the total width."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    if not reference:
        raise ValueError("an empty reference has no diarization error rate")

    def annotation(turns: Sequence[Turn]) -> Annotation:
        result = Annotation()
        for k, t in enumerate(turns):
            result[Segment(t.start, t.end), k] = t.speaker
        return result

    end = max(t.end for t in [*reference, *hypothesis])
    metric = DiarizationErrorRate(collar=2 * collar, skip_overlap=False)
    return float(metric(annotation(reference), annotation(hypothesis),
                        uem=Timeline([Segment(0, end)])))


def speakers_found(turns: Sequence[Turn]) -> int:
    return len({t.speaker for t in turns})


# A real Ray cluster on this machine, for the batch tests and bench/batch.py: `ray start --head`
# and more nodes (each its own raylet and worker processes), on loopback.

def processes(needle: str) -> list[int]:
    """The processes whose command line holds ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and everything under it."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") + sum(tree_rss(c) for c in children(pid))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """A head and ``nodes - 1`` more nodes of ``cpus`` CPUs each (and the GPUs ``gpus`` says
    each has: declared, so Ray schedules on them, whether the machine has them or not), their
    files under a temporary folder; ``stop`` kills every process that folder names."""

    def __init__(self, *, nodes: int = 2, cpus: int = 1, gpus: Sequence[int] = ()) -> None:
        import subprocess
        import sys
        import tempfile

        self.temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # socket paths are short
        self.address = f"127.0.0.1:{free_port()}"
        self.ports = [free_port() for _ in range(nodes)]  # each node's raylet, found by it
        self.dashboard = f"http://127.0.0.1:{free_port()}"
        ray = str(Path(sys.executable).parent / "ray")
        common = [f"--num-cpus={cpus}", f"--temp-dir={self.temp}", "--disable-usage-stats"]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        try:
            for index, port in enumerate(self.ports):
                where = ([f"--address={self.address}"] if index else
                         ["--head", f"--port={self.address.rpartition(':')[2]}",
                          f"--ray-client-server-port={free_port()}",
                          f"--dashboard-port={self.dashboard.rpartition(':')[2]}"])
                declared = [f"--num-gpus={gpus[index]}"] if index < len(gpus) else []
                subprocess.run([ray, "start", *where, f"--node-manager-port={port}", *declared,
                                *common], check=True, env=env, capture_output=True, timeout=120)
        except BaseException:
            self.stop()
            raise

    def raylet(self, node: int) -> int:
        """The pid of node ``node``'s raylet (0: the head)."""
        [pid] = processes(f"--node_manager_port={self.ports[node]}\0")
        return pid

    def stop(self) -> None:
        import shutil
        import signal

        for pid in processes(str(self.temp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        shutil.rmtree(self.temp, ignore_errors=True)
