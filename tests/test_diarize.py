"""Speakers: clustering, the spans embedded, words and segments given speakers, the outputs
that show them, and subtitle events with two speakers."""

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_times_valid, cli, clip, error_line, job_of, job_root, no_hub
from cpwhisperx import evaluation, writers
from cpwhisperx.config import Settings
from cpwhisperx.engines.diarize import Speakers, Turn
from cpwhisperx.engines.diarize.cluster import cluster
from cpwhisperx.stages import diarize
from cpwhisperx.text import subtitles
from cpwhisperx.transcript import Segment, Transcript, Word


def _voices(sizes: list[int], *, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around one random centre per voice (cosine about 0.9 within a voice,
    about 0 across)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), 64))
    rows = [c + spread * rng.normal(size=64) * np.linalg.norm(c) / 8
            for c, n in zip(centres, sizes, strict=True) for _ in range(n)]
    out = np.array(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _cluster(embeddings: np.ndarray, durations: np.ndarray,
             speakers: Speakers | None = None) -> np.ndarray:
    return cluster(embeddings, durations, threshold=0.75, speakers=speakers or Speakers(),
                   reliable_s=1.0)


@pytest.mark.fast
def test_clustering_finds_the_voices_numbered_by_first_appearance() -> None:
    embeddings = _voices([4, 3, 5])
    order = np.random.default_rng(1).permutation(12)
    labels = _cluster(embeddings[order], np.full(12, 2.0))
    truth = np.repeat([0, 1, 2], [4, 3, 5])[order]
    assert len(set(labels)) == 3
    assert all(len({t for t, x in zip(truth, labels, strict=True) if x == label}) == 1
               for label in set(labels))
    assert [int(x) for x in dict.fromkeys(labels)] == [0, 1, 2]


@pytest.mark.fast
def test_clustering_obeys_the_number_of_speakers_given() -> None:
    embeddings, durations = _voices([4, 3, 5]), np.full(12, 2.0)
    for speakers, count in ((Speakers(number=2), 2), (Speakers(high=2), 2),
                            (Speakers(low=4), 4), (Speakers(number=5), 5)):
        labels = _cluster(embeddings, durations, speakers)
        assert len(set(labels)) == count, speakers


@pytest.mark.fast
def test_a_short_span_joins_the_nearest_voice_and_a_tiny_voice_is_folded() -> None:
    embeddings = _voices([4, 4])
    durations = np.array([2.0] * 3 + [0.3] + [2.0] * 4)  # the 4th is too short to cluster
    labels = _cluster(embeddings, durations)
    assert list(labels) == [0] * 4 + [1] * 4
    # A third voice with 2% of the speech is taken for the edge of a turn.
    embeddings = _voices([4, 4, 1], seed=3)
    durations = np.array([5.0] * 8 + [1.2])
    assert len(set(_cluster(embeddings, durations))) == 2
    assert len(set(_cluster(embeddings, durations, Speakers(number=3)))) == 3


def _best_pair_each_time(embeddings: np.ndarray, *, threshold: float, low: int,
                         high: int) -> np.ndarray:
    """Average linkage by its definition: merge the two clusters of highest mean pairwise
    similarity, recomputed from the members, until the rule says stop (O(n^4); for tests)."""
    groups = [[i] for i in range(len(embeddings))]
    sim = embeddings @ embeddings.T
    while len(groups) > low:
        score, a, b = max((float(sim[np.ix_(x, y)].mean()), i, j)
                          for i, x in enumerate(groups) for j, y in enumerate(groups) if i < j)
        if score < threshold and len(groups) <= high:
            break
        groups[a] += groups.pop(b)
    labels = np.zeros(len(embeddings), dtype=int)
    for k, group in enumerate(groups):
        labels[group] = k
    return labels


@pytest.mark.fast
@settings(max_examples=60, deadline=None)
@given(st.integers(2, 24), st.integers(1, 5), st.integers(0, 10_000),
       st.floats(0.2, 0.9), st.integers(0, 4), st.integers(0, 6))
def test_the_chained_linkage_makes_the_merges_of_the_best_pair_each_time(
        n: int, voices: int, seed: int, threshold: float, low: int, high: int) -> None:
    from cpwhisperx.engines.diarize.cluster import _average_linkage

    embeddings = _voices(list(np.random.default_rng(seed).multinomial(n, [1 / voices] * voices)),
                         seed=seed, spread=2.0)
    low, high = max(low, 1), high or n
    fast = _average_linkage(embeddings, threshold=threshold, low=low, high=max(high, low))
    slow = _best_pair_each_time(embeddings, threshold=threshold, low=low, high=max(high, low))
    # The same partition, whatever each calls its clusters.
    assert len(set(zip(fast, slow, strict=True))) == len(set(fast)) == len(set(slow))


@pytest.mark.fast
def test_clustering_nothing_or_one() -> None:
    assert list(_cluster(np.zeros((0, 8)), np.zeros(0))) == []
    assert list(_cluster(_voices([1]), np.ones(1))) == [0]
    # More speakers asked for than there are spans: each span its own.
    for speakers in (Speakers(number=5), Speakers(low=4)):
        assert list(_cluster(_voices([2, 1]), np.full(3, 2.0), speakers)) == [0, 1, 2]


def _segment(*words: tuple[float, float, str]) -> Segment:
    ws = tuple(Word(s, e, t) for s, e, t in words)
    return Segment(ws[0].start, ws[-1].end, " ".join(w.text for w in ws), ws)


@pytest.mark.fast
def test_spans_end_at_pauses_sentences_and_segments() -> None:
    transcript = Transcript("en", (
        _segment((0.0, 0.4, "Where"), (0.4, 0.8, "were"), (0.8, 1.2, "you?"),
                 (1.25, 1.5, "I"), (1.5, 2.0, "was"), (2.3, 2.8, "out")),
        _segment((3.0, 3.5, "fine")),
        _segment(*[(4.0 + i, 4.9 + i, "word") for i in range(12)])))
    spans = diarize.regions(transcript)
    assert spans[:4] == [(0.0, 1.2), (1.25, 2.0), (2.3, 2.8), (3.0, 3.5)]
    assert all(b - a <= diarize.LONGEST_S + 1.0 for a, b in spans)
    assert spans[-1][1] == 15.9
    assert all(a < b <= c for (a, b), (c, _) in itertools.pairwise(spans))


@pytest.mark.fast
def test_speaker_names() -> None:
    assert diarize.labels(3, "") == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    names = Settings(speaker_names="Asha, Ravi").speaker_names
    assert diarize.labels(3, names) == ["Asha", "Ravi", "SPEAKER_02"]
    assert diarize.labels(2, "SPEAKER_01=Ravi") == ["SPEAKER_00", "Ravi"]


@pytest.mark.fast
def test_words_get_the_speaker_they_overlap_and_segments_split_where_it_changes() -> None:
    transcript = Transcript("en", (
        _segment((0.0, 0.5, "Are"), (0.5, 0.9, "you"), (0.9, 1.4, "coming?"),
                 (1.6, 2.0, "No,"), (2.0, 2.4, "sorry.")),
        Segment(3.0, 4.0, "Unaligned words"),
        _segment((5.0, 5.5, "Fine.")),))
    turns = [Turn(0.0, 1.4, 0), Turn(1.6, 2.4, 1), Turn(3.0, 4.1, 1), Turn(5.2, 5.4, 0)]
    result = diarize.assign(transcript, turns, ["Asha", "Ravi"])
    assert [(s.speaker, s.text) for s in result.segments] == [
        ("Asha", "Are you coming?"), ("Ravi", "No, sorry."), ("Ravi", "Unaligned words"),
        ("Asha", "Fine.")]
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words)
    assert all(s.start == s.words[0].start and s.end == s.words[-1].end
               for s in result.segments if s.words)
    assert result.text == transcript.text  # nothing said is lost or moved
    assert [w.text for s in result.segments for w in s.words] == \
        [w.text for s in transcript.segments for w in s.words]
    assert diarize.assign(transcript, [], ["x"]) == transcript


