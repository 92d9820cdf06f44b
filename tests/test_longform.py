"""Long-form: audio read from disk in slices, speech decoded in journaled chunks, resume."""

import contextlib
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO, assert_times_valid, cli, clip, job_root, stage_status, wait_for
from cpwhisperx import config, evaluation, hardware, media
from cpwhisperx.engines import vad as vad_engines
from cpwhisperx.engines.asr import LANE_S, MIN_LANE_S, WINDOW_S, Window, lanes, speech_windows
from cpwhisperx.runtime.journal import Journal
from cpwhisperx.transcript import Segment, Word


def _wav(tmp_path: Path, name: str) -> Path:
    info = media.probe(clip(name))
    out = tmp_path / f"{name}.wav"
    media.extract_wav(info, info.audio[0], out)
    return out


def test_wav_reader_slices_are_the_file(tmp_path: Path) -> None:
    with media.WavReader(_wav(tmp_path, "en_jfk")) as audio:
        whole = audio[:]
        assert len(whole) == len(audio) and audio.duration == pytest.approx(11.0, abs=0.1)
        assert whole.dtype == np.float32 and 0 < np.abs(whole).max() <= 1.0
        np.testing.assert_array_equal(audio[1000:5000], whole[1000:5000])
        np.testing.assert_array_equal(audio.seconds(2.0, 3.5), whole[32000:56000])
        assert len(audio[len(audio) - 10:len(audio) + 100]) == 10


regions_strategy = st.lists(st.tuples(st.floats(0.05, 5.0), st.floats(0.1, 70.0)),
                            max_size=30).map(
    lambda gaps: [(round(s, 3), round(s + d, 3)) for s, d in _cumulate(gaps)])


