"""Accuracy benchmark: `cpwhisperx transcribe` on every speech clip of ../shared/eval.

    .venv/bin/python bench/accuracy.py [--model auto|tiny.en|base] [--ids en_jfk,...]
                                       [--set SOURCE_SEPARATION=deepfilternet ...]
                                       [--set ALIGNMENT_BACKEND=whisper ...]

One table, a row per clip: WER and CER (Whisper's English normaliser for English), the share of
subtitle events (Netflix rules, from the transcript's word times) meeting every rule, the
median word-start error of the aligner where the clip has exact word times, the share of
letters in the language's own script for an Indic language, wall time; then the totals per
language. Numbers, never pass/fail.
"""

import argparse

import numpy as np
from alignment import errors

from cpwhisperx import evaluation
from cpwhisperx.text import scripts, subtitles
from cpwhisperx.transcript import Transcript


def conformance(transcript: dict, language: str) -> float:
    style = subtitles.style_for(language, fps=None)
    events = subtitles.events(Transcript.from_dict(transcript).segments, language=language,
                              style=style)
    return subtitles.check(events, style, language=language).share()


def start_error_ms(item: evaluation.Item, transcript: dict) -> str:
    if not item.words:
        return "-"
    words = [w for seg in transcript["segments"] for w in seg["words"]]
    pairs = errors(item.words, words, item.language)
    return f"{np.median([start for start, _ in pairs]) * 1000:.0f} ms" if pairs else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--ids", help="comma-separated clip ids (default: all with text)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline setting for every run (repeatable)")
    args = parser.parse_args()
    wanted = set(args.ids.split(",")) if args.ids else None
    rows = []
    print("| clip | lang | length | WER | CER | subtitles meeting every rule "
          "| word start error (median) | own script (English words aside) | wall |\n|" + "---|" * 9)
    for item in evaluation.items():
        if item.expect != "transcript" or not item.text or item.path.suffix != ".flac":
            continue
        if wanted and item.id not in wanted:
            continue
        settings = [arg for kv in args.set for arg in ("--set", kv)]
        transcript, seconds = evaluation.transcribe(item, "--model", args.model, *settings)
        hyp = transcript["text"]
        rows.append((item, hyp, seconds))
        w = evaluation.wer(item.text, hyp, item.language)
        c = evaluation.cer(item.text, hyp, item.language)
        native = scripts.NATIVE_SCRIPTS.get(item.language or "")
        # English words of Hinglish are not counted: they stay in Latin script.
        script = (f"{scripts.native_share(hyp, item.language):.1%} {native}" if native
                  else "-")
        print(f"| {item.id} | {item.language} | {item.duration or 0:.1f} s | {w:.1%} | {c:.1%} "
              f"| {conformance(transcript, item.language):.0%} "
              f"| {start_error_ms(item, transcript)} | {script} | {seconds:.1f} s |", flush=True)
    for language in sorted({i.language for i, _, _ in rows}):
        subset = [(i, h) for i, h, _ in rows if i.language == language]
        refs = " ".join(i.text for i, _ in subset)
        hyps = " ".join(h for _, h in subset)
        print(f"all {language}: WER {evaluation.wer(refs, hyps, language):.1%}, "
              f"CER {evaluation.cer(refs, hyps, language):.1%} over {len(subset)} clips")


if __name__ == "__main__":
    main()