@pytest.mark.fast
def test_outputs_show_the_speakers() -> None:
    transcript = Transcript("en", (
        Segment(0.0, 1.4, "Are you coming?", speaker="Asha"),
        Segment(1.6, 2.4, "No, sorry.", speaker="Ravi Kumar"),
        Segment(2.4, 3.0, "Why?", speaker="Asha")))
    assert writers.to_txt(transcript).splitlines()[:2] == [
        "[Asha]: Are you coming?", "[Ravi Kumar]: No, sorry."]
    rows = [r.split("\t") for r in writers.to_tsv(transcript).splitlines()]
    assert rows[0] == ["start", "end", "text", "speaker"] and rows[2][3] == "Ravi Kumar"
    rttm = [line.split() for line in
            writers.to_rttm(transcript, file_id="my talk").splitlines()]
    assert [r[:5] + r[7:8] for r in rttm] == [
        ["SPEAKER", "my_talk", "1", "0.000", "1.400", "Asha"],
        ["SPEAKER", "my_talk", "1", "1.600", "0.800", "Ravi_Kumar"],
        ["SPEAKER", "my_talk", "1", "2.400", "0.600", "Asha"]]
    plain = Transcript("en", (Segment(0.0, 1.0, "Hello."),))
    assert writers.to_tsv(plain).splitlines()[0] == "start\tend\ttext"
    assert writers.to_txt(plain) == "Hello.\n" and writers.to_rttm(plain, file_id="x") == ""


