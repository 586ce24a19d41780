#!/usr/bin/env python3
"""Write small Keras-saved model files for the `.keras` / legacy `.h5` loader tests.

Every file in tests/fixtures/keras_files/ is written by Keras itself (``model.save``),
then reloaded from disk (``keras.models.load_model(..., safe_mode=False)``) and run on
fixed random inputs; the reloaded model's output is what goes into NAME.keras_out.npy,
so a fixture whose file does not round-trip through Keras is never written.

  cnn_twin.keras / .h5     Siamese twin: Input a, Input b -> shared Sequential "encoder"
                           (seed CNN, shrunk) -> Lambda (Python lambda) euclidean distance
  cnn_encoder.keras / .h5  the same Sequential "encoder" on its own
  cnn_head.keras           twin whose head is layers only: Subtract -> Multiply(d, d) ->
                           Dense(1, sigmoid)
  lstm_twin.keras / .h5    twin over a Sequential "encoder" (LSTM 16 -> Dense 8), time axis
                           None; head: Lambda over a registered named function
                           `euclidean_distance`
  mha_twin.keras / .h5     twin over a Functional "encoder" (MultiHeadAttention self-attention,
                           Add, LayerNormalization, GlobalAveragePooling1D, Dense 8); head
                           as lstm_twin
  koch_twin.keras / .h5    Koch-style twin: Lambda |a - b| -> Dense(1, sigmoid); a trained layer
                           after a Lambda, which needs --lambda abs-diff (never dropped)
  contrastive_twin.keras / .h5
                           keras.io's contrastive-loss tutorial: BatchNorm tower, Lambda
                           euclidean distance -> BatchNormalization -> Dense(1, sigmoid)
  face_twin.h5 / .keras    face verification: Conv2D + BatchNormalization blocks,
                           GlobalAveragePooling2D, Dense, a registered custom L2Normalize
                           class, Dot(axes=1) head
  mlp_head_twin.keras / .h5
                           head of ordinary layers: Subtract, Multiply, Concatenate ->
                           Dense(6, relu) -> Dense(1)
  cosine_twin.keras        Dot(axes=-1, normalize=True) head
  nested_blocks.keras / .h5
                           Functional encoder with Sequential blocks nested in it (ConvNeXt's
                           stem and downsampling blocks): inlined at load
  masked_lstm.keras        Functional encoder Input [None, 8] -> Masking -> LSTM 4: Keras 3
                           writes the mask's NotEqual / Any operation nodes into its config;
                           inputs zero-padded to ragged lengths
  masked_lstm_twin.keras   twin over that Functional encoder; head as lstm_twin
  bn_cnn.keras / .h5       Sequential encoder: Conv2D (no bias) -> BatchNormalization -> relu
                           -> Conv2D -> BatchNormalization(scale=False) -> MaxPooling2D ->
                           Flatten -> BatchNormalization(center=False) -> Dense ->
                           BatchNormalization(epsilon=0.01)
  bn_dense.keras           Sequential encoder: BatchNormalization on the input -> Dense relu ->
                           BatchNormalization(momentum=0.9, epsilon=1e-5) -> Dense
  dw_mbv2.keras / .h5      Functional encoder: MobileNetV2-style inverted residual blocks
                           (Conv 1x1 -> BN -> ReLU6 -> DepthwiseConv2D 3x3 stride 1 / 2 ->
                           BN -> ReLU6 -> Conv 1x1 -> BN, residual Add), then depthwise
                           convs with depth_multiplier 2 and dilation 2
  dw_separable.keras / .h5 Functional encoder, Xception-like: SeparableConv2D blocks with BN,
                           depth_multiplier 2 and 3, a strided 1x1 residual
  dw_grouped.keras / .h5   Sequential encoder: Conv2D with groups 3 and 2 (BN after one)
  bn_functional.keras      Functional encoder: Conv2D -> x; Add(x, BatchNormalization(x)) ->
                           GlobalAveragePooling2D -> Dense (the conv output has two readers,
                           so the BatchNormalization cannot be folded into the conv)
  seq_pool.keras / .h5     Sequential encoder on [13, 5]: Dense -> MaxPooling1D /
                           AveragePooling1D (valid, same, strides) -> GlobalMaxPooling1D and
                           GlobalAveragePooling1D (keepdims) -> Dense softmax / log_softmax
  misc_cnn.keras / .h5     Sequential encoder: PReLU (shared_axes [1, 2], and full), ELU(0.7),
                           ReLU(max_value, threshold, negative_slope), GlobalMaxPooling2D
                           (keepdims), Softmax, UnitNormalization
  softmax_axes.keras       Softmax / UnitNormalization over other and several axes
  layer_scale.keras / .h5  ConvNeXt-style block with its LayerScale and StochasticDepth
  conv1d.keras / .h5       Sequential encoder on [23, 5]: Conv1D valid stride 2, same
                           dilation 2, causal dilation 3 (no bias) -> BN, causal and same
                           with groups and strides -> GlobalAveragePooling1D -> Dense
  conv1d_ids.keras / .h5   token ids of any length -> Embedding(mask_zero=True) -> Conv1D
                           causal / same stride 2 (Keras drops the mask) -> GAP1D -> Dense

Every BatchNormalization of the bn_* files gets random statistics after the build (gamma
uniform [0.5, 1.5), beta normal(0, 0.3), moving_mean normal(0, 0.5), moving_variance
uniform [0.3, 2.0)); with the defaults (1, 0, 0, 1) the layer would be nearly the identity.

Beside each model file NAME.{keras,h5}: NAME.left.npy, NAME.right.npy (float32, 4 pairs)
and NAME.keras_out.npy (float32): the whole model's output for those pairs ([4, 1]); for
encoder-only files, the per-pair euclidean distance between the encoder outputs ([4]).
The .h5 files share the NAME.*.npy of the .keras file of the same NAME.
The README.md manifest of the directory is written too.

Weights and inputs are deterministic (fixed seeds); the .keras zips are not byte-identical
across runs (Keras records the save date in metadata.json and zip entry times).
Check without writing into the repo: --out /tmp/somewhere.

Usage:
  KERAS_BACKEND=jax python tools/make_keras_files.py            # write into the repo
  KERAS_BACKEND=jax python tools/make_keras_files.py --out DIR  # write into DIR instead

Needs keras 3 with the jax backend, numpy and h5py (tools/requirements.txt).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "keras_files"
PAIRS = 4


# --------------------------------------------------------------------------- heads


@keras.saving.register_keras_serializable(package="siamese_wgpu")
def euclidean_distance(vects):
    """sqrt(max(sum((a - b)^2), eps)) over the last axis, keepdims: [batch, 1]."""
    a, b = vects
    sq = ops.sum(ops.square(a - b), axis=1, keepdims=True)
    return ops.sqrt(ops.maximum(sq, keras.backend.epsilon()))


def lambda_head_python_lambda():
    """A Lambda over a Python `lambda` (serialized as marshalled bytecode, "__lambda__";
    reloading needs safe_mode=False). Keras 3 rebuilds the lambda with no module globals,
    so it must import keras itself to be runnable after a reload."""
    return layers.Lambda(
        lambda v: __import__("keras").ops.sqrt(
            __import__("keras").ops.maximum(
                __import__("keras").ops.sum(
                    __import__("keras").ops.square(v[0] - v[1]), axis=1, keepdims=True
                ),
                1e-7,
            )
        ),
        output_shape=(1,),
        name="distance",
    )


def lambda_head_named_function():
    """A Lambda over the registered function `euclidean_distance` (serialized by name)."""
    return layers.Lambda(euclidean_distance, output_shape=(1,), name="distance")


# --------------------------------------------------------------------------- encoders


def cnn_encoder() -> keras.Model:
    """models/cnn/model.json's architecture (28x28x1, Conv 3x3 relu, MaxPool 2, Conv 3x3 relu,
    MaxPool 2, Flatten, Dense relu) with 8/16 filters and 32 units instead of 32/64/128."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.Conv2D(8, 3, activation="relu", name="conv2d"),
            layers.MaxPooling2D(2, name="max_pooling2d"),
            layers.Conv2D(16, 3, activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(2, name="max_pooling2d_1"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="dense"),
        ],
        name="encoder",
    )


def lstm_encoder() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((None, 8), name="sequence"),
            layers.LSTM(16, name="lstm"),
            layers.Dense(8, name="dense"),
        ],
        name="encoder",
    )


def mha_encoder() -> keras.Model:
    x = keras.Input((10, 16), name="tokens")
    attn = layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")(x, x)
    h = layers.Add(name="residual")([x, attn])
    h = layers.LayerNormalization(name="layer_norm")(h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    out = layers.Dense(8, name="dense")(h)
    return keras.Model(x, out, name="encoder")


def masked_lstm_encoder() -> keras.Model:
    """Functional, so Keras 3 records the ops computing Masking's mask (NotEqual, Any) as
    nodes of their own, feeding the LSTM's `mask` argument."""
    x = keras.Input((None, 8), name="sequence")
    h = layers.Masking(mask_value=0.0, name="masking")(x)
    out = layers.LSTM(4, name="lstm")(h)
    return keras.Model(x, out, name="encoder")


def token_lstm_encoder(cell) -> keras.Model:
    """Token ids of any length (Input((None,), int32)) -> Embedding -> LSTM / GRU."""
    x = keras.Input((None,), dtype="int32", name="ids")
    h = layers.Embedding(50, 8, name="embedding")(x)
    out = cell(6, name=cell.__name__.lower())(h)
    return keras.Model(x, out, name="encoder")


def mask_zero_lstm_encoder() -> keras.Model:
    """Sequential: Embedding(mask_zero=True) -> LSTM (no mask nodes in the config)."""
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="ids"),
            layers.Embedding(37, 7, mask_zero=True, name="embedding"),
            layers.LSTM(5, name="lstm"),
        ],
        name="encoder",
    )


def mask_zero_bigru_encoder() -> keras.Model:
    """Functional: Embedding(mask_zero=True) -> Dense (passes the mask on) ->
    Bidirectional(GRU); Keras records NotEqual(ids, 0) feeding the GRU's mask."""
    x = keras.Input((None,), dtype="int32", name="ids")
    h = layers.Embedding(37, 7, mask_zero=True, name="embedding")(x)
    h = layers.Dense(5, activation="tanh", name="dense")(h)
    out = layers.Bidirectional(layers.GRU(4), name="bigru")(h)
    return keras.Model(x, out, name="encoder")


