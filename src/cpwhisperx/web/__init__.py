"""The web service: `cpwhisperx serve` (the [web] extra)."""
