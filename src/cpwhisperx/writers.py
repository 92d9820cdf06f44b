"""Writers: a transcript as JSON (the contract), plain text and TSV (a line per segment that
has text; JSON keeps every segment; each with its speaker once diarized), RTTM (who speaks
when, for diarization scoring tools), and subtitle cues as SRT and WebVTT."""

import datetime as dt
import json
from collections.abc import Callable, Iterable
from html import escape

from cpwhisperx.transcript import Segment, Transcript


def _spoken(transcript: Transcript) -> list[Segment]:
    return [s for s in transcript.segments if s.text.strip()]


def to_json(transcript: Transcript) -> str:
    """The contract (``Transcript.to_dict``), readable as WhisperX's output too: each word also
    under WhisperX's keys ``word`` and ``score``, and every word once more in ``word_segments``,
    so that scripts written for either tool read it."""
    data = transcript.to_dict()
    for segment in data["segments"]:
        segment["words"] = [{"word": w["text"], **w, "score": w["probability"]}
                            for w in segment["words"]]
    data["word_segments"] = [w for segment in data["segments"] for w in segment["words"]]
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def to_txt(transcript: Transcript) -> str:
    """A line per segment, ``[SPEAKER_00]: `` before it once diarized (as WhisperX writes)."""
    return "".join(f"{f'[{s.speaker}]: ' if s.speaker else ''}{s.text.strip()}\n"
                   for s in _spoken(transcript))


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
    spoken = _spoken(transcript)
    speakers = any(s.speaker for s in spoken)  # a fourth column once diarized
    rows = ["start\tend\ttext" + ("\tspeaker" if speakers else "")]
    rows += [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{' '.join(s.text.split())}"
             + (f"\t{' '.join((s.speaker or '').split())}" if speakers else "") for s in spoken]
    return "\n".join(rows) + "\n"


def to_rttm(transcript: Transcript, *, file_id: str) -> str:
    """NIST RTTM: a SPEAKER line per run of one speaker's segments (no spaces in fields)."""
    name = "_".join(file_id.split()) or "audio"
    lines: list[list] = []
    for s in transcript.segments:
        if not s.speaker or s.end <= s.start:
            continue
        speaker = "_".join(s.speaker.split())
        if lines and lines[-1][0] == speaker and s.start - lines[-1][2] < 1e-6:
            lines[-1][2] = s.end  # one speaker's adjacent segments: one turn
        else:
            lines.append([speaker, s.start, s.end])
    return rttm_text(((start, end, speaker) for speaker, start, end in lines), file_id=name)


def rttm_text(turns: Iterable[tuple[float, float, str]], *, file_id: str) -> str:
    """``(start, end, speaker)`` turns as RTTM SPEAKER lines (what md-eval and pyannote read)."""
    return "".join(f"SPEAKER {file_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} "
                   "<NA> <NA>\n" for start, end, speaker in turns)


WRITERS: dict[str, Callable[[Transcript], str]] = {
    "json": to_json, "txt": to_txt, "tsv": to_tsv}
CUE_WRITERS: dict[str, Callable[[Iterable[tuple[float, float, str]]], str]] = {
    "srt": srt_text, "vtt": vtt_text}
