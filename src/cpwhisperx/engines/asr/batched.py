"""Batched decoding of windows with CTranslate2 that keeps every word.

faster-whisper's ``BatchedInferencePipeline`` decodes each chunk once without timestamps, so a
small model that stops early loses the rest of the chunk (tiny.en dropped ~8% of the words).
Here the windows (lanes, see ``asr_engines.lanes``: speech longer than 30 s) are decoded in
steps, the steps of all windows encoded and beam-searched together *with* timestamps, and each
window goes on as the sequential decoder goes on through a file: the next step starts after
the last word of this one (after 30 s where its last segment ended cleanly), prompted with the
window's text so far; a step failing the sequential decoder's quality checks (compression
ratio, log-probability) is decoded again on its own as that decoder decodes it, rising through
its temperatures, and its window goes on in the batch; word times come from one batched
cross-attention alignment per step, not a second decoding pass. One window alone is decoded
the same way: every step of every window can be recorded as it finishes (``Steps``), and a
resumed decoding goes on from the last recorded step as an uninterrupted one would.

Whisper often stops a few seconds before the end of a step, so most windows end with a few
seconds left over. Each would cost a whole 30-s encoding of its own: instead the leftovers of
all windows are packed, a second of silence apart, into as few windows as hold them, and each
word decoded there goes back to the window its leftover came from.

Now and then a decoding goes past speech without writing it down: its word times then stretch
a word, or leave a pause, over what it skipped, or it ends cleanly seconds before its audio does.
The step is cut there, and the next one decodes the skipped speech.
"""

import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import (
    TranscriptionOptions,
    get_compression_ratio,
    get_suppressed_tokens,
)

from cpwhisperx.engines.asr import Steps, to_words
from cpwhisperx.engines.asr.faster_whisper import FasterWhisperEngine
from cpwhisperx.transcript import Segment

log = logging.getLogger(__name__)
# A word aligned over this long, or as long a pause between two words: speech the decoding went
# past without writing it down (greedy decoding does it now and then). Measured on an hour of
# English: words last up to 1.7 s and pauses inside speech up to 1.6 s; skipped speech gave
# words of 5-7 s and pauses of 12-14 s.
SKIPPED_S = 3.0
# Windows per encoder call on CPU. Whisper's encoder costs more per window in bigger batches on
# CPU (the attention outgrows the caches): on 2 cores, int8, 0.26-0.29 s a window in batches of
# 1-2 against 0.36-0.38 s in batches of 8 with tiny.en, 0.56-0.60 s against 0.69-0.70 s with
# base. Decoding is the other way round, so the encoder's outputs are decoded all together.
CPU_ENCODE_BATCH = 2
LEFTOVER_S = 10.0  # what is left of a window after a step, at most this, is packed with others'
GAP_S = 1.0  # silence between leftovers packed together

# faster-whisper's punctuation merged into the neighbouring word, as its transcribe() does.
_PUNCTUATION = {name: inspect.signature(WhisperModel.transcribe).parameters[name].default
                for name in ("prepend_punctuations", "append_punctuations")}


@dataclass(frozen=True, slots=True)
class _Piece:
    window: int
    seek: int  # mel frames from the window's start
    previous: tuple[int, ...] = ()  # the prompt: the window's last tokens (none after a reset)


