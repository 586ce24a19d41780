#!/usr/bin/env python3
"""Write the keras.applications first-block fixtures for tests/applications.rs: each family's
real model (``keras.applications.X(weights=None, include_top=False)`` at a 32x32x3 input),
cut to its first block (``keras.Model(m.input, m.get_layer(BLOCK).output)``), every
BatchNormalization given non-trivial statistics and every bias a random value (as
tools/check_applications.py does), saved by Keras as .keras and legacy .h5 and reloaded.

  apps_mobilenet_v3_small  Rescaling, hard_swish, a squeeze-excite block whose hard_sigmoid
                           is the operation nodes `x + 3.0` and `* (1/6)` (the legacy .h5 writes
                           those without their module), cut at expanded_conv_project_bn
  apps_mobilenet_v2        stem, expanded_conv, block_1, block_2 with its residual Add
  apps_mobilenet           stem and two depthwise-separable blocks, ZeroPadding2D, cut at
                           conv_pw_2_relu
  apps_efficientnet_b0     Rescaling + Normalization, swish, squeeze-excite (Reshape, Multiply),
                           block1a and block2a (strided, ZeroPadding2D), cut at block2a_project_bn
  apps_vgg16               block1 (two Conv2D relu, MaxPooling2D)
  apps_nasnet_mobile       NASNet's reduction cell stem_1: SeparableConv2D, a relu on a tensor
                           that other layers read too, MaxPooling2D / AveragePooling2D `same`,
                           ZeroPadding2D + Cropping2D, Concatenate
  apps_resnet50            ResNet50's stem (ZeroPadding2D, 7x7/2 conv, BN, max-pool) and first
                           bottleneck (1x1 -> 3x3 -> 1x1 with a conv shortcut, Add, relu);
                           .keras only (420 KB)
  apps_densenet121         DenseNet121's stem and first dense layer (BN-relu-conv, Concatenate);
                           .keras only
  apps_efficientnet_v2_b0  EfficientNetV2B0's stem, fused-MBConv block1a and block2a
  apps_mobilenet_v3_large  MobileNetV3Large's stem and first two inverted residuals (relu)
  apps_custom_scale        InceptionResNetV2's CustomScaleLayer (its own class, from
                           keras.applications; the real model needs a 75x75 input): Conv2D
                           shortcut and branch on 9x9x4 -> CustomScaleLayer(0.17) -> relu
  apps_layer_scales        two of ConvNeXt's LayerScale layers (gamma uniform [0.2, 1.5)):
                           a legacy .h5 names their variables `variable` and `variable_1`

Beside each NAME.keras / NAME.h5: NAME.left.npy, NAME.right.npy (float32, 2 pairs of
32x32x3: standard normal, or 0..255 for the models that rescale their input) and
NAME.keras_out.npy: the euclidean distance between the reloaded model's left and right
outputs, over all axes but the batch ([2]).

  KERAS_BACKEND=jax python tools/make_family_blocks.py [--out DIR] [--families apps_vgg16,...]

Versions: tools/requirements.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import keras  # noqa: E402

from check_applications import randomize  # noqa: E402
from make_keras_files import DEFAULT_OUT, reload, run_model, save_and_check  # noqa: E402

PAIRS = 2
SIZE = 32

# name: (keras.applications class, the first block's output layer, seed, raw pixel inputs)
BLOCKS = {
    "apps_mobilenet_v3_small": ("MobileNetV3Small", "expanded_conv_project_bn", 301, True),
    "apps_mobilenet_v2": ("MobileNetV2", "block_2_add", 302, False),
    "apps_mobilenet": ("MobileNet", "conv_pw_2_relu", 303, False),
    "apps_efficientnet_b0": ("EfficientNetB0", "block2a_project_bn", 304, True),
    "apps_vgg16": ("VGG16", "block1_pool", 305, False),
    "apps_nasnet_mobile": ("NASNetMobile", "reduction_concat_stem_1", 306, False),
    "apps_resnet50": ("ResNet50", "conv2_block1_out", 309, False),
    "apps_densenet121": ("DenseNet121", "conv2_block1_concat", 311, False),
    "apps_efficientnet_v2_b0": ("EfficientNetV2B0", "block2a_project_bn", 312, True),
    "apps_mobilenet_v3_large": ("MobileNetV3Large", "expanded_conv_1_project_bn", 313, True),
}

# Blocks of over ~250 KB of weights get the .keras file only (tools/check_applications.py
# checks the whole models' .h5 files too).
KERAS_ONLY = {"apps_resnet50", "apps_densenet121"}


def first_block(family: str, block: str, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, family)(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    cut = keras.Model(model.input, model.get_layer(block).output, name="encoder")
    randomize(cut, np.random.default_rng(seed))
    return cut


def custom_scale_block() -> keras.Model:
    """InceptionResNetV2's block pattern at 9x9x4: x + 0.17 * branch(x), then relu."""
    from keras import layers
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    keras.utils.set_random_seed(307)
    x = keras.Input((9, 9, 4))
    shortcut = layers.Conv2D(6, 1, name="shortcut")(x)
    branch = layers.Conv2D(6, 3, padding="same", name="branch")(x)
    out = CustomScaleLayer(0.17, name="custom_scale_layer")([shortcut, branch])
    model = keras.Model(x, layers.Activation("relu", name="block_ac")(out), name="encoder")
    randomize(model, np.random.default_rng(307))
    return model


