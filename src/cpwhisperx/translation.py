"""What every translation engine shares: the sentences a transcript is translated in, the
re-timing of a translation onto its sentence's speech, the cache of finished translations and
the choice of an engine for a pair of languages.

Translation never moves a subtitle in time: a translated sentence takes the span its source
sentence was spoken in, and its words are spread over the stretches of that span where words
were spoken (silences inside the sentence stay silent), in proportion to their length.
"""

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import regex

from cpwhisperx import hallucinations
from cpwhisperx.config import Settings
from cpwhisperx.engines.translate import indictrans2, llama_server
from cpwhisperx.engines.translate.nllb import FLORES
from cpwhisperx.errors import ConfigError
from cpwhisperx.languages import SPACELESS
from cpwhisperx.models import default_model, obtainable
from cpwhisperx.text import linebreaks
from cpwhisperx.text.subtitles import graphemes
from cpwhisperx.transcript import Segment, Transcript, Word, spoken_words, tidy

PAUSE_S = 1.0  # a pause this long after an unpunctuated segment ends its sentence
LONG_S = 15.0  # a sentence this long ends at its next segment end, punctuated or not


@dataclass(frozen=True, slots=True)
class Sentence:
    start: float
    end: float
    text: str
    words: tuple[Word, ...]
    speaker: str | None = None


def sentences(transcript: Transcript) -> list[Sentence]:
    """The transcript's words grouped into sentences: each ends at sentence-final
    punctuation, where the speaker changes, or at the end of a segment followed by a pause or
    after a long run."""

    out: list[Sentence] = []
    words: list[Word] = []
    segments = [s for s in transcript.segments if s.text.strip()]
    spoken = [spoken_words(s) for s in segments]
    # Where a sentence ends, as the subtitles see it: "Dr." or "St." ends none in English.
    joints = iter(linebreaks.joints([w.text.strip() for ws in spoken for w in ws],
                                    transcript.language)[1:])
    for index, segment in enumerate(segments):
        if words and segment.speaker != segments[index - 1].speaker:
            out.append(_sentence(words, transcript.language, segments[index - 1].speaker))
            words = []
        for word in spoken[index]:
            words.append(word)
            if next(joints).after_sentence:
                out.append(_sentence(words, transcript.language, segment.speaker))
                words = []
        following = segments[index + 1].start if index + 1 < len(segments) else None
        if words and (following is None or following - segment.end >= PAUSE_S
                      or segment.end - words[0].start >= LONG_S):
            out.append(_sentence(words, transcript.language, segment.speaker))
            words = []
    return out


def _sentence(words: list[Word], language: str, speaker: str | None) -> Sentence:
    joiner = "" if language in SPACELESS else " "
    return Sentence(start=words[0].start, end=max(w.end for w in words),
                    text=joiner.join(w.text.strip() for w in words), words=tuple(words),
                    speaker=speaker)


def retime(sentence: Sentence, text: str, *, language: str) -> Segment:
    """``text`` (the sentence's translation) as a segment on the sentence's span, its words
    (characters for languages written without spaces) spread over the spoken stretches."""
    tokens = _tokens(text, language)
    spans = _spoken(sentence)
    total = sum(end - start for start, end in spans)
    weights = [graphemes(t) + 1 for t in tokens]
    scale = sum(weights)
    words: list[Word] = []
    done = 0
    for token, weight in zip(tokens, weights, strict=True):
        start = _at(spans, total * done / scale, late=True)
        done += weight
        words.append(Word(start=start, end=max(start, _at(spans, total * done / scale,
                                                           late=False)),
                          text=token, probability=1.0, speaker=sentence.speaker))
    return Segment(start=sentence.start, end=sentence.end, text=text.strip(), words=tuple(words),
                   speaker=sentence.speaker)


def _tokens(text: str, language: str) -> list[str]:
    """A text's words, or its characters for a language written without spaces."""
    found = regex.findall(r"\X", text.strip()) if language in SPACELESS else text.split()
    return [t for t in found if t.strip()]


