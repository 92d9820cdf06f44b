"""Subtitles: Netflix-style events from word times, the conformance report, and the subtitle
workflow with its muxed video."""

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cli, clip, error_line, ffprobe_streams, job_of, job_root, stage_dir
from cpwhisperx import evaluation, media
from cpwhisperx.text import linebreaks, subtitles
from cpwhisperx.transcript import Segment, Word

VOCABULARY = ["the", "a", "house", "and", "river", "Anna", "said,", "quickly.", "with",
              "because", "नमस्ते", "क्षत्रिय", "और", "है।", "extraordinarily", "?", "I'm"]


@st.composite
def transcripts(draw) -> list[Segment]:
    segments, at = [], 0.0
    for _ in range(draw(st.integers(1, 6))):
        words = []
        for text in draw(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=25)):
            at += draw(st.sampled_from([0.0, 0.05, 0.2, 0.6, 1.5]))
            length = draw(st.floats(0.1, 0.8))
            words.append(Word(round(at, 3), round(at + length, 3), text))
            at += length
        segments.append(Segment(words[0].start, words[-1].end,
                                " ".join(w.text for w in words), tuple(words)))
    return segments


@pytest.mark.fast
@settings(max_examples=60, deadline=None)
@given(transcripts(), st.sampled_from(["en", "hi"]))
def test_events_keep_every_word_in_place_and_fit_the_lines(segments, language) -> None:
    style = subtitles.style_for(language, fps=24.0)
    events = subtitles.events(segments, language=language, style=style)
    words = [w for s in segments for w in s.words]
    # Every word once, in order; an event starts exactly when its first word does.
    assert " ".join(" ".join(e.lines) for e in events) == " ".join(w.text for w in words)
    starts = {w.start for w in words}
    for event, following in zip(events, [*events[1:], None], strict=True):
        assert event.start in starts and event.end > event.start
        assert len(event.lines) <= 2
        assert all(subtitles.graphemes(line) <= style.max_chars for line in event.lines)
        assert event.end - event.start <= style.max_duration + 1e-6
        if following is not None:
            assert following.start >= event.end + style.gap - 1e-6
            # Chained: a gap of half a second or less is closed to the two frames.
            assert following.start - event.end <= style.gap + 0.0011 or \
                following.start - event.end > subtitles.CHAIN_S or \
                event.end <= max(w.end for w in words if w.start < following.start) + 0.001


@pytest.mark.fast
def test_graphemes_count_devanagari_as_read() -> None:
    assert subtitles.graphemes("नमस्ते") == 3  # न म स्ते
    assert subtitles.graphemes("क्षत्रिय") == 3  # क्ष त्रि य
    assert subtitles.graphemes("café") == 4


@pytest.mark.fast
def test_styles_follow_each_language_preset_unless_set() -> None:
    from cpwhisperx import config

    assert (subtitles.style_for("en", fps=None).max_cps,
            subtitles.style_for("en", fps=None, children=True).max_cps) == (20.0, 17.0)
    assert (subtitles.style_for("hi", fps=None).max_cps,
            subtitles.style_for("hi", fps=None, children=True).max_cps) == (22.0, 18.0)
    assert subtitles.style_for("hi", fps=None).max_chars == 42
    assert subtitles.style_for("ja", fps=None).max_chars == 13
    assert subtitles.style_for("ja", fps=None, max_chars=20, max_cps=6).max_chars == 20
    assert subtitles.style_for("ja", fps=None, max_chars=20, max_cps=6).max_cps == 6
    assert config.load_settings(job_file=None, cli={}).subtitle_limits("hi") == (0, 0.0)
    with pytest.raises(config.ConfigError, match=r"SUBTITLE_MAX_CHARS.*0 .the language's preset"):
        config.load_settings(job_file=None, cli={"SUBTITLE_MAX_CHARS": "5"})


