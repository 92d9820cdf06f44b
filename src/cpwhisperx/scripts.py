"""Writing systems of Indic transcripts: which script a text is in, and conversion of what a
small Whisper model writes in another script (Urdu's Perso-Arabic for Hindi, Bengali for
Assamese, ...) into the language's own script, with Aksharamukha.

Latin words that are English (in CMUdict, which pocketsphinx ships) are left alone: in Hinglish
they are written as spoken. Other Latin words are the language romanized ("CHEMENTÁYAR") and
are transliterated; stray letters of any other script (a Cyrillic "Р" in a Hindi word, which
decoding on another CPU gave) are dropped.
"""
# ruff: noqa: RUF001, RUF002, RUF003 (Urdu letters are what this module handles)

import re
import unicodedata
from collections import Counter
from functools import cache

import regex

# Indic languages → their script, as Aksharamukha names it (Whisper's, then subtitle targets).
NATIVE_SCRIPTS: dict[str, str] = {
    "hi": "Devanagari", "mr": "Devanagari", "ne": "Devanagari", "sa": "Devanagari",
    "bn": "Bengali", "as": "Bengali", "pa": "Gurmukhi", "gu": "Gujarati", "ta": "Tamil",
    "te": "Telugu", "kn": "Kannada", "ml": "Malayalam", "si": "Sinhala",
    "or": "Oriya", "mai": "Devanagari", "kok": "Devanagari", "doi": "Devanagari",
    "brx": "Devanagari",
}
# Their Unicode blocks; the danda (। ॥) is Devanagari's and serves the others too.
BLOCKS: dict[str, tuple[int, int]] = {
    "Devanagari": (0x0900, 0x097F), "Bengali": (0x0980, 0x09FF), "Gurmukhi": (0x0A00, 0x0A7F),
    "Gujarati": (0x0A80, 0x0AFF), "Tamil": (0x0B80, 0x0BFF), "Telugu": (0x0C00, 0x0C7F),
    "Kannada": (0x0C80, 0x0CFF), "Malayalam": (0x0D00, 0x0D7F), "Sinhala": (0x0D80, 0x0DFF),
    "Oriya": (0x0B00, 0x0B7F),
}
# A window a small model turned into English (Latin) is decoded again as the same spoken
# language in the script it writes best: Whisper base writes Hindustani speech in Urdu script far
# more reliably than in Devanagari, and Urdu converts to Devanagari letter by letter.
RETRY_LANGUAGE: dict[str, str] = {"hi": "ur"}

# Scripts converted from, by the first word of their letters' Unicode names (DEVANAGARI
# LETTER KA, ARABIC LETTER KEHEH, ...) → Aksharamukha's name; Arabic letters are read as Urdu.
_SOURCES = {name.upper(): name for name in NATIVE_SCRIPTS.values()} | {"ARABIC": "Urdu"}
# Urdu as Aksharamukha reads it: without the optional short-vowel marks (harakat), and with
# do-chashmi he (ھ) only where it marks an aspirate (بھ → भ); elsewhere it is a spelling of he
# (ھم, رھا → हम, रहा).
_HARAKAT = re.compile("[\u064b-\u065f\u0670]")
_NOT_ASPIRATE = re.compile("(?<![بپتٹجچدڈڑکگ])ھ")
_CONSONANT = "[\u0915-\u0939\u0958-\u095f]\u093c?"
# Unwritten short vowels make Urdu's ی and و after a consonant a long vowel, not the consonants
# य and व that a letter-for-letter reading gives (کی → की, دو → दो, نہیں → नहीं).
_URDU_LONG_VOWELS = ((re.compile(f"({_CONSONANT})य(?=[\\sं।?,!]|$|{_CONSONANT})"), "\\1ी"),
                     (re.compile(f"({_CONSONANT})व(?=[\\sं।?,!]|$|{_CONSONANT})"), "\\1ो"))


def letters(text: str) -> Counter[str]:
    """Letters and vowel signs counted per script (Unicode's name for it: DEVANAGARI, ...)."""
    return Counter(unicodedata.name(c, "?").split()[0] for c in text
                   if unicodedata.category(c)[0] in "LM")


def share(text: str, script: str) -> float:
    """The share of ``text``'s letters in ``script`` (0.0 for a text with no letters)."""
    counts = letters(text)
    total = sum(counts.values())
    return counts[script.upper()] / total if total else 0.0


def mostly_latin(text: str) -> bool:
    return share(text, "Latin") > 0.5


