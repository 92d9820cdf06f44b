"""Hindi in Devanagari: script detection and conversion, and real transcriptions of the Hindi
speech in ../shared/eval with the shipped multilingual base model."""
# ruff: noqa: RUF001, RUF003 (Urdu letters are this file's test data)

import json
import unicodedata
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_times_valid, cli, clip, job_of, job_root
from cpwhisperx import evaluation

# Urdu words built as Urdu spells them: syllables of a consonant, aspiration ھ, a vowel letter.
from cpwhisperx.text import scripts

CONSONANTS = "بپتٹثجچحخدڈذرڑزژسشصضطظعغفقکگلمنہ"
ASPIRATED = [c + "ھ" for c in "بپتٹجچدڈڑکگ"]
SYLLABLES = st.builds(str.__add__, st.sampled_from([*CONSONANTS, *ASPIRATED]),
                      st.sampled_from(["", "ا", "و", "ی"]))
URDU_WORDS = st.builds(lambda a, syllables, end: a + "".join(syllables) + end,
                       st.sampled_from(["", "ا", "آ"]), st.lists(SYLLABLES, min_size=1, max_size=3),
                       st.sampled_from(["", "ے", "ں", "یں"]))


@pytest.mark.fast
def test_share_counts_letters_per_script() -> None:
    assert scripts.share("नमस्ते, दुनिया!", "Devanagari") == 1.0
    assert scripts.share("नमस्ते hello", "Devanagari") == 6 / 11
    assert scripts.share("123 ...", "Devanagari") == 0.0
    assert scripts.mostly_latin("Man, today food is ready") and not scripts.mostly_latin("आज")


@pytest.mark.fast
def test_urdu_becomes_devanagari_with_long_vowels_and_danda() -> None:
    assert scripts.to_native("کی دو نہیں", "hi") == "की दो नहीं"
    assert scripts.to_native("آج ہم دال بنائیں گے۔", "hi").endswith("।")
    assert scripts.to_native("ہم", "mr") == "हम"
    # Do-chashmi he marks an aspirate after a consonant that has one, else it is he; vowel
    # marks (harakat) are optional in Urdu and dropped.
    assert scripts.to_native("بھاری کھانا", "hi") == "भारी खाना"
    assert scripts.to_native("ھم رھَا", "hi") == "हम रहा"


@pytest.mark.fast
def test_other_scripts_are_converted_and_latin_and_native_are_kept() -> None:
    assert scripts.to_native("নমস্কার", "hi") == "नमस्कार"
    assert scripts.to_native("नमस्ते", "bn") == "নমস্তে"
    assert scripts.to_native("मेरा phone कहाँ है", "hi") == "मेरा phone कहाँ है"
    # A nukta letter arrives either precomposed or not; both come out as the one NFC spelling.
    assert scripts.to_native("\u0958", "hi") == scripts.to_native("\u0915\u093c", "hi")
    assert scripts.to_native("\u0958", "hi") == unicodedata.normalize("NFC", "\u0958")


@pytest.mark.fast
def test_stray_letters_of_other_scripts_never_stay() -> None:
    # What decoding on an Intel CPU gave for hi_kitchen: a Cyrillic Р inside a word, Arabic
    # letters, a romanized Hindi word with an accent.
    text = "आज हम दाल बनाएंगे नमस्Рते पहले پ ه CHEMENTÁYAR धोलो"
    assert scripts.native_share(text, "hi") < 0.9
    out = scripts.to_native(text, "hi")
    assert scripts.share(out, "Devanagari") == 1.0, out
    assert out.startswith("आज हम दाल बनाएंगे") and out.endswith("पहले प चेमेन्तयर धोलो"), out
    # A Latin letter inside a Hindi word is no English word, though CMUdict has "p".
    assert scripts.native_share("नमस्Pते", "hi") < 1.0
    assert scripts.to_native("नमस्Pते", "hi") == "नमस्पते"
    # Romanized Hindi as it is casually written; Cyrillic and Greek romanized first.
    assert scripts.to_native("खाना kya hai", "hi") == "खाना क्या है"
    assert scripts.to_native("accha chalo, shaadi", "hi") == "अच्छा चलो, शादी"
    assert scripts.to_native("Хорошо καλημέρα", "hi") == "खोरोशो कलिमेरा"
    # English words of Hinglish stay as spoken, and are not counted against the script.
    assert scripts.to_native("मेरा phone कहाँ है", "hi") == "मेरा phone कहाँ है"
    assert scripts.native_share("मेरा phone कहाँ है", "hi") == 1.0
    assert scripts.native_share("मेरा Рhone", "hi") < 1.0
    # Every Latin letter has a Devanagari one; "x" and "w" are English words only on their own.
    assert scripts.share(scripts.to_native("fazwx xqfwzc", "hi"), "Devanagari") == 1.0


