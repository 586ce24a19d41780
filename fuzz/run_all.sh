#!/usr/bin/env bash
# Runs fuzz targets for MINUTES each, PARALLEL at a time, one libFuzzer process (one
# core) per target, then prints what each did. Logs: fuzz/logs/<target>.log; crashes:
# fuzz/artifacts/<target>/. Needs cargo-fuzz; works on stable via RUSTC_BOOTSTRAP=1.
#
#   fuzz/run_all.sh [MINUTES=10] [PARALLEL=2] [TARGET...]   (default: every target)
#
# FUZZ_ARGS adds libFuzzer flags, e.g. FUZZ_ARGS="-fork=1 -ignore_crashes=1" to keep
# going past a crash that is known but not fixed yet (fork mode: one child at a time).
# fuzz/dicts/<target>.dict, when present, is passed as the target's dictionary.
set -euo pipefail

run() {
    local target="$1" minutes="$2" dict=()
    [ -f "dicts/$target.dict" ] && dict=("-dict=dicts/$target.dict")
    # -timeout: an input taking 30 s is a hang; -rss_limit_mb (also the malloc limit):
    # one allocation of 2 GiB from a small file is a bug, not a big model.
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    nice -n 10 cargo fuzz run "$target" "corpus/$target" -- \
        -max_total_time=$((minutes * 60)) -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" ${FUZZ_ARGS:-} > "logs/$target.log" 2>&1 || true
}

summary() {
    printf '\n%-20s %8s %12s %8s %s\n' target seconds executions corpus crashes
    local target log seconds runs corpus crashes
    for target in "$@"; do
        log="logs/$target.log"
        # In-process runs end with "Done N runs in S second(s)"; fork mode's last status
        # line is "#N: cov: ... time: Ss ...".
        seconds=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | awk '{print $5}' | tail -1 || true)
        runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1 || true)
        if [ -z "$seconds" ]; then
            seconds=$(grep -o ' time: [0-9]*s' "$log" | tail -1 | tr -dc 0-9 || true)
            runs=$(grep -o '^#[0-9]*: cov' "$log" | tail -1 | tr -dc 0-9 || true)
        fi
        if [ -z "$runs" ]; then # stopped at a crash: the last status line before it
            runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -dc 0-9 || true)
            seconds="${seconds:-crashed}"
        fi
        corpus=$(find "corpus/$target" -type f | wc -l)
        crashes=$(find "artifacts/$target" -type f 2>/dev/null | wc -l)
        printf '%-20s %8s %12s %8s %s\n' "$target" "${seconds:-?}" "${runs:-?}" "$corpus" "$crashes"
    done
}

main() {
    local minutes="${1:-10}" parallel="${2:-2}"
    shift $(($# < 2 ? $# : 2))
    cd "$(dirname "${BASH_SOURCE[0]}")"
    export RUSTC_BOOTSTRAP=1
    local targets=("$@")
    if [ ${#targets[@]} -eq 0 ]; then
        mapfile -t targets < <(cargo fuzz list)
    fi
    ./seed_corpora.sh > /dev/null
    cargo fuzz build
    mkdir -p logs
    local target
    for target in "${targets[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
        echo "fuzzing $target for $minutes min"
        run "$target" "$minutes" &
    done
    wait
    summary "${targets[@]}"
}

# Everything is in functions so that bash has read the whole file before it runs: editing
# this script while it runs cannot change what a running copy does.
main "$@"
