"""Text translation engines: a batch of sentences in, their translations out, in order.

Whisper's own translation works on audio, not text; the translate stage runs it in a worker
(``stages.translate.work``).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from cpwhisperx import errors


class TextTranslator(Protocol):
    name: str
    model: str  # with ``name``, part of every cache key
    batch_size: int  # sentences per call

    def translate(self, texts: Sequence[str], *, source: str, target: str,
                  context: str) -> list[str]:
        """``texts`` translated; ``context`` is the text around them (engines that use it)."""
        ...


def ctranslate2_translator(path: Path, *, what: str, device: str, compute_type: str,
                           cpu_threads: int) -> Any:
    """A CTranslate2 translator; a model that cannot load there is EngineUnavailable, so the
    worker's fallback configuration is tried."""
    import ctranslate2

    try:
        return ctranslate2.Translator(str(path), device=device, compute_type=compute_type,
                                      intra_threads=cpu_threads)
    except (ValueError, RuntimeError) as exc:
        raise errors.EngineUnavailable(f"cannot load {what} model {path} on {device} as "
                                       f"{compute_type}: {errors.reason(exc)}") from None
