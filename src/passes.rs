//! Passes over the graph IR, apart from the runner: each takes a [`ModelSpec`] and returns
//! one that computes the same numbers with fewer or cheaper kernels, or an error naming
//! what the runner cannot run. [`for_gpu`] is what the runner applies, in order:
//!
//! 1. [`check_masking`]: the mask rules (one Masking layer right after the input or one
//!    `Embedding(mask_zero=True)` reading it; every layer Keras hands the mask to masked, as
//!    [`apply_masks`], which the Keras importers run at load, sets it);
//! 2. [`fold_zero_padding`]: a ZeroPadding2D read only by a `valid` Conv2D or
//!    DepthwiseConv2D (any op whose [`LayerOp::with_padding`] answers) becomes that
//!    convolution's explicit padding;
//! 3. [`fold_batch_norm`]: a BatchNormalization whose input is a Conv2D's or Dense's output
//!    read by nothing else is folded into that op's weights;
//! 4. [`fuse_residual_adds`]: an `Add` of two same-shaped values, one of them a Conv2D's or
//!    Dense's (linear activation) output read by nothing else, goes into that op's
//!    epilogue, which reads the other value as a second input;
//! 5. [`fuse_epilogues`]: a standalone activation goes into the epilogue of the op before
//!    it (after a fused residual too: `act(conv + bias + residual)`), a 2×2 max-pool into
//!    the Conv2D before it;
//! 6. [`copy_shared_activations`]: a standalone activation left on a value that other
//!    layers read too writes a new buffer instead of working in place.
//!
//! A rewritten node becomes an [`Identity`] view rather than leaving the graph, so value
//! numbers stay those of the imported model (errors and `describe` keep its layer names).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, BatchNorm, Conv1d, Conv2d, CopyingActivation, Cropping2d, Dense, Embedding, GlobalAveragePool1d,
    GlobalAveragePool2d, Identity, LayerNorm, LayerOp, Masking, Merge, MergeKind, MultiHeadAttention, Normalization,
    Pool2d, Recurrent, Rescaling, ZeroPadding2d,
};
use crate::model::{Layer, ModelSpec};
use crate::ops::{Activation, Padding, Pool2dConfig};

/// What the passes may assume of the device the kernels will run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// `max_storage_buffers_per_shader_stage`: a fused residual's kernel binds five.
    pub storage_buffers_per_stage: u32,
}

impl Target {
    /// The device `limits` describe.
    pub fn from_limits(limits: &wgpu::Limits) -> Self {
        Self { storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage }
    }
}

impl Default for Target {
    /// WebGPU's default limits (8 storage buffers per stage).
    fn default() -> Self {
        Self::from_limits(&wgpu::Limits::default())
    }
}

/// The passes the GPU runner applies, in order, for a device with WebGPU's default limits.
pub fn for_gpu(spec: &ModelSpec) -> Result<ModelSpec> {
    for_target(spec, Target::default())
}

/// The passes the GPU runner applies, in order, for `target`: on a device with fewer than
/// five storage buffers per stage (downlevel's four) residual `Add`s stay standalone.
pub fn for_target(spec: &ModelSpec, target: Target) -> Result<ModelSpec> {
    check_masking(spec)?;
    let spec = fold_zero_padding(spec);
    let spec = fold_batch_norm(&spec);
    let spec = if target.storage_buffers_per_stage >= 5 { fuse_residual_adds(&spec) } else { spec };
    let spec = fuse_epilogues(&spec);
    Ok(copy_shared_activations(&spec))
}

/// Where a Keras mask comes from: a Masking layer right after the input, or an
/// `Embedding(mask_zero=True)` reading the token ids. Either way the engine computes it on
/// the host, from the input, as the `[rows, steps]` step mask (see
/// [`crate::SiameseModel`]): there is one such mask per model.
fn mask_source(spec: &ModelSpec) -> Result<Option<usize>> {
    let is_source =
        |l: &Layer| l.downcast::<Masking>().is_some() || l.downcast::<Embedding>().is_some_and(|e| e.mask_zero);
    let mut sources = spec.layers.iter().enumerate().filter(|(_, l)| is_source(l));
    let Some((position, layer)) = sources.next() else { return Ok(None) };
    if let Some((_, second)) = sources.next() {
        return Err(Error::UnsupportedConfig {
            layer: second.name.clone(),
            key: "mask".into(),
            value: format!("a second mask (after {:?})", layer.name),
            hint: " (one Masking layer or one Embedding(mask_zero=True) per model)".into(),
        });
    }
    let (rule, first) = if layer.downcast::<Masking>().is_some() {
        ("Masking must directly follow the input", position == 0)
    } else {
        ("an Embedding(mask_zero=True) must read the model input", layer.inputs == [0])
    };
    if !first {
        return Err(Error::UnsupportedConfig {
            layer: layer.name.clone(),
            key: "position".into(),
            value: position.to_string(),
            hint: format!(" ({rule})"),
        });
    }
    Ok(Some(position))
}

