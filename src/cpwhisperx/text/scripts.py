"""Writing systems of Indic transcripts: which script a text is in, and conversion of what a
small Whisper model writes in another script (Urdu's Perso-Arabic for Hindi, Bengali for
Assamese, ...) into the language's own script, with Aksharamukha.

Latin words that are English (in CMUdict, which pocketsphinx ships) are left alone: in Hinglish
they are written as spoken. Other Latin words, and Latin letters inside a word of the language,
are the language romanized ("CHEMENTÁYAR") and are transliterated; so are Cyrillic and Greek
letters (a Cyrillic "Р" in a Hindi word, which decoding on another CPU gave), once romanized.
Letters of any other script are dropped.
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
    converted, English words kept, other Latin, Cyrillic and Greek letters transliterated,
    letters of any other script dropped."""
    target = NATIVE_SCRIPTS[language]
    text = unicodedata.normalize("NFC", text)
    sources = [_SOURCES[name] for name in letters(text)
               if name in _SOURCES and name != target.upper()]
    for source in sources:
        text = (_from_urdu(text, target) if source == "Urdu"
                else _transliterate()(source, target, text))
    # Aksharamukha marks ambiguous joins with "_" and zero-width spaces (gone before words are
    # looked up: what they joined is one word).
    text = _RUN.sub(lambda m: m[0] if english(m[0]) else _own(m[0], target),
                    re.sub("[_\u200b]", "", text))
    return unicodedata.normalize("NFC", " ".join(text.split()))


# A run of letters and marks (vowel signs, viramas, accents): a word, for scripts.
_RUN = regex.compile(r"[\p{L}\p{M}]+")
# Marks of no script of their own (accents, variation selectors) belong to the letter before.
_INHERITED = regex.compile(r"\p{Zinh}")


def english(word: str) -> bool:
    """A whole word of plain Latin letters that is in CMUdict: an English word, not a Latin
    letter inside a word of another script, nor a romanization with accents ("CHEMENTÁYAR")."""
    return word.isascii() and word.isalpha() and word.lower() in english_words()


def _own(run: str, target: str) -> str:
    """A run of letters that is not an English word, in the target script."""
    return "".join(_convert(part, target) for part in _by_script(run))


def _by_script(run: str) -> list[str]:
    """A run of letters cut where its script changes."""
    parts: list[str] = []
    for char in run:
        if parts and (_INHERITED.match(char) or _script_of(char) == _script_of(parts[-1])):
            parts[-1] += char
        else:
            parts.append(char)
    return parts


def _script_of(text: str) -> str:
    return unicodedata.name(text[0], "?").split()[0] if text else ""


# Cyrillic and Greek letters romanized (accents are stripped first: й → и, ά → α).
_ROMAN = (str.maketrans("абвгдезиклмнопрстуфыэіґαβγδεζηικλμνξοπρσςτυφω",
                        "abvgdeziklmnoprstufyeigavgdeziiklmnxoprsstyfo")
          | str.maketrans({"ж": "z", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
                           "ю": "yu", "я": "ya", "є": "ye", "ъ": "", "ь": "", "θ": "th",
                           "χ": "kh", "ψ": "ps"}))


def _convert(part: str, target: str) -> str:
    script = _script_of(part)
    if script not in ("LATIN", "CYRILLIC", "GREEK"):
        # The target's letters stay, without foreign accents; a stray letter or mark of
        # another script goes: no sound of the language is lost.
        return _only(part, target)
    # Romanized Hindi as it is casually written, read as ITRANS: "ch" च, "chh" छ, "sh" श,
    # "aa" "ee" "oo" long; a word-final "a" or "i" is long ("khana", "pani"), "cch" is च्छ
    # ("accha"), a lone "c" is "k"; a final consonant has no vowel sign (Hindi drops the schwa).
    roman = _plain(part).translate(_ROMAN)
    roman = re.sub(r"(?<=[^aeiou])[ai]$", lambda m: m[0].upper(), roman)
    roman = re.sub("c(?!h)", "k", roman.replace("cch", "chCh"))
    # What ITRANS has no letter for stays Latin, and goes.
    return _only(_transliterate()("ITRANS", target, roman).removesuffix("\u094d"), target)


def _only(text: str, script: str) -> str:
    return "".join(c for c in text if _script_of(c) == script.upper())


@cache
def english_words() -> frozenset[str]:
    """English words, as CMUdict (shipped with pocketsphinx) spells them, in lower case."""
    import os

    import pocketsphinx

    path = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.split(" ", 1)[0].split("(", 1)[0] for line in fh)


def native_share(text: str, language: str) -> float:
    """The share of ``text``'s letters in ``language``'s own script, English words not
    counted: what ``HINDI_SCRIPT=devanagari`` promises to be 1.0."""
    rest = " ".join(run for run in _RUN.findall(text) if not english(run))
    return share(rest, NATIVE_SCRIPTS[language]) if rest else 1.0


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
