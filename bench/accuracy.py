"""Accuracy benchmark: WER/CER of `cpwhisperx transcribe` on every speech clip of ../shared/eval.

    .venv/bin/python bench/accuracy.py [--model auto|tiny.en|base] [--ids en_jfk,...]
                                       [--set SOURCE_SEPARATION=deepfilternet ...]

Prints one row per clip and the totals; numbers, never pass/fail.
"""

import argparse

from cpwhisperx import evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--ids", help="comma-separated clip ids (default: all with text)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline setting for every run (repeatable)")
    args = parser.parse_args()
    wanted = set(args.ids.split(",")) if args.ids else None
    rows = []
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
        print(f"{item.id:<20} {item.language:<3} {item.duration or 0:6.1f} s  "
              f"WER {w:6.1%}  CER {c:6.1%}  {seconds:5.1f} s wall", flush=True)
    for language in sorted({i.language for i, _, _ in rows}):
        subset = [(i, h) for i, h, _ in rows if i.language == language]
        refs = " ".join(i.text for i, _ in subset)
        hyps = " ".join(h for _, h in subset)
        print(f"all {language}: WER {evaluation.wer(refs, hyps, language):.1%}, "
              f"CER {evaluation.cer(refs, hyps, language):.1%} over {len(subset)} clips")


if __name__ == "__main__":
    main()
