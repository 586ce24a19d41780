#!/usr/bin/env python3
"""Export a Keras 3 encoder to a siamese-wgpu model directory.

A model directory holds two files:

  model.json         exactly the string Keras 3 returns from ``encoder.to_json()``.
                     The encoder must be a Sequential, or a Functional model whose
                     layers form a single chain (one input, one output, each layer
                     fed by the previous one), starting with an InputLayer; transformer
                     encoders (below) may form a DAG.
  model.safetensors  float32 tensors in Keras layouts: Conv2D kernel (kh, kw, in, out)
                     [HWIO], Dense kernel (in, out), bias (out,). Each tensor is named by
                     its Keras 3 variable path relative to the encoder (``v.path`` with a
                     leading ``{model.name}/`` stripped), which for plain layers is
                     ``{layer.name}/{variable.name}``: ``conv2d/kernel``, ``dense/bias``.
                     Recurrent layers own a cell, so their names have one more level:
                       lstm/lstm_cell/kernel            (in, 4u)  gates i, f, c, o
                       lstm/lstm_cell/recurrent_kernel  (u, 4u)
                       lstm/lstm_cell/bias              (4u,)
                       gru/gru_cell/kernel              (in, 3u)  gates z, r, h
                       gru/gru_cell/recurrent_kernel    (u, 3u)
                       gru/gru_cell/bias                (2, 3u) reset_after=True: [input; recurrent]
                                                        (3u,)   reset_after=False
                       bidirectional/forward_lstm/lstm_cell/kernel, .../backward_lstm/lstm_cell/...
                     (no bias tensor when use_bias=False). Only layers that own weights
                     appear; optimizer state and RNG (SeedGenerator) state are never written.

Supported layers: InputLayer, Conv2D, MaxPooling2D, AveragePooling2D,
GlobalAveragePooling2D, Flatten, Dense, Activation, ReLU, Dropout (channels_last);
and for sequence encoders (input [batch, time, features], time may be None):
Masking (directly after the input), LSTM, GRU, Bidirectional(LSTM|GRU,
merge_mode='concat'), followed by Dense/Activation/ReLU/Dropout/Flatten. Every
recurrent layer but the last must return_sequences=True, the last one False.
Rejected: stateful, return_state, go_backwards=True outside Bidirectional, time_major.
Accepted and irrelevant at inference: dropout/recurrent_dropout, unroll; use_bias=False
and GRU reset_after=True/False are supported. Functional models with Masking serialize
the mask computation as extra op nodes (NotEqual, Any), so build those as Sequential.
Transformer encoders (Functional models whose layers may form a DAG, e.g. residual
connections): InputLayer ([batch, T, F] float, or [batch, T] int feeding an Embedding;
T fixed), MultiHeadAttention (self-attention only: mha(x, x) or mha(x, x, x); no
attention_mask / use_causal_mask / use_gate / sliding_window / output_shape /
value_dim != key_dim; default attention_axes), LayerNormalization (axis -1,
rms_scaling=False), Add (2 inputs), Dense,
Dropout, Activation, GlobalAveragePooling1D (keepdims=False), Embedding (mask_zero=False,
directly after the InputLayer). A model is checked as a transformer encoder when it contains
any of MultiHeadAttention, LayerNormalization, Add, GlobalAveragePooling1D, Embedding; each
layer must be called once, and its inputs must be earlier entries of the layer list.
Their tensors:
  multi_head_attention/query/kernel            (dim, heads, key_dim)   likewise key
  multi_head_attention/query/bias              (heads, key_dim)        likewise key
  multi_head_attention/value/kernel            (dim, heads, key_dim)   value_dim == key_dim
  multi_head_attention/value/bias              (heads, key_dim)
  multi_head_attention/attention_output/kernel (heads, key_dim, dim)
  multi_head_attention/attention_output/bias   (dim,)
  layer_normalization/gamma, /beta             (dim,)  (absent if scale/center=False)
  embedding/embeddings                         (input_dim, output_dim)
Supported activations: linear, relu, sigmoid, tanh, gelu, silu/swish, elu,
softplus, selu; recurrent layers (activation and recurrent_activation): tanh,
sigmoid, hard_sigmoid, relu, linear.

Usage:
  python tools/export_keras.py MODEL.keras OUT_DIR [--encoder LAYER_NAME] [--unsafe] [--no-check]

  --encoder NAME  export the nested sub-model layer NAME (e.g. the shared encoder
                  inside a saved whole Siamese model) instead of the whole model.
  --unsafe        load with safe_mode=False; needed when the file contains Lambda
                  layers (e.g. a Lambda distance head). Only for files you trust.
  --no-check      write the files even if the encoder uses layers/activations the
                  Rust runtime does not support (problems are printed as warnings).

Importable: ``from export_keras import export_encoder; export_encoder(model, out_dir)``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

# Keras' own default backend is TensorFlow; prefer JAX when the caller did not choose.
if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("jax") is not None:
    os.environ["KERAS_BACKEND"] = "jax"

import numpy as np  # noqa: E402

MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"

SUPPORTED_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "MaxPooling2D",
        "AveragePooling2D",
        "GlobalAveragePooling2D",
        "Flatten",
        "Dense",
        "Activation",
        "ReLU",
        "Dropout",
        "Masking",
        "LSTM",
        "GRU",
        "Bidirectional",
    }
)
SUPPORTED_ACTIVATIONS = frozenset(
    {"linear", "relu", "sigmoid", "tanh", "gelu", "silu", "swish", "elu", "softplus", "selu"}
)
# Layers of transformer encoders (Functional DAGs); their presence selects those checks.
TRANSFORMER_ONLY_LAYERS = frozenset(
    {"MultiHeadAttention", "LayerNormalization", "Add", "GlobalAveragePooling1D", "Embedding"}
)
TRANSFORMER_LAYERS = TRANSFORMER_ONLY_LAYERS | {"InputLayer", "Dense", "Dropout", "Activation"}
# MultiHeadAttention sub-layers that own weights (attribute -> Keras 3 sub-layer name).
_MHA_SUBLAYERS = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
RECURRENT_LAYERS = frozenset({"LSTM", "GRU"})
RECURRENT_ACTIVATIONS = frozenset({"tanh", "sigmoid", "hard_sigmoid", "relu", "linear"})
# Layers allowed after the last recurrent layer (operating on [batch, units]).
VECTOR_LAYERS = frozenset({"Dense", "Activation", "ReLU", "Dropout", "Flatten"})
# Op nodes Keras 3 writes into a Functional model's layer list for Masking.
_MASK_OP_NODES = frozenset({"NotEqual", "Any"})


class ExportError(Exception):
    """Raised with a human-readable message when a model cannot be exported."""


# --------------------------------------------------------------------------- checks


def _activation_name(act) -> str:
    if isinstance(act, str):
        return act
    if isinstance(act, dict):  # serialized custom / non-builtin activation
        return str(act.get("config", act.get("class_name", act)))
    return repr(act)


def check_encoder_config(config: dict) -> list[str]:
    """Return a list of problems that would stop the Rust runtime from loading
    the model described by ``json.loads(encoder.to_json())`` (empty = fine)."""
    problems: list[str] = []
    cls = config.get("class_name")
    if cls not in ("Sequential", "Functional"):
        return [
            f"encoder is a {cls!r}; only Sequential or Functional models can be "
            "exported (subclassed models have no usable to_json())"
        ]
    layers = config.get("config", {}).get("layers", [])
    if not layers:
        return ["encoder has no layers"]

    recurrent = any(l.get("class_name") in RECURRENT_LAYERS | {"Bidirectional", "Masking"} for l in layers)
    if not recurrent and any(l.get("class_name") in TRANSFORMER_ONLY_LAYERS for l in layers):
        transformer_problems = _check_transformer(config)
        if transformer_problems is not None:
            return transformer_problems
    if layers[0].get("class_name") != "InputLayer":
        problems.append(
            "first layer is not an InputLayer; build the encoder with keras.Input(shape) "
            "so model.json records the input shape"
        )
    elif recurrent:
        bs = layers[0]["config"].get("batch_shape")
        if not bs or len(bs) != 3 or bs[2] is None:
            problems.append(
                f"InputLayer batch_shape {bs}: a recurrent encoder needs input "
                "[batch, time, features] with a fixed feature size (time may be None)"
            )
    else:
        bs = layers[0]["config"].get("batch_shape")
        if not bs or any(d is None for d in bs[1:]):
            problems.append(f"InputLayer batch_shape {bs} must have fixed non-batch dimensions")

    for i, layer in enumerate(layers):
        lcls = layer.get("class_name")
        lcfg = layer.get("config", {})
        lname = lcfg.get("name", f"#{i}")
        if lcls not in SUPPORTED_LAYERS:
            hint = ""
            if lcls in _MASK_OP_NODES and cls == "Functional":
                hint = (
                    " (Keras writes the mask computation of a Masking layer in a Functional "
                    "model as op nodes; build the recurrent encoder as keras.Sequential)"
                )
            problems.append(f"layer {lname!r}: class {lcls!r} is not supported{hint}")
            continue
        if i > 0 and lcls == "InputLayer":
            problems.append(f"layer {lname!r}: a second InputLayer (only single-input chains)")
        if lcls in RECURRENT_LAYERS:
            problems += _check_recurrent(lname, lcls, lcfg)
            continue
        if lcls == "Bidirectional":
            problems += _check_bidirectional(lname, lcfg)
            continue
        if "activation" in lcfg:
            act = _activation_name(lcfg["activation"])
            if act not in SUPPORTED_ACTIVATIONS:
                problems.append(f"layer {lname!r}: activation {act!r} is not supported")
        if lcfg.get("data_format", "channels_last") != "channels_last":
            problems.append(f"layer {lname!r}: data_format {lcfg['data_format']!r}; only channels_last")
        if lcls == "Conv2D" and lcfg.get("groups", 1) != 1:
            problems.append(f"layer {lname!r}: grouped convolution (groups={lcfg['groups']})")
        if lcls == "GlobalAveragePooling2D" and lcfg.get("keepdims", False):
            problems.append(f"layer {lname!r}: keepdims=True is not supported")

    if recurrent:
        problems += _check_sequence_chain(layers)
    if cls == "Functional":
        problems += _check_functional_chain(config["config"])
    return problems


def _tensor_refs(obj) -> list[list]:
    """keras_history entries ([layer, node_index, tensor_index]) of every
    ``__keras_tensor__`` inside a serialized call argument (lists are searched)."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"]]
        return []
    if isinstance(obj, (list, tuple)):
        return [r for o in obj for r in _tensor_refs(o)]
    return []