def decode(engine: FasterWhisperEngine, audios: Sequence[np.ndarray], *, language: str,
           word_timestamps: bool, on_progress: Callable[[float], None] | None = None,
           steps: Steps | None = None) -> list[list[Segment]]:
    """Segments per window (window times). With ``steps``, each decoding step is recorded as it
    finishes (and the leftovers, decoded together, as one more), and the steps an interrupted
    run recorded are taken up, not decoded again: each window goes on from the mel frame and
    with the prompt its last recorded step left it.

    The windows are dealt out in turn in the engine's ``decoders`` shares, each decoded as one
    decoder would, side by side on its replicas (one after the other on one); each step records
    the windows of one share. A run is taken up with as many shares as it had (the ASR stage's
    fingerprint holds the number): a step's prompts, cut to the shortest of its batch, depend
    on which windows share it."""
    groups = [list(range(i, len(audios), engine.decoders))
              for i in range(min(engine.decoders, len(audios)))]
    if len(groups) < 2:
        return _decode(engine, audios, language=language, word_timestamps=word_timestamps,
                       on_progress=on_progress, steps=steps)
    lock = threading.Lock()  # the journal and the progress are shared
    shares = [0.0] * len(groups)
    failed = threading.Event()  # one share failed: the others stop after their step

    def one(g: int) -> list[list[Segment]]:
        def progress(done: float) -> None:
            with lock:
                shares[g] = done * len(groups[g]) / len(audios)
                if on_progress:
                    on_progress(sum(shares))

        if failed.is_set():  # a share that waited for a replica
            return [[] for _ in groups[g]]
        try:
            return _decode(engine, [audios[i] for i in groups[g]], language=language,
                           word_timestamps=word_timestamps, on_progress=progress,
                           steps=steps and _share(steps, groups[g], lock), stop=failed)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(engine.replicas) as pool:  # CTranslate2 lets go of the GIL
        decoded = list(pool.map(one, range(len(groups))))
    found: list[list[Segment]] = [[] for _ in audios]
    for group, segments in zip(groups, decoded, strict=True):
        for i, segs in zip(group, segments, strict=True):
            found[i] = segs
    return found


def _share(steps: Steps, windows: list[int], lock: threading.Lock) -> Steps:
    """``steps`` as seen by a decoder of ``windows`` only, which numbers them from 0."""
    mine = {str(w): str(i) for i, w in enumerate(windows)}
    done = [{mine[k]: v for k, v in step.items() if k in mine} for step in steps.done]

    def record(step: dict[str, Any]) -> None:
        with lock:
            steps.record({str(windows[int(k)]): v for k, v in step.items()})

    return Steps(done=[d for d in done if d], record=record)


