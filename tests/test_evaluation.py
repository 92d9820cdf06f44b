"""Diarization scoring: synthetic conversations with exact turns, RTTM and DER (collar ±0.25 s),
checked against numbers worked out by hand."""

import itertools
import shutil
import wave
from pathlib import Path

import pytest

from cpwhisperx import evaluation
from cpwhisperx.evaluation import Turn

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="no espeak-ng: make speech-deps (apt-get install "
                                         "espeak-ng)")

# Three speakers, ten seconds each, back to back.
THREE = [Turn(0, 10, "A"), Turn(10, 20, "B"), Turn(20, 30, "C")]


def audio_seconds(path: Path) -> float:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 16000, 2)
        return wav.getnframes() / wav.getframerate()


def check_turns(path: Path, turns: list[Turn], voices: tuple[str, ...], count: int) -> None:
    assert len(turns) == count
    assert {t.speaker for t in turns} == set(voices)
    assert evaluation.speakers_found(turns) == len(voices)
    for before, after in itertools.pairwise(turns):
        assert after.speaker != before.speaker
        assert after.start - before.end >= 0.2 - 1e-9  # gaps of 0.2-0.8 s
        assert after.start - before.end <= 0.8 + 1e-3
    assert all(0 <= t.start < t.end for t in turns)
    assert all(t.text for t in turns)
    seconds = audio_seconds(path)
    assert turns[-1].end <= seconds
    assert seconds - turns[-1].end < 1.0
    # The files written beside it: the reference RTTM (ms resolution) and the words.
    rttm = evaluation.read_rttm(path.with_suffix(".rttm"))
    assert [t.speaker for t in rttm] == [t.speaker for t in turns]
    assert all(abs(a.start - b.start) < 2e-3 and abs(a.end - b.end) < 2e-3
               for a, b in zip(rttm, turns, strict=True))
    assert path.with_suffix(".txt").read_text().split() == " ".join(t.text
                                                                    for t in turns).split()


@pytest.mark.fast
def test_two_speaker_conversation_from_the_shipped_speech(tmp_path: Path) -> None:
    # Piper's joe and the real JFK recording: no espeak-ng needed.
    voices = ("joe", "jfk")
    path, turns = evaluation.conversation(tmp_path, voices=voices, turns=10, seed=3)
    check_turns(path, turns, voices, 10)
    assert {t.text for t in turns if t.speaker == "jfk"} <= set(evaluation._JFK_PHRASES)


@pytest.mark.fast
@needs_espeak
def test_three_speaker_conversation(tmp_path: Path) -> None:
    voices = ("joe", "jfk", "espeak-f3")
    path, turns = evaluation.conversation(tmp_path, voices=voices)
    check_turns(path, turns, voices, 18)
    assert [sum(t.speaker == v for t in turns) for v in voices] == [6, 6, 6]
    assert 40 < audio_seconds(path) < 120
    assert evaluation.der(turns, evaluation.read_rttm(path.with_suffix(".rttm"))) == 0


@pytest.mark.fast
@needs_espeak
def test_conversation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    voices = ("espeak-m1", "joe", "espeak-f3")
    built = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        (tmp_path / name).mkdir()
        built.append(evaluation.conversation(tmp_path / name, voices=voices, turns=9, seed=seed))
    (first, turns), (again, turns_again), (_, other) = built
    assert turns == turns_again
    assert first.read_bytes() == again.read_bytes()
    assert turns != other


