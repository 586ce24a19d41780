#!/usr/bin/env bash
# Peak memory of the issue #17 cases: every one must stay under 600 MB and end with exit
# 0 or a one-line error. Makes the bad inputs (Python standard library only), runs the
# release CLI under /usr/bin/time and prints one line per case:
#   peak-RSS-MB  exit-code  case  (first line of stderr)
# Usage: bash tools/check_hardening_memory.sh [path/to/siamese]   (default target/release/siamese)
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-target/release/siamese}
[ -x "$S" ] || cargo build --release --bin siamese
export XDG_RUNTIME_DIR=$(mktemp -d)
W=$(mktemp -d)
trap 'rm -rf "$W" "$XDG_RUNTIME_DIR"' EXIT

python3 - "$W" <<'EOF'
import struct, sys, zlib, zipfile, os
w = sys.argv[1]
# A 20000 x 20000 grayscale PNG of zeros (~390 KB compressed, 400 MB decoded).
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
side = 20000
compressor = zlib.compressobj(9)
row = b"\0" * (side + 1)
idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
with open(os.path.join(w, "huge.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
# A .keras whose config.json inflates to 1 GiB.
with zipfile.ZipFile(os.path.join(w, "bomb.keras"), "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("config.json", "w", force_zip64=True) as f:
        f.write(b'{"class_name": "Sequential", "config": {"name": "')
        block = b" " * (1 << 20)
        for _ in range(1024):
            f.write(block)
        f.write(b'"}}')
    z.writestr("metadata.json", "{}")
    z.writestr("model.weights.h5", b"")
# 40,000 labelled images in 2 classes (the files need not exist for pairs-from).
with open(os.path.join(w, "labels.csv"), "w") as f:
    f.write("path,label\n")
    for i in range(40000):
        f.write(f"img{i:05d}.png,{i % 2}\n")
EOF

run() {
  local name=$1; shift
  local err="$W/err"
  local rc=0
  /usr/bin/time -o "$W/time" -f "%M" "$@" >/dev/null 2>"$err" || rc=$?
  printf '%6.0f MB  exit %s  %-34s %s\n' "$(( $(tail -1 "$W/time") / 1024 ))" "$rc" "$name" "$(grep -m1 -v '^Command exited' "$err" | cut -c1-110)"
}

run "pairs-from 40,000 labels" "$S" pairs-from --labels "$W/labels.csv" --out "$W/pairs.csv"
run "PNG declaring 20000x20000" "$S" pairs --model models/cnn --left "$W/huge.png" --right "$W/huge.png"
run ".keras config.json -> 1 GiB" "$S" inspect --model "$W/bomb.keras"
run "bench --batch 2^64-1" "$S" bench --model models/cnn --batch 18446744073709551615
run "bench --batch 100000000" "$S" bench --model models/cnn --batch 100000000
run "bench --batch 2^60" "$S" bench --model models/cnn --batch 1152921504606846976
run "bench --seq-len 1000000000" "$S" bench --model tests/fixtures/lstm_seed --batch 1 --seq-len 1000000000
