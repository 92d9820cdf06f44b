"""Translation's shared parts: sentences, re-timing onto the source speech, the cache, the
glossary, the context window, the engine choice, and the LLM client's checks of replies and
its handling of a failing endpoint."""

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import cli, clip, job_of, job_root
from cpwhisperx import config, translation
from cpwhisperx.engines.translate import llama_server, llm
from cpwhisperx.errors import ConfigError, CpwError
from cpwhisperx.stages import translate
from cpwhisperx.text import scripts
from cpwhisperx.transcript import Segment, Transcript, Word


def _segment(*words: tuple[float, float, str]) -> Segment:
    ws = tuple(Word(s, e, t) for s, e, t in words)
    return Segment(ws[0].start, ws[-1].end, " ".join(w.text for w in ws), ws)


@pytest.mark.fast
def test_sentences_end_at_punctuation_pauses_and_long_runs() -> None:
    transcript = Transcript("en", (
        _segment((0.0, 0.4, "Hello"), (0.5, 0.9, "there."), (1.0, 1.3, "How"),
                 (1.4, 1.8, "are")),
        _segment((1.9, 2.2, "you")),  # no pause before it: the same sentence
        _segment((4.0, 4.5, "Fine")),  # a pause of 1.8 s before: "you" ended a sentence
        *[_segment((6.0 + i, 6.5 + i, "word")) for i in range(20)],
    ))
    units = translation.sentences(transcript)
    assert [u.text for u in units[:3]] == ["Hello there.", "How are you", "Fine"]
    assert (units[0].start, units[0].end) == (0.0, 0.9)
    assert all(u.end - u.start <= translation.LONG_S + 1 for u in units)
    assert sum(len(u.words) for u in units) == 26  # every word in exactly one sentence


@pytest.mark.fast
def test_an_abbreviation_ends_no_sentence() -> None:
    transcript = Transcript("en", (_segment((0.0, 0.4, "Ask"), (0.5, 0.9, "Dr."),
                                            (1.0, 1.3, "Watson."), (1.4, 1.8, "Now.")),))
    assert [u.text for u in translation.sentences(transcript)] == ["Ask Dr. Watson.", "Now."]


spoken = st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.05, 1.0)), min_size=1,
                  max_size=12)


@pytest.mark.fast
@given(spoken, st.sampled_from(["hi", "en", "ja"]),
       st.text(alphabet="abc मैंहूँ日本語 ", min_size=0, max_size=60))
def test_retime_keeps_the_sentence_span_and_its_silences(gaps, language, text) -> None:
    words, at = [], 1.0
    for gap, length in gaps:
        at += gap
        words.append(Word(round(at, 3), round(at + length, 3), "w"))
        at += length
    unit = translation.Sentence(words[0].start, words[-1].end, "src", tuple(words))
    segment = translation.retime(unit, text, language=language)
    assert (segment.start, segment.end) == (unit.start, unit.end)
    assert segment.text == text.strip()
    joiner = "" if language == "ja" else " "
    assert joiner.join(w.text for w in segment.words).replace(" ", "") == \
        segment.text.replace(" ", "")
    last = unit.start
    for w in segment.words:
        assert last <= w.start <= w.end <= unit.end
        last = w.start
        # A word starts inside speech, never in a silence between the source's words.
        assert any(s.start <= w.start <= s.end for s in words)


@pytest.mark.fast
def test_cache_keeps_translations_by_engine_model_languages_and_text(tmp_path: Path) -> None:
    cache = translation.Cache(tmp_path / "t.sqlite")
    key = cache.key(engine="llm", model="m", source="en", target="hi", text="Hello.")
    others = {cache.key(engine="whisper", model="m", source="en", target="hi", text="Hello."),
              cache.key(engine="llm", model="n", source="en", target="hi", text="Hello."),
              cache.key(engine="llm", model="m", source="en", target="ta", text="Hello."),
              cache.key(engine="llm", model="m", source="en", target="hi", text="Hello!")}
    assert key not in others and len(others) == 4
    assert cache.get([key]) == {}
    cache.put({key: "नमस्ते।"})
    assert translation.Cache(tmp_path / "t.sqlite").get([key, *others]) == {key: "नमस्ते।"}