/// Keras 3 mask propagation over the graph IR, as Keras does it at inference: the mask of
/// a Masking layer or an `Embedding(mask_zero=True)` passes through the per-step layers
/// that support masking (Dense, activations, Dropout and the other identities,
/// LayerNormalization, BatchNormalization, Rescaling, Normalization, Add, recurrent layers
/// returning sequences) and is used by LSTM / GRU / Bidirectional (masked steps carry the
/// state) and GlobalAveragePooling1D (the mean over real steps: `masked` is set here);
/// Flatten, Conv1D, Conv2D, pooling and padding drop it, as Keras does (Keras 3 warns that
/// Conv1D "does not support masking" and runs it over every step, padding included). Errors where Keras would
/// use the mask in a layer the engine cannot mask (MultiHeadAttention, unknown layers), or
/// where the masked steps' values would differ from Keras' and be read unmasked (Keras
/// zeroes a Bidirectional's masked outputs; the engine carries the state).
///
/// The Keras importers apply it at load, so the graph IR (and its CPU reference) computes
/// what Keras does; [`check_masking`] refuses a graph it would still change.
pub fn apply_masks(spec: &ModelSpec) -> Result<ModelSpec> {
    let mut spec = spec.clone();
    let Some(source) = mask_source(&spec)? else { return Ok(spec) };
    // Per value: whether it carries the mask, and whether its masked steps hold values that
    // differ from Keras' (read unmasked, they would give other numbers).
    let mut carries = vec![false; spec.layers.len() + 1];
    let mut differs = vec![false; spec.layers.len() + 1];
    let source_name = spec.layers[source].name.clone();
    // Keras' Masking outputs zeros at the steps it masks; the engine's is a view (the
    // values stay): the same numbers only for mask_value 0.
    let zeroing = spec.layers[source].downcast::<Masking>().map(|m| m.mask_value).filter(|&v| v != 0.0);
    let refuse = |layer: &Layer, what: &str| Error::UnsupportedConfig {
        layer: layer.name.clone(),
        key: "mask".into(),
        value: format!("the padding mask of {source_name:?}"),
        hint: format!(" ({what})"),
    };
    for index in 0..spec.layers.len() {
        let layer = spec.layers[index].clone();
        let layer = &layer;
        let masked = layer.inputs.iter().any(|&v| carries[v]);
        let stale = layer.inputs.iter().any(|&v| differs[v]);
        let (out, out_differs) = if index == source {
            (true, zeroing.is_some())
        } else if let Some(recurrent) = layer.downcast::<Recurrent>() {
            if !masked {
                return Err(refuse(
                    layer,
                    "Keras runs this recurrent layer unmasked (a layer before it drops the mask), but the engine's                      recurrent layers all follow the one step mask",
                ));
            }
            let sequences = recurrent.config.return_sequences;
            (sequences, sequences && recurrent.config.directions == 2)
        } else if let Some(pool) = layer.downcast::<GlobalAveragePool1d>() {
            if masked && !pool.masked {
                let pool = GlobalAveragePool1d { masked: true, ..pool.clone() };
                spec.layers[index].op = Arc::new(pool);
            }
            (false, false)
        } else if passes_mask(layer) {
            (masked, stale)
        } else if drops_mask(layer) {
            if let Some(value) = zeroing.filter(|_| masked && stale) {
                return Err(refuse(
                    layer,
                    &format!(
                        "Keras' Masking outputs zeros at the steps it masks (mask_value {value}), the engine keeps \
                         their values, and this layer reads them without the mask: use mask_value 0"
                    ),
                ));
            }
            if masked && stale {
                return Err(refuse(
                    layer,
                    "Keras zeroes the masked steps of a Bidirectional layer returning sequences, the engine                      carries its state there, and this layer reads them without the mask",
                ));
            }
            (false, false)
        } else if masked {
            let what = if layer.downcast::<MultiHeadAttention>().is_some() {
                "Keras masks this attention's queries and keys; masked attention from a Keras mask is not supported"
            } else {
                "Keras would hand this layer the mask, and the engine cannot mask it"
            };
            return Err(refuse(layer, what));
        } else {
            (false, false)
        };
        carries[index + 1] = out;
        differs[index + 1] = out_differs;
    }
    if differs[spec.layers.len()] {
        let last = &spec.layers[spec.layers.len() - 1];
        if let Some(value) = zeroing {
            return Err(refuse(
                last,
                &format!(
                    "the embedding would hold the steps the Masking layer masks (mask_value {value}), which Keras \
                     zeroes and the engine does not: use mask_value 0"
                ),
            ));
        }
        return Err(refuse(
            last,
            "the embedding would hold the masked steps of a Bidirectional layer returning sequences, which Keras              zeroes and the engine does not",
        ));
    }
    Ok(spec)
}