def mask_zero_pool_encoder() -> keras.Model:
    """Functional: Embedding(mask_zero=True) -> GlobalAveragePooling1D (mean over the
    real steps) -> Dense."""
    x = keras.Input((None,), dtype="int32", name="ids")
    h = layers.Embedding(37, 7, mask_zero=True, name="embedding")(x)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    out = layers.Dense(3, name="dense")(h)
    return keras.Model(x, out, name="encoder")


@keras.saving.register_keras_serializable(package="siamese_wgpu")
class MyDense(layers.Dense):
    """A registered custom class that is Dense (its config and weights)."""


@keras.saving.register_keras_serializable(package="siamese_wgpu")
class MyRelu(keras.layers.Layer):
    """A registered custom class computing ReLU (no settings of its own)."""

    def call(self, x):
        return ops.relu(x)

    def get_config(self):
        return super().get_config()


def custom_layer_encoder() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((6,), name="features"),
            MyDense(7, name="my_dense"),
            MyRelu(name="my_relu"),
            layers.Dense(4, name="dense"),
        ],
        name="encoder",
    )


def padded_ids(seed: int, vocab: int, steps: int, lengths: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """int32 ids [PAIRS, steps] in 1..vocab, 0 after each row's length (left, right); the
    left twin's row 3 also has a 0 inside (t = 1), which Keras masks too."""
    rng = np.random.default_rng(seed)
    twins = []
    for twin_lengths in lengths:
        ids = rng.integers(1, vocab, (PAIRS, steps)).astype(np.int32)
        for row, length in enumerate(twin_lengths):
            ids[row, length:] = 0
        twins.append(ids)
    twins[0][3, 1] = 0
    return twins[0], twins[1]


def dense_encoder() -> keras.Model:
    return keras.Sequential(
        [keras.Input((6,), name="features"), layers.Dense(4, activation="tanh", name="dense")],
        name="encoder",
    )


def bn_cnn_encoder() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((11, 13, 3), name="image"),
            layers.Conv2D(7, 3, use_bias=False, name="conv2d"),
            layers.BatchNormalization(name="batch_normalization"),
            layers.Activation("relu", name="activation"),
            layers.Conv2D(6, 3, padding="same", name="conv2d_1"),
            layers.BatchNormalization(scale=False, name="batch_normalization_1"),
            layers.MaxPooling2D(2, name="max_pooling2d"),
            layers.Flatten(name="flatten"),
            layers.BatchNormalization(center=False, name="batch_normalization_2"),
            layers.Dense(5, name="dense"),
            layers.BatchNormalization(epsilon=0.01, name="batch_normalization_3"),
        ],
        name="encoder",
    )


def bn_dense_encoder() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((10,), name="features"),
            layers.BatchNormalization(name="batch_normalization"),
            layers.Dense(9, activation="relu", name="dense"),
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="batch_normalization_1"),
            layers.Dense(4, name="dense_1"),
        ],
        name="encoder",
    )


def prep_config_encoder() -> keras.Model:
    """Preprocessing inside the model, statistics in the config: Rescaling to [-1, 1), a
    Normalization with given mean and variance, then a conv; a Dense head ending in an
    inverted Normalization."""
    inp = keras.Input((10, 12, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(inp)
    x = layers.Normalization(mean=[0.1, -0.2, 0.05], variance=[0.3, 0.5, 0.2], name="normalization")(x)
    x = layers.Conv2D(4, 3, activation="relu", name="conv2d")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(3, name="dense")(x)
    out = layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 0.25, 1.0], invert=True, name="denormalize")(x)
    return keras.Model(inp, out, name="encoder")


def prep_adapted_encoder(rng: np.random.Generator) -> keras.Model:
    """A Normalization adapted on data (its mean, variance and count are weights), after a
    per-channel Rescaling."""
    norm = layers.Normalization(name="normalization")
    norm.adapt(rng.uniform(0, 255, (64, 10, 12, 3)).astype(np.float32) * np.float32([0.5, 1.0, 2.0]))
    return keras.Sequential(
        [
            keras.Input((10, 12, 3), name="image"),
            norm,
            layers.Rescaling([2.0, 1.0, 0.5], offset=0.25, name="rescaling"),
            layers.Conv2D(4, 3, activation="relu", name="conv2d"),
            layers.GlobalAveragePooling2D(name="pool"),
            layers.Dense(3, name="dense"),
        ],
        name="encoder",
    )


def pad_stem_encoder() -> keras.Model:
    """A ResNet-style stem, as keras.applications writes one: ZeroPadding2D(3) before a
    valid strided 7x7 conv (folded into it), ZeroPadding2D(1) before a 3x3 max-pool (which
    must see the zeros), an asymmetric padding before a conv, and a Cropping2D."""
    inp = keras.Input((17, 19, 3), name="image")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inp)
    x = layers.Conv2D(8, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = layers.ZeroPadding2D(((0, 1), (2, 0)), name="asym_pad")(x)
    x = layers.Conv2D(4, 3, name="conv2")(x)
    x = layers.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(3, name="dense")(x)
    return keras.Model(inp, out, name="encoder")


def act_mix_encoder() -> keras.Model:
    """The activation layers and names real backbones use: ReLU(6) (MobileNetV2),
    hard_silu (MobileNetV3), mish, LeakyReLU, relu6, leaky_relu, ReLU(negative_slope)."""
    return keras.Sequential(
        [
            keras.Input((12,), name="features"),
            layers.Dense(10, name="dense"),
            layers.ReLU(6.0, name="relu6_layer"),
            layers.Dense(9, activation="hard_silu", name="dense_hard_silu"),
            layers.Dense(8, activation="mish", name="dense_mish"),
            layers.LeakyReLU(negative_slope=0.1, name="leaky"),
            layers.Dense(7, activation="relu6", name="dense_relu6"),
            layers.Dense(6, activation="leaky_relu", name="dense_leaky"),
            layers.ReLU(negative_slope=0.05, name="relu_slope"),
            layers.Dense(4, name="dense_out"),
        ],
        name="encoder",
    )


def bn_functional_encoder() -> keras.Model:
    """The conv output feeds both the BatchNormalization and the Add: two readers, so the
    normalization cannot be folded into the conv's kernel and bias."""
    inp = keras.Input((9, 9, 2), name="image")
    x = layers.Conv2D(5, 3, name="conv2d")(inp)
    y = layers.BatchNormalization(name="batch_normalization")(x)
    z = layers.Add(name="residual")([x, y])
    h = layers.GlobalAveragePooling2D(name="pool")(z)
    out = layers.Dense(3, name="dense")(h)
    return keras.Model(inp, out, name="encoder")


def merge_ops_encoder() -> keras.Model:
    """Merges and Keras 3 operation nodes as backbones write them: MobileNetV3's
    squeeze-excite block (its own code: GlobalAveragePooling2D(keepdims) -> Conv 1x1 ->
    ReLU -> Conv 1x1 -> hard_sigmoid as `ReLU(6)(x + 3.0) * (1/6)` -> Multiply of
    [N,1,1,C] and [N,H,W,C]), Concatenate on the channel and the row axis, Subtract,
    Average of three, Maximum / Minimum (layers and keras.ops with a constant), `x / y`,
    `2.0 - x`, `-x`, `x + y` of two tensors, Reshape (with -1) and Flatten."""
    from keras.src.applications.mobilenet_v3 import _se_block

    inp = keras.Input((7, 9, 3), name="pixels")
    x = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inp)
    se = _se_block(x, 6, 0.5, "block_")
    a = keras.layers.Conv2D(6, 1, name="branch_a")(se)
    b = keras.layers.Conv2D(6, 1, activation="relu", name="branch_b")(x)
    cat = keras.layers.Concatenate(name="cat_channels")([a, b])
    rows = keras.layers.Concatenate(axis=1, name="cat_rows")([a, b])
    rows = keras.layers.Reshape((7, 9, 12), name="rows_back")(rows)
    d = keras.layers.Subtract(name="sub")([cat, rows])
    avg = keras.layers.Average(name="avg3")([cat, rows, d])
    hi = keras.layers.Maximum(name="max")([avg, d])
    lo = keras.layers.Minimum(name="min")([avg, d, cat])
    y = hi / (keras.ops.maximum(lo, 0.0) + 1.5)
    y = 2.0 - y
    y = keras.ops.minimum(y, 3.0) + (-lo)
    y = y + hi
    y = y + keras.layers.Concatenate(name="cat_twice")([x, x])
    y = keras.layers.Reshape((-1, 12), name="flat_rows")(y)
    y = keras.layers.GlobalAveragePooling1D(name="mean_rows")(y)
    out = keras.layers.Dense(5, name="embedding")(y)
    return keras.Model(inp, out, name="merge_ops")


def rearrange_encoder() -> keras.Model:
    """RepeatVector and Permute: a vector repeated over 4 steps, transposed, then mixed by a
    Dense on the last axis and flattened."""
    inp = keras.Input((6,), name="features")
    x = keras.layers.Dense(5, activation="tanh", name="project")(inp)
    x = keras.layers.RepeatVector(4, name="repeat")(x)
    x = keras.layers.Permute((2, 1), name="swap")(x)
    x = keras.layers.Dense(3, name="mix")(x)
    x = keras.layers.Reshape((3, 5, 1), name="as_image")(keras.layers.Permute((2, 1))(x))
    x = keras.layers.Permute((3, 1, 2), name="channels_first")(x)
    out = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, out, name="rearrange")