def _check_transformer(config: dict) -> list[str] | None:
    """Problems with a transformer encoder (Functional DAG of TRANSFORMER_LAYERS).

    Returns None when the model is not one (a non-Functional model, or a [batch, features]
    input without Embedding): the chain checks then apply and report the transformer
    layers as unsupported there."""
    cls = config.get("class_name")
    cfg = config.get("config", {})
    layers = cfg.get("layers", [])
    if cls != "Functional" or not layers or layers[0].get("class_name") != "InputLayer":
        return None
    icfg = layers[0]["config"]
    bs = icfg.get("batch_shape") or []
    has_embedding = any(l.get("class_name") == "Embedding" for l in layers)
    if len(bs) != 3 and not has_embedding:
        return None
    problems: list[str] = []
    if has_embedding:
        if len(bs) != 2 or bs[1] is None:
            problems.append(f"InputLayer batch_shape {bs}: an Embedding encoder needs input [batch, T] with fixed T")
        if not str(icfg.get("dtype", "")).startswith(("int", "uint")):
            problems.append(f"InputLayer dtype {icfg.get('dtype')!r}: Embedding input must be an integer dtype")
    elif any(d is None for d in bs[1:]):
        problems.append(f"InputLayer batch_shape {bs}: a transformer encoder needs fixed [batch, T, F]")

    ins, outs = cfg.get("input_layers"), cfg.get("output_layers")
    if not (isinstance(ins, list) and len(ins) == 3 and isinstance(ins[0], str)):
        problems.append(f"Functional model must have exactly one input, got input_layers={ins}")
    elif ins[0] != layers[0]["name"]:
        problems.append(f"input {ins[0]!r} is not the first layer {layers[0]['name']!r}")
    if not (isinstance(outs, list) and len(outs) == 3 and isinstance(outs[0], str)):
        problems.append(f"Functional model must have exactly one output, got output_layers={outs}")
    elif outs[0] != layers[-1]["name"]:
        problems.append(f"output {outs[0]!r} is not the last layer {layers[-1]['name']!r}")

    seen = {layers[0]["name"]}
    for i, layer in enumerate(layers[1:], start=1):
        lcls, lcfg = layer.get("class_name"), layer.get("config", {})
        name = layer.get("name", lcfg.get("name", f"#{i}"))
        if lcls not in TRANSFORMER_LAYERS:
            problems.append(
                f"layer {name!r}: class {lcls!r} is not supported in a transformer encoder "
                f"(allowed: {', '.join(sorted(TRANSFORMER_LAYERS))})"
            )
            seen.add(name)
            continue
        if lcls == "InputLayer":
            problems.append(f"layer {name!r}: a second InputLayer (only single-input encoders)")
            continue
        nodes = layer.get("inbound_nodes", [])
        if len(nodes) != 1:
            problems.append(f"layer {name!r} is called {len(nodes)} times (shared layers are not supported)")
            seen.add(name)
            continue
        args, kwargs = nodes[0].get("args", []), dict(nodes[0].get("kwargs", {}))
        refs = _tensor_refs(args)
        if lcls == "MultiHeadAttention":
            for k in ("query", "value", "key"):
                if k in kwargs:
                    refs += _tensor_refs(kwargs.pop(k))
            for k, v in kwargs.items():
                if k == "attention_mask" and v is not None:
                    problems.append(f"layer {name!r}: attention_mask is not supported")
                elif k == "use_causal_mask" and v:
                    problems.append(f"layer {name!r}: use_causal_mask=True is not supported")
                elif k == "return_attention_scores" and v:
                    problems.append(f"layer {name!r}: return_attention_scores=True is not supported")
                elif v is not None and k not in ("attention_mask", "use_causal_mask", "return_attention_scores", "training"):
                    problems.append(f"layer {name!r}: call argument {k!r} is not supported")
            if len(refs) not in (2, 3) or len({tuple(r) for r in refs}) != 1:
                problems.append(
                    f"layer {name!r}: only self-attention mha(x, x) / mha(x, x, x) is supported "
                    f"(query/value/key from {[r[0] for r in refs]})"
                )
            problems += _check_mha_config(name, lcfg)
        else:
            kwargs.pop("training", None)
            kwargs = {k: v for k, v in kwargs.items() if v is not None}  # e.g. GAP1D mask=None
            if kwargs:
                problems.append(f"layer {name!r}: call keyword arguments {sorted(kwargs)} are not supported")
            want = 2 if lcls == "Add" else 1
            if len(refs) != want:
                problems.append(f"layer {name!r}: {lcls} must take exactly {want} tensor input(s), got {len(refs)}")
        for r in refs:
            if r[0] not in seen:
                problems.append(f"layer {name!r} is fed by {r[0]!r}, which is not an earlier layer")
            elif tuple(r[1:]) != (0, 0):
                problems.append(f"layer {name!r}: input {r!r} is not the first output of {r[0]!r}")
        if lcls == "Embedding":
            if [r[0] for r in refs] != [layers[0]["name"]]:
                problems.append(f"layer {name!r}: Embedding must be fed directly by the InputLayer")
            if lcfg.get("mask_zero", False):
                problems.append(f"layer {name!r}: Embedding mask_zero=True is not supported")
        elif refs and refs[0][0] == layers[0]["name"] and has_embedding:
            problems.append(f"layer {name!r} consumes the integer input; only Embedding may")
        if lcls == "LayerNormalization":
            axis = lcfg.get("axis", -1)
            if axis not in (-1, [-1]):
                problems.append(f"layer {name!r}: LayerNormalization axis {axis!r}; only -1")
            if lcfg.get("rms_scaling", False):
                problems.append(f"layer {name!r}: LayerNormalization rms_scaling=True is not supported")
        if lcls == "GlobalAveragePooling1D":
            if lcfg.get("keepdims", False):
                problems.append(f"layer {name!r}: keepdims=True is not supported")
        if lcfg.get("data_format", "channels_last") != "channels_last":
            problems.append(f"layer {name!r}: data_format {lcfg['data_format']!r}; only channels_last")
        if "activation" in lcfg:
            act = _activation_name(lcfg["activation"])
            if act not in SUPPORTED_ACTIVATIONS:
                problems.append(f"layer {name!r}: activation {act!r} is not supported")
        seen.add(name)
    return problems