/// Per-step layers that keep their input's mask in Keras 3 (`supports_masking`).
fn passes_mask(layer: &Layer) -> bool {
    layer.downcast::<Dense>().is_some()
        || layer.downcast::<Identity>().is_some()
        || layer.downcast::<ActivationLayer>().is_some()
        || layer.downcast::<LayerNorm>().is_some()
        || layer.downcast::<BatchNorm>().is_some()
        || layer.downcast::<Rescaling>().is_some()
        || layer.downcast::<Normalization>().is_some()
        || layer.downcast::<Merge>().is_some()
        || layer.downcast::<Masking>().is_some()
}

/// Layers that drop a mask in Keras 3 (no `supports_masking`: the values are computed as
/// without one).
fn drops_mask(layer: &Layer) -> bool {
    layer.op.is_view() && layer.downcast::<Identity>().is_none() && layer.downcast::<Masking>().is_none()
        || layer.downcast::<Conv1d>().is_some()
        || layer.downcast::<Conv2d>().is_some()
        || layer.downcast::<Pool2d>().is_some()
        || layer.downcast::<GlobalAveragePool2d>().is_some()
        || layer.downcast::<ZeroPadding2d>().is_some()
        || layer.downcast::<Cropping2d>().is_some()
}

/// The masking rules the runner needs: one mask source (a Masking layer directly after the
/// input, or an `Embedding(mask_zero=True)` reading it), and every layer Keras hands the
/// mask to masked as [`apply_masks`] sets it (an unmasked GlobalAveragePooling1D after a
/// mask would average the padding).
pub fn check_masking(spec: &ModelSpec) -> Result<()> {
    let applied = apply_masks(spec)?;
    let unmasked = spec.layers.iter().zip(&applied.layers).find(|(before, after)| {
        let masked = |l: &Layer| l.downcast::<GlobalAveragePool1d>().is_some_and(|p| p.masked);
        masked(after) && !masked(before)
    });
    if let Some((layer, _)) = unmasked {
        return Err(Error::UnsupportedConfig {
            layer: layer.name.clone(),
            key: "Masking".into(),
            value: "an unmasked GlobalAveragePooling1D after a mask".into(),
            hint: " (Keras averages the real steps only: build the graph with passes::apply_masks)".into(),
        });
    }
    Ok(())
}

/// The node that produces the value `layer` reads first, looking through views, when every
/// value on the way (the one read included) has `layer` as its only reader: then rewriting
/// that producer changes what nothing else sees.
fn sole_producer(spec: &ModelSpec, readers: &[usize], layer: usize) -> Option<usize> {
    sole_producer_of(spec, readers, *spec.layers[layer].inputs.first()?)
}

/// The node that produces `value`, looking through views, when every value on the way
/// (`value` included) has exactly one reader.
fn sole_producer_of(spec: &ModelSpec, readers: &[usize], mut value: usize) -> Option<usize> {
    loop {
        if value == 0 || readers[value] != 1 {
            return None;
        }
        let producer = &spec.layers[value - 1];
        if !producer.op.is_view() {
            return Some(value - 1);
        }
        value = *producer.inputs.first()?;
    }
}

/// Replaces node `fused` by `op` and node `absorbed` by an identity view of its input.
fn absorb(spec: &mut ModelSpec, fused: usize, op: Arc<dyn LayerOp>, absorbed: usize) {
    spec.layers[fused].op = op;
    spec.layers[absorbed].op = Arc::new(Identity);
}