def seq_pool_encoder() -> keras.Model:
    """1-D pooling over [steps, features] (Dense acts on the last axis of each step):
    MaxPooling1D valid and same, AveragePooling1D same with a stride, GlobalMaxPooling1D and
    GlobalAveragePooling1D with keepdims, and the softmax / log_softmax activation names."""
    return keras.Sequential(
        [
            keras.Input((13, 5), name="sequence"),
            layers.Dense(7, activation="relu", name="dense"),
            layers.MaxPooling1D(2, name="max_pool"),
            layers.AveragePooling1D(3, strides=2, padding="same", name="avg_pool"),
            layers.MaxPooling1D(2, strides=1, padding="same", name="max_pool_same"),
            layers.AveragePooling1D(2, strides=1, name="avg_pool_valid"),
            layers.GlobalMaxPooling1D(keepdims=True, name="global_max"),
            layers.Dense(6, activation="softmax", name="dense_softmax"),
            layers.GlobalAveragePooling1D(keepdims=True, name="global_avg"),
            layers.Dense(4, activation="log_softmax", name="dense_log_softmax"),
            layers.GlobalMaxPool1D(name="global_max_flat"),
        ],
        name="encoder",
    )


def misc_cnn_encoder() -> keras.Model:
    """Activations with settings and weights, global max pooling with keepdims, a Softmax
    layer and UnitNormalization at the end."""
    return keras.Sequential(
        [
            keras.Input((9, 11, 3), name="image"),
            layers.Conv2D(6, 3, name="conv2d"),
            layers.PReLU(shared_axes=[1, 2], name="prelu_channels"),
            layers.Conv2D(5, 3, padding="same", name="conv2d_1"),
            layers.ELU(alpha=0.7, name="elu"),
            layers.ReLU(max_value=4.0, threshold=0.5, negative_slope=0.1, name="relu_mixed"),
            layers.PReLU(name="prelu_full"),
            layers.ReLU(threshold=0.3, name="relu_threshold"),
            layers.ReLU(max_value=2.5, name="relu_cap"),
            layers.GlobalMaxPooling2D(keepdims=True, name="global_max"),
            layers.Dense(7, name="dense"),
            layers.Softmax(axis=-1, name="softmax"),
            layers.Flatten(name="flatten"),
            layers.Dense(6, name="dense_1"),
            layers.UnitNormalization(name="unit_norm"),
        ],
        name="encoder",
    )


def softmax_axes_encoder() -> keras.Model:
    """Softmax and UnitNormalization over other axes (several contiguous ones, not the
    last), GlobalAveragePooling2D with keepdims, GlobalMaxPool2D."""
    return keras.Sequential(
        [
            keras.Input((6, 7, 4), name="image"),
            layers.Conv2D(5, 1, name="conv2d"),
            layers.Softmax(axis=(1, 2), name="softmax_hw"),
            layers.Conv2D(3, 1, name="conv2d_1"),
            layers.Softmax(axis=1, name="softmax_h"),
            layers.UnitNormalization(axis=(2, 3), name="unit_norm_wc"),
            layers.GlobalAveragePooling2D(keepdims=True, name="global_avg"),
            layers.Conv2D(5, 1, name="conv2d_2"),
            layers.GlobalMaxPool2D(name="global_max"),
            layers.Dense(4, name="dense"),
        ],
        name="encoder",
    )


def layer_scale_encoder() -> keras.Model:
    """A ConvNeXt-style block (Conv2D standing in for the depthwise conv): LayerNormalization,
    Dense gelu, Dense, ConvNeXt's LayerScale (gamma randomised), StochasticDepth, Add."""
    from keras.src.applications.convnext import LayerScale, StochasticDepth

    inp = keras.Input((7, 6, 5), name="image")
    x = layers.Conv2D(5, 3, padding="same", name="conv2d")(inp)
    x = layers.LayerNormalization(epsilon=1e-6, name="layer_norm")(x)
    x = layers.Dense(12, activation="gelu", name="pointwise_1")(x)
    x = layers.Dense(5, name="pointwise_2")(x)
    x = LayerScale(0.5, 5, name="layer_scale")(x)
    x = StochasticDepth(0.1, name="stochastic_depth")(x)
    x = layers.Add(name="residual")([inp, x])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(4, name="dense")(x)
    return keras.Model(inp, out, name="encoder")


def randomize_named(model: keras.Model, names: list[str], seed: int, low: float, high: float) -> None:
    """Uniform [low, high) values for the weights of the named layers (PReLU alpha is zero
    and LayerScale gamma a constant at init)."""
    rng = np.random.default_rng(seed)
    for name in names:
        layer = model.get_layer(name)
        layer.set_weights([rng.uniform(low, high, w.shape).astype(np.float32) for w in layer.get_weights()])


def mbv2_block_encoder() -> keras.Model:
    """MobileNetV2-style inverted residual blocks: Conv 1x1 -> BN -> ReLU6 -> DepthwiseConv2D
    3x3 -> BN -> ReLU6 -> Conv 1x1 -> BN, with a residual Add at stride 1; at stride 2 the
    depthwise conv is `valid` after a ZeroPadding2D, as keras.applications writes it; then
    a depthwise conv with depth_multiplier 2, dilation 2, bias and relu in its config."""
    inp = keras.Input((13, 11, 7), name="image")

    def bn(name):
        return layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=name)

    x = layers.Conv2D(21, 1, use_bias=False, name="b1_expand")(inp)
    x = bn("b1_expand_bn")(x)
    x = layers.ReLU(6.0, name="b1_expand_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="b1_dw")(x)
    x = bn("b1_dw_bn")(x)
    x = layers.ReLU(6.0, name="b1_dw_relu")(x)
    x = layers.Conv2D(7, 1, use_bias=False, name="b1_project")(x)
    x = bn("b1_project_bn")(x)
    x = layers.Add(name="b1_add")([inp, x])
    y = layers.Conv2D(14, 1, use_bias=False, name="b2_expand")(x)
    y = bn("b2_expand_bn")(y)
    y = layers.ReLU(6.0, name="b2_expand_relu")(y)
    y = layers.ZeroPadding2D(((0, 1), (0, 1)), name="b2_pad")(y)
    y = layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name="b2_dw")(y)
    y = bn("b2_dw_bn")(y)
    y = layers.ReLU(6.0, name="b2_dw_relu")(y)
    y = layers.Conv2D(13, 1, use_bias=False, name="b2_project")(y)
    y = bn("b2_project_bn")(y)
    y = layers.DepthwiseConv2D(
        3, strides=2, padding="same", depth_multiplier=2, activation="relu", name="dw_same_s2"
    )(y)
    y = layers.DepthwiseConv2D(3, dilation_rate=2, padding="same", name="dw_dilated")(y)
    y = layers.GlobalAveragePooling2D(name="pool")(y)
    out = layers.Dense(5, name="dense")(y)
    return keras.Model(inp, out, name="encoder")


def separable_encoder() -> keras.Model:
    """Xception-like: SeparableConv2D (depth_multiplier 2, no bias) -> BN -> relu ->
    SeparableConv2D -> BN -> MaxPooling2D 3 stride 2 same, plus a strided 1x1 Conv2D -> BN
    residual; then a SeparableConv2D with bias, relu, stride 2 and a 3x2 kernel."""
    inp = keras.Input((12, 13, 5), name="image")
    residual = layers.Conv2D(8, 1, strides=2, padding="same", use_bias=False, name="res_conv")(inp)
    residual = layers.BatchNormalization(name="res_bn")(residual)
    x = layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, use_bias=False, name="sep1")(inp)
    x = layers.BatchNormalization(name="sep1_bn")(x)
    x = layers.Activation("relu", name="sep1_act")(x)
    x = layers.SeparableConv2D(8, 3, padding="same", use_bias=False, name="sep2")(x)
    x = layers.BatchNormalization(name="sep2_bn")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Add(name="add")([x, residual])
    x = layers.SeparableConv2D(
        6, (3, 2), strides=2, depth_multiplier=3, activation="relu", name="sep3"
    )(x)
    out = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, out, name="encoder")


def grouped_encoder() -> keras.Model:
    """Conv2D with groups: 3 groups (dilation 2, relu), 2 groups (stride 2) -> BN, and a 1x1
    with 2 groups of 8 output channels each."""
    return keras.Sequential(
        [
            keras.Input((9, 10, 6), name="image"),
            layers.Conv2D(12, 3, groups=3, dilation_rate=2, padding="same", activation="relu", name="g3"),
            layers.Conv2D(8, (3, 2), strides=2, groups=2, name="g2"),
            layers.BatchNormalization(name="g2_bn"),
            layers.Conv2D(16, 1, groups=2, activation="tanh", name="g2_pointwise"),
            layers.GlobalAveragePooling2D(name="pool"),
            layers.Dense(4, name="dense"),
        ],
        name="encoder",
    )


def conv1d_encoder() -> keras.Model:
    """Conv1D over [23, 5] (odd lengths and channel counts): valid stride 2, same dilation
    2 relu, causal dilation 3 without bias -> BN (folds into it), causal stride 3 with 3
    groups tanh, same stride 2 with 2 groups; GlobalAveragePooling1D, Dense."""
    return keras.Sequential(
        [
            keras.Input((23, 5), name="sequence"),
            layers.Conv1D(7, 3, strides=2, name="valid_s2"),
            layers.Conv1D(9, 3, dilation_rate=2, padding="same", activation="relu", name="same_d2"),
            layers.Conv1D(6, 4, dilation_rate=3, padding="causal", use_bias=False, name="causal_d3"),
            layers.BatchNormalization(name="causal_bn"),
            layers.Conv1D(6, 2, strides=3, padding="causal", groups=3, activation="tanh", name="causal_g3_s3"),
            layers.Conv1D(8, 3, strides=2, padding="same", groups=2, name="same_g2_s2"),
            layers.GlobalAveragePooling1D(name="pool"),
            layers.Dense(4, name="dense"),
        ],
        name="encoder",
    )


def conv1d_ids_encoder() -> keras.Model:
    """Token ids of any length: Embedding(mask_zero=True) -> Conv1D causal relu -> Conv1D
    same stride 2 (Keras 3 warns that Conv1D does not support masking and drops the mask:
    both convolutions and the pooling read every step) -> GlobalAveragePooling1D -> Dense."""
    return keras.Sequential(
        [
            keras.Input((None,), dtype="int32", name="ids"),
            layers.Embedding(31, 6, mask_zero=True, name="embedding"),
            layers.Conv1D(5, 3, padding="causal", activation="relu", name="causal"),
            layers.Conv1D(7, 2, strides=2, padding="same", name="same_s2"),
            layers.GlobalAveragePooling1D(name="pool"),
            layers.Dense(4, name="dense"),
        ],
        name="encoder",
    )