def _check_mha_config(name: str, cfg: dict) -> list[str]:
    problems = []
    if cfg.get("use_gate", False):
        problems.append(f"layer {name!r}: MultiHeadAttention use_gate=True is not supported")
    if cfg.get("value_dim") not in (None, cfg.get("key_dim")):
        # Keras 3.15's fused dot_product_attention path (JAX) fails for value_dim != key_dim.
        problems.append(f"layer {name!r}: MultiHeadAttention value_dim != key_dim is not supported")
    if cfg.get("sliding_window") is not None:
        problems.append(f"layer {name!r}: MultiHeadAttention sliding_window is not supported")
    if cfg.get("output_shape") is not None:
        problems.append(f"layer {name!r}: MultiHeadAttention output_shape is not supported")
    if cfg.get("attention_axes") not in (None, [1], 1, [-2]):
        problems.append(
            f"layer {name!r}: MultiHeadAttention attention_axes {cfg.get('attention_axes')!r}; "
            "only attention over the time axis of [batch, T, F]"
        )
    return problems


def _check_recurrent(lname: str, lcls: str, lcfg: dict, backward: bool = False) -> list[str]:
    """Problems with one LSTM/GRU config (``backward``: the backward half of a Bidirectional)."""
    problems = []
    for key in ("activation", "recurrent_activation"):
        act = _activation_name(lcfg.get(key, "tanh" if key == "activation" else "sigmoid"))
        if act not in RECURRENT_ACTIVATIONS:
            problems.append(
                f"layer {lname!r}: {lcls} {key} {act!r} is not supported "
                f"(allowed: {', '.join(sorted(RECURRENT_ACTIVATIONS))})"
            )
    if lcfg.get("stateful", False):
        problems.append(f"layer {lname!r}: stateful=True is not supported")
    if lcfg.get("return_state", False):
        problems.append(f"layer {lname!r}: return_state=True is not supported")
    if lcfg.get("time_major", False):
        problems.append(f"layer {lname!r}: time_major=True is not supported")
    if bool(lcfg.get("go_backwards", False)) != backward:
        if backward:
            problems.append(f"layer {lname!r}: backward layer of a Bidirectional must have go_backwards=True")
        else:
            problems.append(
                f"layer {lname!r}: go_backwards=True is only supported inside Bidirectional"
            )
    return problems


