#!/usr/bin/env python3
"""Which keras.applications backbones load and match Keras: for each family, build
``keras.applications.X(weights=None, include_top=False, pooling="avg", input_shape=(S, S, 3))``
at the smallest input size Keras accepts for it (32; 71 for Xception, 75 for the Inception
ones), give every BatchNormalization non-trivial statistics (gamma uniform [0.8, 1.2), beta
normal(0, 0.1), moving_mean normal(0, 0.1), moving_variance uniform [0.5, 1.5)) and every bias
normal(0, 0.05), save it as .keras AND legacy .h5, run Keras on a few random inputs, run
`siamese embed` on each file, and compare the pooled embeddings.

Each family runs in its own Python process (``--worker``) with a time limit, so one that
hangs or runs out of memory does not stop the others; its model files are deleted after the
check unless --keep. One summary line per family and file:

  ResNet50      .keras  ok    max|err| 1.2e-06  rel 3.1e-06  (size 32, Keras std 0.41)
  NASNetMobile  .h5     FAIL  error: layer 'normal_conv_1_0' (class ...): ...

A file passes when max|ours - keras| <= 1e-3 * max|keras| + 1e-5 (f32 over a deep network:
the error grows with depth; what is asked is the same function, not the same rounding).
The exit status is 1 when any family fails.

  KERAS_BACKEND=jax python tools/check_applications.py [--families ResNet50,VGG16] [--out /tmp]
      [--size 48] [--samples 3] [--timeout 900] [--keep] [--siamese target/release/siamese]
      [--inline-sequential]   (diagnostic: ConvNeXt without its nested Sequential blocks)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent

FAMILIES = [
    "ResNet50", "ResNet101", "ResNet152", "ResNet50V2",
    "VGG16", "VGG19",
    "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large",
    *[f"EfficientNetB{i}" for i in range(8)],
    *[f"EfficientNetV2B{i}" for i in range(4)], "EfficientNetV2S",
    "DenseNet121", "Xception", "InceptionV3", "InceptionResNetV2",
    "ConvNeXtTiny", "NASNetMobile",
]

# The smallest input side keras.applications accepts with weights=None (its
# `obtain_input_shape` min_size; MobileNet*, ConvNeXt and EfficientNet* check only >= 32).
MIN_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}

# Families whose model starts with its own preprocessing (Rescaling / Normalization): fed
# 0..255 like the images they expect; the others get standard-normal inputs.
RAW_PIXELS = ("EfficientNet", "MobileNetV3", "ConvNeXt")

TOLERANCE_REL, TOLERANCE_ABS = 1e-3, 1e-5


def randomize(model, rng) -> int:
    """Non-trivial BatchNormalization statistics and biases, so that a wrongly read
    moving_variance, a dropped beta or bias shows in the output. Returns the BN count."""
    import numpy as np
    from keras import layers

    draw = {
        "gamma": lambda n: rng.uniform(0.8, 1.2, n),
        "beta": lambda n: rng.normal(0.0, 0.1, n),
        "moving_mean": lambda n: rng.normal(0.0, 0.1, n),
        "moving_variance": lambda n: rng.uniform(0.5, 1.5, n),
    }
    count = 0
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights(
                [draw[v.name](v.shape).astype(np.float32) for v in layer.weights]
            )
            count += 1
        else:
            for v in layer.weights:
                if v.name == "bias":
                    v.assign(rng.normal(0.0, 0.05, size=v.shape).astype(np.float32))
    return count


def inline_sequential() -> None:
    """Diagnostic (--inline-sequential): ConvNeXt builds its stem and downsampling blocks as
    nested Sequential models; replaced by a function applying the same layers in turn, the
    saved model holds those layers inline (same names, same numbers), which shows what the
    importer would meet once it inlines nested models."""
    from keras.src.applications import convnext

    def sequential(layer_list, name=None):
        def apply(x):
            for layer in layer_list:
                x = layer(x)
            return x

        return apply

    convnext.Sequential = sequential


def worker(family: str, size: int, samples: int, out: Path, seed: int, inline: bool = False) -> dict:
    """Builds, saves and runs one family in Keras; writes the inputs and Keras' output."""
    import numpy as np
    import keras

    if inline:
        inline_sequential()

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    build = getattr(keras.applications, family)
    model = build(weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3))
    bn = randomize(model, rng)
    if family.startswith(RAW_PIXELS):
        x = rng.uniform(0, 255, (samples, size, size, 3)).astype(np.float32)
    else:
        x = rng.normal(size=(samples, size, size, 3)).astype(np.float32)
    ref = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "input.npy", x)
    np.save(out / "keras_out.npy", ref)
    model.save(out / f"{family}.keras")
    model.save(out / f"{family}.h5")
    return {
        "layers": len(model.layers), "params": int(model.count_params()), "bn": bn,
        "std": float(ref.std()), "finite": bool(np.isfinite(ref).all()),
        "classes": sorted({type(layer).__name__ for layer in model.layers}),
    }