@pytest.mark.fast
@needs_espeak
def test_relay_hands_over_in_the_middle_of_sentences_without_a_gap(tmp_path: Path) -> None:
    path, turns = evaluation.relay(tmp_path, voices=("m1", "f3"), turns=6, seed=2)
    assert len(turns) == 6 and {t.speaker for t in turns} == {"espeak-m1", "espeak-f3"}
    for before, after in itertools.pairwise(turns):
        assert after.speaker != before.speaker and abs(after.start - before.end) < 1e-9
    assert all(7 <= len(t.text.split()) <= 14 for t in turns)
    assert sum(not t.text.endswith((".", "?", "!")) for t in turns[:-1]) >= 3
    assert turns[0].start >= 0.5 and audio_seconds(path) - turns[-1].end < 0.6
    assert evaluation.der(turns, evaluation.read_rttm(path.with_suffix(".rttm"))) == 0
    assert path.with_suffix(".txt").read_text().split() == " ".join(t.text
                                                                    for t in turns).split()
    with pytest.raises(ValueError, match="different"):
        evaluation.relay(tmp_path, voices=("m1", "m1"))


@pytest.mark.fast
def test_conversation_refuses_what_it_cannot_build(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="different"):
        evaluation.conversation(tmp_path, voices=("joe", "joe"))
    with pytest.raises(ValueError, match="cannot hold"):
        evaluation.conversation(tmp_path, voices=("joe", "jfk", "espeak-m1"), turns=2)
    with pytest.raises(ValueError, match="unknown voice"):
        evaluation.conversation(tmp_path, voices=("joe", "festival-kal"))


@pytest.mark.fast
def test_der_is_zero_for_the_reference_and_ignores_label_names() -> None:
    assert evaluation.der(THREE, THREE) == 0
    renamed = [Turn(t.start, t.end, {"A": "spk2", "B": "spk0", "C": "spk1"}[t.speaker])
               for t in THREE]
    assert evaluation.der(THREE, renamed) == 0
    assert evaluation.speakers_found(renamed) == 3


@pytest.mark.fast
def test_der_of_known_errors() -> None:
    # Scored reference speech with a ±0.25 s collar: 30 s less 0.25 at each end and 0.5 at each
    # of the two changes = 28.5 s; each 10 s turn keeps 9.5 s of it.
    merged = [Turn(0, 10, "x"), Turn(10, 20, "y"), Turn(20, 30, "y")]
    assert evaluation.der(THREE, merged) == pytest.approx(9.5 / 28.5)  # C confused: 1/3
    assert evaluation.der(THREE, merged, collar=0) == pytest.approx(10 / 30)
    missed = [THREE[0], THREE[2]]
    assert evaluation.der(THREE, missed) == pytest.approx(1 / 3)  # B missed
    extra = [*THREE, Turn(30, 33, "D")]  # false alarm after 30.25 s: 2.75 s
    assert evaluation.der(THREE, extra) == pytest.approx(2.75 / 28.5)
    assert evaluation.der(THREE, []) == pytest.approx(1.0)
    # Half of B given to A: confusion from 15 s (not a reference boundary, no collar) to 19.75.
    half = [Turn(0, 10, "A"), Turn(10, 15, "B"), Turn(15, 20, "A"), Turn(20, 30, "C")]
    assert evaluation.der(THREE, half) == pytest.approx(4.75 / 28.5)


@pytest.mark.fast
def test_collar_makes_a_small_boundary_shift_free() -> None:
    shifted = [Turn(0.2, 10.2, "A"), Turn(10.2, 19.8, "B"), Turn(19.8, 29.9, "C")]
    assert evaluation.der(THREE, shifted) == 0
    # Without a collar: 0.2 s missed at the start, 0.2 + 0.2 s confused, 0.1 s missed at the end.
    assert evaluation.der(THREE, shifted, collar=0) == pytest.approx(0.7 / 30)


@pytest.mark.fast
def test_rttm_round_trip(tmp_path: Path) -> None:
    rttm = tmp_path / "two.rttm"
    evaluation.write_rttm(rttm, THREE, file="one")
    with rttm.open("a") as out:
        out.write(";; a comment\nSPEAKER other 1 0.000 5.000 <NA> <NA> Z <NA> <NA>\n")
    assert evaluation.read_rttm(rttm, file="one") == THREE
    assert len(evaluation.read_rttm(rttm)) == 4
    assert rttm.read_text().splitlines()[0] == "SPEAKER one 1 0.000 10.000 <NA> <NA> A <NA> <NA>"
