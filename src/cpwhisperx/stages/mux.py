"""Stage 10: the media with every subtitle language as a soft track: MKV with SRT tracks, or
MP4 with ``mov_text`` tracks when the source is an MP4/MOV. Video and audio are copied, never
re-encoded; each track gets its ISO 639-2 language tag and the language's name as its title."""

import subprocess
from typing import Any

from cpwhisperx import fsutil, media
from cpwhisperx.errors import CpwError
from cpwhisperx.stages import StageContext, StageResult, demux, subtitles

NAME = "mux"
INPUTS = ("demux", "subtitles")
MP4_SOURCES = (".mp4", ".m4v", ".mov")


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    return {"media": str(ctx.media), "stem": ctx.media.stem}


def language_tag(code: str) -> tuple[str, str]:
    """(ISO 639-2/B tag, English name) of a Whisper language code: ("hin", "Hindi")."""
    import pycountry

    found = pycountry.languages.get(alpha_2=code) or pycountry.languages.get(alpha_3=code)
    if found is None:
        return "und", code
    return getattr(found, "bibliographic", found.alpha_3), found.name


def run(ctx: StageContext) -> StageResult:
    if not fsutil.read_json(demux.info_path(ctx.job))["has_video"]:
        ctx.progress(1.0)
        return StageResult(outputs=[], backend="none (no video to mux into)")
    tracks = fsutil.read_json(subtitles.tracks_path(ctx.job))
    mp4 = ctx.media.suffix.lower() in MP4_SOURCES
    out = ctx.job.outputs / f"{ctx.media.stem}.subtitled.{'mp4' if mp4 else 'mkv'}"
    tmp = out.with_name(f".{out.name}.tmp")
    cmd = [media.tool("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error", "-y",
           "-i", str(ctx.media)]
    for track in tracks:
        cmd += ["-i", track["srt"]]
    cmd += ["-map", "0:v", "-map", "0:a?"]
    for i, track in enumerate(tracks):
        tag, name = language_tag(track["language"])
        cmd += ["-map", f"{i + 1}:0", f"-metadata:s:s:{i}", f"language={tag}",
                f"-metadata:s:s:{i}", f"title={name}"]
    cmd += ["-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text" if mp4 else "srt",
            "-f", "mp4" if mp4 else "matroska", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        if "No space left" in proc.stderr:
            raise CpwError(f"disk full while writing {out}: free some space and run again")
        raise CpwError(f"ffmpeg could not mux the subtitles into {out.name}: {detail}")
    tmp.replace(out)
    ctx.progress(1.0)
    return StageResult(outputs=[out], backend="ffmpeg (streams copied)",
                       meta={"file": out.name, "tracks": [t["language"] for t in tracks]})