/// Folds each ZeroPadding2D into the `valid` convolution that is its only reader (a
/// Conv2D, a DepthwiseConv2D / grouped Conv2D: [`LayerOp::with_padding`]): the
/// convolution pads explicitly, and the padded image is never made.
pub fn fold_zero_padding(spec: &ModelSpec) -> ModelSpec {
    let mut spec = spec.clone();
    let readers = spec.readers();
    for index in 0..spec.layers.len() {
        let Some(producer) = sole_producer(&spec, &readers, index) else { continue };
        let Some(&ZeroPadding2d { top, bottom, left, right }) = spec.layers[producer].downcast::<ZeroPadding2d>()
        else {
            continue;
        };
        if let Some(padded) = spec.layers[index].op.with_padding(Padding::Explicit { top, bottom, left, right }) {
            absorb(&mut spec, index, padded, producer);
        }
    }
    spec
}

/// Folds each BatchNormalization into the Conv2D or Dense (linear activation) before it,
/// when that op's output has no other reader.
pub fn fold_batch_norm(spec: &ModelSpec) -> ModelSpec {
    let mut spec = spec.clone();
    let readers = spec.readers();
    for index in 0..spec.layers.len() {
        let Some(norm) = spec.layers[index].downcast::<BatchNorm>() else { continue };
        if norm.activation != Activation::Linear {
            continue;
        }
        let Some(producer) = sole_producer(&spec, &readers, index) else { continue };
        let (scale, shift) = norm.scale_and_shift();
        if let Some(folded) = spec.layers[producer].op.with_channel_affine(&scale, &shift) {
            absorb(&mut spec, producer, folded, index);
        }
    }
    spec
}

/// Fuses each residual `Add` of two values of one shape (no broadcasting) into the
/// Conv2D or Dense that makes one of them ([`LayerOp::with_residual`]: a linear
/// activation, nothing pooled), when every value from that op to the `Add` has no other
/// reader and the other value (or the same-shaped value it is a view of) already exists
/// when the op runs: the op then reads the
/// other value as a second input and adds it before its activation, and the `Add`
/// becomes an identity view of the fused branch. The activation after the `Add`
/// (ResNet's) then fuses too ([`fuse_epilogues`]).
pub fn fuse_residual_adds(spec: &ModelSpec) -> ModelSpec {
    let mut spec = spec.clone();
    // Shapes decide broadcasting; a graph whose shapes do not infer is left to the runner
    // to report.
    let Ok(shapes) = spec.shapes_for(2, 3) else { return spec };
    let mut readers = spec.readers();
    for index in 0..spec.layers.len() {
        let layer = &spec.layers[index];
        let is_add = layer.downcast::<Merge>().is_some_and(|m| m.kind == MergeKind::Add);
        let &[a, b] = layer.inputs.as_slice() else { continue };
        if !is_add || shapes[a] != shapes[b] {
            continue;
        }
        // Keras writes `Add([shortcut, x])`: the branch is usually the second input.
        for (branch, other) in [(b, a), (a, b)] {
            let Some(producer) = sole_producer_of(&spec, &readers, branch) else { continue };
            // Value `v` is made by node `v - 1` (value 0: the model input). Importers may
            // put `other`'s last views (a folded BatchNorm) after the producer: read the
            // value they view, of the same shape, which exists by then.
            let mut residual = other;
            while residual > producer {
                let maker = &spec.layers[residual - 1];
                match maker.inputs.first() {
                    Some(&input) if maker.op.is_view() && shapes[input] == shapes[residual] => residual = input,
                    _ => break,
                }
            }
            if residual > producer || shapes[producer + 1] != shapes[other] {
                continue;
            }
            let Some(op) = spec.layers[producer].op.with_residual() else { continue };
            readers[residual] += 1;
            readers[other] -= 1;
            spec.layers[producer].op = op;
            spec.layers[producer].inputs.push(residual);
            spec.layers[index].op = Arc::new(Identity);
            spec.layers[index].inputs = vec![branch];
            break;
        }
    }
    spec
}