def _devanagari_or_english(text: str) -> None:
    """Every run of letters and marks is all Devanagari, or a whole English word."""
    for word in regex.findall(r"[\p{L}\p{M}]+", text):
        assert scripts.share(word, "Devanagari") == 1.0 or (
            regex.fullmatch("[A-Za-z]+", word) and word.lower() in scripts.english_words()
        ), (word, text)


TOKENS = st.one_of(st.sampled_from(["नमस्ते", "खाना", "है।", "क़िला", "\u093f"]),
                   st.sampled_from(["phone", "office", "school", "Today,"]),  # English
                   st.text(alphabet="abcdefghijklmnopqrstuvwxyzÁÉÍÓÚáéíóú_", min_size=1,
                           max_size=9),  # English or romanized
                   st.text(alphabet="".join(map(chr, range(0x410, 0x450))) + "Ёё", min_size=1,
                           max_size=6),  # Cyrillic
                   st.text(alphabet="αβγδεζηθικλμνξοπρστυφχψωάέήίόύώ", min_size=1, max_size=6),
                   st.text(alphabet="中文字あいうאבגกขনমস্কার\u0301\u200b", min_size=1, max_size=4),
                   URDU_WORDS)


@pytest.mark.fast
@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(TOKENS, min_size=1, max_size=3).map("".join), min_size=1,
                max_size=8))
def test_any_mix_of_scripts_comes_out_in_devanagari_or_english_words(words: list[str]) -> None:
    out = scripts.to_native(" ".join(words), "hi")
    assert scripts.native_share(out, "hi") == 1.0, out
    _devanagari_or_english(out)


@pytest.mark.fast
@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(categories=["L", "M", "N", "P", "Zs"]), max_size=30))
def test_any_text_comes_out_in_devanagari_or_english_words(text: str) -> None:
    _devanagari_or_english(scripts.to_native(text, "hi"))


@pytest.mark.fast
@settings(max_examples=80, deadline=None)
@given(st.lists(URDU_WORDS, min_size=1, max_size=6))
def test_any_urdu_words_come_out_as_as_many_devanagari_words(words: list[str]) -> None:
    converted = scripts.to_native(" ".join(words), "hi")
    assert len(converted.split()) == len(words)
    assert scripts.share(converted, "Devanagari") == 1.0


def _transcript(out: Path, proc, stem: str) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads((job_root(out, job_of(proc)) / "outputs" / f"{stem}.json").read_text())


def test_hindi_stream_of_the_mkv_is_transcribed_in_devanagari(tmp_path: Path) -> None:
    """Base writes this Hindi kitchen talk in Urdu script or, when its temperature fallback
    samples that way, as an English paraphrase (decoded again as Urdu): either way it comes out
    in Devanagari. The language is detected on the speech."""
    media = clip("media_en_hi_mkv")
    proc = cli(tmp_path, "transcribe", str(media), "--audio-stream", "hin", "--model", "base",
               timeout=600)
    transcript = _transcript(tmp_path, proc, media.stem)
    assert transcript["language"] == "hi" and transcript["meta"]["language_probability"] > 0.3
    text = " ".join(s["text"] for s in transcript["segments"])
    assert scripts.native_share(text, "hi") >= 0.99, text
    assert transcript["meta"]["redecoded_windows"] in (0, 1)  # one window of speech
    reference = next(i for i in evaluation.items() if i.id == "hi_kitchen").text
    assert evaluation.cer(reference, text, "hi") <= 0.5, text
    assert_times_valid(transcript, 34.42)


def test_as_spoken_keeps_what_the_model_wrote(tmp_path: Path) -> None:
    media = clip("hi_news_rain")
    proc = cli(tmp_path, "transcribe", str(media), "-s", "hi", "--model", "base",
               "--set", "HINDI_SCRIPT=as-spoken", "--set", "ALIGNMENT_BACKEND=none", timeout=600)
    text = " ".join(s["text"] for s in _transcript(tmp_path, proc, media.stem)["segments"])
    assert scripts.share(text, "Devanagari") < 0.5, text


def test_both_hindi_clips_in_devanagari_within_the_error_bound(tmp_path: Path) -> None:
    """Decoding differs by CPU (CTranslate2 picks its kernels): the script share and a CER
    bound hold on any, not the exact text."""
    refs, hyps = [], []
    for name in ("hi_news_rain", "hi_kitchen"):
        media = clip(name)
        proc = cli(tmp_path, "transcribe", str(media), "-s", "hi", "--model", "base",
                   timeout=600)
        text = " ".join(s["text"] for s in _transcript(tmp_path, proc, media.stem)["segments"])
        assert scripts.native_share(text, "hi") >= 0.99, text
        refs.append(next(i for i in evaluation.items() if i.id == name).text)
        hyps.append(text)
    assert evaluation.cer(" ".join(refs), " ".join(hyps), "hi") <= 0.40, hyps