def randomize_batch_norm(model: keras.Model, seed: int) -> None:
    """Give every BatchNormalization layer of `model` non-trivial weights: gamma uniform
    [0.5, 1.5), beta normal(0, 0.3), moving_mean normal(0, 0.5), moving_variance uniform
    [0.3, 2.0). A layer with scale=False has no gamma, one with center=False no beta; the
    variables are told apart by name, in the layer's own order."""
    rng = np.random.default_rng(seed)
    draw = {
        "gamma": lambda n: rng.uniform(0.5, 1.5, n),
        "beta": lambda n: rng.normal(0.0, 0.3, n),
        "moving_mean": lambda n: rng.normal(0.0, 0.5, n),
        "moving_variance": lambda n: rng.uniform(0.3, 2.0, n),
    }
    found = 0
    for layer in model.layers:
        if not isinstance(layer, layers.BatchNormalization):
            continue
        names = [v.name for v in layer.weights]
        expected = [n for n, on in (("gamma", layer.scale), ("beta", layer.center)) if on]
        expected += ["moving_mean", "moving_variance"]
        if names != expected:
            raise SystemExit(f"{layer.name}: variables {names}, expected {expected}")
        shapes = [w.shape for w in layer.get_weights()]
        layer.set_weights(
            [draw[n](s).astype(np.float32) for n, s in zip(names, shapes, strict=True)]
        )
        found += 1
    if found == 0:
        raise SystemExit(f"{model.name}: no BatchNormalization layer")


def koch_twin(encoder: keras.Model, name: str) -> keras.Model:
    """Koch et al.'s head: a Lambda |a - b| (Python code) and a trained Dense(1, sigmoid)."""
    shape = encoder.inputs[0].shape[1:]
    a = keras.Input(shape, name="input_a")
    b = keras.Input(shape, name="input_b")
    diff = layers.Lambda(
        lambda v: __import__("keras").ops.abs(v[0] - v[1]), output_shape=(4,), name="l1_distance"
    )([encoder(a), encoder(b)])
    score = layers.Dense(1, activation="sigmoid", name="score")
    out = score(diff)
    kernel, bias = score.get_weights()
    score.set_weights([kernel * 4.0, bias - 0.5])
    return keras.Model([a, b], out, name=name)


@keras.saving.register_keras_serializable(package="faces")
class L2Normalize(layers.Layer):
    """A face-verification model's own L2-normalisation layer (a registered custom class,
    as published FaceNet-style twins define it): x / max(||x||, 1e-12) along `axis`."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, x):
        return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=self.axis, keepdims=True), 1e-24))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def contrastive_twin() -> keras.Model:
    """keras.io's "Image similarity estimation using a Siamese Network with a contrastive
    loss": the tower (BatchNormalization, tanh convs, average pools), a Lambda euclidean
    distance, then BatchNormalization -> Dense(1, sigmoid) after it."""
    tower = keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.BatchNormalization(name="bn_in"),
            layers.Conv2D(4, (5, 5), activation="tanh", name="conv_1"),
            layers.AveragePooling2D(pool_size=(2, 2), name="pool_1"),
            layers.Conv2D(16, (5, 5), activation="tanh", name="conv_2"),
            layers.AveragePooling2D(pool_size=(2, 2), name="pool_2"),
            layers.Flatten(name="flatten"),
            layers.BatchNormalization(name="bn_flat"),
            layers.Dense(10, activation="tanh", name="embedding"),
        ],
        name="tower",
    )
    randomize_batch_norm(tower, 132)
    a = keras.Input((28, 28, 1), name="input_1")
    b = keras.Input((28, 28, 1), name="input_2")
    distance = layers.Lambda(euclidean_distance, output_shape=(1,), name="merge_layer")([tower(a), tower(b)])
    normal = layers.BatchNormalization(name="head_bn")(distance)
    out = layers.Dense(1, activation="sigmoid", name="head_dense")(normal)
    model = keras.Model([a, b], out, name="contrastive_twin")
    randomize_batch_norm(model, 133)
    return model


def face_twin() -> keras.Model:
    """A face-verification twin as published ones are built: Conv2D + BatchNormalization
    blocks, GlobalAveragePooling2D, Dense, the model's own L2Normalize class, and a Dot
    head (cosine similarity of the unit embeddings)."""
    encoder = keras.Sequential(
        [
            keras.Input((16, 16, 3), name="face"),
            layers.Conv2D(8, 3, use_bias=False, name="conv_1"),
            layers.BatchNormalization(name="bn_1"),
            layers.ReLU(name="relu_1"),
            layers.MaxPooling2D(name="pool_1"),
            layers.Conv2D(12, 3, padding="same", name="conv_2"),
            layers.BatchNormalization(name="bn_2"),
            layers.ReLU(name="relu_2"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(6, name="embedding"),
            L2Normalize(axis=-1, name="l2_normalize"),
        ],
        name="face_encoder",
    )
    randomize_batch_norm(encoder, 134)
    a = keras.Input((16, 16, 3), name="face_a")
    b = keras.Input((16, 16, 3), name="face_b")
    out = layers.Dot(axes=1, name="similarity")([encoder(a), encoder(b)])
    return keras.Model([a, b], out, name="face_twin")


def mlp_head_twin() -> keras.Model:
    """A head of ordinary layers: Subtract and Multiply of the embeddings, Concatenate,
    Dense(6, relu) -> Dense(1) (a linear score)."""
    encoder = keras.Sequential(
        [keras.Input((6,), name="features"), layers.Dense(5, activation="tanh", name="dense")], name="encoder"
    )
    a = keras.Input((6,), name="input_a")
    b = keras.Input((6,), name="input_b")
    ea, eb = encoder(a), encoder(b)
    diff = layers.Subtract(name="diff")([ea, eb])
    prod = layers.Multiply(name="prod")([ea, eb])
    both = layers.Concatenate(name="both")([diff, prod])
    hidden = layers.Dense(6, activation="relu", name="hidden")(both)
    out = layers.Dense(1, name="score")(hidden)
    return keras.Model([a, b], out, name="mlp_head_twin")


def cosine_twin() -> keras.Model:
    """Dot(normalize=True): the cosine similarity of two raw embeddings."""
    encoder = keras.Sequential(
        [keras.Input((6,), name="features"), layers.Dense(7, name="dense")], name="encoder"
    )
    a = keras.Input((6,), name="input_a")
    b = keras.Input((6,), name="input_b")
    out = layers.Dot(axes=-1, normalize=True, name="cosine")([encoder(a), encoder(b)])
    return keras.Model([a, b], out, name="cosine_twin")


def nested_blocks_encoder() -> keras.Model:
    """ConvNeXt-style: Sequential blocks (a stem and a downsampling block, as
    keras.applications.ConvNeXt builds them) nested in a Functional encoder."""
    x = keras.Input((8, 8, 3), name="image")
    stem = keras.Sequential(
        [layers.Conv2D(4, 2, strides=2, name="stem_conv"), layers.LayerNormalization(epsilon=1e-6, name="stem_ln")],
        name="stem",
    )
    down = keras.Sequential(
        [layers.LayerNormalization(epsilon=1e-6, name="down_ln"), layers.Conv2D(6, 2, strides=2, name="down_conv")],
        name="downsampling_block",
    )
    y = stem(x)
    y = layers.Add(name="residual")([y, layers.Conv2D(4, 3, padding="same", activation="gelu", name="block_conv")(y)])
    y = layers.GlobalAveragePooling2D(name="gap")(down(y))
    return keras.Model(x, y, name="encoder")


def padded_sequences(seed: int, lengths: list[int], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal [PAIRS, steps, 8], each row zero after its length (Masking skips
    those steps; the right twin's lengths are the left's rotated by one); the left twin's
    row 3 also has an all-zero step inside it (t = 1), which Masking skips too."""
    left, right = pair_inputs(seed, (steps, 8))
    for row in range(PAIRS):
        left[row, lengths[row] :] = 0.0
        right[row, lengths[(row + 1) % PAIRS] :] = 0.0
    left[3, 1] = 0.0
    return left, right


def twin(encoder: keras.Model, head, name: str) -> keras.Model:
    shape = encoder.inputs[0].shape[1:]
    a = keras.Input(shape, name="input_a")
    b = keras.Input(shape, name="input_b")
    ea = encoder(a)
    eb = encoder(b)
    return keras.Model([a, b], head([ea, eb]), name=name)


def layers_head_twin(encoder: keras.Model, name: str) -> keras.Model:
    shape = encoder.inputs[0].shape[1:]
    a = keras.Input(shape, name="input_a")
    b = keras.Input(shape, name="input_b")
    ea = encoder(a)
    eb = encoder(b)
    diff = layers.Subtract(name="diff")([ea, eb])
    sq = layers.Multiply(name="sq_diff")([diff, diff])
    score = layers.Dense(1, activation="sigmoid", name="score")
    out = score(sq)
    # Squared differences of random-init embeddings are tiny; scale the head's kernel so the
    # sigmoid outputs spread well away from 0.5 and a wrong head shows in the comparison.
    kernel, bias = score.get_weights()
    score.set_weights([kernel * 200.0, bias + 0.1])
    return keras.Model([a, b], out, name=name)


# --------------------------------------------------------------------------- writing