def line_pattern(language: str, *, longest: int) -> str | None:
    """A regular expression (ECMAScript syntax, as JSON Schema has it) for one line of at most
    ``longest`` characters in the language's own script: one of its letters, then its letters,
    digits, spaces and plain punctuation, no Latin; None for a language without a native script
    here. The repetition is bounded, so a grammar built from it cannot let a model write on
    forever; quotes and brackets stay out (llama.cpp's schema converter rejects them in a set,
    and then constrains nothing)."""
    if language not in NATIVE_SCRIPTS:
        return None
    lo, hi = BLOCKS[NATIVE_SCRIPTS[language]]
    block = f"\\u{lo:04X}-\\u{hi:04X}"
    return f"^[{block}][{block}\\u0964\\u0965 0-9,.?!;:-]{{0,{longest - 1}}}$"


def in_own_script(text: str, language: str) -> bool:
    """Most of the text's letters are in the language's own script: an Indic one, or Latin for
    English (true for a text without letters, and for a language not known here)."""
    script = "Latin" if language == "en" else NATIVE_SCRIPTS.get(language)
    return script is None or not letters(text) or share(text, script) > 0.5


@cache
def _transliterate():
    from aksharamukha import transliterate

    return transliterate.process


def to_native(text: str, language: str) -> str:
    """``text`` in ``language``'s own script: words in another Indic script or Urdu's
    converted, Latin words kept where they are English and transliterated where not, letters of
    any other script dropped."""
    target = NATIVE_SCRIPTS[language]
    text = unicodedata.normalize("NFC", text)
    sources = [_SOURCES[name] for name in letters(text)
               if name in _SOURCES and name != target.upper()]
    for source in sources:
        text = (_from_urdu(text, target) if source == "Urdu"
                else _transliterate()(source, target, text))
    text = _RUN.sub(lambda m: _own(m.group(0), target), text)
    # Aksharamukha marks ambiguous joins with "_" and zero-width spaces.
    return unicodedata.normalize("NFC", re.sub("[_\u200b]", "", " ".join(text.split())))


# A run of letters with their marks (vowel signs, viramas, accents).
_RUN = regex.compile(r"\p{L}[\p{L}\p{M}]*")


def _own(run: str, target: str) -> str:
    """One run of letters in the target script, or what it becomes there."""
    return "".join(_convert(part, target) for part in _by_script(run))


def _by_script(run: str) -> list[str]:
    """A run of letters cut where its script changes (marks go with their letter)."""
    parts: list[str] = []
    for char in run:
        if parts and (unicodedata.category(char)[0] == "M"
                      or _script_of(char) == _script_of(parts[-1])):
            parts[-1] += char
        else:
            parts.append(char)
    return parts


def _script_of(text: str) -> str:
    return unicodedata.name(text[0], "?").split()[0] if text else ""


def _convert(part: str, target: str) -> str:
    script = _script_of(part)
    if script == target.upper():
        return part
    if script == "LATIN":
        plain = "".join(c for c in unicodedata.normalize("NFKD", part)
                        if not unicodedata.combining(c)).lower()
        if plain in english_words():
            return part
        # Romanized Hindi: a word-final "a" is long ("khana", "kya"), and a final consonant
        # has no vowel sign (Hindi drops the schwa).
        roman = re.sub(r"(?<=[^aeiou])a$", "A", plain).replace("w", "v").replace("x", "ks")
        native = _transliterate()("HK", target, roman).removesuffix("\u094d")
        return regex.sub(r"\p{Latin}", "", native)  # what Harvard-Kyoto has no letter for
    return ""  # a stray letter of another script: no sound of the language is lost


@cache
def english_words() -> frozenset[str]:
    """English words, as CMUdict (shipped with pocketsphinx) spells them, in lower case."""
    import os

    import pocketsphinx

    path = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.split(" ", 1)[0].split("(", 1)[0] for line in fh)


def native_share(text: str, language: str) -> float:
    """The share of ``text``'s letters in ``language``'s own script, English words (Latin, in
    CMUdict) not counted: what ``HINDI_SCRIPT=devanagari`` promises to be 1.0."""
    script = NATIVE_SCRIPTS[language]
    words = [w for run in _RUN.findall(text) for w in _by_script(run)
             if not (_script_of(w) == "LATIN" and _plain(w) in english_words())]
    return share(" ".join(words), script) if words else 1.0


def _plain(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word)
                   if not unicodedata.combining(c)).lower()


def _from_urdu(text: str, target: str) -> str:
    # Urdu writes no short vowels; Aksharamukha must not read an inherent "a" into them.
    text = _transliterate()("Urdu", target, _NOT_ASPIRATE.sub("ہ", _HARAKAT.sub("", text)),
                            pre_options=["UrduShortNotShown"])
    if target == "Devanagari":
        for pattern, replacement in _URDU_LONG_VOWELS:
            text = pattern.sub(replacement, text)
        # Urdu's full stop (U+06D4) comes back as "."
        text = re.sub("(?<=[\u0900-\u097f])\\.", "।", text)
    return text