/// Fuses standalone activations into the op before them (Conv2D, Dense, BatchNorm with a
/// linear activation) and 2×2 max-pools into the Conv2D before them. A pooled convolution
/// takes no activation after its pool (max and a non-monotonic activation such as GELU do
/// not commute), so the order of the layers decides, as in the model.
pub fn fuse_epilogues(spec: &ModelSpec) -> ModelSpec {
    let mut spec = spec.clone();
    let readers = spec.readers();
    for index in 0..spec.layers.len() {
        let Some(producer) = sole_producer(&spec, &readers, index) else { continue };
        let layer = &spec.layers[index];
        let fused = if let Some(activation) = layer.downcast::<ActivationLayer>() {
            spec.layers[producer].op.with_activation(activation.0)
        } else if layer.downcast::<Pool2d>().is_some_and(|p| p.0 == Pool2dConfig::max_2x2()) {
            spec.layers[producer].downcast::<Conv2d>().filter(|c| !c.pooled && !c.residual).map(|conv| {
                let mut pooled = conv.clone();
                pooled.pooled = true;
                Arc::new(pooled) as Arc<dyn LayerOp>
            })
        } else {
            None
        };
        if let Some(op) = fused {
            absorb(&mut spec, producer, op, index);
        }
    }
    spec
}

/// Whether the value `layer` reads first, or one a view of it is made from, has another
/// reader: then a kernel writing that value in place would change what the other sees.
fn reads_shared_value(spec: &ModelSpec, readers: &[usize], layer: usize) -> bool {
    let Some(mut value) = spec.layers[layer].inputs.first().copied() else { return false };
    loop {
        if readers[value] > 1 {
            return true;
        }
        match value.checked_sub(1).map(|p| &spec.layers[p]) {
            Some(producer) if producer.op.is_view() => match producer.inputs.first() {
                Some(&input) => value = input,
                None => return false,
            },
            _ => return false,
        }
    }
}

