"""Text translation engines: a batch of sentences in, their translations out, in order.

Whisper's own translation works on audio, not text; the translate stage runs it in a worker
(``stages.translate.work``).
"""

from collections.abc import Sequence
from typing import Protocol


class TextTranslator(Protocol):
    name: str
    model: str  # with ``name``, part of every cache key
    batch_size: int  # sentences per call

    def translate(self, texts: Sequence[str], *, source: str, target: str,
                  context: str) -> list[str]:
        """``texts`` translated; ``context`` is the text around them (engines that use it)."""
        ...
