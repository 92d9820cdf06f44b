from hypothesis import given
from hypothesis import strategies as st

from cpwhisperx.transcript import Segment, Transcript, Word, clamp_times

times = st.floats(min_value=-5, max_value=100, allow_nan=False)
words = st.builds(Word, start=times, end=times, text=st.text(min_size=1, max_size=8),
                  probability=st.floats(0, 1))
segments = st.builds(Segment, start=times, end=times, text=st.text(max_size=30),
                     words=st.lists(words, max_size=5).map(tuple))
transcripts = st.builds(Transcript, language=st.sampled_from(["en", "hi"]),
                        segments=st.lists(segments, max_size=8).map(tuple))


@given(transcripts)
def test_round_trip(transcript: Transcript) -> None:
    assert Transcript.from_dict(transcript.to_dict()) == transcript


@given(transcripts, st.floats(min_value=0, max_value=60, allow_nan=False))
def test_clamp_times_enforces_the_contract(transcript: Transcript, duration: float) -> None:
    fixed = clamp_times(transcript, duration)
    starts = [s.start for s in fixed.segments]
    assert starts == sorted(starts)
    for seg in fixed.segments:
        assert 0 <= seg.start <= seg.end <= duration
        word_starts = [w.start for w in seg.words]
        assert word_starts == sorted(word_starts)
        for w in seg.words:
            assert seg.start <= w.start <= w.end <= seg.end
    assert [s.text for s in fixed.segments] == [s.text for s in transcript.segments]


def test_text_is_the_joined_segments() -> None:
    t = Transcript("en", (Segment(0, 1, "Hello"), Segment(1, 2, ""), Segment(2, 3, "world.")))
    assert t.text == "Hello world."
    assert t.to_dict()["text"] == t.text


def test_empty_transcript() -> None:
    empty = Transcript("en", ())
    assert empty.text == ""
    assert clamp_times(empty, 0.0) == empty