def layer_scales_block() -> keras.Model:
    """Conv2D -> LayerScale -> Conv2D -> LayerScale on 5x5x3, as ConvNeXt's blocks end."""
    from keras import layers
    from keras.src.applications.convnext import LayerScale

    keras.utils.set_random_seed(308)
    x = keras.Input((5, 5, 3))
    h = LayerScale(0.5, 6, name="layer_scale_a")(layers.Conv2D(6, 3, padding="same", name="conv_a")(x))
    h = LayerScale(0.5, 4, name="layer_scale_b")(layers.Conv2D(4, 1, name="conv_b")(h))
    model = keras.Model(x, h, name="encoder")
    rng = np.random.default_rng(308)
    randomize(model, rng)
    for name in ("layer_scale_a", "layer_scale_b"):
        scale = model.get_layer(name)
        scale.set_weights([rng.uniform(0.2, 1.5, w.shape).astype(np.float32) for w in scale.get_weights()])
    return model


def inputs(seed: int, raw_pixels: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1000)
    shape = (PAIRS, SIZE, SIZE, 3)
    if raw_pixels:
        return (rng.uniform(0, 255, shape).astype(np.float32), rng.uniform(0, 255, shape).astype(np.float32))
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def save_h5(model: keras.Model, path: Path, left: np.ndarray, right: np.ndarray) -> None:
    """The legacy .h5 beside the .keras (sharing its .npy files), checked against the model
    in memory when Keras can read it back: Keras 3.15 cannot reload MobileNetV3's (it takes
    the operation node `x + 3.0`, written without its module, for an Add layer), which is
    the file the loader's test is about; nor apps_custom_scale's, whose class the legacy
    format does not register). The golden is then the model in memory's output, which the
    .keras file's reload has matched."""
    if path.exists():
        path.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    expected = run_model(model, left, right, encoder_only=True)
    try:
        got = run_model(reload(path), left, right, encoder_only=True)
    except ValueError as error:
        print(f"wrote {path} ({path.stat().st_size} bytes); Keras cannot reload it: {str(error).splitlines()[0]}")
        return
    if not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
        raise SystemExit(f"{path}: reloaded output {got} != in-memory output {expected}")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--families", default=",".join([*BLOCKS, "apps_custom_scale", "apps_layer_scales"]))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.families.split(","):
        if name in ("apps_custom_scale", "apps_layer_scales"):
            model = custom_scale_block() if name == "apps_custom_scale" else layer_scales_block()
            rng = np.random.default_rng(1307)
            shape = (PAIRS, *model.input.shape[1:])
            left, right = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
            save_and_check(model, args.out, name, left, right, encoder_only=True)
            save_h5(model, args.out / f"{name}.h5", left, right)
            continue
        family, block, seed, raw_pixels = BLOCKS[name]
        model = first_block(family, block, seed)
        left, right = inputs(seed, raw_pixels)
        out = np.asarray(model.predict(left, verbose=0))
        print(f"{name}: {family} cut at {block}, output {out.shape[1:]}, std {out.std():.3g}, "
              f"{model.count_params()} parameters")
        save_and_check(model, args.out, name, left, right, encoder_only=True)
        if name not in KERAS_ONLY:
            save_h5(model, args.out / f"{name}.h5", left, right)
    return 0


if __name__ == "__main__":
    sys.exit(main())