def first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() or "panick" in line.lower():
            return line[:300]
    return (lines[-1] if lines else "(no output)")[:300]


def check(family: str, args) -> list[tuple[str, str, str]]:
    """Runs one family: the Keras worker, then `siamese embed` on each file."""
    import numpy as np

    size = args.size or MIN_SIZE.get(family, 32)
    out = Path(args.out) / "check_applications" / family
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", family, "--size", str(size), "--samples", str(args.samples),
             "--out", str(out), "--seed", str(args.seed), *(["--inline-sequential"] if args.inline_sequential else [])],
            capture_output=True, text=True, timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        return [(family, "keras", f"FAIL  Keras build/save ran past {args.timeout} s")]
    if done.returncode != 0:
        return [(family, "keras", f"FAIL  Keras: {first_error_line(done.stderr)}")]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    if not info["finite"] or not 1e-3 < info["std"] < 1e3:
        note = f" (Keras output std {info['std']:.3g}: the check is weak)"
    else:
        note = ""
    ref = np.load(out / "keras_out.npy")
    rows = []
    for suffix in (".keras", ".h5"):
        left = args.timeout - (time.monotonic() - started)
        emb = out / f"ours{suffix}.npy"
        try:
            ran = subprocess.run(
                [args.siamese, "embed", "--model", str(out / f"{family}{suffix}"), "--input", str(out / "input.npy"),
                 "--out", str(emb)],
                capture_output=True, text=True, timeout=max(left, 60),
            )
        except subprocess.TimeoutExpired:
            rows.append((family, suffix, "FAIL  siamese embed ran past the time limit"))
            continue
        if ran.returncode != 0:
            rows.append((family, suffix, f"FAIL  {first_error_line(ran.stderr + ran.stdout)}"))
            continue
        ours = np.load(emb).reshape(ref.shape) if np.load(emb).size == ref.size else np.load(emb)
        if ours.shape != ref.shape:
            rows.append((family, suffix, f"FAIL  embedding shape {ours.shape}, Keras {ref.shape}"))
            continue
        error = np.abs(ours.astype(np.float64) - ref)
        scale = float(np.abs(ref).max())
        worst = float(error.max())
        ok = worst <= TOLERANCE_REL * scale + TOLERANCE_ABS and np.isfinite(ours).all()
        rows.append((
            family, suffix,
            f"{'ok  ' if ok else 'FAIL'}  max|err| {worst:.2e}  rel {worst / max(scale, 1e-12):.2e}  "
            f"(size {size}, {info['layers']} layers, {info['params'] / 1e6:.1f} M params, "
            f"Keras std {info['std']:.3g}){note}",
        ))
    if not args.keep:
        for suffix in (".keras", ".h5"):
            (out / f"{family}{suffix}").unlink(missing_ok=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset")
    parser.add_argument("--out", default="/tmp", help="work folder (a check_applications/ folder in it)")
    parser.add_argument("--size", type=int, default=0, help="input side for every family (default: its minimum)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per family, Keras and ours")
    parser.add_argument("--keep", action="store_true", help="keep the saved model files")
    parser.add_argument("--siamese", default=str(REPO / "target/release/siamese"))
    parser.add_argument("--inline-sequential", action="store_true",
                        help="diagnostic: build ConvNeXt with its nested Sequential blocks inlined")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        info = worker(args.worker, args.size, args.samples, Path(args.out), args.seed, args.inline_sequential)
        print(json.dumps(info))
        return 0

    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    failed = 0
    for family in families:
        for name, source, result in check(family, args):
            print(f"{name:<18} {source:<7} {result}", flush=True)
            failed |= result.startswith("FAIL")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