@pytest.mark.fast
def test_subtitle_limits_are_set_per_language() -> None:
    from cpwhisperx import config

    settings = config.load_settings(job_file=None, cli={"SUBTITLE_MAX_CHARS": "HI:38, 40",
                                                        "SUBTITLE_MAX_CPS": "hi:17.5"})
    assert (settings.subtitle_max_chars, settings.subtitle_max_cps) == ("40,hi:38", "0,hi:17.5")
    assert settings.subtitle_limits("hi") == (38, 17.5)
    assert settings.subtitle_limits("en") == (40, 0.0)  # 0: the language's reading speed
    # The canonical text reads back to the same settings, as a job's .env.pipeline does.
    again = config.load_settings(job_file=None, cli=settings.to_env())
    assert again.subtitle_limits("hi") == (38, 17.5)
    # Old job files wrote a bare number.
    assert config.load_settings(job_file=None, cli={"SUBTITLE_MAX_CPS": "0.0"}).subtitle_limits(
        "en") == (0, 0.0)
    for key, value, why in [("SUBTITLE_MAX_CHARS", "xx:40", "unknown language code 'xx'"),
                            ("SUBTITLE_MAX_CHARS", "hi:40.5", "10 to 100 characters"),
                            ("SUBTITLE_MAX_CPS", "hi:fast", "1 to 100 characters per second"),
                            ("SUBTITLE_MAX_CPS", "500", "1 to 100 characters per second")]:
        with pytest.raises(config.ConfigError, match=f"{key}=.*{why}"):
            config.load_settings(job_file=None, cli={key: value})


@pytest.mark.fast
def test_check_names_each_broken_rule() -> None:
    style = subtitles.Style(fps=25.0)
    events = [subtitles.Event(0.0, 0.5, ("Too short.",)),
              subtitles.Event(0.52, 9.0, ("x" * 50,)),
              subtitles.Event(9.5, 12.0, ("This line is broken after the", "house.")),
              subtitles.Event(12.5, 15.0, ("This one", "is fine.", "But three lines.")),
              subtitles.Event(15.5, 16.5, ("A very fast line full of words here, ok.",))]
    report = subtitles.check(events, style, language="en")
    why = {f["event"]: set(f["why"]) for f in report.failures}
    assert why == {1: {"min_duration", "frame_gap"}, 2: {"characters_per_line", "max_duration"},
                   3: {"line_break"}, 4: {"lines"}, 5: {"reading_speed"}}
    assert report.all_rules == 0 and report.share("lines") == 0.8


def _segment(text: str) -> Segment:
    words = text.split()
    return Segment(0.0, len(words) * 0.4, text,
                   tuple(Word(i * 0.4, i * 0.4 + 0.3, w) for i, w in enumerate(words)))


def _timed(*words: tuple[float, float, str]) -> Segment:
    return Segment(words[0][0], words[-1][1], " ".join(w[2] for w in words),
                   tuple(Word(*w) for w in words))


@pytest.mark.fast
def test_no_event_lasts_past_the_media() -> None:
    # The Hindi track of a 34.421 s file ran to 35.163 s: its last event was given reading time.
    segment = _timed((33.2, 33.6, "बहुत"), (33.6, 34.0, "धन्यवाद"), (34.0, 34.4, "आपका।"))
    (event,) = subtitles.events([segment], language="hi", style=subtitles.Style(),
                                until=34.421)
    assert event.start == 33.2 and event.end <= 34.421


@pytest.mark.fast
def test_a_word_too_wide_for_a_line_is_cut_to_fit() -> None:
    url = "https://example.org/" + "a-very-long-path-segment/" * 5 + "x" * 30  # 155 characters
    style = subtitles.Style()
    events = subtitles.events([_timed((0.0, 1.0, "See"), (1.0, 6.0, url), (6.0, 6.5, "now."))],
                              language="en", style=style)
    lines = [line for e in events for line in e.lines]
    assert all(subtitles.graphemes(line) <= style.max_chars for line in lines)
    assert "".join(" ".join(lines).split()) == "See" + url + "now."
    assert any(line.endswith("-") for line in lines)  # cut after a hyphen where one fits