def pair_inputs(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((PAIRS, *shape)).astype(np.float32)
    right = rng.standard_normal((PAIRS, *shape)).astype(np.float32)
    return left, right


def pixel_inputs(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-like values, |standard normal| x 60 (0 to ~200), for models that rescale."""
    left, right = pair_inputs(seed, shape)
    return (np.abs(left) * 60).astype(np.float32), (np.abs(right) * 60).astype(np.float32)


def image_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like values in [0, 1)."""
    rng = np.random.default_rng(seed)
    left = rng.random((PAIRS, 28, 28, 1), dtype=np.float32)
    right = rng.random((PAIRS, 28, 28, 1), dtype=np.float32)
    return left, right


def reload(path: Path) -> keras.Model:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras.models.load_model(path, safe_mode=False, compile=False)


def run_model(model: keras.Model, left: np.ndarray, right: np.ndarray, encoder_only: bool):
    if encoder_only:
        ea = np.asarray(model.predict(left, verbose=0), np.float32)
        eb = np.asarray(model.predict(right, verbose=0), np.float32)
        d = ea - eb
        return np.sqrt(np.sum(d * d, axis=tuple(range(1, d.ndim)))).astype(np.float32)
    return np.asarray(model.predict([left, right], verbose=0), np.float32)


def save_and_check(
    model: keras.Model,
    out: Path,
    name: str,
    left: np.ndarray,
    right: np.ndarray,
    *,
    encoder_only: bool = False,
    formats: tuple[str, ...] = ("keras",),
) -> None:
    expected = run_model(model, left, right, encoder_only)
    result = None
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        if path.exists():
            path.unlink()
        with warnings.catch_warnings():
            # Keras warns that .h5 is a legacy format; that is the point here.
            warnings.simplefilter("ignore")
            model.save(path)
        got = run_model(reload(path), left, right, encoder_only)
        if not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
            raise SystemExit(f"{path}: reloaded output {got} != in-memory output {expected}")
        if result is None:
            result = got
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    np.save(out / f"{name}.left.npy", left)
    np.save(out / f"{name}.right.npy", right)
    np.save(out / f"{name}.keras_out.npy", result)


README = """\
# Keras-saved model files

Written by `tools/make_keras_files.py` (Keras @KERAS@, backend jax, h5py @H5PY@):

    KERAS_BACKEND=jax python tools/make_keras_files.py

Every model file here was written by Keras itself (`model.save`), reloaded by
`keras.models.load_model(path, safe_mode=False)` and run on NAME.left.npy / NAME.right.npy
(float32, 4 pairs); NAME.keras_out.npy (float32) is the reloaded model's output. A `.h5`
file shares the `.npy` files of the `.keras` file of the same NAME.

| file | format | architecture | shared encoder | head | NAME.keras_out.npy |
| --- | --- | --- | --- | --- | --- |
| cnn_twin.keras | Keras 3 zip | Functional `cnn_twin`: InputLayer `input_a`, `input_b` [28, 28, 1] -> `encoder` (called twice) -> `distance` | Sequential `encoder`: InputLayer [28, 28, 1], Conv2D 8 3x3 relu, MaxPooling2D 2, Conv2D 16 3x3 relu, MaxPooling2D 2, Flatten, Dense 32 relu (layer names as models/cnn: conv2d, max_pooling2d, conv2d_1, max_pooling2d_1, flatten, dense) | Lambda `distance` over a Python `lambda` (bytecode, `"class_name": "__lambda__"`): sqrt(max(sum((a-b)^2, axis=1, keepdims), 1e-7)) | [4, 1] twin output |
| cnn_twin.h5 | legacy HDF5 (Keras 2 layout) | same model, same weights | same | same | same file as cnn_twin.keras |
| cnn_encoder.keras | Keras 3 zip | the Sequential `encoder` alone | (the model itself) | none | [4] euclidean distance between encoder(left) and encoder(right), no epsilon |
| cnn_encoder.h5 | legacy HDF5 | same | same | none | same file as cnn_encoder.keras |
| cnn_head.keras | Keras 3 zip | Functional `cnn_head`: `input_a`, `input_b` [28, 28, 1] -> `encoder` (called twice) -> layers head | Sequential `encoder`, same architecture as cnn_twin (other weights) | Subtract `diff` (a - b) -> Multiply `sq_diff` (diff * diff) -> Dense `score` (32 -> 1, sigmoid; kernel scaled x200 and bias +0.1 after init) | [4, 1] twin output (probability) |
| lstm_twin.keras, lstm_twin.h5 | Keras 3 zip; legacy HDF5 | Functional `lstm_twin`: `input_a`, `input_b` [None, 8] (time dim None; inputs have T = 7) -> `encoder` -> `distance` | Sequential `encoder`: InputLayer [None, 8], LSTM 16 (tanh/sigmoid, last state only), Dense 8 linear | Lambda `distance` over the registered function `euclidean_distance` (`"function": {"module": "builtins", "class_name": "function", "config": "siamese_wgpu>euclidean_distance", "registered_name": "function"}`): sqrt(max(sum((a-b)^2, axis=1, keepdims), 1e-7)) | [4, 1] twin output |
| mha_twin.keras, mha_twin.h5 | Keras 3 zip; legacy HDF5 | Functional `mha_twin`: `input_a`, `input_b` [10, 16] -> `encoder` -> `distance` | Functional `encoder`: InputLayer `tokens` [10, 16], MultiHeadAttention `mha` (2 heads, key_dim 8, self-attention mha(x, x)), Add `residual` (x + attn), LayerNormalization `layer_norm` (eps 1e-3), GlobalAveragePooling1D `pool`, Dense `dense` 8 linear | Lambda `distance` over `euclidean_distance`, as lstm_twin | [4, 1] twin output |
| koch_twin.keras, koch_twin.h5 | Keras 3 zip; legacy HDF5 | Functional `koch_twin`: `input_a`, `input_b` [6] -> `encoder` -> `l1_distance` -> `score` | Sequential `encoder`: InputLayer `features` [6], Dense `dense` 4 tanh | Lambda `l1_distance` over a Python `lambda`: abs(a - b), then Dense `score` (4 -> 1, sigmoid; kernel x4, bias -0.5 after init): a trained layer after a Lambda, which runs with `--lambda abs-diff` (never dropped) | [4, 1] twin output (probability) |
| contrastive_twin.keras, contrastive_twin.h5 | Keras 3 zip; legacy HDF5 | Functional `contrastive_twin`: `input_1`, `input_2` [28, 28, 1] -> `tower` -> `merge_layer` -> `head_bn` -> `head_dense` | Sequential `tower` (keras.io contrastive tutorial): BatchNormalization, Conv2D 4 5x5 tanh, AveragePooling2D, Conv2D 16 5x5 tanh, AveragePooling2D, Flatten, BatchNormalization, Dense 10 tanh | Lambda `merge_layer` (registered `euclidean_distance`) -> BatchNormalization `head_bn` -> Dense `head_dense` (1, sigmoid); every BatchNormalization with random statistics | [4, 1] twin output (probability) |
| face_twin.h5, face_twin.keras | legacy HDF5; Keras 3 zip | Functional `face_twin`: `face_a`, `face_b` [16, 16, 3] -> `face_encoder` -> `similarity` | Sequential `face_encoder`: Conv2D 8 3x3 (no bias), BatchNormalization, ReLU, MaxPooling2D, Conv2D 12 3x3 same, BatchNormalization, ReLU, GlobalAveragePooling2D, Dense 6, registered custom class `faces>L2Normalize` (axis -1) | Dot `similarity` (axes 1): cosine similarity of unit embeddings | [4, 1] twin output (similarity) |
| mlp_head_twin.keras, mlp_head_twin.h5 | Keras 3 zip; legacy HDF5 | Functional `mlp_head_twin`: `input_a`, `input_b` [6] -> `encoder` -> `diff`, `prod` -> `both` -> `hidden` -> `score` | Sequential `encoder`: Dense 5 tanh | Subtract `diff`, Multiply `prod`, Concatenate `both`, Dense `hidden` 6 relu, Dense `score` 1 (linear) | [4, 1] twin output (score) |
| nested_blocks.keras, nested_blocks.h5 | Keras 3 zip; legacy HDF5 | Functional `encoder`: `image` [8, 8, 3] -> Sequential `stem` (Conv2D 4 2x2 stride 2, LayerNormalization) -> Add(x, Conv2D 4 3x3 same gelu) -> Sequential `downsampling_block` (LayerNormalization, Conv2D 6 2x2 stride 2) -> GlobalAveragePooling2D | (encoder only) | - | [4] euclidean distance of the encoder outputs |
| cosine_twin.keras | Keras 3 zip | Functional `cosine_twin`: `input_a`, `input_b` [6] -> `encoder` -> `cosine` | Sequential `encoder`: Dense 7 | Dot `cosine` (axes -1, normalize=True) | [4, 1] twin output (cosine similarity) |
| masked_lstm.keras | Keras 3 zip (no .h5: Keras cannot reload its legacy file of it) | Functional `encoder`: InputLayer `sequence` [None, 8], NotEqual `not_equal` and Any `any` (operation nodes Keras 3 records for the mask: any(x != 0, axis=-1), fed to the LSTM's `mask` argument), Masking `masking` (mask_value 0), LSTM `lstm` 4 | (the model itself) | none | [4] euclidean distance between encoder(left) and encoder(right), no epsilon |
| masked_lstm_twin.keras | Keras 3 zip | Functional `masked_lstm_twin`: `input_a`, `input_b` [None, 8] -> `encoder` -> `distance` | the Functional `encoder` of masked_lstm.keras (same weights) | Lambda `distance` over `euclidean_distance`, as lstm_twin | [4, 1] twin output |
| bn_cnn.keras | Keras 3 zip | Sequential `encoder`: InputLayer `image` [11, 13, 3], Conv2D `conv2d` 7 3x3 valid, no bias, linear; BatchNormalization `batch_normalization` (eps 1e-3); Activation `activation` relu; Conv2D `conv2d_1` 6 3x3 same, bias, linear; BatchNormalization `batch_normalization_1` (scale=False: no gamma); MaxPooling2D `max_pooling2d` 2; Flatten `flatten` (120); BatchNormalization `batch_normalization_2` (center=False: no beta); Dense `dense` 5 linear; BatchNormalization `batch_normalization_3` (eps 0.01) | (the model itself) | none | [4] euclidean distance between encoder(left) and encoder(right), no epsilon |
| bn_cnn.h5 | legacy HDF5 | same | same | none | same file as bn_cnn.keras |
| bn_dense.keras | Keras 3 zip | Sequential `encoder`: InputLayer `features` [10], BatchNormalization `batch_normalization` (on the input; eps 1e-3), Dense `dense` 9 relu, BatchNormalization `batch_normalization_1` (momentum 0.9, eps 1e-5), Dense `dense_1` 4 linear | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| bn_functional.keras | Keras 3 zip | Functional `encoder`: InputLayer `image` [9, 9, 2], Conv2D `conv2d` 5 3x3 valid, bias, linear (x); BatchNormalization `batch_normalization` (eps 1e-3) of x; Add `residual` (x + bn(x): the conv output has two readers, so the normalization cannot be folded into the conv); GlobalAveragePooling2D `pool`; Dense `dense` 3 linear | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| prep_config.keras | Keras 3 zip | Functional `encoder`: InputLayer `image` [10, 12, 3], Rescaling `rescaling` (1/127.5, offset -1), Normalization `normalization` (mean [0.1, -0.2, 0.05], variance [0.3, 0.5, 0.2] in the config), Conv2D `conv2d` 4 3x3 relu, GlobalAveragePooling2D `pool`, Dense `dense` 3, Normalization `denormalize` (invert=True, mean [1, 2, 3], variance [4, 0.25, 1]) | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| prep_adapted.keras | Keras 3 zip | Sequential `encoder`: InputLayer `image` [10, 12, 3], Normalization `normalization` (adapted on 64 random images: mean, variance and an int64 count are weights), Rescaling `rescaling` (per channel [2, 1, 0.5], offset 0.25), Conv2D `conv2d` 4 3x3 relu, GlobalAveragePooling2D `pool`, Dense `dense` 3 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| pad_stem.keras, pad_stem.h5 | Keras 3 zip; legacy HDF5 | Functional `encoder`: InputLayer `image` [17, 19, 3], ZeroPadding2D `conv1_pad` (3), Conv2D `conv1_conv` 8 7x7 stride 2 valid no bias, BatchNormalization `conv1_bn` (eps 1.001e-5), Activation `conv1_relu`, ZeroPadding2D `pool1_pad` ((1, 1), (1, 1)), MaxPooling2D `pool1_pool` 3 stride 2, ZeroPadding2D `asym_pad` ((0, 1), (2, 0)), Conv2D `conv2` 4 3x3, Cropping2D `crop` ((1, 0), (0, 1)), GlobalAveragePooling2D `pool`, Dense `dense` 3 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| act_mix.keras, act_mix.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `features` [12], Dense `dense` 10, ReLU `relu6_layer` (max_value 6), Dense `dense_hard_silu` 9 hard_silu, Dense `dense_mish` 8 mish, LeakyReLU `leaky` (negative_slope 0.1), Dense `dense_relu6` 7 relu6, Dense `dense_leaky` 6 leaky_relu (slope 0.2), ReLU `relu_slope` (negative_slope 0.05), Dense `dense_out` 4 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| dw_mbv2.keras, dw_mbv2.h5 | Keras 3 zip; legacy HDF5 | Functional `encoder`: InputLayer `image` [13, 11, 7]; block 1: Conv2D `b1_expand` 21 1x1 no bias, BatchNormalization `b1_expand_bn`, ReLU `b1_expand_relu` (max_value 6), DepthwiseConv2D `b1_dw` 3x3 same no bias, BN `b1_dw_bn`, ReLU6 `b1_dw_relu`, Conv2D `b1_project` 7 1x1 no bias, BN `b1_project_bn`, Add `b1_add` (input + block); block 2: Conv2D `b2_expand` 14 1x1, BN, ReLU6, ZeroPadding2D `b2_pad` ((0, 1), (0, 1)), DepthwiseConv2D `b2_dw` 3x3 stride 2 valid no bias, BN, ReLU6, Conv2D `b2_project` 13 1x1, BN `b2_project_bn`; DepthwiseConv2D `dw_same_s2` 3x3 stride 2 same depth_multiplier 2 bias relu; DepthwiseConv2D `dw_dilated` 3x3 dilation 2 same bias; GlobalAveragePooling2D `pool`; Dense `dense` 5. Every BN: epsilon 1e-3, random statistics | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| dw_separable.keras, dw_separable.h5 | Keras 3 zip; legacy HDF5 | Functional `encoder`: InputLayer `image` [12, 13, 5]; Conv2D `res_conv` 8 1x1 stride 2 same no bias -> BN `res_bn` (residual); SeparableConv2D `sep1` 8 3x3 same depth_multiplier 2 no bias, BN `sep1_bn`, Activation `sep1_act` relu, SeparableConv2D `sep2` 8 3x3 same no bias, BN `sep2_bn`, MaxPooling2D `pool1` 3 stride 2 same, Add `add` (with the residual); SeparableConv2D `sep3` 6 3x2 stride 2 valid depth_multiplier 3 bias relu; GlobalAveragePooling2D `pool` | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| dw_grouped.keras, dw_grouped.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `image` [9, 10, 6], Conv2D `g3` 12 3x3 groups 3 dilation 2 same relu, Conv2D `g2` 8 3x2 stride 2 groups 2 valid, BatchNormalization `g2_bn`, Conv2D `g2_pointwise` 16 1x1 groups 2 tanh, GlobalAveragePooling2D `pool`, Dense `dense` 4 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| merge_ops.keras | Keras 3 zip | Functional `merge_ops`: InputLayer `pixels` [7, 9, 3], Conv2D `stem`, MobileNetV3's own `_se_block` (GlobalAveragePooling2D keepdims, Conv 1×1, ReLU, Conv 1×1, hard_sigmoid as the operation nodes `x + 3.0` and `* (1/6)` around ReLU(6), Multiply [N,1,1,C]·[N,H,W,C]), Concatenate on channels and on rows, Reshape, Subtract, Average of 3, Maximum, Minimum of 3, the operation nodes TrueDivide, `2.0 - x`, Maximum / Minimum with a number, Negative, Add of two tensors, Reshape (-1, 12), GlobalAveragePooling1D, Dense `embedding` 5 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| rearrange.keras, rearrange.h5 | Keras 3 zip; legacy HDF5 | Functional `rearrange`: InputLayer `features` [6], Dense 5 tanh, RepeatVector 4, Permute (2, 1), Dense 3, Permute, Reshape (3, 5, 1), Permute (3, 1, 2), Flatten | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| seq_pool.keras, seq_pool.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `sequence` [13, 5], Dense `dense` 7 relu, MaxPooling1D `max_pool` 2, AveragePooling1D `avg_pool` 3 stride 2 same, MaxPooling1D `max_pool_same` 2 stride 1 same, AveragePooling1D `avg_pool_valid` 2 stride 1, GlobalMaxPooling1D `global_max` (keepdims), Dense `dense_softmax` 6 softmax, GlobalAveragePooling1D `global_avg` (keepdims), Dense `dense_log_softmax` 4 log_softmax, GlobalMaxPool1D `global_max_flat` | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| misc_cnn.keras, misc_cnn.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `image` [9, 11, 3], Conv2D `conv2d` 6 3x3, PReLU `prelu_channels` (shared_axes [1, 2]: alpha [1, 1, 6]), Conv2D `conv2d_1` 5 3x3 same, ELU `elu` (alpha 0.7), ReLU `relu_mixed` (max_value 4, threshold 0.5, negative_slope 0.1), PReLU `prelu_full` (alpha [7, 9, 5]), ReLU `relu_threshold` (threshold 0.3), ReLU `relu_cap` (max_value 2.5), GlobalMaxPooling2D `global_max` (keepdims), Dense `dense` 7, Softmax `softmax` (axis -1), Flatten `flatten`, Dense `dense_1` 6, UnitNormalization `unit_norm` | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| softmax_axes.keras | Keras 3 zip (no .h5: Keras 3.15 reloads its legacy file of it with axis -1 where the config lists several axes) | Sequential `encoder`: InputLayer `image` [6, 7, 4], Conv2D `conv2d` 5 1x1, Softmax `softmax_hw` (axis (1, 2)), Conv2D `conv2d_1` 3 1x1 (kernel x40), Softmax `softmax_h` (axis 1), UnitNormalization `unit_norm_wc` (axis (2, 3)), GlobalAveragePooling2D `global_avg` (keepdims), Conv2D `conv2d_2` 5 1x1, GlobalMaxPool2D `global_max`, Dense `dense` 4 (kernel x30) | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| layer_scale.keras, layer_scale.h5 | Keras 3 zip; legacy HDF5 | Functional `encoder`: InputLayer `image` [7, 6, 5], Conv2D `conv2d` 5 3x3 same, LayerNormalization `layer_norm` (eps 1e-6), Dense `pointwise_1` 12 gelu, Dense `pointwise_2` 5, ConvNeXt's LayerScale `layer_scale` (init 0.5, projection_dim 5; gamma uniform [0.2, 1.5) after the build; legacy .h5 names it `layer_scale/variable`), ConvNeXt's StochasticDepth `stochastic_depth` (0.1), Add `residual` (input + block), GlobalAveragePooling2D `pool`, Dense `dense` 4 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| conv1d.keras, conv1d.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `sequence` [23, 5], Conv1D `valid_s2` 7 k3 stride 2 valid, Conv1D `same_d2` 9 k3 dilation 2 same relu, Conv1D `causal_d3` 6 k4 dilation 3 causal no bias, BatchNormalization `causal_bn` (random statistics), Conv1D `causal_g3_s3` 6 k2 stride 3 causal groups 3 tanh, Conv1D `same_g2_s2` 8 k3 stride 2 same groups 2, GlobalAveragePooling1D `pool`, Dense `dense` 4 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| conv1d_ids.keras, conv1d_ids.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `ids` [None] int32, Embedding `embedding` (31 -> 6, mask_zero=True; table x20 after init), Conv1D `causal` 5 k3 causal relu, Conv1D `same_s2` 7 k2 stride 2 same (Keras drops the mask at the first Conv1D), GlobalAveragePooling1D `pool` (over every step), Dense `dense` 4 | (the model itself) | none | [4] euclidean distance, as bn_cnn |

| mask_zero_lstm.keras, mask_zero_lstm.h5 | Keras 3 zip; legacy HDF5 | Sequential `encoder`: InputLayer `ids` [None] int32, Embedding `embedding` (37 -> 7, mask_zero=True), LSTM `lstm` 5 (no mask nodes in a Sequential config) | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| mask_zero_bigru.keras | Keras 3 zip (no .h5: Keras cannot reload it) | Functional `encoder`: InputLayer `ids` [None] int32, Embedding `embedding` (37 -> 7, mask_zero=True), NotEqual `not_equal_N` (Keras numbers it; ids != 0, the operation node Keras 3 records for the mask, fed to the GRU's `mask`), Dense `dense` 5 tanh (passes the mask on), Bidirectional `bigru` (GRU 4, concat) | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| mask_zero_pool.keras | Keras 3 zip | Functional `encoder`: InputLayer `ids` [None] int32, Embedding `embedding` (37 -> 7, mask_zero=True), NotEqual `not_equal_N` (ids != 0), GlobalAveragePooling1D `pool` (mean over the real steps), Dense `dense` 3 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| emb_lstm.keras, emb_gru.keras | Keras 3 zip | Functional `encoder`: InputLayer `ids` [None] int32, Embedding `embedding` (50 -> 8), LSTM `lstm` 6 / GRU `gru` 6 | (the model itself) | none | [4] euclidean distance, as bn_cnn |
| custom_layer.keras | Keras 3 zip | Sequential `encoder`: InputLayer `features` [6], MyDense `my_dense` 7 (a registered subclass of Dense: `"registered_name": "siamese_wgpu>MyDense"`, Dense's config and weights), MyRelu `my_relu` (a registered keras.layers.Layer computing ops.relu), Dense `dense` 4; loads with --custom-layer MyDense=Dense --custom-layer MyRelu=ReLU | (the model itself) | none | [4] euclidean distance, as bn_cnn |

act_mix: standard normal × 4 inputs.

emb_lstm, emb_gru: int32 token ids [4, 5] in 0..50 (0 is an ordinary id: no mask).

mask_zero_*: int32 token ids [4, 9] in 1..37, 0 after each row's length (left 9, 4, 1, 6;
right 3, 9, 5, 1) and left row 3 also 0 at step 1: Keras masks every id-0 step.

custom_layer: standard normal [4, 6] inputs.

merge_ops (no .h5: Keras 3.15 cannot reload operation nodes from one), rearrange: standard normal inputs.

conv1d: standard normal [4, 23, 5]. conv1d_ids: int32 token ids [4, 11] in 1..31, 0 after
each row's length (left 11, 6, 1, 8; right 4, 11, 7, 2) and left row 3 also 0 at step 1;
Keras runs both Conv1D layers and the pooling over every step (Conv1D drops the mask).

seq_pool, misc_cnn, layer_scale: standard normal inputs ([4, 13, 5], [4, 9, 11, 3],
[4, 7, 6, 5]); softmax_axes: standard normal × 3 ([4, 6, 7, 4]). The PReLU alphas of
misc_cnn are uniform [-0.5, 1.0) after the build (zeros at init).

prep_*: |standard normal| × 60 inputs (pixel-like values, 0 to ~200).

Inputs: cnn_* are uniform [0, 1) of shape [4, 28, 28, 1]; lstm_twin standard normal
[4, 7, 8]; mha_twin standard normal [4, 10, 16]; koch_twin standard normal [4, 6];
masked_lstm and masked_lstm_twin (the same files) standard normal [4, 6, 8], zero after
each row's length (left 6, 4, 1, 5; right 4, 1, 5, 6) and left row 3 zero at step 1 too.

bn_*, dw_*: standard normal inputs, [4, 11, 13, 3] (bn_cnn), [4, 10] (bn_dense), [4, 9, 9, 2]
(bn_functional), [4, 13, 11, 7] (dw_mbv2), [4, 12, 13, 5] (dw_separable), [4, 9, 10, 6]
(dw_grouped). Every BatchNormalization has random statistics set after the build
(gamma uniform [0.5, 1.5), beta normal(0, 0.3), moving_mean normal(0, 0.5),
moving_variance uniform [0.3, 2.0)), so none is near the identity; inference computes
gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta (gamma 1 when
scale=False, beta 0 when center=False) over the last axis; momentum plays no part.

The `.keras` zips hold `metadata.json`, `config.json` and `model.weights.h5` (entries
stored, not deflated). Weights, inputs and outputs are deterministic across
regenerations, and so are the .h5 bytes when made from the same checkout path (the
Python-lambda bytecode records the script's path); the .keras bytes are not (save date
in metadata.json, zip entry times).

## Where the weights are

`.keras` (`model.weights.h5`): one group per saveable object, named after its class in
snake case (not after the layer name), numbered `_1`, `_2`, ... among siblings in
`model.layers` order; each has a `vars` group whose datasets `0`, `1`, ... are the
layer's variables in creation order, and whose `name` attribute (vlen string) is the
layer's real name. A Sequential's `layers` omits its InputLayer; a Functional's includes it.

    layers/sequential/layers/conv2d/vars/0          cnn_twin: encoder conv kernel [3,3,1,8]
    layers/sequential/layers/conv2d/vars/1          its bias [8]
    layers/sequential/layers/lstm/cell/vars/0,1,2   lstm_twin: kernel [8,64], recurrent_kernel [16,64], bias [64]
    layers/functional/layers/multi_head_attention/{query,key,value}_dense/vars/0,1
                                                    mha_twin: kernel [16,2,8], bias [2,8]
    layers/functional/layers/multi_head_attention/output_dense/vars/0,1   [2,8,16], [16]
    layers/functional/layers/layer_normalization/vars/0,1                 gamma [16], beta [16]
    layers/dense/vars/0,1                           cnn_head: the head's Dense `score`
    layers/conv2d/vars/0                            cnn_encoder.keras (top-level Sequential)
    layers/batch_normalization/vars/0,1,2,3         bn_*: gamma, beta, moving_mean, moving_variance
    layers/batch_normalization_1/vars/0,1,2         bn_cnn (scale=False): beta, moving_mean, moving_variance [6]
    layers/batch_normalization_2/vars/0,1,2         bn_cnn (center=False): gamma, moving_mean, moving_variance [120]
    layers/batch_normalization_3/vars/0,1,2,3       bn_cnn: gamma, beta, moving_mean, moving_variance [5]
    layers/depthwise_conv2d/vars/0,1                dw_mbv2: DepthwiseConv2D kernel [kh,kw,C,m], bias [C*m]
    layers/separable_conv2d/vars/0,1,2              dw_separable: depthwise_kernel [kh,kw,C,m], pointwise_kernel [1,1,C*m,filters], bias

Legacy `.h5`: root attributes `model_config` (JSON), `keras_version`, `backend`;
`model_weights` has `layer_names` (one per top-level layer), and one group per layer with a
`weight_names` attribute; dataset path = `model_weights/{layer_name}/{weight_name}`, e.g.
`model_weights/encoder/encoder/conv2d/kernel` (Keras 3 weight names are variable paths,
no `:0`; Keras 2 / tf.keras would write `model_weights/encoder/conv2d/kernel:0`).
bn_cnn.h5 (a top-level Sequential): `model_weights/batch_normalization/encoder/batch_normalization/gamma`,
`.../beta`, `.../moving_mean`, `.../moving_variance`; `batch_normalization_1` lacks `gamma`,
`batch_normalization_2` lacks `beta` (the weight names say which variable is which).
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = ap.parse_args()
    if keras.backend.backend() != "jax":
        print("run with KERAS_BACKEND=jax", file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    # 1. CNN twin with a Python-lambda distance head, as .keras and legacy .h5.
    keras.utils.set_random_seed(101)
    enc = cnn_encoder()
    model = twin(enc, lambda_head_python_lambda(), "cnn_twin")
    left, right = image_inputs(1)
    save_and_check(model, out, "cnn_twin", left, right, formats=("keras", "h5"))

    # 2. The same encoder on its own.
    save_and_check(enc, out, "cnn_encoder", left, right, encoder_only=True, formats=("keras", "h5"))

    # 3. CNN twin with a layers-only head.
    keras.utils.set_random_seed(103)
    model = layers_head_twin(cnn_encoder(), "cnn_head")
    left, right = image_inputs(3)
    save_and_check(model, out, "cnn_head", left, right)

    # 4. LSTM twin, time axis None, inputs of T = 7.
    keras.utils.set_random_seed(104)
    model = twin(lstm_encoder(), lambda_head_named_function(), "lstm_twin")
    left, right = pair_inputs(4, (7, 8))
    save_and_check(model, out, "lstm_twin", left, right, formats=("keras", "h5"))

    # 5. Self-attention twin.
    keras.utils.set_random_seed(105)
    model = twin(mha_encoder(), lambda_head_named_function(), "mha_twin")
    left, right = pair_inputs(5, (10, 16))
    save_and_check(model, out, "mha_twin", left, right, formats=("keras", "h5"))

    # 6. Koch-style twin: Lambda |a - b| then a trained Dense (the loader refuses it).
    keras.utils.set_random_seed(106)
    model = koch_twin(dense_encoder(), "koch_twin")
    left, right = pair_inputs(6, (6,))
    save_and_check(model, out, "koch_twin", left, right, formats=("keras", "h5"))

    # 7. Masking -> LSTM in a Functional encoder, alone and in a twin; ragged lengths.
    keras.utils.set_random_seed(107)
    enc = masked_lstm_encoder()
    left, right = padded_sequences(7, [6, 4, 1, 5], 6)
    # No .h5: Keras 3.15 cannot reload its own legacy file of it ("Unknown layer: 'NotEqual'").
    save_and_check(enc, out, "masked_lstm", left, right, encoder_only=True)
    model = twin(enc, lambda_head_named_function(), "masked_lstm_twin")
    save_and_check(model, out, "masked_lstm_twin", left, right)

    # 8. BatchNormalization: after convs (with and without a conv bias), scale=False,
    #    center=False, on a flattened vector, after a Dense, epsilon 0.01.
    keras.utils.set_random_seed(108)
    enc = bn_cnn_encoder()
    randomize_batch_norm(enc, 208)
    left, right = pair_inputs(8, (11, 13, 3))
    save_and_check(enc, out, "bn_cnn", left, right, encoder_only=True, formats=("keras", "h5"))

    # 9. BatchNormalization on the raw input and between Dense layers.
    keras.utils.set_random_seed(109)
    enc = bn_dense_encoder()
    randomize_batch_norm(enc, 209)
    left, right = pair_inputs(9, (10,))
    save_and_check(enc, out, "bn_dense", left, right, encoder_only=True)

    # 10. BatchNormalization whose input has a second reader (Add), in a Functional encoder.
    keras.utils.set_random_seed(110)
    enc = bn_functional_encoder()
    randomize_batch_norm(enc, 210)
    left, right = pair_inputs(10, (9, 9, 2))
    save_and_check(enc, out, "bn_functional", left, right, encoder_only=True)

    # 11. Rescaling and Normalization inside the model: statistics in the config, then adapted.
    keras.utils.set_random_seed(111)
    enc = prep_config_encoder()
    left, right = pixel_inputs(11, (10, 12, 3))
    save_and_check(enc, out, "prep_config", left, right, encoder_only=True)
    keras.utils.set_random_seed(112)
    enc = prep_adapted_encoder(np.random.default_rng(212))
    left, right = pixel_inputs(12, (10, 12, 3))
    save_and_check(enc, out, "prep_adapted", left, right, encoder_only=True)

    # 12. ZeroPadding2D (folded into a valid conv, or before a max-pool) and Cropping2D.
    keras.utils.set_random_seed(113)
    enc = pad_stem_encoder()
    randomize_batch_norm(enc, 213)
    left, right = pair_inputs(13, (17, 19, 3))
    save_and_check(enc, out, "pad_stem", left, right, encoder_only=True, formats=("keras", "h5"))

    # 13. Activation layers and names with settings (ReLU6, leaky slopes, hard_silu, mish).
    keras.utils.set_random_seed(114)
    enc = act_mix_encoder()
    left, right = pair_inputs(14, (12,))
    left, right = (left * 4).astype(np.float32), (right * 4).astype(np.float32)
    save_and_check(enc, out, "act_mix", left, right, encoder_only=True, formats=("keras", "h5"))

    # 30. Merges with broadcasting and Keras 3 operation nodes (MobileNetV3's squeeze-excite).
    keras.utils.set_random_seed(130)
    enc = merge_ops_encoder()
    left, right = pair_inputs(30, (7, 9, 3))
    # No .h5: Keras 3.15 cannot reload operation nodes from one ("Unknown layer: 'TrueDivide'").
    save_and_check(enc, out, "merge_ops", left, right, encoder_only=True)

    # 31. RepeatVector and Permute.
    keras.utils.set_random_seed(131)
    enc = rearrange_encoder()
    left, right = pair_inputs(31, (6,))
    save_and_check(enc, out, "rearrange", left, right, encoder_only=True, formats=("keras", "h5"))
    # 14. 1-D pooling (MaxPooling1D, AveragePooling1D, global max / average with keepdims) and
    #     the softmax / log_softmax activations of Dense layers.
    keras.utils.set_random_seed(115)
    enc = seq_pool_encoder()
    left, right = pair_inputs(15, (13, 5))
    save_and_check(enc, out, "seq_pool", left, right, encoder_only=True, formats=("keras", "h5"))

    # 15. PReLU (per channel and per value), ELU(alpha), ReLU(max_value, threshold,
    #     negative_slope), GlobalMaxPooling2D(keepdims), Softmax, UnitNormalization.
    keras.utils.set_random_seed(116)
    enc = misc_cnn_encoder()
    randomize_named(enc, ["prelu_channels", "prelu_full"], 216, -0.5, 1.0)
    left, right = pair_inputs(16, (9, 11, 3))
    save_and_check(enc, out, "misc_cnn", left, right, encoder_only=True, formats=("keras", "h5"))

    # 16. Softmax / UnitNormalization over other and several axes. No .h5: Keras 3.15 reloads
    #     its legacy file of it with axis -1 where the config lists several axes.
    keras.utils.set_random_seed(117)
    enc = softmax_axes_encoder()
    left, right = pair_inputs(17, (6, 7, 4))
    left, right = (left * 3).astype(np.float32), (right * 3).astype(np.float32)
    # Softmaxes squash the differences between the twins: larger kernels after them
    # spread the outputs (and the distances) well beyond the tests' tolerance.
    for name, factor in (("conv2d_1", 40.0), ("dense", 30.0)):
        kernel, bias = enc.get_layer(name).get_weights()
        enc.get_layer(name).set_weights([kernel * factor, bias])
    save_and_check(enc, out, "softmax_axes", left, right, encoder_only=True)

    # 17. ConvNeXt's LayerScale and StochasticDepth in a residual block.
    keras.utils.set_random_seed(118)
    enc = layer_scale_encoder()
    randomize_named(enc, ["layer_scale"], 218, 0.2, 1.5)
    left, right = pair_inputs(18, (7, 6, 5))
    from keras.src.applications.convnext import LayerScale, StochasticDepth

    # The legacy .h5 loader finds the two classes only in a custom-object scope.
    with keras.utils.custom_object_scope({"LayerScale": LayerScale, "StochasticDepth": StochasticDepth}):
        save_and_check(enc, out, "layer_scale", left, right, encoder_only=True, formats=("keras", "h5"))

    # 18. Depthwise, separable and grouped convolutions (MobileNetV2 / Xception blocks).
    keras.utils.set_random_seed(115)
    enc = mbv2_block_encoder()
    randomize_batch_norm(enc, 215)
    left, right = pair_inputs(15, (13, 11, 7))
    save_and_check(enc, out, "dw_mbv2", left, right, encoder_only=True, formats=("keras", "h5"))
    keras.utils.set_random_seed(116)
    enc = separable_encoder()
    randomize_batch_norm(enc, 216)
    left, right = pair_inputs(16, (12, 13, 5))
    save_and_check(enc, out, "dw_separable", left, right, encoder_only=True, formats=("keras", "h5"))
    keras.utils.set_random_seed(117)
    enc = grouped_encoder()
    randomize_batch_norm(enc, 217)
    left, right = pair_inputs(17, (9, 10, 6))
    save_and_check(enc, out, "dw_grouped", left, right, encoder_only=True, formats=("keras", "h5"))

    # 14. Token ids of any length -> Embedding -> LSTM / GRU (the `siamese pairs` panic).
    for seed, cell, name in [(115, layers.LSTM, "emb_lstm"), (116, layers.GRU, "emb_gru")]:
        keras.utils.set_random_seed(seed)
        enc = token_lstm_encoder(cell)
        rng = np.random.default_rng(seed)
        left, right = (rng.integers(0, 50, (PAIRS, 5)).astype(np.int32) for _ in range(2))
        save_and_check(enc, out, name, left, right, encoder_only=True)

    # 15. Embedding(mask_zero=True): the padding mask to LSTM, Dense -> Bidirectional(GRU),
    #     GlobalAveragePooling1D. Rows of full length and of length 1.
    lengths = [[9, 4, 1, 6], [3, 9, 5, 1]]
    keras.utils.set_random_seed(117)
    left, right = padded_ids(117, 37, 9, lengths)
    save_and_check(mask_zero_lstm_encoder(), out, "mask_zero_lstm", left, right, encoder_only=True, formats=("keras", "h5"))
    keras.utils.set_random_seed(118)
    # No .h5 for the Functional ones: Keras cannot reload them ("Unknown layer: 'NotEqual'").
    save_and_check(mask_zero_bigru_encoder(), out, "mask_zero_bigru", left, right, encoder_only=True)
    keras.utils.set_random_seed(119)
    save_and_check(mask_zero_pool_encoder(), out, "mask_zero_pool", left, right, encoder_only=True)

    # 32. Twin heads that run after the encoder: keras.io's contrastive tutorial (Lambda
    #     distance -> BatchNormalization -> Dense(1, sigmoid)), a face-verification twin
    #     (.h5, BatchNorm, a custom L2Normalize class, Dot head), a head of ordinary layers,
    #     and Dot(normalize=True).
    keras.utils.set_random_seed(132)
    left, right = image_inputs(32)
    save_and_check(contrastive_twin(), out, "contrastive_twin", left, right, formats=("keras", "h5"))
    keras.utils.set_random_seed(134)
    left, right = pair_inputs(34, (16, 16, 3))
    # Per-image colour casts: faces of noise alone embed alike (similarities all ~0.99).
    casts = np.random.default_rng(341).normal(0.0, 1.5, (2, PAIRS, 1, 1, 3)).astype(np.float32)
    left, right = left + casts[0], right + casts[1]
    save_and_check(face_twin(), out, "face_twin", left, right, formats=("h5", "keras"))
    keras.utils.set_random_seed(135)
    left, right = pair_inputs(35, (6,))
    save_and_check(mlp_head_twin(), out, "mlp_head_twin", left, right, formats=("keras", "h5"))
    keras.utils.set_random_seed(136)
    left, right = pair_inputs(36, (6,))
    save_and_check(cosine_twin(), out, "cosine_twin", left, right)

    # 33. Sequential blocks nested in a Functional encoder (ConvNeXt's stem and downsampling).
    keras.utils.set_random_seed(137)
    left, right = pair_inputs(37, (8, 8, 3))
    save_and_check(nested_blocks_encoder(), out, "nested_blocks", left, right, encoder_only=True, formats=("keras", "h5"))

    # 16. Registered custom classes that are built-ins (--custom-layer MyDense=Dense, MyRelu=ReLU).
    keras.utils.set_random_seed(120)
    left, right = pair_inputs(20, (6,))
    save_and_check(custom_layer_encoder(), out, "custom_layer", left, right, encoder_only=True)

    # 19. Conv1D: valid / same / causal, strides, dilation, groups, no bias + BN; then over
    #     token ids of any length after Embedding(mask_zero=True), which Conv1D drops.
    keras.utils.set_random_seed(121)
    enc = conv1d_encoder()
    randomize_batch_norm(enc, 221)
    left, right = pair_inputs(21, (23, 5))
    save_and_check(enc, out, "conv1d", left, right, encoder_only=True, formats=("keras", "h5"))
    keras.utils.set_random_seed(122)
    left, right = padded_ids(122, 31, 11, [[11, 6, 1, 8], [4, 11, 7, 2]])
    enc = conv1d_ids_encoder()
    # Embedding init is uniform ±0.05: scaled, the distances are well above the tolerance.
    embedding = enc.get_layer("embedding")
    embedding.set_weights([embedding.get_weights()[0] * 20.0])
    save_and_check(enc, out, "conv1d_ids", left, right, encoder_only=True, formats=("keras", "h5"))

    import h5py

    (out / "README.md").write_text(
        README.replace("@KERAS@", keras.__version__).replace("@H5PY@", h5py.__version__)
    )
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {len(list(out.iterdir()))} files, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
