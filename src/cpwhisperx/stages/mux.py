"""Stage: the media with every subtitle language as a soft track: MKV with SRT tracks, or
MP4 with ``mov_text`` tracks when the source is an MP4/MOV. Video and audio are copied, never
re-encoded; each track gets its ISO 639-2 language tag and the language's name as its title.
``BURN_IN=<lang>`` also writes ``<stem>.<lang>.burned.<ext>``, that language drawn into the
picture (the only case where the video is re-encoded)."""

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpwhisperx import media
from cpwhisperx.errors import CpwError
from cpwhisperx.runtime import fsutil
from cpwhisperx.stages import StageContext, StageResult, demux, subtitles

NAME = "mux"
INPUTS = ("demux", "subtitles")
MP4_SOURCES = (".mp4", ".m4v", ".mov")


def fingerprint_config(ctx: StageContext) -> dict[str, Any]:
    return {"media": str(ctx.media), "stem": ctx.stem, "burn_in": ctx.settings.burn_in}


def language_tag(code: str) -> tuple[str, str]:
    """(ISO 639-2/B tag, English name) of a Whisper language code: ("hin", "Hindi")."""
    import pycountry

    found = pycountry.languages.get(alpha_2=code) or pycountry.languages.get(alpha_3=code)
    if found is None:
        return "und", code
    return getattr(found, "bibliographic", found.alpha_3), found.name


def run(ctx: StageContext) -> StageResult:
    info = fsutil.read_json(demux.info_path(ctx.job))
    if not info["has_video"]:
        ctx.progress(1.0)
        return StageResult(outputs=[], backend="none (no video to mux into)")
    tracks = fsutil.read_json(subtitles.tracks_path(ctx.job))
    mp4 = ctx.media.suffix.lower() in MP4_SOURCES
    container = ("mp4", "mp4") if mp4 else ("mkv", "matroska")
    burn = ctx.settings.burn_in
    steps = 2 if burn else 1

    def progress(step: int) -> Callable[[float], None]:
        return lambda fraction: ctx.progress((step + fraction) / steps)

    out = ctx.job.outputs / f"{ctx.stem}.subtitled.{container[0]}"
    args = ["-i", str(ctx.media)]
    for track in tracks:
        args += ["-i", track["srt"]]
    args += ["-map", "0:v", "-map", "0:a?"]
    for i, track in enumerate(tracks):
        tag, name = language_tag(track["language"])
        # MP4 keeps a track's name as its handler name (players show it as the title); the
        # MP4 muxer drops a title tag.
        args += ["-map", f"{i + 1}:0", f"-metadata:s:s:{i}", f"language={tag}",
                 f"-metadata:s:s:{i}", f"{'handler_name' if mp4 else 'title'}={name}"]
    args += ["-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text" if mp4 else "srt",
             "-f", container[1]]
    media.ffmpeg(args, out=out, duration=info["duration"], on_progress=progress(0),
                 failure=lambda detail: CpwError(
                     f"ffmpeg could not mux the subtitles into {out.name}: {detail}"))
    outputs, warnings = [out], []
    if burn:
        track = next((t for t in tracks if t["language"] == burn), None)
        if track is None:
            raise CpwError(f"BURN_IN={burn} but the subtitles are in "
                           f"{', '.join(t['language'] for t in tracks)}: add {burn} to -t")
        outputs.append(_burn_in(ctx, track, container=container, duration=info["duration"],
                                on_progress=progress(1)))
        if not _has_font(burn):
            warnings.append(f"no installed font covers {language_tag(burn)[1]}: the burned-in "
                            "text may show as boxes; install one (Debian: fonts-noto-core)")
    ctx.progress(1.0)
    return StageResult(outputs=outputs, backend="ffmpeg (streams copied)"
                       + (f"; {burn} burned in (libx264)" if burn else ""), warnings=warnings,
                       meta={"file": out.name, "tracks": [t["language"] for t in tracks],
                             "burned_in": burn or None})


def _has_font(language: str) -> bool:
    """Whether fontconfig (which libass draws with) knows a font for the language; True when
    it cannot be asked."""
    if not (fc_list := shutil.which("fc-list")):
        return True
    proc = subprocess.run([fc_list, f":lang={language}", "family"], capture_output=True,
                          text=True, check=False)
    return proc.returncode != 0 or bool(proc.stdout.strip())


def _burn_in(ctx: StageContext, track: dict[str, str], *, container: tuple[str, str],
             duration: float, on_progress: Callable[[float], None]) -> Path:
    """The video with one language drawn into the picture (re-encoded with libx264, audio
    copied), beside the soft-subtitled file."""
    out = ctx.job.outputs / f"{ctx.stem}.{track['language']}.burned.{container[0]}"
    # The subtitles filter parses its argument: a copy with a plain name, read from its
    # folder, needs no escaping whatever the job's path holds.
    plain = ctx.dir(NAME) / "burn.srt"
    shutil.copyfile(track["srt"], plain)
    args = ["-i", str(ctx.media), "-map", "0:v:0", "-map", "0:a?", "-vf",
            "subtitles=burn.srt", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-c:a", "copy", "-f", container[1]]
    media.ffmpeg(args, out=out, duration=duration, on_progress=on_progress, cwd=plain.parent,
                 failure=lambda detail: CpwError(
                     f"ffmpeg could not burn the {track['language']} subtitles into "
                     f"{out.name}: {detail}"))
    return out