def _dialogue(turns: list[tuple[str, list[str]]], *, gap: float = 0.1) -> list[Segment]:
    """A segment per turn, words 0.3 s long."""
    out, at = [], 0.0
    for speaker, texts in turns:
        words = []
        for text in texts:
            words.append(Word(round(at, 3), round(at + 0.3, 3), text))
            at += 0.32
        out.append(Segment(words[0].start, words[-1].end, " ".join(texts), tuple(words),
                           speaker=speaker))
        at += gap
    return out


STYLE = subtitles.Style()


@pytest.mark.fast
def test_two_speakers_in_one_event_have_a_dashed_line_each() -> None:
    segments = _dialogue([("A", ["Coming?"]), ("B", ["No."]), ("A", ["Why", "not?"])], gap=0.05)
    events = subtitles.events(segments, language="en", style=STYLE)
    dialogue = [e for e in events if len(e.lines) == 2 and e.lines[0].startswith("-")]
    assert dialogue, events
    assert all(all(line.startswith("-") and not line.startswith("- ") for line in e.lines)
               for e in dialogue)
    assert [line.removeprefix("-") for e in events for line in e.lines] == \
        ["Coming?", "No.", "Why not?"]
    french = subtitles.events(segments, language="fr", style=STYLE)
    assert any(e.lines[0].startswith("-\u00a0") for e in french)
    report = subtitles.check(events, STYLE, language="en")
    assert report.share("line_break") == 1.0


@pytest.mark.fast
def test_a_change_of_speaker_ends_an_event_where_it_can() -> None:
    # Unpunctuated, and short enough for one event: the change is where it is cut.
    segments = _dialogue([("A", ["so", "we", "met", "at", "the", "old"]),
                          ("B", ["station", "and", "then", "we", "left"])], gap=0.3)
    events = subtitles.events(segments, language="en", style=STYLE)
    assert [e.text for e in events] == ["so we met at the old", "station and then we left"]


@pytest.mark.fast
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(1, 9)), min_size=1, max_size=12),
       st.sampled_from([0.05, 0.3, 1.2]))
def test_no_event_holds_three_speakers_or_mixes_lines(turns: list[tuple[str, int]],
                                                      gap: float) -> None:
    text = itertools.count()
    segments = _dialogue([(s, [f"w{next(text)}" for _ in range(n)]) for s, n in turns],
                         gap=gap)
    speaker_of = {w.text: s.speaker for s in segments for w in s.words}
    events = subtitles.events(segments, language="en", style=STYLE)
    for event in events:
        lines = [line.removeprefix("-").split() for line in event.lines]
        who = [{speaker_of[w] for w in line} for line in lines]
        dashed = all(line.startswith("-") for line in event.lines)
        if len(set().union(*who)) > 1:
            assert len(event.lines) == 2 and dashed and all(len(w) == 1 for w in who), event
        else:
            assert not any(line.startswith("-") for line in event.lines), event
    assert [w for e in events for line in e.lines for w in line.removeprefix("-").split()] \
        == [w.text for s in segments for w in s.words]