@pytest.mark.fast
def test_an_event_held_to_its_longest_still_leaves_no_short_gap() -> None:
    # Speech up to 6.9 s, the next word at 7.42 s: held to 7 s, the event left 0.342 s.
    words = [(round(i * 0.3, 3), round(i * 0.3 + 0.25, 3), "la") for i in range(23)]
    first, second = _timed(*words, (6.65, 6.9, "end.")), _timed((7.42, 8.0, "Next."))
    style = subtitles.Style(fps=25.0)
    events = subtitles.events([first, second], language="en", style=style)
    gaps = [b.start - a.end for a, b in itertools.pairwise(events)]
    assert all(g <= style.gap + 0.0011 or g > subtitles.CHAIN_S for g in gaps), gaps
    assert not subtitles.check(events, style, language="en").failures


@pytest.mark.fast
def test_line_breaks_follow_the_style_guide() -> None:
    style = subtitles.Style()
    (event,) = subtitles.events([_segment("I walked to the old bridge by the harbour, and then "
                                          "I turned back home")], language="en", style=style)
    assert event.lines == ("I walked to the old bridge by the harbour,",
                           "and then I turned back home")
    # No punctuation: the break goes before the conjunction, never after an article.
    (event,) = subtitles.events([_segment("We carried the heavy boxes up the stairs and the "
                                          "neighbours watched us")], language="en", style=style)
    assert event.lines == ("We carried the heavy boxes up the stairs",
                           "and the neighbours watched us")


@pytest.mark.fast
def test_a_new_sentence_starts_a_line() -> None:
    # One event would hold it all on two lines, with the question ending inside the first.
    events = subtitles.events([_segment("Where were you last night? I waited at the station "
                                        "until the last train left.")],
                              language="en", style=subtitles.Style())
    assert [e.lines for e in events] == [("Where were you last night?",),
                                         ("I waited at the station", "until the last train left.")]


@pytest.mark.fast
@pytest.mark.parametrize("language,text,why", [
    ("en", "We watched the | old film together.", "an article and its noun"),
    ("en", "We watched the old | film together.", "an adjective and its noun"),
    ("en", "I think that | film was the best one.", "an article and its noun"),
    ("en", "Yesterday Maria | Gonzalez opened the scoring.", "a name"),
    ("en", "I went to see Dr. | Watson about it.", "a name"),  # no sentence ends at "Dr."
    ("en", "After the match they | went home.", "a subject pronoun and its verb"),
    ("en", "The bridge will | stay closed until Thursday.", "a verb and its auxiliary"),
    ("en", "She did not | give up on her plan.", "a verb and its negation"),
    ("en", "She never gave | up on her plan.", "a verb and its particle"),
    ("en", "You should really ask | yourself what matters.", "a verb and its reflexive pronoun"),
    ("en", "He quickly ran | up the stairs to the roof.", None),  # a preposition, not a particle
    ("en", "The council says | that the bridge will stay closed.", None),
    ("en", "Commuters are being asked | to use the ferry.", None),
    ("hi", "कल शाम मैं | बाज़ार गया था", "after 'मैं'"),
    ("hi", "कल शाम मैं बाज़ार गया | और सब्ज़ी ख़रीदी", None),
])
def test_line_breaks_are_judged_in_their_sentence(language, text, why) -> None:
    before, after = (part.split() for part in text.split(" | "))
    joint = linebreaks.joints([*before, *after], language)[len(before)]
    assert (joint.bad is None) == (why is None)
    assert not joint.after_sentence  # none of these follows the end of a sentence
    assert why is None or why in joint.bad
    if why is None and after[0] in ("up", "that", "और"):
        assert joint.opening  # a preposition or a conjunction: the best place for a break