@pytest.mark.fast
def test_glossary_lines_for_every_target_or_one(tmp_path: Path) -> None:
    path = tmp_path / "glossary.txt"
    path.write_text("# names\nAnna = अन्ना\nhi: station = स्टेशन  # rail\nta: station = நிலையம்\n",
                    encoding="utf-8")
    assert translation.load_glossary(path, target="hi") == {"Anna": "अन्ना", "station": "स्टेशन"}
    assert translation.load_glossary(path, target="ta") == {"Anna": "अन्ना",
                                                           "station": "நிலையம்"}
    assert translation.glossary_terms(path) == ["Anna", "station"]  # ASR's hotwords
    path.write_text("Anna\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"glossary\.txt:1: expected 'term = translation'"):
        translation.load_glossary(path, target="hi")


@pytest.mark.fast
def test_context_is_the_whole_transcript_or_a_window_around_the_batch() -> None:
    units = [translation.Sentence(i, i + 1, f"s{i:02d}", ()) for i in range(50)]
    assert translation.context(units, 10, 12, chars=1000) == " ".join(u.text for u in units)
    window = translation.context(units, 20, 22, chars=40)
    assert "s20 s21" in window and len(window) <= 40 and "s00" not in window


def _settings(**values: str) -> config.Settings:
    return config.load_settings(config_file=Path("/dev/null"), environ={},
                                cli={k.upper(): v for k, v in values.items()})


@pytest.mark.fast
def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the [llm] extra's small model, the last resort (tests/test_indictrans2.py).
    monkeypatch.setattr(llama_server, "bundled_installed", lambda: False)
    assert translation.choose(_settings(source_language="hi"), source="hi",
                              target="en") == "whisper"
    with pytest.raises(ConfigError, match="no translation engine here for en → hi"):
        translation.choose(_settings(), source="en", target="hi")
    # tiny.en cannot translate, not even into English.
    with pytest.raises(ConfigError, match="fr → en"):
        translation.choose(_settings(whisper_model="tiny.en"), source="fr", target="en")
    assert translation.choose(_settings(llm_model="m.gguf"), source="en", target="hi") == "llm"
    assert translation.choose(_settings(translation_backend="llm"), source="en",
                              target="fr") == "llm"
    assert translation.choose(_settings(translation_model="nllb-ct2"), source="hi",
                              target="ta") == "nllb"
    with pytest.raises(ConfigError, match="Whisper translates only into English"):
        translation.choose(_settings(translation_backend="whisper"), source="en", target="hi")


@pytest.mark.fast
def test_burn_in_must_be_a_subtitle_language() -> None:
    with pytest.raises(ConfigError, match="BURN_IN=hi is not a subtitle language"):
        _settings(target_languages="en", burn_in="hi")
    assert _settings(target_languages="en,hi", burn_in="hi").burn_in == "hi"


@pytest.mark.fast
def test_the_schema_pattern_holds_a_line_to_the_script_and_its_length() -> None:
    pattern = re.compile(scripts.line_pattern("hi", longest=20))
    assert pattern.match("मैं घर जा रहा हूँ।")
    assert pattern.match("5 बजे") is None  # starts with a letter of the script
    assert pattern.match("मैं going") is None
    assert pattern.match("न" * 21) is None
    assert scripts.line_pattern("fr", longest=20) is None


def _parse(content: str, texts: list[str], target: str = "hi") -> list[str]:
    return llm._parse(content, [str(i + 1) for i in range(len(texts))], texts, source="en",
                      target=target, loop_limit=3)


@pytest.mark.fast
def test_replies_are_checked() -> None:
    texts = ["Where were you?", "I waited."]
    good = '```json\n{"1": "तुम कहाँ थे?", "2": "मैं  रुका\\nरहा।"}\n```'
    assert _parse(good, texts) == ["तुम कहाँ थे?", "मैं रुका रहा।"]
    for bad, why in [('{"1": "तुम कहाँ थे?"}', "expected the keys"),
                     ('{"1": "x", "2": "y", "3": "z"}', "expected the keys"),
                     ("not json", "not JSON"),
                     ('{"1": "तुम<|im_end|>", "2": "मैं"}', "garbled"),
                     ('{"1": "", "2": "मैं"}', "empty"),
                     ('{"1": "Where were you?", "2": "मैं"}', "not written in hi's script"),
                     (json.dumps({"1": "त" * 80, "2": "मैं"}), "overlong"),
                     # A small model's reply that loops: caught by the clean stage's rule.
                     (json.dumps({"1": "तुम", "2": "नमस्ते, " * 8}), "a loop, 'नमस्ते,' 8 times")]:
        with pytest.raises(llm.InvalidReply, match=why):
            _parse(bad, texts)


@contextmanager
def _endpoint(replies: list[tuple[int, object]] | Callable[[dict], tuple[int, object]]
              ) -> Iterator[tuple[str, list[dict]]]:
    """An HTTP endpoint on loopback answering each POST with the next (status, body), or what
    ``replies`` makes of the request; for the client's error paths and replies no real model
    gives on cue (the real server's test is in test_translate_workflow.py)."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            if callable(replies):
                status, body = replies(requests[-1])
            else:
                status, body = replies.pop(0) if replies else (500, {"error": "no more replies"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", requests
    finally:
        server.shutdown()
        server.server_close()


def _reply(content: str) -> tuple[int, dict]:
    return 200, {"choices": [{"message": {"role": "assistant", "content": content}}]}


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm, "BACKOFF_S", 0.0)


@pytest.mark.fast
def test_llm_asks_in_words_where_response_format_is_refused() -> None:
    replies = [(400, {"error": "response_format is not supported"}),
               _reply('{"1": "Bonjour."}')]
    with _endpoint(replies) as (url, requests):
        translator = llm.LlmTranslator(base_url=url, model="m", glossary={"Anna": "Anne"})
        assert translator.translate(["Hello."], source="en", target="fr",
                                    context="Hello. Anna.") == ["Bonjour."]
    assert "response_format" in requests[0] and "response_format" not in requests[1]
    prompt = requests[1]["messages"][1]["content"]
    assert "Anna = Anne" in prompt and "Hello. Anna." in prompt and "1: Hello." in prompt


@pytest.mark.fast
def test_a_looping_reply_is_asked_again_warmer() -> None:
    looping = _reply(json.dumps({"1": "नमस्ते, " * 45}))
    with _endpoint([looping, _reply('{"1": "नमस्ते, अन्ना।"}')]) as (url, requests):
        out = llm.LlmTranslator(base_url=url, model="m").translate(
            ["Hello, Anna."], source="en", target="hi", context="")
    assert out == ["नमस्ते, अन्ना।"]
    assert [r["temperature"] for r in requests] == list(llm.TEMPERATURES[:2])
    # A source that repeats itself may be translated so.
    assert _parse(json.dumps({"1": "नहीं " * 5}), ["No " * 5]) == [" ".join(["नहीं"] * 5)]


@pytest.mark.fast
@pytest.mark.parametrize("text,source,language,kept,loop", [
    # An LLM's reply that looped, and Whisper's translated segments joined into a sentence.
    ("नमस्ते, " * 45, "Hello.", "hi", "नमस्ते,", "'नमस्ते,' 45 times"),
    ("The goals of the state of the state of the state of the state of the", "राज्य के लक्ष्य",
     "en", "The goals of the state of the", "'of the state' 4 times"),
    ("我们走吧吧吧吧吧", "Let's go.", "zh", "我们走吧", "'吧' 5 times"),  # by characters
    ("No no no no no.", "नहीं नहीं नहीं नहीं नहीं।", "en", "No no no no no.", None),  # as said
    ("Yes yes yes.", "हाँ हाँ हाँ।", "en", "Yes yes yes.", None),  # within the limit
])
def test_a_translation_that_loops_is_kept_once_as_the_clean_rule_does(
        text: str, source: str, language: str, kept: str, loop: str | None) -> None:
    source_language = "en" if source.isascii() else "hi"
    out, found = translation.unloop(text, language=language, source=source,
                                    source_language=source_language, limit=3)
    assert out == kept
    assert (found is None) if loop is None else found.startswith(loop)
    # The clean stage's rule switched off (CLEAN_RULES without loops): left as it is.
    assert translation.unloop(text, language=language, source=source,
                              source_language=source_language, limit=None) == (text, None)


def test_a_sentence_whose_translation_loops_is_left_out_and_the_job_goes_on(
        tmp_path: Path) -> None:
    looping: list[str] = []  # the sentence the model loops on: the first one it is asked for

    def model(request: dict) -> tuple[int, dict]:
        lines = request["messages"][1]["content"].split("Lines to translate:\n")[1]
        asked = dict(line.split(": ", 1) for line in lines.splitlines())
        if not looping:
            looping.append(next(iter(asked.values())))
        # A loop short enough to pass the length check: the loop rule is what catches it.
        return _reply(json.dumps({n: "नमस्ते, " * 5 if text == looping[0] else "यह वाक्य है।"
                                  for n, text in asked.items()}))

    with _endpoint(model) as (url, requests):
        proc = cli(tmp_path, "translate", str(clip("en_words_cooking")), "-s", "en", "-t", "hi",
                   "--translator", "llm", env={"LLM_BASE_URL": url, "LLM_MODEL": ""})
        assert proc.returncode == 0, proc.stderr
        root = job_root(tmp_path, job_of(proc))
        stage = json.loads((root / "manifest.json").read_text())["stages"]["translate"]
        assert stage["meta"]["hi"]["untranslated"] == 1 < stage["meta"]["sentences"]
        assert any("1 of" in w and "have no translation" in w for w in stage["warnings"])
        alone = [r["temperature"] for r in requests if r["messages"][1]["content"].endswith(
            f"Lines to translate:\n1: {looping[0]}")]
        assert alone == list(llm.TEMPERATURES)  # asked again, warmer, then left out
        hindi = (root / "outputs" / "en_words_cooking.hi.txt").read_text(encoding="utf-8")
        assert "नमस्ते" not in hindi and "यह वाक्य है।" in hindi

        # An engine that is not asked again (Whisper, NLLB, IndicTrans2): its loop, here put
        # into the cache for that sentence, is kept once, as the clean stage does.
        translate.cache().put({translation.Cache.key(engine="llm", model=url, source="en",
                                                     target="hi", text=looping[0]):
                               "नमस्ते, " * 45})
        asked = len(requests)
        again = cli(tmp_path, "run", "-j", job_of(proc), "--set", "LLM_CONTEXT_CHARS=3999")
        assert again.returncode == 0, again.stderr
        assert len(requests) == asked  # every sentence from the cache
    stage = json.loads((root / "manifest.json").read_text())["stages"]["translate"]
    assert stage["meta"]["hi"]["untranslated"] == 0 and stage["meta"]["hi"]["loops"] == 1
    assert any("'नमस्ते,' 45 times in a row" in w for w in stage["warnings"])
    hindi = (root / "outputs" / "en_words_cooking.hi.txt").read_text(encoding="utf-8")
    assert hindi.count("नमस्ते") == 1


def test_hindi_a_model_wrote_has_every_letter_in_devanagari_or_an_english_word(
        tmp_path: Path) -> None:
    """HINDI_SCRIPT=devanagari holds for translations as for transcripts: a model's stray
    Cyrillic and Arabic letters go, its romanized Hindi is transliterated, English stays."""
    said = "आज हम Рदाल और चावल बनाएंगे پ ه, CHEMENTÁYAR phone में रखो।"  # noqa: RUF001

    def model(request: dict) -> tuple[int, dict]:
        lines = request["messages"][1]["content"].split("Lines to translate:\n")[1]
        return _reply(json.dumps({line.split(": ", 1)[0]: said for line in lines.splitlines()}))

    with _endpoint(model) as (url, _):
        proc = cli(tmp_path, "translate", str(clip("en_words_cooking")), "-s", "en", "-t", "hi",
                   "--translator", "llm", env={"LLM_BASE_URL": url, "LLM_MODEL": ""})
    assert proc.returncode == 0, proc.stderr
    outputs = job_root(tmp_path, job_of(proc)) / "outputs"
    hindi = (outputs / "en_words_cooking.hi.txt").read_text(encoding="utf-8")
    assert scripts.native_share(said, "hi") < 0.9 and scripts.native_share(hindi, "hi") == 1.0
    assert "phone" in hindi.split() and "चेमेन्तयर" in hindi.split(), hindi


@pytest.mark.fast
def test_llm_splits_a_failing_batch_and_leaves_what_fails_alone_untranslated() -> None:
    bad = _reply('{"1": "Un."}')  # one key where two are asked for
    replies = [bad] * llm.ATTEMPTS + [_reply('{"1": "Un."}')] + [_reply("{}")] * llm.ATTEMPTS
    with _endpoint(replies) as (url, requests):
        out = llm.LlmTranslator(base_url=url, model="m").translate(
            ["One.", "Two."], source="en", target="fr", context="")
    assert out == ["Un.", ""]
    assert len(requests) == 2 * llm.ATTEMPTS + 1


@pytest.mark.fast
@pytest.mark.parametrize("status,message", [(401, "set LLM_API_KEY"),
                                            (404, "answered HTTP 404"),
                                            (503, "failed 3 times (HTTP 503)")])
def test_llm_endpoint_errors_say_what_to_do(status: int, message: str) -> None:
    with _endpoint([(status, {"error": "x"})] * 3) as (url, _), \
            pytest.raises(CpwError, match=re.escape(message)):
        llm.LlmTranslator(base_url=url, model="m").translate(["Hi."], source="en",
                                                             target="fr", context="")


@pytest.mark.fast
def test_llm_unreachable_endpoint() -> None:
    with pytest.raises(CpwError, match="check that the server is running"):
        llm.LlmTranslator(base_url="http://127.0.0.1:9/v1", model="m", timeout=2).translate(
            ["Hi."], source="en", target="fr", context="")