def test_the_encoder_tells_voices_apart_on_shipped_speech() -> None:
    """Real speech: sentences of one Piper voice are nearer each other than to JFK, across
    ``ge2e.THRESHOLD``; embeddings have unit length, and the same audio gives the same one."""
    from cpwhisperx import evaluation
    from cpwhisperx.engines.diarize import ge2e

    joe = [samples for samples, _ in evaluation._joe()[:4]]
    jfk = [samples for samples, _ in evaluation._jfk_pieces()]
    encoder = ge2e.GE2E()
    a, b = encoder.embed(joe), encoder.embed(jfk)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(encoder.embed(joe[:1]), a[:1], atol=1e-6)
    same = [float(x @ y) for x, y in itertools.combinations(a, 2)]
    across = [float(x @ y) for x in a for y in b]
    assert min(same) > ge2e.THRESHOLD > max(across), (same, across)


@pytest.mark.parametrize(("first", "second"), [(1.0, 2.5), (2.5, 1.0), (1.8, 1.8)])
@pytest.mark.parametrize("order", ["joe-jfk", "jfk-joe"])
def test_a_change_of_voice_without_a_pause_is_timed(first: float, second: float,
                                                    order: str) -> None:
    """Real speech of two voices joined with no pause: the change is found where they meet."""
    from cpwhisperx.engines.diarize import ge2e

    joe = np.concatenate([samples for samples, _ in evaluation._joe()[:2]])
    jfk = np.concatenate([samples for samples, _ in evaluation._jfk_pieces()])
    a, b = (joe, jfk) if order == "joe-jfk" else (jfk, joe)
    encoder = ge2e.GE2E()
    voices = encoder.embed([a, b])  # each voice from all of its speech, as clustering gives
    rate = evaluation.RATE
    joined = np.concatenate([a[-round(first * rate):], b[:round(second * rate)]])
    # Searched together with a piece too short to search: each finds its own windows.
    short, change = encoder.changes([(joined[:rate], voices[0], voices[1]),
                                     (joined, voices[0], voices[1])])
    assert change is not None and abs(change - first) <= 0.3, change
    assert short is None  # one second holds under two windows


@pytest.mark.fast
def test_a_handover_is_where_the_lean_turns_and_only_there() -> None:
    from cpwhisperx.engines.diarize.ge2e import handover

    centres = np.arange(6) * 0.4 + 0.4
    assert handover(np.array([0.3, 0.2, 0.25, -0.1, -0.3, -0.2]), centres) == pytest.approx(1.4)
    # One window that sounds like the second voice does not move the handover before it.
    assert handover(np.array([0.3, -0.5, 0.4, 0.3, -0.2, 0.1]), centres) == pytest.approx(1.8)
    assert handover(np.array([-0.2, -0.1, -0.3, -0.2, -0.1, -0.4]), centres) is None  # never first
    assert handover(np.array([0.2, 0.3, 0.1, 0.2, 0.1, 0.3]), centres) is None  # never second
    assert handover(np.array([0.5]), centres[:1]) is None


@pytest.mark.fast
def test_a_translation_keeps_each_sentence_with_its_speaker() -> None:
    from cpwhisperx import translation

    segments = _dialogue([("A", ["so", "we", "met"]), ("B", ["at", "the", "station"])])
    transcript = Transcript("en", tuple(segments))
    units = translation.sentences(transcript)
    assert [(u.text, u.speaker) for u in units] == [("so we met", "A"), ("at the station", "B")]
    hindi = translation.translated(transcript, units, ["तो हम मिले", "स्टेशन पर"], language="hi",
                                   meta={})
    assert [s.speaker for s in hindi.segments] == ["A", "B"]
    assert all(w.speaker == s.speaker for s in hindi.segments for w in s.words)


@pytest.mark.fast
@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 30), st.floats(0.05, 8), st.integers(0, 3)),
                min_size=1, max_size=12),
       st.lists(st.tuples(st.floats(0, 35), st.floats(0.0, 1.0)), min_size=1, max_size=30))