def _check_bidirectional(lname: str, lcfg: dict) -> list[str]:
    problems = []
    mode = lcfg.get("merge_mode", "concat")
    if mode != "concat":
        problems.append(f"layer {lname!r}: Bidirectional merge_mode {mode!r}; only 'concat' is supported")
    fwd = lcfg.get("layer") or {}
    bwd = lcfg.get("backward_layer") or {}
    fcls, bcls = fwd.get("class_name"), bwd.get("class_name")
    if fcls not in RECURRENT_LAYERS:
        return problems + [f"layer {lname!r}: Bidirectional wraps {fcls!r}; only LSTM or GRU"]
    if bcls != fcls:
        return problems + [f"layer {lname!r}: Bidirectional backward layer is {bcls!r}, forward is {fcls!r}"]
    fcfg, bcfg = fwd.get("config", {}), bwd.get("config", {})
    problems += _check_recurrent(f"{lname}/{fcfg.get('name')}", fcls, fcfg)
    problems += _check_recurrent(f"{lname}/{bcfg.get('name')}", bcls, bcfg, backward=True)
    for key in ("units", "return_sequences"):
        if fcfg.get(key) != bcfg.get(key):
            problems.append(
                f"layer {lname!r}: forward and backward {key} differ ({fcfg.get(key)} vs {bcfg.get(key)})"
            )
    if fcls == "GRU" and fcfg.get("reset_after", True) != bcfg.get("reset_after", True):
        problems.append(f"layer {lname!r}: forward and backward reset_after differ")
    return problems


