import datetime as dt
import json

import pytest
import srt
import webvtt

from cpwhisperx import writers
from cpwhisperx.transcript import Segment, Transcript, Word

pytestmark = pytest.mark.fast

SAMPLE = Transcript("en", (
    Segment(0.5, 2.25, "Fish & chips <now> --> later", (Word(0.5, 1.0, "Fish"),)),
    Segment(2.25, 2.25, ""),  # empty segments are not cues
    Segment(3661.0, 3662.5, "An hour\tlater\nstill"),
))


CUES = [(s.start, s.end, s.text) for s in SAMPLE.segments if s.text]


def test_srt_parses_back() -> None:
    subs = list(srt.parse(writers.srt_text(CUES)))
    assert [s.content for s in subs] == ["Fish & chips <now> --> later", "An hour\tlater\nstill"]
    assert subs[0].start == dt.timedelta(seconds=0.5)
    assert subs[1].end == dt.timedelta(seconds=3662.5)


def test_vtt_parses_back_with_escaped_text() -> None:
    vtt = webvtt.from_string(writers.vtt_text(CUES))
    assert [c.start for c in vtt] == ["00:00:00.500", "01:01:01.000"]
    assert "&amp;" in writers.vtt_text(CUES) and "-->" not in vtt[0].raw_text


def test_txt_and_tsv() -> None:
    assert writers.to_txt(SAMPLE) == "Fish & chips <now> --> later\nAn hour\tlater\nstill\n"
    assert writers.to_tsv(SAMPLE).splitlines() == [
        "start\tend\ttext", "500\t2250\tFish & chips <now> --> later",
        "3661000\t3662500\tAn hour later still"]


def test_json_reads_back_as_ours_and_as_whisperx_writes_it() -> None:
    said = Transcript("en", (Segment(0.5, 1.5, "Ask not", (
        Word(0.5, 0.9, "Ask", 0.75, "SPEAKER_00"), Word(1.0, 1.5, "not", 0.5, "SPEAKER_00")),
        speaker="SPEAKER_00"),))
    data = json.loads(writers.to_json(said))
    assert Transcript.from_dict(data) == said
    # WhisperX's keys: what scripts written for `whisperx --output_format json` read.
    words = data["segments"][0]["words"]
    assert [(w["word"], w["start"], w["end"], w["score"], w["speaker"]) for w in words] == [
        ("Ask", 0.5, 0.9, 0.75, "SPEAKER_00"), ("not", 1.0, 1.5, 0.5, "SPEAKER_00")]
    assert data["word_segments"] == words and data["segments"][0]["speaker"] == "SPEAKER_00"


def test_empty_transcript_writes_valid_empty_files() -> None:
    empty = Transcript("en", ())
    assert writers.srt_text([]) == ""
    assert writers.vtt_text([]).startswith("WEBVTT")
    assert writers.to_txt(empty) == ""
    assert writers.to_tsv(empty) == "start\tend\ttext\n"
    assert Transcript.from_dict(json.loads(writers.to_json(empty))) == empty