def test_each_word_gets_the_turn_it_overlaps_most(turns: list[tuple[float, float, int]],
                                                  words: list[tuple[float, float]]) -> None:
    """Turns may overlap (an engine that finds overlapping speech): the search through them
    gives what comparing every turn gives."""
    found = [Turn(s, s + d, k) for s, d, k in turns]
    spans = sorted((round(s, 3), round(s + d, 3)) for s, d in words)
    transcript = Transcript("en", tuple(Segment(a, b, "w", (Word(a, b, "w"),)) for a, b in spans))
    names = ["A", "B", "C", "D"]
    result = diarize.assign(transcript, found, names)
    for (a, b), segment in zip(spans, result.segments, strict=True):
        best = max(min(b, t.end) - max(a, t.start) for t in found)
        ties = [t for t in found if min(b, t.end) - max(a, t.start) == best]
        assert segment.speaker in {names[t.speaker] for t in ties}


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="no espeak-ng: make speech-deps")


def _outputs(out: Path, proc) -> Path:
    assert proc.returncode == 0, proc.stderr
    return job_root(out, job_of(proc)) / "outputs"


def _diarized(tmp_path: Path, media: Path, reference: list[evaluation.Turn], *, speakers: int,
              der: float) -> tuple[Path, dict]:
    """``transcribe --diarize`` of a conversation: its speakers all found (not given), its DER
    within ``der``, its times valid; the outputs folder and the JSON transcript."""
    proc = cli(tmp_path / "out", "transcribe", str(media), "-s", "en", "--diarize")
    outputs = _outputs(tmp_path / "out", proc)
    found = evaluation.read_rttm(outputs / f"{media.stem}.rttm")
    assert evaluation.speakers_found(found) == speakers
    assert evaluation.der(reference, found) <= der
    transcript = json.loads((outputs / f"{media.stem}.json").read_text())
    assert_times_valid(transcript, reference[-1].end + 0.5)
    return outputs, transcript


@needs_espeak
def test_three_speakers_are_found_and_told_apart(tmp_path: Path) -> None:
    """The acceptance conversation: Piper's joe, the real JFK and an espeak-ng voice, 18 turns
    0.2-0.8 s apart; the number of speakers not given."""
    media, reference = evaluation.conversation(tmp_path, seed=0)
    outputs, transcript = _diarized(tmp_path, media, reference, speakers=3, der=0.15)
    for segment in transcript["segments"]:
        assert segment["speaker"].startswith("SPEAKER_0")
        assert {w["speaker"] for w in segment["words"]} <= {segment["speaker"]}
    lines = (outputs / f"{media.stem}.txt").read_text().splitlines()
    assert lines and all(line.startswith("[SPEAKER_0") for line in lines)
    assert (outputs / f"{media.stem}.tsv").read_text().split("\n")[0].endswith("\tspeaker")


@needs_espeak
def test_speakers_taking_over_mid_sentence_are_told_apart(tmp_path: Path) -> None:
    """Two voices taking over from each other in the middle of sentences, with no pause: the
    speakers are found and segments split where the voice changes, not only at sentence ends
    (with 8 s spans embedded whole, two voices were one speaker on 3 of 5 seeds)."""
    media, reference = evaluation.relay(tmp_path, seed=1)
    _, transcript = _diarized(tmp_path, media, reference, speakers=2, der=0.2)
    segments = transcript["segments"]
    inside = [a["text"] for a, b in itertools.pairwise(segments)
              if a["speaker"] != b["speaker"] and not a["text"].rstrip().endswith((".", "?", "!"))]
    assert len(inside) >= len(reference) // 2, inside


