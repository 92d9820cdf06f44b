"""CP-WhisperX: offline transcripts and subtitles with resumable jobs.

``transcribe`` and ``Pipeline`` (see ``cpwhisperx.api``) load on first use, so that the CLI
starts without them.
"""

__version__ = "0.1.0"
__all__ = ["CpwError", "Pipeline", "Result", "Transcript", "transcribe"]


def __getattr__(name: str) -> object:
    if name in ("Pipeline", "Result", "transcribe"):
        from cpwhisperx import api

        return getattr(api, name)
    if name == "Transcript":
        from cpwhisperx.transcript import Transcript

        return Transcript
    if name == "CpwError":
        from cpwhisperx.errors import CpwError

        return CpwError
    raise AttributeError(f"module 'cpwhisperx' has no attribute {name!r}")