def unloop(text: str, *, language: str, source: str, source_language: str,
           limit: int | None) -> tuple[str, str | None]:
    """``text``, a translation into ``language`` of ``source``, with each loop that the clean
    stage's rule finds in it (a word or phrase repeated more than ``limit`` times in a row;
    ``None``: the rule is off) kept once, as that stage does in a transcript; and its first
    loop in words, or ``None``. A source that repeats itself may be translated so."""
    if limit is None:
        return text, None
    tokens = _tokens(text, language)
    keep, loops = hallucinations.collapse_loops(tokens, limit)
    if not loops or hallucinations.collapse_loops(_tokens(source, source_language), limit)[1]:
        return text, None
    joiner = "" if language in SPACELESS else " "
    gram = joiner.join(tokens[k] for k in loops[0].gram)
    return joiner.join(tokens[k] for k in keep), f"{gram!r} {loops[0].count} times in a row"


def _spoken(sentence: Sentence) -> list[tuple[float, float]]:
    """The stretches of the sentence where words were spoken (touching words merged)."""
    spans: list[tuple[float, float]] = []
    for w in sentence.words:
        if spans and w.start <= spans[-1][1] + 1e-3:
            spans[-1] = (spans[-1][0], max(spans[-1][1], w.end))
        elif w.end > w.start:
            spans.append((w.start, w.end))
    return spans or [(sentence.start, max(sentence.end, sentence.start + 1e-3))]


def _at(spans: list[tuple[float, float]], offset: float, *, late: bool) -> float:
    """The time ``offset`` seconds of speech into the spans; at a joint between two spans, the
    start of the later one (``late``, for a word's start) or the end of the earlier one."""
    for start, end in spans:
        length = end - start
        if offset < length - 1e-9 or (not late and offset <= length + 1e-9):
            return round(start + max(offset, 0.0), 3)
        offset -= length
    return round(spans[-1][1], 3)


def translated(transcript: Transcript, units: Sequence[Sentence], texts: Sequence[str], *,
               language: str, meta: Mapping[str, object]) -> Transcript:
    segments = tuple(retime(unit, text, language=language)
                     for unit, text in zip(units, texts, strict=True) if text.strip())
    # Every word a length of its own, inside the source's span: the same contract as the source.
    end = max((s.end for s in transcript.segments), default=0.0)
    return tidy(Transcript(language=language, segments=segments,
                           meta={"source_language": transcript.language, **meta}), end)


def choose(settings: Settings, *, source: str, target: str) -> str:
    """The engine for a pair: the first of ``engines``."""
    return engines(settings, source=source, target=target)[0]


def engines(settings: Settings, *, source: str, target: str) -> list[str]:
    """The engines for a pair, the one to use first: ``TRANSLATION_BACKEND`` alone, or for
    ``auto`` all that fit, in the order of what the user set up first (the stage moves to the
    next where one cannot start here, a llama-server built for another CPU, say):

    1. the model ``TRANSLATION_MODEL`` names: IndicTrans2 (a folder or repo of the pair's
       direction, with the ``[indic]`` extra) or NLLB (any other, where it knows both
       languages);
    2. an LLM endpoint, where one is set up (``LLM_BASE_URL`` or ``LLM_MODEL``);
    3. IndicTrans2's default model of the pair's direction, for English ↔ Indic and Indic ↔ Indic
       pairs with the ``[indic]`` extra, where it is in the Hugging Face cache or can be
       downloaded (``HF_HUB_OFFLINE`` not set and the Hub answers);
    4. Whisper's own translation into English (offline, with a multilingual ASR model);
    5. the ``[llm]`` extra's bundled small model, weak but offline (the stage warns)."""
    backend, model = settings.translation_backend, settings.translation_model
    if backend == "whisper" and target != "en":
        raise ConfigError(f"Whisper translates only into English, not into {target}: use "
                          "TRANSLATION_BACKEND=auto or llm")
    if backend == "indictrans2":
        indictrans2.model_for(model, source, target)  # a pair or model it cannot do: now
    if backend != "auto":
        return [backend]
    found = []
    indic = _indictrans2_fits(model, source, target)
    if model and indic:
        found.append("indictrans2")
    elif model and not indictrans2.is_indictrans2(model) and {source, target} <= FLORES.keys():
        found.append("nllb")
    if settings.llm_base_url or settings.llm_model:
        found.append("llm")
    if indic and not model:
        found.append("indictrans2")
    asr_model = settings.whisper_model
    if asr_model == "auto":
        asr_model = default_model(settings.source_language)
    if target == "en" and not asr_model.endswith(".en"):
        found.append("whisper")
    if "llm" not in found and llama_server.bundled_installed():
        found.append("llm")
    if not found:
        raise ConfigError(
            f"no translation engine here for {source} → {target}: set LLM_BASE_URL (an "
            "OpenAI-compatible server) or LLM_MODEL (a local .gguf file), or TRANSLATION_MODEL "
            "(an NLLB or IndicTrans2 model); online, pip install 'cpwhisperx[indic]' downloads "
            "IndicTrans2 for Indic languages")
    return found