@needs_espeak
def test_a_quick_exchange_gets_dialogue_dashes_and_names(tmp_path: Path) -> None:
    script = [("m1", "Did anyone check the weather before we left this morning?"),
              ("f3", "No."), ("m1", "Why not?"), ("f3", "I forgot."),
              ("m1", "Then we should ask the others what they think about it."),
              ("f3", "I left my umbrella on the train again yesterday.")]
    media, _ = evaluation.dialogue(tmp_path, script, gap=0.15, name="exchange")
    proc = cli(tmp_path / "out", "subtitle", str(media), "-s", "en", "-t", "en", "--diarize",
               "--speakers", "2", "--set", "SPEAKER_NAMES=Ravi,Asha")
    outputs = _outputs(tmp_path / "out", proc)
    import srt

    events = list(srt.parse((outputs / "exchange.en.srt").read_text()))
    transcript = json.loads((outputs / "exchange.json").read_text())
    # The events' words are the transcript's, in order: who said each.
    said = iter([w["speaker"] for s in transcript["segments"] for w in s["words"]])
    dashed = 0
    for event in events:
        lines = event.content.split("\n")
        who = [{next(said) for _ in line.removeprefix("-").split()} for line in lines]
        if event.content.startswith("-"):
            dashed += 1
            assert len(lines) == 2 and all(line.startswith("-") for line in lines)
            assert all(len(w) == 1 for w in who) and who[0] != who[1], (event.content, who)
        else:
            assert len(set().union(*who)) == 1, (event.content, who)
    assert dashed, [e.content for e in events]
    assert {s["speaker"] for s in transcript["segments"]} == {"Ravi", "Asha"}
    assert transcript["segments"][0]["speaker"] == "Ravi"

    # Renamed: the same turns, relabelled, without running the speaker encoder again.
    job = job_of(proc)
    again = cli(tmp_path / "out", "run", "-j", job, "--set", "SPEAKER_NAMES=Anil,Meera")
    assert again.returncode == 0, again.stderr
    renamed = json.loads((outputs / "exchange.json").read_text())
    names = {"Ravi": "Anil", "Asha": "Meera"}
    assert [names[s["speaker"]] for s in transcript["segments"]] == [
        s["speaker"] for s in renamed["segments"]]
    log = (job_root(tmp_path / "out", job) / "logs" / "diarize.log").read_text()
    assert log.count("speaker turns kept from the last run") == 1


def test_diarization_off_costs_nothing_and_shows_nothing(tmp_path: Path) -> None:
    media = clip("en_jfk")
    proc = cli(tmp_path / "out", "transcribe", str(media), "-s", "en")
    outputs = _outputs(tmp_path / "out", proc)
    assert not (outputs / "en_jfk.rttm").exists()
    transcript = json.loads((outputs / "en_jfk.json").read_text())
    assert all(s["speaker"] is None and all("speaker" not in w for w in s["words"])
               for s in transcript["segments"])
    assert not (outputs / "en_jfk.txt").read_text().startswith("[")
    manifest = json.loads((job_root(tmp_path / "out", job_of(proc)) / "manifest.json")
                          .read_text())
    assert manifest["stages"]["diarize"]["backend"] == "none"
    assert manifest["stages"]["diarize"]["seconds"] < 0.5


def test_a_crashed_encoder_keeps_the_transcript(tmp_path: Path) -> None:
    media = clip("en_jfk")
    env = {"CPWHISPERX_FAULT": "diarize:segv"}
    proc = cli(tmp_path / "auto", "transcribe", str(media), "-s", "en", "--diarize", env=env)
    outputs = _outputs(tmp_path / "auto", proc)
    assert "the transcript is kept without speakers" in proc.stderr
    assert not (outputs / "en_jfk.rttm").exists()
    reference = next(i.text for i in evaluation.items() if i.id == "en_jfk") or ""
    text = json.loads((outputs / "en_jfk.json").read_text())["text"]
    assert evaluation.wer(reference, text, "en") <= 0.1
    proc = cli(tmp_path / "ge2e", "transcribe", str(media), "-s", "en", "--set",
               "DIARIZATION=ge2e", env=env)
    assert proc.returncode != 0
    assert "DIARIZATION=ge2e failed" in error_line(proc)


