"""English forced alignment with pocketsphinx's bundled en-us acoustic model and CMUdict."""

import re

import numpy as np

from cpwhisperx.engines.align import AlignmentFailed
from cpwhisperx.media import SAMPLE_RATE, WavReader
from cpwhisperx.transcript import fill_gaps

PAD_S = 0.2  # ASR segment bounds are loose; a word cut at the edge would be stretched to fit
FRAME_S = 0.01  # pocketsphinx's default frame rate is 100 frames/s
# Punctuation Whisper attaches to words; never part of a CMUdict entry.
_EDGE = "\"\u201c\u201d\u2018,;:!?()[]{}…«»"
_NOT_WORD = re.compile(r"[^a-z0-9'.\-]")
_VARIANT = re.compile(r"\(\d+\)$")  # seg() names the pronunciation used, e.g. "the(2)"


class PocketsphinxAligner:
    name = "pocketsphinx"

    def __init__(self) -> None:
        import pocketsphinx

        # No language model: each segment gets its own search from set_align_text(). ds=3
        # scores the acoustic model every third frame (times stay at 10 ms). Against every
        # frame, ds=2 was 40% faster on 11.5 minutes of English, word boundaries 0 ms apart at
        # the median, fewer segments left unaligned (6 against 9 of 165). ds=3 is 19% faster
        # again: word starts 0 ms from ds=2's at the median, 20 ms at the 90th percentile (1.5%
        # of 1762 words over 100 ms), 5 segments unaligned; on the eval's word-timed clip, start
        # errors 7 ms at the median as with ds=2, 16 ms at the 90th percentile against 26 ms.
        self._decoder = pocketsphinx.Decoder(lm=None, loglevel="FATAL", ds=3)

    def _tokens(self, word: str) -> list[str]:
        """CMUdict spellings for one written word; [] when the dictionary lacks it."""
        text = word.lower().replace("\u2019", "'").strip(_EDGE)
        # CMUdict keeps "mr.", "u.s.", "don't", "parents'", so try the word as written first.
        core = _NOT_WORD.sub("", text).strip(".'-")
        for candidate in (text, core):
            if candidate and self._decoder.lookup_word(candidate) is not None:
                return [candidate]
        parts = [p.strip(".'") for p in core.split("-")]
        if len(parts) > 1 and all(p and self._decoder.lookup_word(p) for p in parts):
            return parts  # "state-of-the-art" style compounds missing as a whole
        return []

    def align_segment(self, audio: WavReader | np.ndarray, *, start: float, end: float,
                      words: list[str]) -> list[tuple[float, float]]:
        if not words:
            return []
        tokens = [self._tokens(w) for w in words]
        flat = [t for ts in tokens for t in ts]
        if not flat:
            raise AlignmentFailed("no word of the segment is in the pronunciation dictionary")
        lo = max(0, int((start - PAD_S) * SAMPLE_RATE))
        hi = min(len(audio), int(np.ceil((end + PAD_S) * SAMPLE_RATE)))
        if hi - lo < SAMPLE_RATE * FRAME_S * len(flat):
            raise AlignmentFailed("window too short for its words")
        pcm = (np.clip(audio[lo:hi], -1.0, 1.0) * 32767).astype("<i2").tobytes()
        decoder = self._decoder
        try:
            # The front end's noise estimate carries over from the previous segment: reset, a
            # segment's times do not depend on what this decoder aligned before (in which
            # process, after which file).
            decoder.reinit_feat()
            decoder.set_align_text(" ".join(flat))
            decoder.start_utt()
            # full_utt: normalise cepstra over this window instead of a running estimate
            # carried over from the previous segment.
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
        except RuntimeError as exc:
            raise AlignmentFailed(f"pocketsphinx: {exc}") from exc
        if decoder.hyp() is None:  # the search never reached the end of the word sequence
            raise AlignmentFailed("pocketsphinx found no alignment for the segment")
        offset = lo / SAMPLE_RATE
        found = [(_VARIANT.sub("", s.word), offset + s.start_frame * FRAME_S,
                  offset + (s.end_frame + 1) * FRAME_S)  # end_frame is inclusive
                 for s in decoder.seg() or () if s.word not in ("<s>", "</s>", "<sil>", "(NULL)")
                 and not s.word.startswith("[")]
        if [f[0] for f in found] != flat:
            raise AlignmentFailed("pocketsphinx returned words other than those given")
        spans = iter(found)
        times: list[tuple[float, float] | None] = []
        for ts in tokens:
            parts = [next(spans) for _ in ts]
            times.append((parts[0][1], parts[-1][2]) if parts else None)
        return fill_gaps(times, words, start, end)