def _cumulate(gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    at, out = 0.0, []
    for gap, length in gaps:
        out.append((at + gap, length))
        at += gap + length
    return out


def _rebuilt(windows: list[Window]) -> list[tuple[float, float]]:
    """The windows' pieces put back together."""
    rebuilt: list[tuple[float, float]] = []
    for start, end in (r for w in windows for r in w.regions):
        if rebuilt and abs(rebuilt[-1][1] - start) < 1e-9:
            rebuilt[-1] = (rebuilt[-1][0], end)
        else:
            rebuilt.append((start, end))
    return rebuilt


def _speech(window: Window) -> float:
    return sum(e - s for s, e in window.regions)


@given(regions_strategy)
def test_windows_hold_all_speech_in_order_and_at_most_30_s(regions) -> None:
    windows = speech_windows(regions)
    # The pieces put back together are the regions, in order, nothing lost or repeated.
    assert np.allclose(np.array(_rebuilt(windows)).reshape(-1, 2), np.array(regions).reshape(-1, 2))
    assert all(window.regions and _speech(window) <= WINDOW_S + 1e-6 for window in windows)


@given(regions_strategy, st.integers(1, 16), st.integers(1, 4))
def test_lanes_hold_all_speech_in_order_in_full_batches_of_even_lanes(regions, batch,
                                                                      decoders) -> None:
    split = lanes(regions, batch_size=batch, decoders=decoders)
    assert np.allclose(np.array(_rebuilt(split)).reshape(-1, 2), np.array(regions).reshape(-1, 2))
    total = sum(e - s for s, e in regions)
    if total < 2 * WINDOW_S:
        assert len(split) == 1
        return
    # Full batches of lanes of at most LANE_S, unless that would make lanes under MIN_LANE_S:
    # then as many as make them that long, or as many for each decoder (of a batch's lanes)
    # where that leaves a window of speech in each.
    full = math.ceil(total / LANE_S / batch) * batch
    fewest = max(1, int(total // MIN_LANE_S))
    even = min(batch, math.ceil(fewest / decoders) * decoders)
    assert len(split) == (full if full <= fewest else even if total / even >= WINDOW_S
                          else fewest)
    each = total / len(split)
    assert each >= WINDOW_S and all(window.regions for window in split)
    # A lane differs from an even share by at most one piece (a region, cut at 30 s).
    assert all(abs(_speech(window) - each) <= WINDOW_S for window in split)


def test_window_places_times_on_the_media_timeline() -> None:
    window = Window(((1.0, 3.0), (10.0, 12.0)))
    words = (Word(0.5, 1.0, "one"), Word(1.9, 2.2, "two"), Word(2.5, 3.9, "three"))
    placed = window.place(Segment(0.5, 3.9, "one two three", words))
    # "two" is mostly after the cut (middle 2.05 s): it starts where the second region does.
    assert [(w.start, w.end) for w in placed.words] == [(1.5, 2.0), (10.0, 10.2), (10.5, 11.9)]
    assert (placed.start, placed.end) == (1.5, 11.9)
    bare = window.place(Segment(0.0, 4.0, "no words"))
    assert (bare.start, bare.end) == (1.0, 12.0)


def test_journal_keeps_finished_entries_and_drops_torn_or_foreign_ones(tmp_path: Path) -> None:
    path = tmp_path / "chunks.jsonl"
    journal = Journal(path, key="a")
    assert journal.load() == []
    journal.append({"chunk": 0})
    journal.append({"chunk": 1})
    with path.open("a") as fh:
        fh.write('{"chunk": 2, "segm')  # killed mid-write
    assert Journal(path, key="a").load() == [{"chunk": 0}, {"chunk": 1}]
    assert path.read_text().count("\n") == 3  # the torn line is gone
    Journal(path, key="a").append({"chunk": 2})
    assert [e["chunk"] for e in Journal(path, key="a").load()] == [0, 1, 2]
    # Other inputs or settings: nothing is reused.
    assert Journal(path, key="b").load() == []
    assert Journal(path, key="a").load() == []


def test_vad_in_blocks_joins_speech_across_block_boundaries(tmp_path: Path) -> None:
    with media.WavReader(_wav(tmp_path, "en_lecture_plants")) as audio:
        whole = vad_engines.detect_blocks(vad_engines.WholeFile(), audio, block_s=4.0,
                                          on_progress=lambda _f: None)
        assert whole == [(0.0, round(audio.duration, 3))]
        silero = vad_engines.create(_settings())
        one = vad_engines.detect_blocks(silero, audio, on_progress=lambda _f: None)
        blocks = vad_engines.detect_blocks(silero, audio, block_s=9.0,
                                           on_progress=lambda _f: None)
        # Three blocks at a time, in threads: the same regions as one at a time.
        threaded = vad_engines.detect_blocks(silero, audio, block_s=9.0, workers=3,
                                             on_progress=lambda _f: None)
        assert threaded == blocks
        # A file of less than a block is one block whatever the workers.
        assert vad_engines.detect_blocks(silero, audio, workers=2,
                                         on_progress=lambda _f: None) == one
    for regions in (one, blocks):
        assert regions == sorted(regions)
        assert all(s < e <= t for (s, e), (t, _) in zip(regions, [*regions[1:], (1e9, 0)],
                                                         strict=True))
    # Long speech is split for Whisper's 30 s window at a pause, not cut mid-word (speech
    # joined again across a block boundary may be longer: the ASR windows cut it).
    assert all(e - s <= WINDOW_S for s, e in one)
    assert any(e - s > 9.0 for s, e in blocks)
    speech = [sum(e - s for s, e in r) for r in (one, blocks)]
    assert speech[1] == pytest.approx(speech[0], abs=1.0)


def _settings():
    from cpwhisperx import config

    return config.load_settings(job_file=None, cli={})


@pytest.mark.parametrize("split", ["windows", "lanes"])
def test_batched_decoding_finds_every_word_of_sequential_decoding(tmp_path: Path,
                                                                  split: str) -> None:
    """The same windows (30 s) or lanes (longer, decoded step by step) decoded one by one and
    all together, shared by two decoders side by side as on a CPU: the same words (a few may
    be heard differently), word times inside each window and in order."""
    from cpwhisperx import models
    from cpwhisperx.engines.asr.faster_whisper import FasterWhisperEngine

    long_file, reference, _ = evaluation.long_form(3, tmp_path)
    wav = tmp_path / "long.wav"
    info = media.probe(long_file)
    media.extract_wav(info, info.audio[0], wav)
    settings = _settings()
    with media.WavReader(wav) as audio:
        regions = vad_engines.detect_blocks(vad_engines.create(settings), audio,
                                            on_progress=lambda _: None)
        windows = speech_windows(regions) if split == "windows" else lanes(regions, batch_size=8,
                                                                           decoders=2)
        audios = [window.read(audio) for window in windows]
    # Lanes longer than a window: decoded in steps, each going on where the last one stopped.
    assert len(audios) > 2 and (split == "windows"
                                or min(map(len, audios)) > WINDOW_S * media.SAMPLE_RATE)
    engine = FasterWhisperEngine(model=models.resolve("tiny.en"), device="cpu",
                                 compute_type="int8", cpu_threads=2, decoders=2, beam_size=5)
    one_by_one = [engine.transcribe(a, language="en", word_timestamps=True) for a in audios]
    heard: list[float] = []
    batched = engine.decode(audios, language="en", word_timestamps=True, on_progress=heard.append)
    assert len(batched) == len(audios)
    # Progress after every step of the windows decoded together, not once at the end.
    assert len(heard) > 1 and heard == sorted(heard) and heard[0] > 0 and heard[-1] == 1

    def text(decoded: list[list[Segment]]) -> str:
        return " ".join(seg.text for segs in decoded for seg in segs)

    words = [sum(len(seg.words) for seg in segs) for segs in (*one_by_one, *batched)]
    assert sum(words[len(audios):]) >= 0.99 * sum(words[:len(audios)])
    assert evaluation.wer(text(one_by_one), text(batched), "en") <= 0.03
    assert (evaluation.wer(reference, text(batched), "en")
            <= evaluation.wer(reference, text(one_by_one), "en") + 0.005)
    for audio, segments in zip(audios, batched, strict=True):
        times = [t for seg in segments for w in seg.words for t in (w.start, w.end)]
        assert times == sorted(times)
        assert 0 <= times[0] <= times[-1] <= len(audio) / media.SAMPLE_RATE + 0.5


def test_batched_decoding_keeps_windows_in_place(tmp_path: Path) -> None:
    item = next(i for i in evaluation.items() if i.id == "en_lecture_plants")
    proc = cli(tmp_path, "transcribe", str(item.path), "-s", "en", "--set", "BATCH_SIZE=4")
    assert proc.returncode == 0, proc.stderr
    root = next(tmp_path.glob("*/*/job-*"))
    asr = json.loads((root / "04_asr" / "transcript.json").read_text())
    assert asr["meta"]["chunks"] == 1
    transcript = json.loads((root / "outputs" / f"{item.path.stem}.json").read_text())
    assert_times_valid(transcript, item.duration)
    assert evaluation.wer(item.text, transcript["text"], "en") <= 0.10


def test_leftovers_packed_together_go_back_to_their_windows() -> None:
    """The short ends of three windows, decoded packed into one: each one's words on its own
    window's times, within its span, and the words of its own sentence."""
    from faster_whisper import decode_audio

    from cpwhisperx.engines.asr import batched

    engine = _engine()
    rests, said = [], []
    for window, (name, at) in enumerate([("en_news_flood", 12.5), ("en_lecture_plants", 40.0),
                                         ("en_film_station", 0.7)]):
        item = next(i for i in evaluation.items() if i.id == name)
        sentence = item.sentences[1]
        lo, hi = sentence["start"] - 0.3, sentence["end"] + 0.3
        audio = decode_audio(str(item.path))[round(lo * media.SAMPLE_RATE):
                                             round(hi * media.SAMPLE_RATE)]
        rests.append((window, at, audio))
        said.append(sentence["text"])
    out = batched._packed(engine, rests, language="en", word_timestamps=True)
    assert [i for i, _ in out] == [0, 1, 2]
    for (_, at, audio), (_, segments), text in zip(rests, out, said, strict=True):
        times = [t for seg in segments for w in seg.words for t in (w.start, w.end)]
        assert times == sorted(times)
        assert at <= times[0] and times[-1] <= at + len(audio) / media.SAMPLE_RATE
        assert evaluation.wer(text, " ".join(seg.text for seg in segments), "en") <= 0.15


def test_a_step_is_cut_where_whisper_went_past_speech() -> None:
    """A word stretched over seconds, or a long pause between two words, is speech the decoding
    skipped: the step ends at the word before, which the next step goes on from."""
    from faster_whisper.tokenizer import Tokenizer

    from cpwhisperx.engines.asr import batched

    model = _engine().model
    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")

    def parts(*segments: list[tuple[str, float, float]]) -> list[dict]:
        return [{"start": words[0][1], "end": words[-1][2], "words": [
                    {"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in words],
                 "tokens": tokenizer.encode("".join(w for w, *_ in words))}
                for words in segments]

    fine = parts([(" Welcome", 0.0, 0.4), (" back.", 0.4, 1.9)], [(" Stay", 3.2, 3.5)])
    assert not batched._cut_at_skip(fine, tokenizer)
    assert fine == parts([(" Welcome", 0.0, 0.4), (" back.", 0.4, 1.9)], [(" Stay", 3.2, 3.5)])
    stretched = parts([(" Welcome", 0.0, 0.4), (" back", 0.4, 0.7), (" to", 0.7, 6.9),
                       (" the", 6.9, 7.0)], [(" show.", 7.0, 7.5)])
    assert batched._cut_at_skip(stretched, tokenizer)
    assert stretched == parts([(" Welcome", 0.0, 0.4), (" back", 0.4, 0.7)])
    assert tokenizer.decode(stretched[0]["tokens"]) == " Welcome back"
    paused = parts([(" Stay", 0.0, 0.3), (" with", 0.3, 0.5), (" us.", 0.5, 0.9)],
                   [(" Good", 13.1, 13.4), (" evening.", 13.4, 14.0)])
    assert batched._cut_at_skip(paused, tokenizer)
    assert paused == parts([(" Stay", 0.0, 0.3), (" with", 0.3, 0.5), (" us.", 0.5, 0.9)])
    first = parts([(" Well", 0.0, 4.5), (" then.", 4.5, 5.0)])
    assert not batched._cut_at_skip(first, tokenizer)  # nothing before it to end the step at


def _entries(journal: Path) -> list[dict]:
    """The journal's entries another process has written so far (not a torn last line)."""
    lines = journal.read_text().splitlines()[1:] if journal.is_file() else []
    entries = []
    for line in lines:
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


def _progress(entries: list[dict], lane_s: list[float], batch: int) -> tuple[float, int, int]:
    """(share of the lanes' speech decoded in journaled steps, steps journaled of the chunk in
    progress, chunks finished)."""
    reached = [0.0] * len(lane_s)
    for entry in entries:
        for key, window in entry.get("step", {}).items():
            lane = entry["chunk"] * batch + int(key)
            reached[lane] = min(window["seek"] / 100, lane_s[lane])  # 100 mel frames a second
    chunks = sum("segments" in e for e in entries)
    current = sum("step" in e and e["chunk"] == chunks for e in entries)
    return sum(reached) / sum(lane_s), current, chunks


@pytest.mark.parametrize("batch", [8, 1], ids=["batched", "sequential"])
def test_kill_at_half_resumes_from_the_last_decoding_step(tmp_path: Path, batch: int) -> None:
    """kill -9 half way through the speech of a 4-minute file, with the CPU's default batch
    size (its lanes are one chunk) and with lanes decoded one at a time (2 chunks): the next
    run takes up every decoding step journaled, and its transcript is the uninterrupted one's
    (nothing lost or said twice where the run was taken up)."""
    media_path, _, _ = evaluation.long_form(4, tmp_path)
    out = tmp_path / "out"
    args = ["--media", str(media_path), "-s", "en", "--batch-size", str(batch)]
    uninterrupted = cli(out, "prepare", *args).stdout.strip()
    whole = cli(out, "run", "-j", uninterrupted)
    assert whole.returncode == 0, whole.stderr
    job_id = cli(out, "prepare", *args).stdout.strip()
    root = job_root(out, job_id)
    journal = root / "04_asr" / "chunks.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "cpwhisperx", "--out", str(out), "run", "-j",
                            job_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=REPO)
    wait_for(lambda: stage_status(root / "manifest.json", "asr") == "running")
    regions = [(r["start"], r["end"]) for r in
               json.loads((root / "03_vad" / "speech.json").read_text())["regions"]]
    decoders = hardware.resolve(config.Settings(batch_size=batch), hardware.detect()).decoders
    lane_s = [sum(e - s for s, e in lane.regions)
              for lane in lanes(regions, batch_size=batch, decoders=decoders)]
    total = math.ceil(len(lane_s) / batch)
    assert total == (1 if batch > 1 else 2)
    # Killed once half the speech is journaled, in the middle of a chunk.
    wait_for(lambda: (p := _progress(_entries(journal), lane_s, batch))[0] >= 0.5 and p[1])
    run.send_signal(signal.SIGKILL)
    run.wait()
    time.sleep(0.5)  # the worker sees its parent gone and stops
    kept = _entries(journal)
    share, steps, chunks = _progress(kept, lane_s, batch)
    assert share >= 0.4 and steps >= 1 and chunks < total, (share, steps, chunks)

    again = cli(out, "run", "-j", job_id)
    assert again.returncode == 0, again.stderr
    assert _entries(journal)[:len(kept)] == kept
    meta = json.loads((root / "04_asr" / "transcript.json").read_text())["meta"]
    assert (meta["chunks"], meta["resumed_chunks"], meta["resumed_steps"]) == (total, chunks,
                                                                               steps)
    reference, resumed = (" ".join(s["text"] for s in json.loads(
        (job_root(out, job) / "04_asr" / "transcript.json").read_text())["segments"])
        for job in (uninterrupted, job_id))
    assert evaluation.wer(reference, resumed, "en") <= 0.02
    assert abs(len(resumed.split()) / len(reference.split()) - 1) <= 0.01
    transcript = json.loads((root / "outputs" / f"{media_path.stem}.json").read_text())
    assert_times_valid(transcript, media.probe(media_path).duration)


def _engine(decoders: int = 1):
    from cpwhisperx import models
    from cpwhisperx.engines.asr.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(model=models.resolve("tiny.en"), device="cpu",
                               compute_type="int8", cpu_threads=2, decoders=decoders,
                               beam_size=1)


def _lanes_of(tmp_path: Path, count: int) -> list[np.ndarray]:
    """``count`` lanes of 65 s of the long-form file: three steps each, the last a leftover."""
    from faster_whisper import decode_audio

    audio = decode_audio(str(evaluation.long_form(4, tmp_path)[0]))
    size = 65 * media.SAMPLE_RATE
    return [audio[i * size:(i + 1) * size] for i in range(count)]


def _recorded(records: list[dict], windows: int) -> list[list[Segment]]:
    """The segments the records hold, per window; and every window's last record is done."""
    out: list[list[Segment]] = [[] for _ in range(windows)]
    last = {}
    for record in records:
        for key, window in record.items():
            out[int(key)] += [Segment.from_dict(seg) for seg in window["segments"]]
            last[int(key)] = window["next"]
    assert last == dict.fromkeys(range(windows), "done"), records
    return out


@pytest.mark.parametrize(("count", "decoders"), [(2, 1), (1, 1), (4, 2)],
                         ids=["batched", "one-window", "two-decoders"])
def test_a_decoding_taken_up_after_any_step_is_the_uninterrupted_one(tmp_path: Path,
                                                                     count: int,
                                                                     decoders: int) -> None:
    """Every decoding step of every window is recorded as it finishes, one window alone too
    (``BATCH_SIZE=1``, or a short file), windows shared by two decoders too; a decoding taken
    up after any of them goes on from there as the uninterrupted one did: the same steps,
    prompts and segments (two decoders record theirs in either order)."""
    from cpwhisperx.engines.asr import Steps

    engine, audios = _engine(decoders), _lanes_of(tmp_path, count)
    records: list[dict] = []
    whole = engine.decode(audios, language="en", word_timestamps=True,
                          steps=Steps(done=(), record=records.append))
    assert _recorded(records, count) == whole
    assert len(records) >= 3 and all(seg.words for segs in whole for seg in segs)
    if decoders > 1:  # each record holds the windows of one decoder
        assert all(len({int(k) % decoders for k in r}) == 1 for r in records)

    def mine(records: list[dict], d: int) -> list[dict]:
        return [r for r in records if int(next(iter(r))) % decoders == d]

    for k in range(1, len(records)):
        again: list[dict] = []
        resumed = engine.decode(audios, language="en", word_timestamps=True,
                                steps=Steps(done=records[:k], record=again.append))
        for d in range(decoders):
            assert mine(again, d) == mine(records[k:], d), k
        assert resumed == whole


def test_a_decoder_that_fails_stops_the_other_after_its_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two decoders side by side: when one fails, the other ends after the step it is in
    (rather than decoding the rest of its lanes for nothing), and the error comes out."""
    import threading

    from cpwhisperx.engines.asr import batched

    engine, audios = _engine(decoders=2), _lanes_of(tmp_path, 2)  # three steps each
    encode, calls = batched._encode, []

    def failing(model, features):
        calls.append(threading.get_ident())
        if len(calls) == 1:
            raise RuntimeError("the first decoder's encoder failed")
        return encode(model, features)

    monkeypatch.setattr(batched, "_encode", failing)
    with pytest.raises(RuntimeError, match="first decoder"):
        engine.decode(audios, language="en", word_timestamps=True)
    assert len(calls) <= 2, calls  # the other decoder's step under way, at most


def test_a_step_decoded_again_at_a_higher_temperature_is_recorded_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A step failing the quality checks (made strict here) is decoded again on its own, with
    the sequential decoder's temperature fallback (cut short to one high temperature, after
    which the prompt starts over), and its window goes on with the others: every step
    recorded, up to the windows' ends. Taken up half way, the decoding finds the same words
    (its samples may differ)."""
    import dataclasses

    from cpwhisperx.engines.asr import Steps, batched

    options = batched._options
    monkeypatch.setattr(batched, "_options", lambda engine, tokenizer: dataclasses.replace(
        options(engine, tokenizer), log_prob_threshold=-0.2, temperatures=[0.0, 1.0]))
    caplog.set_level("DEBUG", logger=batched.__name__)
    engine, audios = _engine(), _lanes_of(tmp_path, 2)
    records: list[dict] = []
    whole = engine.decode(audios, language="en", word_timestamps=True,
                          steps=Steps(done=(), record=records.append))
    assert any("decoded again on its own" in r.message for r in caplog.records)
    assert _recorded(records, 2) == whole
    assert any(w["next"] == "decode" and not w["prompt"] for r in records[:-1]
               for w in r.values())  # a prompt started over

    def text(decoded: list[list[Segment]]) -> str:
        return " ".join(seg.text for segs in decoded for seg in segs)

    again: list[dict] = []
    half = len(records) // 2
    resumed = engine.decode(audios, language="en", word_timestamps=True,
                            steps=Steps(done=records[:half], record=again.append))
    assert _recorded(records[:half] + again, 2) == resumed
    assert evaluation.wer(text(whole), text(resumed), "en") <= 0.05
