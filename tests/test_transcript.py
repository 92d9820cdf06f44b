import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpwhisperx.transcript import MIN_WORD_S, Segment, Transcript, Word, tidy

pytestmark = pytest.mark.fast

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


def spans(transcript: Transcript) -> list[tuple[float, float]]:
    """Every timed item in order: the words, or a segment that has none."""
    return [(x.start, x.end) for seg in transcript.segments
            for x in (seg.words or (seg,))]


@given(transcripts, st.floats(min_value=0, max_value=60, allow_nan=False))
def test_tidy_enforces_the_contract(transcript: Transcript, duration: float) -> None:
    fixed = tidy(transcript, duration)
    items = spans(fixed)
    for (start, end), (following, _) in itertools.pairwise(items):
        assert 0 <= start <= end <= following <= duration + 1e-6  # in order, no overlap
    for seg, nxt in itertools.pairwise(fixed.segments):
        assert seg.end <= nxt.start
    for seg in fixed.segments:
        assert 0 <= seg.start <= seg.end <= duration + 1e-6
        if seg.words:
            assert (seg.start, seg.end) == (seg.words[0].start, seg.words[-1].end)
    weight = sum(len(w.text.strip()) or 1 for s in transcript.segments
                 for w in (s.words or (Word(0, 0, s.text),)))
    if duration >= 0.01 * weight:  # room for every word: none of zero length
        assert all(end > start for start, end in items)
    assert [s.text for s in fixed.segments] == [s.text for s in transcript.segments]
    assert [[w.text for w in s.words] for s in fixed.segments] == \
        [[w.text for w in s.words] for s in transcript.segments]
    if all(end - start >= MIN_WORD_S for start, end in items):
        assert tidy(fixed, duration) == fixed


def test_overlapping_segments_are_cut_between_their_words() -> None:
    # What the aligner's padding did to examples/sample.flac: cue 2 ended at 10.22 s, cue 3
    # started at 9.82 s.
    a = Segment(6.0, 10.22, "one two", (Word(6.0, 8.0, "one"), Word(8.1, 10.22, "two")))
    b = Segment(9.82, 12.0, "three", (Word(9.82, 12.0, "three"),))
    fixed = tidy(Transcript("en", (a, b)), 20.0)
    assert fixed.segments[0].end == fixed.segments[1].start == 10.02


def test_unaligned_words_get_time_from_their_neighbours() -> None:
    # "38,500" unknown to the aligner, squeezed to nothing between two aligned words.
    words = (Word(1.0, 1.4, "More"), Word(1.4, 1.6, "than"), Word(1.6, 1.6, "38,500"),
             Word(1.6, 2.0, "runners"))
    fixed = tidy(Transcript("en", (Segment(1.0, 2.0, "More than 38,500 runners", words),)),
                 10.0)
    out = fixed.segments[0].words
    assert all(w.end - w.start >= MIN_WORD_S for w in out)
    assert all(a.end <= b.start for a, b in itertools.pairwise(out))
    assert out[0].start == 1.0 and out[-1].end <= 2.2  # near where they were spoken


def test_text_is_the_joined_segments() -> None:
    t = Transcript("en", (Segment(0, 1, "Hello"), Segment(1, 2, ""), Segment(2, 3, "world.")))
    assert t.text == "Hello world."
    assert t.to_dict()["text"] == t.text


def test_empty_transcript() -> None:
    empty = Transcript("en", ())
    assert empty.text == ""
    assert tidy(empty, 0.0) == empty


def test_a_number_whisper_wrote_in_pieces_is_one_word() -> None:
    from cpwhisperx.engines.asr import to_words

    decoded = [(0.0, 0.3, " More", 0.9), (0.3, 0.5, " than", 0.9), (0.5, 0.8, " 38", 0.8),
               (0.8, 1.1, ",500", 0.7), (1.1, 1.5, " runners", 0.9), (1.6, 1.8, " $1", 0.9),
               (1.8, 1.9, ".2", 0.6), (1.9, 2.2, " billion.", 0.9)]
    words = to_words(decoded, language="en")
    assert [w.text for w in words] == ["More", "than", "38,500", "runners", "$1.2", "billion."]
    assert (words[2].start, words[2].end, words[2].probability) == (0.5, 1.1, 0.7)
    # Written without spaces, every piece is a word of its own.
    assert len(to_words([(0.0, 0.2, "你好", 0.9), (0.2, 0.4, "世界", 0.9)], language="zh")) == 2
