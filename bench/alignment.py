"""Word-boundary accuracy per aligner, through the real pipeline, on the word-timed clips of
../shared/eval (those whose manifest entry has exact ``words``).

    .venv/bin/python bench/alignment.py [--aligners whisper,pocketsphinx] [--model tiny.en]

Output words are matched to reference words by their normalised text (difflib); for each
aligner it prints the matched count and the median and 90th-percentile absolute error of word
starts and ends, in milliseconds. Numbers, never pass/fail.
"""

import argparse
import difflib

import numpy as np

from cpwhisperx import evaluation


def words_of(item: evaluation.Item, aligner: str, model: str) -> list[dict]:
    transcript, _ = evaluation.transcribe(item, "--model", model, "--align", aligner)
    return [w for seg in transcript["segments"] for w in seg["words"]]


def errors(reference: list[dict], hypothesis: list[dict], language: str) -> list[tuple]:
    ref = [evaluation.normalize(w["word"], language) for w in reference]
    hyp = [evaluation.normalize(w["text"], language) for w in hypothesis]
    pairs = []
    for block in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            r, h = reference[block.a + k], hypothesis[block.b + k]
            pairs.append((abs(h["start"] - r["start"]), abs(h["end"] - r["end"])))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aligners", default="whisper,pocketsphinx")
    parser.add_argument("--model", default="auto")
    args = parser.parse_args()
    clips = [i for i in evaluation.items() if i.words]
    print(f"clips: {', '.join(i.id for i in clips)}; model {args.model}")
    print(f"{'aligner':<14} {'words':>7}  {'start median':>12} {'start p90':>9}  "
          f"{'end median':>10} {'end p90':>7}")
    for aligner in args.aligners.split(","):
        pairs, total = [], 0
        for item in clips:
            pairs += errors(item.words, words_of(item, aligner, args.model), item.language)
            total += len(item.words)
        starts, ends = (np.array([p[i] for p in pairs]) * 1000 for i in (0, 1))
        print(f"{aligner:<14} {len(pairs):>3}/{total:<3}  {np.median(starts):9.0f} ms "
              f"{np.percentile(starts, 90):6.0f} ms  {np.median(ends):7.0f} ms "
              f"{np.percentile(ends, 90):4.0f} ms")


if __name__ == "__main__":
    main()
