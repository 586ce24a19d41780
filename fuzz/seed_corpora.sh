#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the test fixtures (the corpus is git-ignored).
# Run from anywhere: ./fuzz/seed_corpora.sh   (existing corpus files are kept).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="$root/fuzz/corpus"

# seed TARGET FILE... : copies each file in, named after its path so fixtures don't collide.
seed() {
    local target="$1"; shift
    mkdir -p "$corpus/$target"
    local file
    for file in "$@"; do
        [ -f "$file" ] || continue
        local name="${file#"$root"/}"
        cp "$file" "$corpus/$target/${name//\//_}"
    done
}

shopt -s nullglob
seed model_json "$root"/tests/fixtures/*/model.json "$root"/models/*/model.json
# models/*/model.safetensors (900 KB) are left out: large seeds slow every mutation, and
# the fixtures hold the same layer kinds.
seed safetensors_weights "$root"/tests/fixtures/*/model.safetensors "$root"/models/digits/head.safetensors
seed npy "$root"/tests/fixtures/*/*.npy "$root"/tests/fixtures/keras_files/*.npy "$root"/models/digits/heldout/*.npy
seed pairs_tsv "$root"/tests/fixtures/minilm/pairs.tsv
# Both CSV targets share one reader: each gets both files.
seed pairs_csv "$root"/models/digits/heldout/*.csv
seed labels_csv "$root"/models/digits/heldout/*.csv
seed keras_file "$root"/tests/fixtures/keras_files/*.keras "$root"/tests/fixtures/keras_files/*.h5
seed onnx_file "$root"/tests/fixtures/onnx/*.onnx
# Every regression input is a seed too, for the target it was found by.
for dir in "$root"/fuzz/regressions/*/; do
    seed "$(basename "$dir")" "$dir"*
done

for dir in "$corpus"/*/; do
    printf '%-20s %4d files\n' "$(basename "$dir")" "$(find "$dir" -type f | wc -l)"
done
