"""The clean stage: exactly the injected hallucinations go, everything else stays."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import cli, clip, job_of, job_root
from cpwhisperx import hallucinations
from cpwhisperx.hallucinations import Options, collapse_loops, norm
from cpwhisperx.transcript import Segment, Transcript, Word

SPEECH = [(0.0, 40.0), (50.0, 80.0)]  # VAD regions; 40-50 s is silence


def seg(start: float, end: float, text: str, *, logprob: float = -0.2, no_speech: float = 0.02,
        word_prob: float = 0.9) -> Segment:
    """A segment with words spread evenly over it, and the decoder scores given."""
    tokens = text.split()
    step = (end - start) / len(tokens)
    words = tuple(Word(round(start + i * step, 3), round(start + (i + 1) * step, 3), t,
                       word_prob) for i, t in enumerate(tokens))
    return Segment(start, end, text, words, avg_logprob=logprob, no_speech_prob=no_speech)


@pytest.mark.fast
def test_exactly_the_injected_hallucinations_are_removed() -> None:
    real = [
        seg(0.0, 3.0, "The weather today is sunny and warm."),
        seg(3.5, 5.0, "No, no, no, not the red one."),  # three in a row: speech, kept
        seg(5.5, 6.5, "Thank you."),  # a phantom phrase, but well supported: kept
        seg(56.0, 58.0, "Then the minister spoke."),
    ]
    loop_inside = seg(7.0, 12.0, "I think that that that that that is right.")
    sorry = [seg(13.0 + i, 13.8 + i, "I'm sorry.") for i in range(5)]
    phantom = seg(20.0, 22.0, "Thanks for watching!", logprob=-0.9, no_speech=0.45)
    in_silence = seg(42.0, 45.0, "Okay, let's go.")
    no_speech = seg(25.0, 27.0, "So what is it now?", logprob=-1.4, no_speech=0.9)
    too_fast = seg(30.0, 30.6, "Supercalifragilisticexpialidocious extraordinarily fast.")
    too_slow = seg(60.0, 68.0, "Hmm.")
    segments = sorted([*real, loop_inside, *sorry, phantom, in_silence, no_speech, too_fast,
                       too_slow], key=lambda s: s.start)
    cleaned, removed = hallucinations.clean(Transcript("en", tuple(segments)), speech=SPEECH,
                                            options=Options())

    assert [s.text for s in cleaned.segments] == [
        "The weather today is sunny and warm.", "No, no, no, not the red one.", "Thank you.",
        "I think that is right.", "I'm sorry.", "Then the minister spoke."]
    assert [(r.rule, r.text) for r in removed] == [
        ("loops", "that that that that"), *[("loops", "I'm sorry.")] * 4,
        ("phrases", "Thanks for watching!"), ("silence", "So what is it now?"),
        ("rate", "Supercalifragilisticexpialidocious extraordinarily fast."),
        ("silence", "Okay, let's go."), ("rate", "Hmm.")]
    assert removed[0].why == "'that' repeated 5 times in a row; kept once"
    assert removed[5].why.startswith("known phantom phrase, weakly supported (no-speech "
                                     "probability 0.45, average log-probability -0.90")
    collapsed = cleaned.segments[3]  # words follow the text, and the times the words
    assert [w.text for w in collapsed.words] == collapsed.text.split()
    assert (collapsed.start, collapsed.end) == (collapsed.words[0].start, collapsed.words[-1].end)


@pytest.mark.fast
def test_rules_can_be_switched_off() -> None:
    segments = (seg(0.0, 2.0, "Thanks for watching!", logprob=-0.9, no_speech=0.45),
                seg(42.0, 45.0, "Okay, let's go."))
    transcript = Transcript("en", segments)
    kept, removed = hallucinations.clean(transcript, speech=SPEECH,
                                         options=Options(rules=frozenset({"silence"})))
    assert [s.text for s in kept.segments] == ["Thanks for watching!"] and len(removed) == 1
    kept, removed = hallucinations.clean(transcript, speech=SPEECH,
                                         options=Options(rules=frozenset()))
    assert kept == transcript and removed == []


@pytest.mark.fast
def test_hindi_phantom_phrase_and_english_one_on_hindi_audio() -> None:
    weak = {"logprob": -1.1, "no_speech": 0.5}
    segments = (seg(0.0, 3.0, "आज मौसम साफ़ रहेगा।"), seg(4.0, 6.0, "देखने के लिए धन्यवाद।", **weak),
                seg(7.0, 9.0, "Thank you for watching.", **weak))
    kept, removed = hallucinations.clean(Transcript("hi", segments), speech=SPEECH,
                                         options=Options())
    assert [s.text for s in kept.segments] == ["आज मौसम साफ़ रहेगा।"]
    assert [r.rule for r in removed] == ["phrases", "phrases"]


def _has_loop(keys: list[str], limit: int) -> bool:
    for i in range(len(keys)):
        for n in range(1, len(keys) // (limit + 1) + 1):
            gram = keys[i:i + n]
            if any(gram) and all(keys[i + k * n:i + (k + 1) * n] == gram for k in range(limit + 1)):
                return True
    return False


@pytest.mark.fast
@given(st.lists(st.sampled_from(["a", "b", "c", "A.", "b,"]), max_size=40),
       st.integers(min_value=1, max_value=4))
def test_collapse_loops_leaves_no_loop_and_keeps_order(tokens: list[str], limit: int) -> None:
    keep, loops = collapse_loops(tokens, limit)
    assert keep == sorted(set(keep))
    assert not _has_loop([norm(tokens[i]) for i in keep], limit)
    removed = {i for loop in loops for i in loop.removed}
    assert sorted([*keep, *removed]) == list(range(len(tokens)))
    if not _has_loop([norm(t) for t in tokens], limit):
        assert keep == list(range(len(tokens)))
    again, _ = collapse_loops([tokens[i] for i in keep], limit)
    assert len(again) == len(keep)  # idempotent


def test_noise_and_music_give_an_empty_transcript(tmp_path: Path) -> None:
    for name in ("noise_only_room", "music_only_chords"):
        proc = cli(tmp_path, "transcribe", str(clip(name)))
        assert proc.returncode == 0, proc.stderr
        outputs = job_root(tmp_path, job_of(proc)) / "outputs"
        assert json.loads((outputs / f"{name}.json").read_text())["segments"] == []
        assert (outputs / f"{name}.txt").read_text().strip() == ""
