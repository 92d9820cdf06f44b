"""CP-WhisperX: offline transcripts and subtitles with resumable jobs."""

__version__ = "0.1.0"