def _return_sequences(layer: dict) -> bool:
    cfg = layer.get("config", {})
    if layer.get("class_name") == "Bidirectional":
        cfg = (cfg.get("layer") or {}).get("config", {})
    return bool(cfg.get("return_sequences", False))


def _check_sequence_chain(layers: list[dict]) -> list[str]:
    """Ordering rules for a sequence encoder: input [B, T, F] -> (Masking) -> recurrent
    layers (all but the last return_sequences=True) -> vector layers on [B, units]."""
    problems = []
    phase = "seq"  # "seq": tensors are [B, T, F]; "vec": [B, units]
    n_rec = 0
    for i, layer in enumerate(layers[1:], start=1):
        lcls = layer.get("class_name")
        lname = layer.get("config", {}).get("name", f"#{i}")
        if lcls not in SUPPORTED_LAYERS or lcls in _MASK_OP_NODES:
            continue  # already reported
        if lcls == "Masking":
            if i != 1:
                problems.append(f"layer {lname!r}: Masking is only supported directly after the InputLayer")
            continue
        if lcls in RECURRENT_LAYERS or lcls == "Bidirectional":
            n_rec += 1
            if phase != "seq":
                problems.append(
                    f"layer {lname!r}: recurrent layer after the sequence was reduced to a vector "
                    "(the previous recurrent layer needs return_sequences=True)"
                )
            if not _return_sequences(layer):
                phase = "vec"
            continue
        if phase == "seq" and lcls != "Dropout":
            problems.append(
                f"layer {lname!r}: {lcls} on a sequence [batch, time, features] is not supported; "
                "only Masking, Dropout and recurrent layers may come before the last recurrent layer"
            )
        elif phase == "vec" and lcls not in VECTOR_LAYERS:
            problems.append(f"layer {lname!r}: {lcls} after a recurrent layer is not supported")
    if n_rec == 0:
        problems.append("Masking without a recurrent layer (LSTM/GRU/Bidirectional) is not supported")
    elif phase == "seq":
        problems.append(
            "the last recurrent layer returns sequences; it must have return_sequences=False "
            "so the encoder outputs one vector per input"
        )
    return problems