@pytest.mark.fast
def test_long_text_is_parsed_in_pieces_of_whole_sentences() -> None:
    story = "The old man sold his small boat. Then he walked home."
    texts = story.split() * 200
    pieces = linebreaks._pieces(texts)
    assert len(pieces) > 1 and pieces[0][0] == 0 and pieces[-1][1] == len(texts)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    assert all(texts[hi - 1].endswith(".") for _, hi in pieces)
    # Every sentence reads as it does alone, whichever piece it is in.
    size = len(story.split())
    alone = linebreaks.joints(story.split(), "en")[1:size]
    joints = linebreaks.joints(texts, "en")
    for lo, _ in pieces[:3]:
        start = lo + (-lo) % size  # the piece's first whole story
        assert joints[start + 1:start + size] == alone
    assert [j.after_sentence for j in joints[5:9]] == [False, False, True, False]  # "boat."
    assert joints[-1].after_sentence  # the joint after the last word
    # Without a sentence end, a piece is cut anyway.
    assert len(linebreaks._pieces(["word"] * 5000)) > 1


def test_the_parser_loads_without_torch_and_other_threads_still_see_it() -> None:
    """spaCy's thinc would import torch (the torch extra) for parsers that never use it. The
    parser loads in a thread while stages run: they still find torch meanwhile."""
    import subprocess
    import sys

    code = """if True:
        import importlib.util, sys, threading
        from cpwhisperx.text import linebreaks
        installed = importlib.util.find_spec("torch") is not None
        seen = []
        loading = threading.Thread(target=linebreaks.joints,
                                   args=(["It", "was", "not", "tired."], "en"))
        loading.start()
        while loading.is_alive():
            seen.append(importlib.util.find_spec("torch") is not None)
        assert seen and set(seen) == {installed}, "torch hidden from another thread"
        assert "torch" not in sys.modules, "torch imported"
        assert linebreaks.joints(["It", "was", "not", "tired."], "en")[2].bad
        if installed:
            import torch
        """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.fast
def test_a_missing_parser_is_named_with_what_to_install() -> None:
    from cpwhisperx.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match=r"en_core_web_nothing cannot be loaded .*pip install "
                                            r"--force-reinstall en-core-web-nothing spacy"):
        linebreaks._parser("en_core_web_nothing")


@pytest.mark.fast
def test_check_reads_line_breaks_across_events() -> None:
    style = subtitles.Style(fps=25.0)
    events = [subtitles.Event(0.0, 3.5, ("We crossed the river, and she did not",
                                         "give up on her plan.")),
              subtitles.Event(4.0, 6.0, ("Then he walked", "into the kitchen."))]
    report = subtitles.check(events, style, language="en")
    assert [(f["event"], f["why"]) for f in report.failures] == [
        (1, {"line_break": "line broken between 'not' and 'give' (a verb and its negation)"})]


ENGLISH = [i for i in evaluation.items() if i.language == "en" and i.text
           and i.path.suffix == ".flac"]


