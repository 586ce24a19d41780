#!/usr/bin/env bash
# The benchmark table of BENCHMARKS.md in one run: our batched twins (with the naive
# two-pass baseline) for the CNN, LSTM (T=50) and Transformer (MHA) seed twins at 1, 64 and
# 512 pairs (f32, then f16 weights), the adapter's peak from our microkernels, first calls with Mesa's shader cache
# empty, and ONNX Runtime CPU on the same weights (tools/bench_onnx.py, needs a venv with
# torch + onnxruntime: PYTHON=/tmp/tvenv/bin/python).
#
#   bash tools/bench_all.sh [OUT_DIR]        (default target/bench; JSON lines per source)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench}"
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo build --release --quiet --bin siamese
bin=target/release/siamese
models=(models/cnn tests/fixtures/lstm_seed tests/fixtures/mha_seed)
: > "$out/ours.jsonl"
for model in "${models[@]}"; do
    peak=""
    [ "$model" = models/cnn ] && peak="--peak"
    "$bin" bench --model "$model" --batch 1,64,512 --iters 20 --seq-len 50 --json $peak >> "$out/ours.jsonl"
done
# The same with the Dense/Conv2D weights stored as f16.
: > "$out/ours_f16.jsonl"
for model in "${models[@]}"; do
    "$bin" --precision f16 bench --model "$model" --batch 1,64,512 --iters 20 --seq-len 50 --json --no-naive >> "$out/ours_f16.jsonl"
done
# First calls with Mesa's on-disk shader cache disabled (every pipeline compiled afresh).
: > "$out/cold.jsonl"
for model in "${models[@]}"; do
    MESA_SHADER_CACHE_DISABLE=true "$bin" bench --model "$model" --batch 1 --iters 3 --no-naive --json >> "$out/cold.jsonl"
done
if [ -n "${PYTHON:-}" ]; then
    "$PYTHON" tools/bench_onnx.py --models cnn,lstm,mha --batch 1,64,512 --iters 20 --seq-len 50 > "$out/onnx.jsonl"
    "$PYTHON" tools/bench_onnx.py --models cnn,lstm,mha --batch 1,64,512 --iters 20 --seq-len 50 --threads 1 > "$out/onnx_1thread.jsonl"
fi
echo "wrote $out/*.jsonl" >&2
