"""Transcript writers: JSON (the contract), plain text, SRT, WebVTT and TSV.

Text formats get one cue or line per segment that has text; JSON keeps every segment.
"""

import datetime as dt
import json
from collections.abc import Callable, Iterable
from html import escape

from cpwhisperx.transcript import Segment, Transcript


def _spoken(transcript: Transcript) -> list[Segment]:
    return [s for s in transcript.segments if s.text.strip()]


def to_json(transcript: Transcript) -> str:
    return json.dumps(transcript.to_dict(), ensure_ascii=False, indent=2) + "\n"


def to_txt(transcript: Transcript) -> str:
    return "".join(f"{s.text.strip()}\n" for s in _spoken(transcript))


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.text.strip()) for s in _spoken(transcript)]


def srt_text(cues: Iterable[tuple[float, float, str]]) -> str:
    import srt

    return srt.compose(
        [srt.Subtitle(index=i, start=dt.timedelta(seconds=start),
                      end=dt.timedelta(seconds=end), content=text)
         for i, (start, end, text) in enumerate(cues, 1)], reindex=False)


def to_srt(transcript: Transcript) -> str:
    return srt_text(_cues(transcript))


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def vtt_text(cues: Iterable[tuple[float, float, str]]) -> str:
    import webvtt

    # Cue text is HTML-like: escape &, < and > (which also keeps "-->" out of a cue).
    captions = [webvtt.Caption(start=_vtt_time(start), end=_vtt_time(end),
                               text=escape(text, quote=False)) for start, end, text in cues]
    return webvtt.WebVTT(captions=captions).content


def to_vtt(transcript: Transcript) -> str:
    return vtt_text(_cues(transcript))


def to_tsv(transcript: Transcript) -> str:
    """Whisper's TSV: integer milliseconds, tabs and newlines in text replaced by spaces."""
    rows = ["start\tend\ttext"]
    rows += [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t"
             f"{' '.join(s.text.split())}" for s in _spoken(transcript)]
    return "\n".join(rows) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "json": to_json, "txt": to_txt, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}