def _decode(engine: FasterWhisperEngine, audios: Sequence[np.ndarray], *, language: str,
            word_timestamps: bool, on_progress: Callable[[float], None] | None = None,
            pack: bool = True, steps: Steps | None = None,
            stop: threading.Event | None = None) -> list[list[Segment]]:
    """``decode`` on one decoder; once ``stop`` is set, what it found so far."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    model = engine.model
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                          language=language)
    options = _options(engine, tokenizer)
    per_frame = model.feature_extractor.time_per_frame
    step = model.feature_extractor.nb_max_frames  # 30 s
    prompt_size = model.max_length // 2 - 1  # the last tokens a prompt holds (get_prompt)
    features = [model.feature_extractor(audio)[..., :-1] for audio in audios]
    frames = [f.shape[-1] for f in features]
    found: list[list[Segment]] = [[] for _ in audios]
    leftovers: dict[int, int] = {}  # window → mel frame: what is left, to pack with others'
    # Each window starts as a file does for the sequential decoder: after the initial prompt.
    text = engine.prompt.text.strip()
    first = tuple(tokenizer.encode(f" {text}"))[-prompt_size:] if text else ()
    hotwords = engine.prompt.hotwords.strip() or None
    pieces = [_Piece(i, 0, first) for i in range(len(audios)) if frames[i] > 0]
    reached = [0 if n else 1 for n in frames]  # mel frames decoded, for progress
    pack = pack and len(audios) > 1  # alone, what is left of a window is its next step
    if steps and steps.done:
        pieces = _resumed(steps.done, found, leftovers, reached)
    while pieces and not (stop and stop.is_set()):
        log.debug("decoding %d windows together", len(pieces))
        sizes = [min(step, frames[p.window] - p.seek) for p in pieces]
        batch = np.stack([pad_or_trim(features[p.window][:, p.seek:p.seek + n])
                          for p, n in zip(pieces, sizes, strict=True)])
        encoded = _encode(model, batch)
        # CTranslate2 wants the prompts of a batch equally long: the same number of the last
        # tokens of each window's text so far (none in the first round).
        context = min(len(p.previous) for p in pieces)
        prompts = [model.get_prompt(tokenizer, list(p.previous[-context:]) if context else [],
                                    hotwords=hotwords) for p in pieces]
        results = model.model.generate(
            encoded, prompts, beam_size=options.beam_size, patience=options.patience,
            length_penalty=options.length_penalty, max_length=model.max_length,
            suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens,
            return_scores=True, return_no_speech_prob=True,
            max_initial_timestamp_index=round(options.max_initial_timestamp
                                              / model.time_precision))
        kept: list[list[dict[str, Any]]] = []  # per piece, the segments of this step
        going: list[tuple[_Piece, list[dict[str, Any]], int, bool, float]] = []
        for j, (piece, size, result) in enumerate(zip(pieces, sizes, results, strict=True)):
            tokens = result.sequences_ids[0]
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            compression = get_compression_ratio(tokenizer.decode(tokens).strip())
            temperature = 0.0
            if not _silent(result, avg_logprob, options) and (
                    compression > options.compression_ratio_threshold
                    or avg_logprob < options.log_prob_threshold):
                log.debug("window %d from frame %d decoded again on its own: compression "
                          "%.2f, log-probability %.2f", piece.window, piece.seek, compression,
                          avg_logprob)
                # As the sequential decoder decodes it, rising through its temperatures. (What
                # it samples then is not the same after a resume: CTranslate2 seeds each thread
                # once.)
                result, avg_logprob, temperature, _ = model.generate_with_fallback(
                    model.encode(batch[j:j + 1]),
                    model.get_prompt(tokenizer, list(piece.previous), hotwords=hotwords),
                    tokenizer, options)
                tokens = result.sequences_ids[0]
            if _silent(result, avg_logprob, options):
                kept.append([])  # silence, skipped as the sequential decoder skips it
                going.append((piece, [], piece.seek + size, True, temperature))
                continue
            parts, seek, single_ending = model._split_segments_by_timestamps(
                tokenizer=tokenizer, tokens=tokens, time_offset=piece.seek * per_frame,
                segment_size=size, segment_duration=size * per_frame, seek=piece.seek)
            for part in parts:
                part.update(avg_logprob=avg_logprob, no_speech_prob=result.no_speech_prob)
            kept.append(parts)
            going.append((piece, parts, seek, single_ending, temperature))
        if word_timestamps:
            # One alignment for the whole step; a window without text gets an empty stand-in.
            stand_in = [{"seek": 0, "start": 0.0, "end": 0.0, "tokens": []}]
            model.add_word_timestamps([parts or stand_in for parts in kept], tokenizer, encoded,
                                      num_frames=sizes, last_speech_timestamp=0.0,
                                      **_PUNCTUATION)
            # A step cut where Whisper went past speech goes on from there, however it ended.
            going = [(piece, parts, seek, not _cut_at_skip(parts, tokenizer) and single_ending,
                      temperature) for piece, parts, seek, single_ending, temperature in going]
        record = {str(p.window): {"segments": [], "next": "done", "seek": frames[p.window]}
                  for p in pieces}
        for piece, parts in zip(pieces, kept, strict=True):
            new = _segments(parts, tokenizer)
            found[piece.window] += new
            record[str(piece.window)]["segments"] = [seg.to_dict() for seg in new]
        pieces = []
        for piece, parts, seek, single_ending, temperature in going:
            ends = [w["end"] for part in parts for w in part.get("words", ())]
            # As the sequential decoder does, and also where a step ended "cleanly" seconds
            # before its audio did: a lane holds speech only, so that is speech skipped too.
            audio_end = min(piece.seek + step, frames[piece.window]) * per_frame
            if ends and ends[-1] > piece.seek * per_frame and (
                    not single_ending or audio_end - ends[-1] > SKIPPED_S):
                seek = round(ends[-1] * model.frames_per_second)
            reached[piece.window] = min(seek, frames[piece.window])
            if seek >= frames[piece.window]:
                continue
            if pack and (frames[piece.window] - seek) * per_frame <= LEFTOVER_S:
                leftovers[piece.window] = seek
                record[str(piece.window)].update(next="leftover", seek=seek)
                continue
            # The sequential decoder's prompt: the window's text so far (timestamps too), none
            # after a step it had to decode at a high temperature.
            previous = () if temperature > options.prompt_reset_on_temperature else \
                (*piece.previous, *(t for part in parts for t in part["tokens"]))[-prompt_size:]
            pieces.append(_Piece(piece.window, seek, previous))
            record[str(piece.window)].update(next="decode", seek=seek, prompt=list(previous))
        if steps:
            steps.record(record)
        if on_progress:
            on_progress(sum(reached) / sum(max(n, 1) for n in frames))
    if leftovers and not (stop and stop.is_set()):
        hop = model.feature_extractor.hop_length
        rests = [(i, seek * per_frame, audios[i][seek * hop:]) for i, seek in leftovers.items()]
        record = {}
        for i, segments in _packed(engine, rests, language=language,
                                   word_timestamps=word_timestamps):
            found[i] += segments
            record[str(i)] = {"segments": [seg.to_dict() for seg in segments], "next": "done",
                              "seek": frames[i]}
        if steps:
            steps.record(record)
    if on_progress:
        on_progress(1.0)
    return found


def _options(engine: FasterWhisperEngine, tokenizer) -> TranscriptionOptions:
    """faster-whisper's sequential decoder's options (its defaults, the engine's beam): what
    decides whether a step is good enough, and how one that is not is decoded again."""
    values = {name: p.default for name, p
              in inspect.signature(WhisperModel.transcribe).parameters.items()}
    values.update(beam_size=engine.beam_size, temperatures=values["temperature"],
                  suppress_tokens=get_suppressed_tokens(tokenizer, values["suppress_tokens"]))
    return TranscriptionOptions(**{f.name: values[f.name] for f in fields(TranscriptionOptions)})


def _silent(result, avg_logprob: float, options: TranscriptionOptions) -> bool:
    """No speech, as the sequential decoder judges it: the step is skipped."""
    return (result.no_speech_prob > options.no_speech_threshold
            and avg_logprob < options.log_prob_threshold)


def _resumed(done: Sequence[dict], found: list[list[Segment]], leftovers: dict[int, int],
             reached: list[int]) -> list[_Piece]:
    """The state the recorded steps left the windows in: their segments in ``found``, what is
    left to pack in ``leftovers`` (in the order the steps left it), and the pieces to decode
    next, prompted as they were."""
    going: dict[int, _Piece] = {}
    for step in done:
        for key, window in step.items():
            i = int(key)
            found[i] += [Segment.from_dict(seg) for seg in window["segments"]]
            reached[i] = max(reached[i], window["seek"])
            going.pop(i, None)
            leftovers.pop(i, None)
            if window["next"] == "decode":
                going[i] = _Piece(i, window["seek"], tuple(window["prompt"]))
            elif window["next"] == "leftover":
                leftovers[i] = window["seek"]
    return [going[i] for i in sorted(going)]


def _encode(model: WhisperModel, features: np.ndarray):
    """The encoder's output for a batch of windows' features, a few windows at a time on CPU."""
    import ctranslate2

    if model.model.device != "cpu":
        return model.encode(features)
    return ctranslate2.StorageView.from_array(np.concatenate([
        np.asarray(model.encode(features[i:i + CPU_ENCODE_BATCH]))
        for i in range(0, len(features), CPU_ENCODE_BATCH)]))


def _cut_at_skip(parts: list[dict], tokenizer) -> bool:
    """Cut the step's segments (``parts``, with word times) before the first word stretched
    over more than ``SKIPPED_S`` or coming that long after the one before: the step then ends
    at the last word kept, and the next one decodes what was skipped. The first word is
    never cut (the step would not move on)."""
    words = [(i, j, w) for i, part in enumerate(parts) for j, w in enumerate(part["words"])]
    for (_, _, before), (i, j, word) in itertools.pairwise(words):
        if word["end"] - word["start"] <= SKIPPED_S and word["start"] - before["end"] <= SKIPPED_S:
            continue
        del parts[i + 1:]
        if j == 0:
            del parts[i]
        else:
            kept = parts[i]["words"][:j]
            parts[i].update(words=kept, end=kept[-1]["end"],
                            tokens=tokenizer.encode("".join(w["word"] for w in kept)))
        return True
    return False


def _packed(engine: FasterWhisperEngine, rests: list[tuple[int, float, np.ndarray]], *,
            language: str, word_timestamps: bool) -> list[tuple[int, list[Segment]]]:
    """Leftovers (window, its start in that window in seconds, audio) decoded packed in order
    into windows of at most 30 s; the segments of each, on its window's times. Where Whisper
    runs two leftovers into one segment, which words belong to which is a guess (the alignment
    spreads a word over the silence between them): those leftovers are decoded apart."""
    rate = engine.model.feature_extractor.sampling_rate
    gap = np.zeros(round(GAP_S * rate), dtype=np.float32)
    packs: list[list[tuple[int, float, np.ndarray]]] = []
    for rest in rests:
        if not packs or sum(len(a) + len(gap) for *_, a in packs[-1]) + len(rest[2]) > \
                engine.model.feature_extractor.n_samples:
            packs.append([])
        packs[-1].append(rest)
    decoded = _decode(engine, [np.concatenate([x for *_, a in pack for x in (a, gap)][:-1])
                               for pack in packs],
                      language=language, word_timestamps=word_timestamps, pack=False)
    out: list[tuple[int, list[Segment]]] = []
    apart: list[tuple[int, float, np.ndarray]] = []
    for pack, segments in zip(packs, decoded, strict=True):
        spans, at = [], 0.0  # each leftover's span in the packed window
        for *_, audio in pack:
            spans.append((at, at + len(audio) / rate))
            at += (len(audio) + len(gap)) / rate
        owners = [_owner(segment, spans) for segment in segments]
        if len(pack) > 1 and None in owners:
            apart += pack
            continue
        for j, (i, start, _) in enumerate(pack):
            lo, hi = spans[j]
            out.append((i, [_moved(seg, by=start - lo, low=start, high=start + hi - lo)
                            for seg, owner in zip(segments, owners, strict=True)
                            if owner in (j, None)]))
    if apart:
        alone = _decode(engine, [a for *_, a in apart], language=language,
                        word_timestamps=word_timestamps, pack=False)
        out += [(i, [_moved(seg, by=start, low=start, high=start + len(a) / rate)
                     for seg in segments])
                for (i, start, a), segments in zip(apart, alone, strict=True)]
    return out


def _owner(segment: Segment, spans: list[tuple[float, float]]) -> int | None:
    """The span nearest the middles of all the segment's words (its own middle, without
    words); None where they are nearest different spans."""
    def nearest(t: float) -> int:
        return min(range(len(spans)), key=lambda j: max(spans[j][0] - t, t - spans[j][1], 0.0))

    owners = {nearest((w.start + w.end) / 2) for w in segment.words} or \
        {nearest((segment.start + segment.end) / 2)}
    return owners.pop() if len(owners) == 1 else None


def _moved(segment: Segment, *, by: float, low: float, high: float) -> Segment:
    """The segment ``by`` seconds later, its times kept within [low, high]."""
    def t(x: float) -> float:
        return round(min(max(x + by, low), high), 3)

    return replace(segment, start=t(segment.start), end=t(segment.end),
                   words=tuple(replace(w, start=t(w.start), end=t(w.end))
                               for w in segment.words))


def _segments(parts: list[dict], tokenizer) -> list[Segment]:
    segments = []
    for part in parts:
        text = tokenizer.decode([t for t in part["tokens"] if t < tokenizer.eot]).strip()
        if not text:
            continue
        words = to_words(((w["start"], w["end"], w["word"], w["probability"])
                          for w in part.get("words", ())), language=tokenizer.language_code)
        start, end = (words[0].start, words[-1].end) if words else (part["start"], part["end"])
        segments.append(Segment(start=round(float(start), 3), end=round(float(end), 3),
                                text=text, words=words, avg_logprob=round(part["avg_logprob"], 4),
                                no_speech_prob=round(part["no_speech_prob"], 4)))
    return segments

