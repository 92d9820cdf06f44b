"""Every file that `transcribe`, `translate` and `subtitle` write for the clips and media of the
evaluation set obeys the contract, as a player or an editor reads it: cues and segments in
order and never overlapping, no word or cue of zero length, none past the media's end, no
number split into words or across cues or lines, every subtitle line at most 42 characters."""

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import pytest
import srt
import webvtt

from conftest import cli, clip, ffprobe_streams, job_of, job_root
from cpwhisperx.text import subtitles

# clips; Hindi through Whisper's own translation, the film through the acceptance command.
RUNS = [
    *[("subtitle", name, ("-s", "en", "-t", "en"))
      for name in ("en_jfk", "en_news_flood", "en_lecture_plants", "en_film_station",
                   "en_numbers_final", "en_words_cooking", "en_eggs_noise10", "en_sports_music5")],
    ("translate", "hi_news_rain", ("-s", "hi", "-t", "en")),
    ("subtitle", "hi_kitchen", ("-s", "hi", "-t", "hi,en", "--translator", "whisper")),
    ("subtitle", "media_film_mp4", ("-t", "en,hi")),
    ("transcribe", "media_en_hi_mkv", ()),
    ("transcribe", "noise_only_room", ()),
    ("transcribe", "music_only_chords", ()),
]
LINE_CHARS = 42
# A piece of a number written as a word of its own: ",500" or ".2" after "38" or "$1".
NUMBER_PIECE = re.compile(r"^[,.]\d")
SPLIT_NUMBER = re.compile(r"(?:^|\s)[,.]\d", re.MULTILINE)  # the same piece on a line or cue


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, float]]:
    """(job folder, media duration) of every run, each run as a user runs it."""
    out = tmp_path_factory.mktemp("outputs")
    done = []
    for workflow, name, options in RUNS:
        proc = cli(out, workflow, str(clip(name)), *options, env={"LLM_MODEL": ""},
                   timeout=900)
        assert proc.returncode == 0, f"{workflow} {name}: {proc.stderr}"
        root = job_root(out, job_of(proc))
        done.append((root, json.loads((root / "01_demux" / "media.json").read_text())
                     ["duration"]))
    return done


def _files(jobs: list[tuple[Path, float]], *suffixes: str) -> list[tuple[Path, float]]:
    found = [(path, duration) for root, duration in jobs
             for path in sorted((root / "outputs").iterdir()) if path.suffix in suffixes]
    assert found
    return found


def _in_order(spans: list[tuple[float, float]], duration: float, what: str) -> None:
    for start, end in spans:
        assert 0 <= start < end <= duration + 1e-3, f"{what}: {start}-{end} of {duration}"
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start + 1e-9, f"{what}: overlap {end} > {start}"


def test_json_transcripts(jobs) -> None:
    for path, duration in _files(jobs, ".json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        segments = data["segments"]
        _in_order([(s["start"], s["end"]) for s in segments], duration, f"{path.name} segments")
        words = [w for s in segments for w in s["words"]]
        _in_order([(w["start"], w["end"]) for w in words], duration, f"{path.name} words")
        for segment in segments:
            if segment["words"]:
                assert segment["start"] <= segment["words"][0]["start"]
                assert segment["words"][-1]["end"] <= segment["end"]
        assert not [w["text"] for w in words if NUMBER_PIECE.match(w["text"])], path.name
        assert data["text"] == " ".join(s["text"] for s in segments)


def _check_cues(path: Path, duration: float, cues: list[tuple[float, float, str]]) -> None:
    _in_order([(start, end) for start, end, _ in cues], duration, path.name)
    for _, _, text in cues:
        lines = text.splitlines()
        assert 1 <= len(lines) <= 2, (path.name, text)
        assert all(subtitles.graphemes(line) <= LINE_CHARS for line in lines), (path.name, text)
    joined = "\n".join(text for _, _, text in cues)
    assert not SPLIT_NUMBER.search(joined), path.name


def test_srt_files(jobs) -> None:
    for path, duration in _files(jobs, ".srt"):
        cues = [(c.start / dt.timedelta(seconds=1), c.end / dt.timedelta(seconds=1), c.content)
                for c in srt.parse(path.read_text(encoding="utf-8"))]
        _check_cues(path, duration, cues)


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_vtt_files(jobs) -> None:
    for path, duration in _files(jobs, ".vtt"):
        cues = [(_seconds(c.start), _seconds(c.end), c.text) for c in webvtt.read(str(path))]
        _check_cues(path, duration, cues)


def test_tsv_files(jobs) -> None:
    for path, duration in _files(jobs, ".tsv"):
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        assert header == "start\tend\ttext"
        spans = [(int(r.split("\t")[0]) / 1000, int(r.split("\t")[1]) / 1000) for r in rows]
        _in_order(spans, duration, path.name)


def test_muxed_files_keep_the_duration_and_name_their_tracks(jobs) -> None:
    muxed = [(root, path) for root, _ in jobs for path in (root / "outputs").iterdir()
             if ".subtitled." in path.name]
    assert muxed
    for root, path in muxed:
        source = Path(json.loads((root / "job.json").read_text())["media"])
        _, duration = ffprobe_streams(source)
        streams, muxed_duration = ffprobe_streams(path)
        assert abs(muxed_duration - duration) <= 0.05, path.name
        names = [s["tags"].get("title") or s["tags"].get("handler_name")
                 for s in streams if s["codec_type"] == "subtitle"]
        assert names and all(n and n != "SubtitleHandler" for n in names), (path.name, names)
