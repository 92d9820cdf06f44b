"""Writers: a transcript as JSON (the contract), plain text and TSV (a line per segment that
has text; JSON keeps every segment), and subtitle cues as SRT and WebVTT."""

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


def srt_text(cues: Iterable[tuple[float, float, str]]) -> str:
    import srt

    return srt.compose(
        [srt.Subtitle(index=i, start=dt.timedelta(seconds=start),
                      end=dt.timedelta(seconds=end), content=text)
         for i, (start, end, text) in enumerate(cues, 1)], reindex=False)


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def vtt_text(cues: Iterable[tuple[float, float, str]]) -> str:
    import webvtt

    # Cue text is HTML-like: escape &, < and > (which also keeps "-->" out of a cue).
    captions = [webvtt.Caption(start=_vtt_time(start), end=_vtt_time(end),
                               text=escape(text, quote=False)) for start, end, text in cues]
    return webvtt.WebVTT(captions=captions).content


def to_tsv(transcript: Transcript) -> str:
    """Whisper's TSV: integer milliseconds, tabs and newlines in text replaced by spaces."""
    rows = ["start\tend\ttext"]
    rows += [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t"
             f"{' '.join(s.text.split())}" for s in _spoken(transcript)]
    return "\n".join(rows) + "\n"


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "json": to_json, "txt": to_txt, "tsv": to_tsv}
CUE_WRITERS: dict[str, Callable[[Iterable[tuple[float, float, str]]], str]] = {
    "srt": srt_text, "vtt": vtt_text}