def _check_functional_chain(cfg: dict) -> list[str]:
    problems = []
    layers = cfg["layers"]
    ins, outs = cfg.get("input_layers"), cfg.get("output_layers")
    # A single input/output is written flat: ["name", 0, 0]; several are nested lists.
    if not (isinstance(ins, list) and len(ins) == 3 and isinstance(ins[0], str)):
        problems.append(f"Functional model must have exactly one input, got input_layers={ins}")
    if not (isinstance(outs, list) and len(outs) == 3 and isinstance(outs[0], str)):
        problems.append(f"Functional model must have exactly one output, got output_layers={outs}")
    if problems:
        return problems
    if ins[0] != layers[0]["name"]:
        problems.append(f"input {ins[0]!r} is not the first layer {layers[0]['name']!r}")
    if outs[0] != layers[-1]["name"]:
        problems.append(f"output {outs[0]!r} is not the last layer {layers[-1]['name']!r}")
    for prev, layer in zip(layers, layers[1:]):
        nodes = layer.get("inbound_nodes", [])
        name = layer["name"]
        if len(nodes) != 1:
            problems.append(f"layer {name!r} is called {len(nodes)} times (shared layers are not a chain)")
            continue
        args = nodes[0].get("args", [])
        tensors = [a for a in args if isinstance(a, dict) and a.get("class_name") == "__keras_tensor__"]
        if len(args) != 1 or len(tensors) != 1:
            problems.append(f"layer {name!r} does not take exactly one tensor input (args={args!r:.200})")
            continue
        src = tensors[0]["config"]["keras_history"][0]
        if src != prev["name"]:
            problems.append(
                f"layer {name!r} is fed by {src!r}, not by the previous layer {prev['name']!r}: "
                "layers do not form a single chain"
            )
    return problems


