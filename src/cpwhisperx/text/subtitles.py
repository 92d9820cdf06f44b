"""Subtitle events from word times, following the Netflix Timed Text Style Guide by default.

Events are chosen by dynamic programming over the words: every event fits in two lines of at
most 42 characters (grapheme clusters, so Devanagari counts as it is read), lasts 5/6 s to 7 s,
leaves two frames before the next one and is readable at the language's speed; among the
segmentations that do, the one that ends events at sentence ends and breaks lines after
punctuation or before conjunctions and prepositions wins. Once speakers are known, a change
of speaker ends an event where it can; where one event holds two speakers, each has a line
that opens with a dialogue dash, and no event holds three. Words never move: an event starts
with its first word, and only its end is extended (for reading time) into the pause after it.
``check`` measures every rule on any list of events, ours or not.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import regex

from cpwhisperx.languages import SPACELESS
from cpwhisperx.text import linebreaks
from cpwhisperx.transcript import Segment, Word, spoken_words

# Reading speed, characters per second: (adults, children). Netflix's general guide gives 20
# and 17; the others are the per-language limits of Subtitle Edit's Netflix quality check
# (NetflixQualityController), as Netflix's language guides are not at hand here.
READING_SPEED: dict[str, tuple[float, float]] = {
    "default": (20.0, 17.0), "hi": (22.0, 18.0), "ja": (4.0, 4.0), "ko": (12.0, 9.0),
    "zh": (9.0, 7.0)}
# Characters per line: 42 in Netflix's guides for most languages (Hindi included); its
# Japanese (horizontal), Korean and Chinese guides set these.
LINE_CHARS: dict[str, int] = {"default": 42, "ja": 13, "ko": 16, "zh": 16}
PAUSE_S = 1.0  # a silence this long inside an event is a missed place to end it
PAUSES = (",", ";", ":", "-", "—")  # punctuation inside a sentence: a break after it is fine
CHAIN_S = 0.5  # a gap this short between two events is closed to the minimum (two frames)
MID_LINE = 1.5  # the cost of a sentence ending inside a line: a new one reads best on its own
# Two speakers in one event: each line opens with a dash, a hyphen without a space in Netflix's
# guides, a hyphen and a no-break space in French ones.
DIALOGUE_DASH: dict[str, str] = {"default": "-", "fr": "-\u00a0"}
TWO_SPEAKERS = 1.5  # the cost of an event holding a change of speaker: one each reads best
RULES = ("characters_per_line", "lines", "reading_speed", "min_duration", "max_duration",
         "frame_gap", "line_break")


@dataclass(frozen=True, slots=True, kw_only=True)
class Style:
    max_chars: int = 42
    max_lines: int = 2
    max_cps: float = 20.0
    min_duration: float = 5 / 6
    max_duration: float = 7.0
    min_gap_frames: int = 2
    fps: float = 25.0

    @property
    def gap(self) -> float:
        return self.min_gap_frames / self.fps


def style_for(language: str, *, fps: float | None, children: bool = False, max_chars: int = 0,
              max_cps: float = 0.0, max_lines: int = 2) -> Style:
    adults, kids = READING_SPEED.get(language, READING_SPEED["default"])
    return Style(max_chars=max_chars or LINE_CHARS.get(language, LINE_CHARS["default"]),
                 max_cps=max_cps or (kids if children else adults), max_lines=max_lines,
                 fps=fps or 25.0)


@dataclass(frozen=True, slots=True)
class Event:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True, slots=True)
class Report:
    events: int
    passed: dict[str, int]  # per rule: events meeting it
    all_rules: int  # events meeting every rule
    failures: list[dict[str, Any]] = field(default_factory=list)  # which event, which rule, why

    def share(self, rule: str | None = None) -> float:
        count = self.all_rules if rule is None else self.passed[rule]
        return count / self.events if self.events else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "all_rules": round(self.share(), 4),
                "rules": {r: round(self.share(r), 4) for r in RULES},
                "failures": self.failures}


def graphemes(text: str) -> int:
    # ASCII is a character per grapheme but for CR LF: the fast path for the events' search,
    # which measures each candidate's lines.
    if text.isascii() and "\r" not in text:
        return len(text)
    return len(regex.findall(r"\X", text))


def reading_chars(lines: Sequence[str]) -> int:
    """What a viewer reads: every character of the lines, the break counted as a space."""
    return graphemes(" ".join(lines))


class _Words:
    """The words of a language, with what the rules need to know about each joint."""

    def __init__(self, words: Sequence[Word], language: str, *,
                 segment_ends: frozenset[int] = frozenset(), until: float = math.inf) -> None:
        self.words = [w for w in words if w.text.strip()]
        self.segment_ends = segment_ends  # indices of words that end an ASR segment
        self.until = until  # the end of the media: no event lasts beyond it
        self.joiner = "" if language in SPACELESS else " "
        self.dash = DIALOGUE_DASH.get(language, DIALOGUE_DASH["default"])
        # Speaker changes before each word, so that an event's count is O(1).
        self.changes = [0, *itertools.accumulate(
            a.speaker != b.speaker for a, b in itertools.pairwise(self.words))]
        self.texts = [w.text.strip() for w in self.words]
        self.syntax = linebreaks.joints(self.texts, language)
        self.prefix = [0]  # characters before each word, so a width costs O(1)
        for text in self.texts:
            self.prefix.append(self.prefix[-1] + graphemes(text))
        # Sentences ended before each word, likewise.
        self.ends = list(itertools.accumulate(j.after_sentence for j in self.syntax))
        # The cost of a break before word k, computed once: the search asks for it often.
        self.joint = [0.0] + [self._joint_cost(k) for k in range(1, len(self.texts))]

    def join(self, i: int, j: int) -> str:
        return self.joiner.join(self.texts[i:j])

    def width(self, i: int, j: int) -> int:
        return self.prefix[j] - self.prefix[i] + len(self.joiner) * (j - i - 1)

    def sentence_ends(self, i: int, j: int) -> int:
        """Sentences ending inside words i..j-1, not at its end."""
        return self.ends[j - 1] - self.ends[i]

    def speaker_changes(self, i: int, j: int) -> int:
        """Changes of speaker inside words i..j-1."""
        return self.changes[j - 1] - self.changes[i]

    def bad_joint(self, k: int) -> str | None:
        """Why a break between word k-1 and word k is not allowed, if it is not."""
        if self.syntax[k].after_sentence or self.texts[k - 1].endswith(PAUSES):
            return None
        return self.syntax[k].bad

    def _joint_cost(self, k: int) -> float:
        before = self.texts[k - 1]
        if self.syntax[k].after_sentence or self.speaker_changes(k - 1, k + 1):
            return 0.0
        if self.bad_joint(k):  # even where a segment ends: Whisper also ends some mid-phrase
            return 8.0
        if before.endswith(PAUSES) or k - 1 in self.segment_ends:
            return 0.5  # Whisper mostly ends a segment where a sentence ends, punctuated or not
        if self.syntax[k - 1].opening:
            return 4.0  # a conjunction or preposition left hanging at the end of a line
        return 1.0 if self.syntax[k].opening else 2.5


def _layout(words: _Words, i: int, j: int, style: Style) -> tuple[tuple[str, ...], float] | None:
    """The best lines for words i..j-1 and their cost; None when they cannot fit."""
    changes = words.speaker_changes(i, j)
    if changes:  # two speakers: a line each, dashed; never three, nor one twice
        k = next(k for k in range(i + 1, j) if words.speaker_changes(k - 1, k + 1))
        dash = graphemes(words.dash)
        if changes > 1 or style.max_lines < 2 or \
                max(words.width(i, k), words.width(k, j)) + dash > style.max_chars:
            return None
        return ((words.dash + words.join(i, k), words.dash + words.join(k, j)),
                TWO_SPEAKERS + MID_LINE * (words.sentence_ends(i, k) + words.sentence_ends(k, j)))
    if words.width(i, j) <= style.max_chars:
        return (words.join(i, j),), MID_LINE * words.sentence_ends(i, j)
    if style.max_lines < 2:
        return None
    best: tuple[tuple[str, ...], float] | None = None
    for k in range(i + 1, j):
        top, bottom = words.width(i, k), words.width(k, j)
        if top > style.max_chars or bottom > style.max_chars:
            continue
        # Balanced lines read best; a slightly shorter top line (a pyramid) is the tie-break.
        cost = words.joint[k] + 0.03 * abs(top - bottom) + (0.01 if top > bottom else 0.0) + \
            MID_LINE * (words.sentence_ends(i, k) + words.sentence_ends(k, j))
        if best is None or cost < best[1]:
            best = ((words.join(i, k), words.join(k, j)), cost)
    return best


def _timing(words: _Words, i: int, j: int, chars: int, style: Style) -> tuple[float, float]:
    """Start and end of the event of words i..j-1: its end extended for reading time and the
    minimum duration, up to two frames before the next word, at most ``max_duration`` and never
    past the media's end; a gap of half a second or less to the next event is closed to those
    two frames ("chaining", in Netflix's timing guidelines), so that subtitles do not flash off
    and on. Where ``max_duration`` keeps an event from reaching them, it ends early enough to
    leave more than half a second instead (never before its last word is spoken)."""
    start = min(words.words[i].start, words.until - 0.001)
    spoken = words.words[j - 1].end
    wanted = max(spoken, start + style.min_duration, start + chars / style.max_cps)
    limit = min(start + style.max_duration, words.until)
    if j < len(words.words):
        following = words.words[j].start - style.gap
        if following - wanted <= CHAIN_S:
            wanted = following
        if limit < following <= limit + CHAIN_S:  # too long to chain: open the gap instead
            limit = max(following - CHAIN_S - 0.002, min(spoken, limit))
        limit = min(limit, following)
    end = max(min(wanted, limit), start + 0.001)
    # Whole milliseconds, as subtitle files have them: rounded up, unless that takes the end
    # past its limit (the frame gap), then down.
    up = math.ceil(end * 1000 - 1e-6) / 1000
    return start, up if up <= limit + 1e-9 else math.floor(end * 1000 + 1e-6) / 1000


def events(segments: Sequence[Segment], *, language: str, style: Style,
           until: float = math.inf) -> list[Event]:
    """Subtitle events for a transcript's words (segments without words are spread evenly),
    none lasting past ``until``, the end of the media."""

    spoken = [[p for w in spoken_words(s) for p in _cut(replace(w, speaker=w.speaker or s.speaker),
                                                         style.max_chars)] for s in segments]
    ends = frozenset(itertools.accumulate(len(ws) for ws in spoken if ws)) - {0}
    words = _Words([w for ws in spoken for w in ws], language,
                   segment_ends=frozenset(e - 1 for e in ends), until=until)
    n = len(words.words)
    best: list[tuple[float, int]] = [(0.0, 0)] + [(float("inf"), 0)] * n
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            span = words.words[j - 1].end - words.words[i].start
            if j - i > 1 and (words.width(i, j) > style.max_chars * style.max_lines
                              or span > style.max_duration):
                break
            cost = best[i][0] + _event_cost(words, i, j, style)
            if cost < best[j][0]:
                best[j] = (cost, i)
    cuts, j = [], n
    while j > 0:
        cuts.append((best[j][1], j))
        j = best[j][1]
    out = []
    for i, j in reversed(cuts):
        lines = (_layout(words, i, j, style) or ((words.join(i, j),), 0.0))[0]
        start, end = _timing(words, i, j, reading_chars(lines), style)
        out.append(Event(start=start, end=end, lines=lines))
    return out


def _cut(word: Word, width: int) -> list[Word]:
    """A word too wide for a line (a long URL or compound, a run of text without spaces) in
    pieces that fit, cut after a hyphen where one falls in the second half of a piece, else
    between grapheme clusters; its time shared out by length."""
    clusters = regex.findall(r"\X", word.text.strip())
    if len(clusters) <= width:
        return [word]
    pieces: list[str] = []
    while len(clusters) > width:
        head = clusters[:width]
        hyphen = max((k + 1 for k, c in enumerate(head) if c in "-\u2010" and k >= width // 2),
                     default=width)
        pieces.append("".join(clusters[:hyphen]))
        clusters = clusters[hyphen:]
    pieces.append("".join(clusters))
    step = (word.end - word.start) / sum(map(graphemes, pieces))
    out, at = [], word.start
    for piece in pieces:
        end = at + step * graphemes(piece)
        out.append(replace(word, start=round(at, 3), end=round(end, 3), text=piece))
        at = end
    return out


def _event_cost(words: _Words, i: int, j: int, style: Style) -> float:
    layout = _layout(words, i, j, style)
    if layout is None:
        return 1e6  # too long for the lines: only when a single word is
    lines, cost = layout
    chars = reading_chars(lines)
    start, end = _timing(words, i, j, chars, style)
    cost += 1.0  # fewer events, when nothing else differs
    if j < len(words.words):
        cost += 2.0 * words.joint[j]
        if style.gap + 0.0015 < words.words[j].start - end <= CHAIN_S:
            cost += 50.0  # a gap that can be neither chained nor opened
    cost += 3.0 * sum(words.words[k].start - words.words[k - 1].end > PAUSE_S
                      for k in range(i + 1, j))
    if chars / max(end - start, 1e-3) > style.max_cps + 1e-6:
        cost += 50.0
    if end - start < style.min_duration - 1e-6:
        cost += 50.0
    return cost


def check(items: Sequence[Event], style: Style, *, language: str) -> Report:
    """Which events meet which rule, and why the others do not."""
    passed = dict.fromkeys(RULES, 0)
    failures: list[dict[str, Any]] = []
    all_rules = 0
    # All the text at once, so that each line break is judged within its sentence.
    spaced = language not in SPACELESS
    dash = DIALOGUE_DASH.get(language, DIALOGUE_DASH["default"])
    # Two speakers' lines, each opened by a dash: broken where the speaker changes.
    dialogue = [len(e.lines) == 2 and all(line.startswith(dash) for line in e.lines)
                for e in items]
    split = [" ".join(line.removeprefix(dash) if two else line for line in e.lines).split()
             if spaced else [] for e, two in zip(items, dialogue, strict=True)]
    syntax = _Words([Word(0, 0, t) for ts in split for t in ts], language)
    at = 0  # words before the event
    for index, event in enumerate(items):
        why: dict[str, str] = {}
        widest = max((graphemes(line) for line in event.lines), default=0)
        if widest > style.max_chars:
            why["characters_per_line"] = f"{widest} characters on a line > {style.max_chars}"
        if len(event.lines) > style.max_lines:
            why["lines"] = f"{len(event.lines)} lines > {style.max_lines}"
        duration = event.end - event.start
        cps = reading_chars(event.lines) / max(duration, 1e-3)
        if cps > style.max_cps + 1e-6:
            why["reading_speed"] = f"{cps:.1f} characters per second > {style.max_cps:g}"
        if duration < style.min_duration - 1e-6:
            why["min_duration"] = f"{duration:.3f} s < {style.min_duration:.3f} s"
        if duration > style.max_duration + 1e-6:
            why["max_duration"] = f"{duration:.3f} s > {style.max_duration:g} s"
        gap = items[index + 1].start - event.end if index + 1 < len(items) else math.inf
        if gap < style.gap - 1e-6:
            why["frame_gap"] = (f"{gap:.3f} s to the next event < {style.min_gap_frames} "
                                f"frames at {style.fps:g} fps")
        elif style.gap + 0.0015 < gap < CHAIN_S - 1e-6:
            why["frame_gap"] = (f"{gap:.3f} s to the next event: close a gap of "
                                f"under {CHAIN_S:g} s to {style.min_gap_frames} frames")
        if len(event.lines) > 1 and spaced and not dialogue[index] and \
                (reason := syntax.bad_joint(at + len(event.lines[0].split()))):
            why["line_break"] = f"line broken {reason}"
        at += len(split[index])
        for rule in RULES:
            passed[rule] += rule not in why
        all_rules += not why
        if why:
            failures.append({"event": index + 1, "start": event.start, "end": event.end,
                             "text": event.text, "why": why})
    return Report(events=len(items), passed=passed, all_rules=all_rules, failures=failures)
