#!/usr/bin/env bash
# Interleaved before/after steady-state bench of two siamese binaries, two rounds: the
# CNN, LSTM and MHA seed twins (`bench --json`), and one MiniLM sentence pair
# (`similarity --timing`; needs SIAMESE_MINILM_DIR or the installed package). Each output
# line starts with `before`/`after` and the round.
#
#   git worktree add /tmp/base REV && (cd /tmp/base && cargo build --release --bin siamese)
#   cargo build --release --bin siamese
#   tools/bench_before_after.sh /tmp/base/target/release/siamese target/release/siamese
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}" MESA_SHADER_CACHE_DISABLE=true
before="${1:?usage: tools/bench_before_after.sh BEFORE_BINARY AFTER_BINARY}"
after="${2:?usage: tools/bench_before_after.sh BEFORE_BINARY AFTER_BINARY}"
for round in 1 2; do
  for tag in before after; do
    bin=$before
    [ "$tag" = after ] && bin=$after
    "$bin" bench --model models/cnn --batch 1,64 --no-naive --iters 30 --json | sed "s/^/$tag r$round /"
    "$bin" bench --model tests/fixtures/lstm_seed --batch 64 --seq-len 50 --no-naive --iters 10 --json |
      sed "s/^/$tag r$round /"
    "$bin" bench --model tests/fixtures/mha_seed --batch 64 --no-naive --iters 20 --json | sed "s/^/$tag r$round /"
    "$bin" similarity "A man is playing a guitar." "Someone plays an instrument." --timing 2>&1 |
      tail -1 | sed "s/^/$tag r$round minilm /"
  done
done