# --------------------------------------------------------------------------- export


def weight_name(layer, v) -> str:
    """Tensor name of variable ``v`` owned by ``layer`` (a direct layer of the encoder).

    The name is the Keras 3 variable path of a freshly built model, relative to the model:
    ``conv2d/kernel``, ``lstm/lstm_cell/recurrent_kernel``,
    ``bidirectional/backward_gru/gru_cell/bias`` (plain layers: ``{layer.name}/{v.name}``).
    It is composed from layer/cell names rather than read from ``v.path``, because Keras
    3.15's ``v.path`` depends on how the model was made: built in code it is
    ``sequential/bidirectional/forward_lstm/lstm_cell/kernel`` (Sequential and nested
    encoders carry the model name, top-level Functional models do not), but after
    ``model_from_json`` / ``load_model`` it is ``lstm/lstm_cell/kernel`` and, for
    Bidirectional, ``forward_lstm/lstm_cell/kernel`` (no wrapper name).

    Layers with weight-owning sub-layers: ``multi_head_attention/query/kernel`` (sub-layers
    query, key, value, attention_output).
    """
    if type(layer).__name__ == "MultiHeadAttention":
        for attr in _MHA_SUBLAYERS:
            sub = getattr(layer, attr, None)
            if sub is not None and any(v is w for w in sub.weights):
                return f"{layer.name}/{sub.name}/{v.name}"
        raise ExportError(f"variable {v.path!r} of MultiHeadAttention {layer.name!r} belongs to no known sub-layer")
    cell = getattr(layer, "cell", None)
    if type(layer).__name__ == "Bidirectional":
        for sub in (layer.forward_layer, layer.backward_layer):
            if any(v is w for w in sub.weights):
                return f"{layer.name}/{sub.name}/{sub.cell.name}/{v.name}"
        raise ExportError(f"variable {v.path!r} of Bidirectional {layer.name!r} belongs to neither direction")
    if cell is not None and any(v is w for w in cell.weights):
        return f"{layer.name}/{cell.name}/{v.name}"
    return f"{layer.name}/{v.name}"


def encoder_weights(model) -> dict[str, np.ndarray]:
    """tensor name (see ``weight_name``) -> float32 array for every layer that owns weights.

    ``layer.weights`` excludes SeedGenerator state (Dropout) and optimizer slots.
    """
    out: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for v in layer.weights:
            if "seed_generator" in v.path:  # belt and braces: RNG state is not a weight
                continue
            key = weight_name(layer, v)
            if key in out:
                raise ExportError(
                    f"two weights map to the same name {key!r} (layer {layer.name!r} "
                    f"has nested sub-layers, variable path {v.path!r}); flatten the encoder"
                )
            arr = np.asarray(v.numpy())
            if not np.issubdtype(arr.dtype, np.floating):
                raise ExportError(f"weight {key!r} has dtype {arr.dtype}; only float weights can be exported")
            out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def export_encoder(model, out_dir, check: bool = True, verbose: bool = False) -> dict[str, tuple]:
    """Write ``out_dir/model.json`` and ``out_dir/model.safetensors`` for ``model``.

    Returns ``{tensor_name: shape}``. With ``check=True`` (default) raises
    ExportError if the Rust runtime could not run the model; with ``check=False``
    problems are printed to stderr and the files are written anyway.
    """
    from safetensors.numpy import save_file

    import keras

    if not isinstance(model, keras.Model):
        raise ExportError(f"expected a keras.Model (Sequential/Functional), got {type(model).__name__}")
    if not model.built:
        raise ExportError(
            f"model {model.name!r} is not built; create it with keras.Input(shape) or call model.build()"
        )
    try:
        json_str = model.to_json()
    except Exception as e:  # subclassed models etc.
        raise ExportError(f"model {model.name!r} cannot be serialized with to_json(): {e}") from e

    problems = check_encoder_config(json.loads(json_str))
    if problems:
        msg = f"encoder {model.name!r} is not supported by siamese-wgpu:\n  - " + "\n  - ".join(problems)
        if check:
            raise ExportError(msg + "\n(use --no-check / check=False to write it anyway)")
        print("warning: " + msg, file=sys.stderr)

    tensors = encoder_weights(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_JSON).write_text(json_str, encoding="utf-8")
    save_file(tensors, str(out / MODEL_WEIGHTS))
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if verbose:
        print(f"wrote {out / MODEL_JSON} ({model.__class__.__name__} {model.name!r}, {len(model.layers)} layers)")
        print(f"wrote {out / MODEL_WEIGHTS} ({len(tensors)} tensors)")
        for k, s in shapes.items():
            print(f"  {k:40s} {list(s)}")
    return shapes