def test_pyannote_without_its_weights_says_where_to_get_them(tmp_path: Path) -> None:
    """Not cached and the Hub unreachable: one line, before any worker starts (no torch
    needed to say so), and the transcript is kept for a rerun."""
    media, _ = evaluation.conversation(tmp_path, voices=("joe", "jfk"), turns=2)
    env = {**no_hub(), "HF_HOME": str(tmp_path / "hf")}
    proc = cli(tmp_path / "out", "transcribe", str(media), "-s", "en",
               "--set", "DIARIZATION=pyannote", env=env)
    assert proc.returncode == 1
    line = error_line(proc)
    assert "speaker-diarization-community-1" in line and "HF_TOKEN" in line
    assert "DIARIZATION_MODEL" in line and "DIARIZATION=none" in line
    job = job_root(tmp_path / "out", job_of(proc))
    assert next(job.glob("*_clean/transcript.json")).is_file()
    assert not next(job.glob("*_diarize/turns.json"), None)


@pytest.mark.fast
def test_a_pipeline_folder_named_without_a_slash_is_a_folder(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """``huggingface-cli download --local-dir community-1`` leaves ``community-1``: a folder,
    even offline, where a Hub id would need the cache."""
    from cpwhisperx.engines.diarize.pyannote import check_obtainable
    from cpwhisperx.errors import ModelNotFound

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "community-1").mkdir()
    assert check_obtainable("community-1") is False
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE is set"):
        check_obtainable("community-2")


@pytest.mark.fast
def test_turns_move_to_the_changes_found_and_stay_in_order() -> None:
    from cpwhisperx.engines.diarize.ge2e import retime

    turns = [Turn(0.0, 2.0, 0), Turn(2.05, 4.0, 1), Turn(4.1, 6.0, 0), Turn(7.5, 9.0, 2)]
    # Seconds from the start each turn had: A to B earlier, B to A later. The pause 6.0-7.5
    # is not searched.
    moved = retime(turns, {0: 1.5, 1: 2.5})
    assert moved == [Turn(0.0, 1.5, 0), Turn(1.5, 4.55, 1), Turn(4.55, 6.0, 0), turns[3]]
    assert retime(turns, {0: 2.02, 1: None}) == turns  # in the pause between: as they were
    # The second change would end turn 1 before it starts: left alone.
    crossed = retime(turns, {0: 3.8, 1: 1.0})
    assert crossed[:2] == [Turn(0.0, 3.8, 0), Turn(3.8, 4.0, 1)] and crossed[2] == turns[2]
    for result in (moved, crossed):
        assert all(t.start < t.end for t in result)
        assert all(a.end <= b.start for a, b in itertools.pairwise(result))


@pytest.mark.fast
def test_a_word_without_text_makes_no_segment_of_its_own() -> None:
    transcript = Transcript("en", (Segment(0.0, 2.0, "Yes no", (
        Word(0.0, 0.5, " "), Word(0.5, 1.0, "Yes"), Word(1.2, 2.0, "no"))),))
    turns = [Turn(0.0, 0.4, 1), Turn(0.5, 1.0, 0), Turn(1.2, 2.0, 1)]
    result = diarize.assign(transcript, turns, ["A", "B"])
    assert [(s.text, s.speaker) for s in result.segments] == [("Yes", "A"), ("no", "B")]


@pytest.mark.fast
def test_speaker_settings() -> None:
    from cpwhisperx import cli

    assert Settings(speaker_names=" SPEAKER_01 = Ravi ").speaker_names == "SPEAKER_01=Ravi"
    assert diarize.labels(3, "SPEAKER_01=Ravi") == ["SPEAKER_00", "Ravi", "SPEAKER_02"]
    for bad in ("SPEAKER_00=Asha,Ravi", "Dr=Who", "SPEAKER_01="):
        with pytest.raises(ValueError):
            Settings(speaker_names=bad)
    with pytest.raises(ValueError):
        Settings(num_speakers=2, max_speakers=3)
    args = cli.build_parser().parse_args(["transcribe", "x.wav", "--speakers", "2"])
    assert cli._overrides(args)["DIARIZATION"] == "auto"


@pytest.mark.fast
def test_given_speakers_are_found_even_in_short_spans() -> None:
    embeddings = _voices([3, 3, 3], seed=5)
    durations = np.array([2.0] * 3 + [2.0] * 3 + [0.8] * 3)  # the third voice: short lines
    labels = cluster(embeddings, durations, threshold=0.75, speakers=Speakers(number=3),
                     reliable_s=1.6)
    assert list(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