def _indictrans2_fits(model: str, source: str, target: str) -> bool:
    try:
        name = indictrans2.model_for(model, source, target)
    except ConfigError:
        return False
    if model and not indictrans2.is_indictrans2(model):
        return False
    return indictrans2.installed() and (bool(model) or obtainable(
        name, files=indictrans2.FILES, weights=indictrans2.WEIGHTS))


class Cache:
    """Finished translations, shared by every job: a rerun, a resumed run or another job of the
    same film asks the engine only for what it has not translated before."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                db.execute("CREATE TABLE IF NOT EXISTS translation "
                           "(key TEXT PRIMARY KEY, text TEXT NOT NULL)")
                yield db
        finally:
            db.close()

    @staticmethod
    def key(*, engine: str, model: str, source: str, target: str, text: str) -> str:
        return hashlib.sha256(json.dumps([engine, model, source, target, text],
                                         ensure_ascii=False).encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        with self._db() as db:
            found: dict[str, str] = {}
            for i in range(0, len(keys), 500):  # SQLite's limit on query parameters
                part = keys[i:i + 500]
                found.update(db.execute(
                    f"SELECT key, text FROM translation WHERE key IN ({','.join('?' * len(part))})",
                    part).fetchall())
            return found

    def put(self, items: Mapping[str, str]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO translation VALUES (?, ?)", items.items())


def _glossary_lines(path: Path) -> list[tuple[str | None, str, str]]:
    """``(language or None, term, translation)`` of each line of a glossary file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read TRANSLATION_GLOSSARY {path}: {exc}") from None
    entries: list[tuple[str | None, str, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        term, sep, said = line.partition("=")
        language, colon, rest = term.partition(":")
        own = colon and regex.fullmatch(r"[a-z]{2,3}", language.strip())
        if own:
            term = rest
        if not sep or not term.strip() or not said.strip():
            raise ConfigError(f"{path}:{number}: expected 'term = translation', got {raw!r}")
        entries.append((language.strip() if own else None, term.strip(), said.strip()))
    return entries


def load_glossary(path: Path, *, target: str) -> dict[str, str]:
    """``term = translation`` lines for every target, ``hi: term = translation`` for one;
    ``#`` starts a comment."""
    return {term: said for language, term, said in _glossary_lines(path)
            if language in (None, target)}


def glossary_terms(path: Path) -> list[str]:
    """The glossary's terms, as they are spoken: what speech recognition should spell so."""
    return list(dict.fromkeys(term for _, term, _ in _glossary_lines(path)))


def context(units: Sequence[Sentence], lo: int, hi: int, *, chars: int) -> str:
    """The text around sentences lo..hi-1, at most ``chars`` characters: the whole transcript
    when it fits, else as much before and after them as does."""
    texts = [u.text for u in units]
    if sum(len(t) + 1 for t in texts) <= chars:
        return " ".join(texts)
    first, last = lo, hi
    size = sum(len(t) + 1 for t in texts[lo:hi])
    while True:
        grown = False
        for index in (first - 1, last):
            if 0 <= index < len(texts) and size + len(texts[index]) + 1 <= chars:
                size += len(texts[index]) + 1
                first, last = min(first, index), max(last, index + 1)
                grown = True
        if not grown:
            return " ".join(texts[first:last])