# --------------------------------------------------------------------------- loading


def load_keras_model(path, unsafe: bool = False):
    """``keras.saving.load_model(path, compile=False, safe_mode=not unsafe)`` with clear errors."""
    import keras

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"no such file: {p}")
    if p.suffix not in (".keras", ".h5", ".hdf5"):
        raise ExportError(f"{p}: expected a Keras 3 '.keras' file (got suffix {p.suffix!r})")
    try:
        return keras.saving.load_model(str(p), compile=False, safe_mode=not unsafe)
    except Exception as e:
        text = str(e)
        if not unsafe and ("safe_mode" in text or "Lambda" in text or "lambda" in text):
            raise ExportError(
                f"{p} contains a Lambda layer (or other arbitrary code), which Keras refuses to "
                "load in safe mode; rerun with --unsafe if you trust the file\n"
                f"(keras said: {text.splitlines()[0] if text else type(e).__name__})"
            ) from e
        raise ExportError(
            f"could not load {p}: {type(e).__name__}: {text}\n"
            "(custom layers/objects must be importable and registered with "
            "@keras.saving.register_keras_serializable)"
        ) from e


def _submodels(model) -> list[str]:
    import keras

    return [f"{l.name} ({type(l).__name__})" for l in model.layers if isinstance(l, keras.Model)]


def select_encoder(model, name: str | None):
    """Return ``model`` itself, or its nested sub-model layer called ``name``."""
    import keras

    if name is None:
        n_in = len(model.inputs) if getattr(model, "inputs", None) else 1
        if n_in != 1:
            subs = _submodels(model)
            hint = f"; nested models: {', '.join(subs)}" if subs else ""
            raise ExportError(
                f"model {model.name!r} has {n_in} inputs, so it is not an encoder; "
                f"pass --encoder LAYER_NAME to pick the shared encoder{hint}"
            )
        return model
    try:
        enc = model.get_layer(name)
    except ValueError:
        names = ", ".join(f"{l.name} ({type(l).__name__})" for l in model.layers)
        raise ExportError(f"model {model.name!r} has no layer named {name!r}; its layers are: {names}") from None
    if not isinstance(enc, keras.Model):
        raise ExportError(
            f"layer {name!r} is a {type(enc).__name__}, not a Sequential/Functional sub-model; "
            f"nested models: {', '.join(_submodels(model)) or 'none'}"
        )
    return enc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a Keras 3 encoder to a siamese-wgpu model directory "
        "(model.json + model.safetensors).",
    )
    ap.add_argument("model", help="path to a Keras 3 .keras file")
    ap.add_argument("out_dir", help="directory to write model.json and model.safetensors into")
    ap.add_argument("--encoder", metavar="LAYER_NAME", help="name of the nested sub-model to export as the encoder")
    ap.add_argument("--unsafe", action="store_true", help="load with safe_mode=False (needed for Lambda layers)")
    ap.add_argument("--no-check", action="store_true", help="write even if the Rust runtime does not support the model")
    args = ap.parse_args(argv)
    try:
        model = load_keras_model(args.model, unsafe=args.unsafe)
        enc = select_encoder(model, args.encoder)
        export_encoder(enc, args.out_dir, check=not args.no_check, verbose=True)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
