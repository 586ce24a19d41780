#!/usr/bin/env python3
"""End-to-end check of the ONNX importer on torchvision backbones (issue #16; not in CI).

Each encoder is a torchvision model with random weights whose classifier is replaced by an
embedding head, as a Siamese tutorial builds one. With random weights and default
statistics deep backbones' activations vanish (distances of 1e-7 prove nothing), so every
BatchNorm's statistics are first measured on a calibration batch (train mode, cumulative
average), then its weight and bias are drawn at random (uniform [0.5, 1.5), normal * 0.1);
the model then runs in eval mode:

  resnet18, resnet50         fc -> Linear(features, 64)
  mobilenet_v3_small         classifier -> Linear(576, 64)
  efficientnet_b0            classifier -> Linear(1280, 64)
  convnext_tiny              classifier[2] (after its LayerNorm2d and Flatten) -> Linear(768, 64)

Each is exported with both of PyTorch's exporters (the TorchScript one, dynamo=False,
opset 13; the default dynamo one, opset 18, weights in NAME.onnx.data), as
make_onnx_files.py does, then `siamese pairs --model FILE.onnx` runs PAIRS pairs of
standard-normal NCHW images (the last pair identical) and its distances are compared with
the Euclidean distances of PyTorch's embeddings, computed by the model in float64 (float32
PyTorch is itself 5e-4 off on ResNet50's identical pair): |err| <= 1e-4 + 1e-3*|ref|, and
the identical pair exactly 0.

    python tools/check_torchvision.py --siamese target/release/siamese \
        [--models resnet18,...] [--size 96] [--pairs 3] [--exporters ts,dynamo] [--keep DIR]

Versions: tools/requirements-onnx.txt. Prints one summary row per model and exporter and
exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_onnx_files import export_dynamo, export_ts  # noqa: E402

MODELS = ("resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny")
EMBED = 64


def calibrate(model: nn.Module, size: int) -> None:
    """BatchNorm statistics measured on a batch of standard-normal images, then random
    affine weights: activations keep their scale through the whole network."""
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batch_norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size))
        for bn in batch_norms:
            bn.weight.copy_(torch.rand(bn.num_features) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features) * 0.1)
    model.eval()


def build(name: str, seed: int, size: int = 96) -> nn.Module:
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, EMBED)
    elif name.startswith("convnext"):
        model.classifier[2] = nn.Linear(model.classifier[2].in_features, EMBED)
    else:
        features = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][0].in_features
        model.classifier = nn.Linear(features, EMBED)
    calibrate(model, size)
    if name.startswith("convnext"):
        # LayerScale's initial 1e-6 would make every block an identity: give it weight.
        with torch.no_grad():
            for module in model.modules():
                if hasattr(module, "layer_scale"):
                    module.layer_scale.copy_(torch.rand_like(module.layer_scale) * 0.5 + 0.25)
    return model.eval()


def run_pairs(siamese: str, model: Path, left: Path, right: Path, ref: np.ndarray) -> tuple[str, str, str]:
    """`siamese pairs` on the two files against PyTorch's distances `ref`: (result, max
    |error|, note). The tolerance is 1e-4 + 1e-3*|ref|, and the last pair (identical)
    must be exactly 0."""
    dist = model.with_suffix(".distances.npy")
    cmd = [siamese, "pairs", "--model", str(model), "--left", str(left), "--right", str(right), "--out", str(dist)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        return "FAIL", "-", (run.stderr.strip().splitlines() or ["no message"])[-1][:300]
    got = np.load(dist).astype(np.float64)
    err = np.abs(got - ref)
    ok = bool(np.all(err <= 1e-4 + 1e-3 * np.abs(ref))) and got[-1] == 0.0
    return ("ok" if ok else "MISMATCH"), f"{err.max():.2e}", "" if ok else f"got {got}, PyTorch {ref}"


def print_table(header: str, columns: list[str], rows: list[tuple]) -> None:
    print(f"\n{header}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--siamese", default="target/release/siamese")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--exporters", default="ts,dynamo")
    ap.add_argument("--size", type=int, default=96, help="image height and width")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="write the exported files and inputs here")
    args = ap.parse_args()
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="check-torchvision-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], False
    for name in args.models.split(","):
        model = build(name, args.seed, args.size)
        rng = np.random.default_rng(args.seed)
        shape = (args.pairs, 3, args.size, args.size)
        left = rng.standard_normal(shape).astype(np.float32)
        right = rng.standard_normal(shape).astype(np.float32)
        right[-1] = left[-1]
        with torch.no_grad():
            emb = model.double()(torch.from_numpy(np.concatenate([left, right])).double()).numpy()
        model.float()
        ref = np.linalg.norm(emb[: args.pairs] - emb[args.pairs :], axis=1)
        np.save(out_dir / f"{name}.left.npy", left)
        np.save(out_dir / f"{name}.right.npy", right)
        x = torch.from_numpy(left[:2].copy())
        for exporter in args.exporters.split(","):
            path = out_dir / f"{name}.{exporter}.onnx"
            (export_ts if exporter == "ts" else export_dynamo)(model, x, path)
            start = time.time()
            result, err, note = run_pairs(args.siamese, path, out_dir / f"{name}.left.npy",
                                          out_dir / f"{name}.right.npy", ref)
            failed |= result != "ok"
            rows.append((name, exporter, result, err, f"{ref.mean():.3g}", f"{time.time() - start:.1f}", note))
            print(*rows[-1], sep="  ", flush=True)
    print_table(f"{args.size}x{args.size}, {args.pairs} pairs (the last identical), torch {torch.__version__}, "
                f"torchvision {torchvision.__version__}",
                ["model", "exporter", "result", "max \\|err\\|", "mean distance", "seconds", "note"], rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