/// Turns each standalone (in-place) activation whose input other layers read too into a
/// [`CopyingActivation`], which writes its own buffer: Keras graphs branch before an
/// activation (Xception: `residual = Conv2D(x)`, `x = Activation("relu")(x)`; NASNet's
/// cells), and the in-place kernel would change the residual branch's input.
pub fn copy_shared_activations(spec: &ModelSpec) -> ModelSpec {
    let mut spec = spec.clone();
    let readers = spec.readers();
    for index in 0..spec.layers.len() {
        let Some(&ActivationLayer(activation)) = spec.layers[index].downcast::<ActivationLayer>() else { continue };
        if activation != Activation::Linear && reads_shared_value(&spec, &readers, index) {
            spec.layers[index].op = Arc::new(CopyingActivation(activation));
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Dense, Flatten, Merge};
    use crate::ops::{Conv2dConfig, PoolKind};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn conv(in_c: usize, filters: usize) -> Conv2d {
        let config = Conv2dConfig {
            in_channels: in_c,
            filters,
            kernel: (3, 3),
            strides: (1, 1),
            dilation: (1, 1),
            padding: Padding::Same,
            activation: Activation::Linear,
        };
        Conv2d::new(config, values(9 * in_c * filters, 1), Some(values(filters, 2)))
    }

    fn norm(channels: usize) -> BatchNorm {
        BatchNorm {
            gamma: Some(values(channels, 3).iter().map(|g| 1.0 + g / 2.0).collect()),
            beta: Some(values(channels, 4)),
            mean: values(channels, 5),
            variance: values(channels, 6).iter().map(|v| 1.2 + v).collect(),
            eps: 1e-3,
            activation: Activation::Linear,
        }
    }

    fn spec(layers: Vec<Layer>) -> ModelSpec {
        ModelSpec { name: "test".into(), input_shape: vec![6, 5, 2], layers }
    }

    fn assert_same_numbers(a: &ModelSpec, b: &ModelSpec) {
        let input = values(2 * 60, 7);
        let (x, y) = (a.reference_forward(&input, 2).unwrap(), b.reference_forward(&input, 2).unwrap());
        assert_eq!(x.len(), y.len());
        for (x, y) in x.iter().zip(&y) {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{x} vs {y}");
        }
    }

    fn names(spec: &ModelSpec) -> Vec<&'static str> {
        spec.layers.iter().map(|l| l.op.name()).collect()
    }

    #[test]
    fn batch_norm_folds_into_the_conv_before_it_and_relu_fuses_after() {
        let chain = spec(vec![
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("bn", norm(4), vec![1]),
            Layer::new("relu", ActivationLayer(Activation::Relu), vec![2]),
            Layer::new("pool", Pool2d(Pool2dConfig::max_2x2()), vec![3]),
        ]);
        let passed = for_gpu(&chain).unwrap();
        assert_eq!(names(&passed), ["conv2d", "identity", "identity", "identity"]);
        let conv = passed.layers[0].downcast::<Conv2d>().unwrap();
        assert!(conv.pooled && conv.config.activation == Activation::Relu);
        assert_same_numbers(&chain, &passed);
    }

    #[test]
    fn a_value_with_two_readers_is_not_rewritten() {
        // conv -> bn -> add(conv, bn): the conv output is read twice, so nothing folds.
        let branch = spec(vec![
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("bn", norm(4), vec![1]),
            Layer::new("add", Merge::add(), vec![1, 2]),
            Layer::new("relu", ActivationLayer(Activation::Relu), vec![3]),
        ]);
        let passed = for_gpu(&branch).unwrap();
        assert_eq!(names(&passed), ["conv2d", "batch_norm", "add", "activation"]);
        assert_same_numbers(&branch, &passed);
    }

    #[test]
    fn a_residual_add_and_the_relu_after_it_fuse_into_the_conv() {
        // shortcut conv, conv -> bn -> dropout -> add(shortcut, x) -> relu: one conv node
        // reads the shortcut as its residual and applies the relu.
        let block = spec(vec![
            Layer::new("shortcut", conv(2, 4), vec![0]),
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("bn", norm(4), vec![2]),
            Layer::new("drop", Identity, vec![3]),
            Layer::new("add", Merge::add(), vec![1, 4]),
            Layer::new("relu", ActivationLayer(Activation::Relu), vec![5]),
        ]);
        let passed = for_gpu(&block).unwrap();
        assert_eq!(names(&passed), ["conv2d", "conv2d", "identity", "identity", "identity", "identity"]);
        let fused = passed.layers[1].downcast::<Conv2d>().unwrap();
        assert!(fused.residual && fused.config.activation == Activation::Relu);
        assert_eq!(passed.layers[1].inputs, [0, 1]);
        assert_eq!(passed.layers[4].inputs, [4]);
        assert_same_numbers(&block, &passed);

        // The other input made after the producer: the shortcut branch fuses instead
        // (its conv runs after the other's value exists).
        let late = spec(vec![
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("bn", norm(4), vec![1]),
            Layer::new("shortcut", conv(2, 4), vec![0]),
            Layer::new("add", Merge::add(), vec![3, 2]),
        ]);
        let passed = for_gpu(&late).unwrap();
        assert_eq!(names(&passed), ["conv2d", "identity", "conv2d", "identity"]);
        assert!(!passed.layers[0].downcast::<Conv2d>().unwrap().residual);
        assert_eq!(passed.layers[2].inputs, [0, 2]);
        assert_same_numbers(&late, &passed);

        // ... and with a relu'd shortcut (not linear) neither branch can take it.
        let mut relu = late.clone();
        relu.layers[2].op = Arc::new(Conv2d::new(
            Conv2dConfig { activation: Activation::Relu, ..conv(2, 4).config },
            values(72, 1),
            None,
        ));
        assert_eq!(names(&for_gpu(&relu).unwrap()), ["conv2d", "identity", "conv2d", "add"]);
    }

    #[test]
    fn a_residual_whose_folded_batch_norm_comes_after_the_producer_still_fuses() {
        // As Keras orders ResNet50's first block: conv_3, conv_0, bn_3, bn_0, add(bn_0, bn_3).
        // bn_3 folds into conv_3 (a view after conv_0): conv_0 reads conv_3's value.
        let block = spec(vec![
            Layer::new("conv_3", conv(2, 4), vec![0]),
            Layer::new("conv_0", conv(2, 4), vec![0]),
            Layer::new("bn_3", norm(4), vec![1]),
            Layer::new("bn_0", norm(4), vec![2]),
            Layer::new("add", Merge::add(), vec![4, 3]),
        ]);
        let passed = for_gpu(&block).unwrap();
        assert_eq!(names(&passed), ["conv2d", "conv2d", "identity", "identity", "identity"]);
        assert_eq!(passed.layers[1].inputs, [0, 1]);
        assert!(passed.layers[1].downcast::<Conv2d>().unwrap().residual);
        assert_same_numbers(&block, &passed);
        // A downlevel device (4 storage buffers per stage) cannot bind the residual.
        let downlevel = for_target(&block, Target::from_limits(&wgpu::Limits::downlevel_defaults())).unwrap();
        assert_eq!(names(&downlevel), ["conv2d", "conv2d", "identity", "identity", "add"]);
        assert_same_numbers(&block, &downlevel);
    }

    #[test]
    fn residual_adds_that_cannot_fuse() {
        // The branch value has a second reader.
        let shared = spec(vec![
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("other", conv(2, 4), vec![0]),
            Layer::new("add", Merge::add(), vec![2, 1]),
            Layer::new("again", Merge::add(), vec![1, 3]),
        ]);
        let passed = fuse_residual_adds(&shared);
        assert_eq!(names(&passed), ["conv2d", "conv2d", "identity", "add"]);
        assert!(passed.layers[1].downcast::<Conv2d>().unwrap().residual);
        assert!(!passed.layers[0].downcast::<Conv2d>().unwrap().residual);
        assert_same_numbers(&shared, &passed);
        // A broadcasting Add: [6, 5, 4] + [6, 5, 1].
        let broadcast = spec(vec![
            Layer::new("narrow", conv(2, 1), vec![0]),
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("add", Merge::add(), vec![1, 2]),
        ]);
        assert_eq!(names(&for_gpu(&broadcast).unwrap()), ["conv2d", "conv2d", "add"]);
        // A conv with its own relu before the Add.
        let relu = Conv2d::new(Conv2dConfig { activation: Activation::Relu, ..conv(2, 4).config }, values(72, 3), None);
        let activated = spec(vec![
            Layer::new("relu conv", relu.clone(), vec![0]),
            Layer::new("relu conv 2", relu, vec![0]),
            Layer::new("add", Merge::add(), vec![1, 2]),
        ]);
        assert_eq!(names(&for_gpu(&activated).unwrap()), ["conv2d", "conv2d", "add"]);
    }

    #[test]
    fn activations_fuse_through_views_and_not_after_a_pool() {
        let dense = Dense {
            in_features: 24,
            out_features: 3,
            kernel: values(72, 8),
            bias: None,
            activation: Activation::Linear,
            residual: false,
        };
        let layers = vec![
            Layer::new("conv", conv(2, 4), vec![0]),
            Layer::new("pool", Pool2d(Pool2dConfig::max_2x2()), vec![1]),
            Layer::new("gelu", ActivationLayer(Activation::Gelu), vec![2]),
            Layer::new("flatten", Flatten, vec![3]),
            Layer::new("dense", dense, vec![4]),
            Layer::new("drop", Identity, vec![5]),
            Layer::new("tanh", ActivationLayer(Activation::Tanh), vec![6]),
        ];
        let model = spec(layers);
        let passed = for_gpu(&model).unwrap();
        assert_eq!(names(&passed), ["conv2d", "identity", "activation", "flatten", "dense", "identity", "identity"]);
        assert_eq!(passed.layers[4].downcast::<Dense>().unwrap().activation, Activation::Tanh);
        assert_same_numbers(&model, &passed);
        // An average pool never fuses.
        let mut average = model.clone();
        average.layers[1].op = Arc::new(Pool2d(Pool2dConfig { kind: PoolKind::Average, ..Pool2dConfig::max_2x2() }));
        assert_eq!(names(&for_gpu(&average).unwrap())[..3], ["conv2d", "pool2d", "activation"]);
    }

    #[test]
    fn batch_norm_with_nothing_to_fold_into_takes_the_activation() {
        let model = ModelSpec {
            name: "input norm".into(),
            input_shape: vec![5],
            layers: vec![
                Layer::new("bn", norm(5), vec![0]),
                Layer::new("relu", ActivationLayer(Activation::Relu), vec![1]),
            ],
        };
        let passed = for_gpu(&model).unwrap();
        assert_eq!(names(&passed), ["batch_norm", "identity"]);
        assert_eq!(passed.layers[0].downcast::<BatchNorm>().unwrap().activation, Activation::Relu);
        let input = values(10, 9);
        let (a, b) = (model.reference_forward(&input, 2).unwrap(), passed.reference_forward(&input, 2).unwrap());
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-4 * y.abs()));
    }

    #[test]
    fn zero_padding_folds_into_a_valid_conv_only() {
        let pad = ZeroPadding2d { top: 2, bottom: 1, left: 0, right: 3 };
        let model = spec(vec![Layer::new("pad", pad, vec![0]), Layer::new("conv", valid(conv(2, 4)), vec![1])]);
        let passed = for_gpu(&model).unwrap();
        assert_eq!(names(&passed), ["identity", "conv2d"]);
        let padding = passed.layers[1].downcast::<Conv2d>().unwrap().config.padding;
        assert_eq!(padding, Padding::Explicit { top: 2, bottom: 1, left: 0, right: 3 });
        assert_same_numbers(&model, &passed);
        // A `same` convolution, or a pool after the padding, keeps the padding kernel.
        let same = spec(vec![Layer::new("pad", pad, vec![0]), Layer::new("conv", conv(2, 4), vec![1])]);
        assert_eq!(names(&for_gpu(&same).unwrap()), ["zero_padding2d", "conv2d"]);
        let pool = Pool2d(Pool2dConfig { pool: (3, 3), ..Pool2dConfig::max_2x2() });
        let pooled = spec(vec![Layer::new("pad", pad, vec![0]), Layer::new("pool", pool, vec![1])]);
        assert_eq!(names(&for_gpu(&pooled).unwrap()), ["zero_padding2d", "pool2d"]);
    }

    fn valid(mut conv: Conv2d) -> Conv2d {
        conv.config.padding = Padding::Valid;
        conv
    }

    #[test]
    fn masking_rules() {
        let masked = |layers: Vec<Layer>| ModelSpec { name: "m".into(), input_shape: vec![0, 3], layers };
        let late = masked(vec![
            Layer::new("drop", Identity, vec![0]),
            Layer::new("mask", Masking { mask_value: 0.0 }, vec![1]),
        ]);
        assert!(matches!(check_masking(&late), Err(Error::UnsupportedConfig { key, .. }) if key == "position"));
        let pooled = masked(vec![
            Layer::new("mask", Masking { mask_value: 0.0 }, vec![0]),
            Layer::new("pool", GlobalAveragePool1d::default(), vec![1]),
        ]);
        assert!(matches!(check_masking(&pooled), Err(Error::UnsupportedConfig { key, .. }) if key == "Masking"));
        let applied = apply_masks(&pooled).unwrap();
        assert!(applied.layers[1].downcast::<GlobalAveragePool1d>().unwrap().masked);
        check_masking(&applied).unwrap();
    }

    fn ids(layers: Vec<Layer>) -> ModelSpec {
        ModelSpec { name: "ids".into(), input_shape: vec![5], layers }
    }

    fn embedding(mask_zero: bool) -> Layer {
        Layer::new("embedding", Embedding { vocab: 7, dim: 3, table: values(21, 9), mask_zero }, vec![0])
    }

    #[test]
    fn mask_zero_propagates_as_keras_does() {
        // Dense passes the mask to the pooling, which then averages the real steps.
        let dense = Dense {
            in_features: 3,
            out_features: 2,
            kernel: values(6, 1),
            bias: None,
            activation: Activation::Relu,
            residual: false,
        };
        let pooled = ids(vec![
            embedding(true),
            Layer::new("dense", dense.clone(), vec![1]),
            Layer::new("pool", GlobalAveragePool1d::default(), vec![2]),
        ]);
        let applied = apply_masks(&pooled).unwrap();
        assert!(applied.layers[2].downcast::<GlobalAveragePool1d>().unwrap().masked);
        // Without mask_zero nothing changes.
        let plain = ids(vec![embedding(false), Layer::new("pool", GlobalAveragePool1d::default(), vec![1])]);
        assert!(!apply_masks(&plain).unwrap().layers[1].downcast::<GlobalAveragePool1d>().unwrap().masked);
        // Flatten drops the mask (Keras computes as without one): loads unchanged.
        let flat = ids(vec![embedding(true), Layer::new("flatten", Flatten, vec![1])]);
        apply_masks(&flat).unwrap();
        // Attention would use it: refused, naming the layer.
        let weights = crate::ops::MultiHeadAttentionWeights {
            kernels: [values(3, 1), values(3, 2), values(3, 3)],
            biases: [values(1, 4), values(1, 5), values(1, 6)],
            output_kernel: values(3, 7),
            output_bias: values(3, 8),
        };
        let attention = MultiHeadAttention { heads: 1, key_dim: 1, weights, masked: false };
        let attended = ids(vec![embedding(true), Layer::new("mha", attention, vec![1])]);
        let err = apply_masks(&attended).unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedConfig { layer, key, .. } if layer == "mha" && key == "mask"),
            "{err}"
        );
        // One mask source per model.
        let two = ModelSpec {
            name: "two".into(),
            input_shape: vec![0, 1],
            layers: vec![Layer::new("mask", Masking { mask_value: 0.0 }, vec![0]), embedding(true)],
        };
        assert!(matches!(apply_masks(&two), Err(Error::UnsupportedConfig { key, .. }) if key == "mask"));
    }
}