@pytest.mark.parametrize("item", ENGLISH, ids=[i.id for i in ENGLISH])
def test_subtitles_of_english_clips_conform(tmp_path: Path, item) -> None:
    proc = cli(tmp_path, "prepare", "--media", str(item.path), "--workflow", "subtitle",
               "-s", "en", "-t", "en")
    job_id = proc.stdout.strip()
    run = cli(tmp_path, "run", "-j", job_id)
    assert run.returncode == 0, run.stderr
    root = job_root(tmp_path, job_id)
    report = json.loads((stage_dir(root, "subtitles") / "en.conformance.json").read_text())
    assert report["events"] > 0
    assert report["all_rules"] >= 0.98, report["failures"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["stages"]["subtitles"]["meta"]["conformance"]["en"]["all_rules"] \
        == report["all_rules"]
    assert (root / "outputs" / f"{item.path.stem}.en.srt").read_text().startswith("1\n")
    status = cli(tmp_path, "status", "-j", job_id)
    assert f"subtitles en: {report['all_rules']:.1%} of {report['events']} events" in status.stdout


@pytest.mark.parametrize("name,container,codec", [("media_film_mp4", "mp4", "mov_text"),
                                                  ("media_en_hi_mkv", "mkv", "subrip")])
def test_subtitle_workflow_muxes_soft_tracks(tmp_path: Path, name, container, codec) -> None:
    source = clip(name)
    proc = cli(tmp_path, "subtitle", str(source), "-s", "en", "-t", "en")
    assert proc.returncode == 0, proc.stderr
    outputs = job_root(tmp_path, job_of(proc)) / "outputs"
    assert (outputs / f"{name}.en.srt").is_file() and (outputs / f"{name}.en.vtt").is_file()
    before, before_duration = ffprobe_streams(source)
    after, after_duration = ffprobe_streams(outputs / f"{name}.subtitled.{container}")
    kept = [(s["codec_type"], s["codec_name"]) for s in after if s["codec_type"] != "subtitle"]
    assert kept == [(s["codec_type"], s["codec_name"]) for s in before]  # copied, not re-encoded
    assert abs(after_duration - before_duration) <= 0.1
    (track,) = [s for s in after if s["codec_type"] == "subtitle"]
    assert track["codec_name"] == codec and track["tags"]["language"] == "eng"

    # A line length set for English alone: the subtitles are made again, the speech is not.
    root = job_root(tmp_path, job_of(proc))
    asr = (root / "04_asr" / "transcript.json").stat().st_mtime_ns
    rerun = cli(tmp_path, "run", "-j", job_of(proc), "--set", "SUBTITLE_MAX_CHARS=en:30,hi:20")
    assert rerun.returncode == 0, rerun.stderr
    assert (root / "04_asr" / "transcript.json").stat().st_mtime_ns == asr
    report = json.loads((stage_dir(root, "subtitles") / "en.conformance.json").read_text())
    assert report["style"]["max_chars"] == 30
    cues = (outputs / f"{name}.en.srt").read_text().split("\n\n")
    assert all(subtitles.graphemes(line) <= 30 for cue in cues for line in cue.splitlines()[2:])


def test_subtitle_targets_are_checked(tmp_path: Path) -> None:
    bad = cli(tmp_path, "subtitle", str(clip("en_jfk")), "-t", "en,xx")
    assert bad.returncode != 0 and "unknown language code 'xx'" in error_line(bad)
    # An engine that cannot do a pair: said before any work is done.
    missing = cli(tmp_path, "subtitle", str(clip("en_jfk")), "-s", "en", "-t", "en,hi",
                  "--translator", "whisper")
    assert missing.returncode == 2
    assert "Whisper translates only into English, not into hi" in error_line(missing)
    assert not list(tmp_path.rglob("job.json"))
    assert media.probe(clip("en_jfk")).fps is None  # audio only: 25 fps for frame gaps
    # With -s auto, once ASR has told the language: stopped there, the speech kept.
    detected = cli(tmp_path, "subtitle", str(clip("en_jfk")), "-t", "en,hi",
                   "--translator", "whisper")
    assert detected.returncode == 1
    assert "the speech is in en: Whisper translates only into English" in error_line(detected)
    stages = json.loads((job_root(tmp_path, job_of(detected)) / "manifest.json").read_text()
                        )["stages"]
    assert stages["asr"]["status"] == "done" and stages["align"]["status"] == "pending"
    assert stages["translate"]["status"] == "failed"


@pytest.mark.fast
def test_indic_languages_whisper_cannot_hear_are_targets_not_sources() -> None:
    from cpwhisperx import config
    from cpwhisperx.stages.mux import language_tag
    from cpwhisperx.text import scripts

    settings = config.load_settings(job_file=None, cli={"TARGET_LANGUAGES": "en,or,mai,ks"})
    assert settings.targets == ["en", "or", "mai", "ks"]
    with pytest.raises(config.ConfigError, match=r"SOURCE_LANGUAGE.*Whisper language code"):
        config.load_settings(job_file=None, cli={"SOURCE_LANGUAGE": "or"})
    assert [language_tag(c)[0] for c in ("or", "mai", "ks")] == ["ori", "mai", "kas"]
    assert scripts.in_own_script("ଓଡ଼ିଆ ଭାଷା", "or") and not scripts.in_own_script("Odia", "or")
