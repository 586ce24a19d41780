//! Plain-Rust CPU versions of every op and of the whole Siamese forward pass: the
//! obviously-correct baseline the shaders are tested against. Loops follow the
//! definitions literally and accumulate in f64.

use crate::ops::{Activation, Conv2dConfig, Distance, Pool2dConfig, PoolKind};

/// Applies an activation to one value.
pub fn activation(x: f32, activation: Activation) -> f32 {
    let x = x as f64;
    let y = match activation {
        Activation::Linear => x,
        Activation::Relu => x.max(0.0),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp() - 1.0
            }
        }
        Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        Activation::HardSigmoid => ((x + 3.0).clamp(0.0, 6.0)) / 6.0,
        Activation::HardSigmoidClip => (0.2 * x + 0.5).clamp(0.0, 1.0),
        Activation::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::HardSilu => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Activation::Mish => x * (x.max(0.0) + (-x.abs()).exp().ln_1p()).tanh(),
        Activation::LeakyRelu(bits) => {
            if x >= 0.0 {
                x
            } else {
                f32::from_bits(bits) as f64 * x
            }
        }
        Activation::EluAlpha(bits) => {
            if x > 0.0 {
                x
            } else {
                f32::from_bits(bits) as f64 * x.exp_m1()
            }
        }
        Activation::ReluWith { negative_slope, max_value, threshold } => {
            let (slope, cap, threshold) = (
                f32::from_bits(negative_slope) as f64,
                f32::from_bits(max_value) as f64,
                f32::from_bits(threshold) as f64,
            );
            let above = if x > threshold { x } else { 0.0 };
            let above = if cap.is_finite() { above.clamp(0.0, cap) } else { above };
            above - slope * (threshold - x).max(0.0)
        }
        Activation::Selu => {
            let (alpha, scale) = (1.6732632423543772, 1.0507009873554805);
            scale * if x > 0.0 { x } else { alpha * (x.exp() - 1.0) }
        }
    };
    y as f32
}

/// erf in f64 by its Maclaurin series (|x| < 3) or continued fraction for the tail;
/// accurate to ~1e-14, far beyond the f32 results compared against it.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let value = if a < 3.0 {
        // erf(x) = 2/sqrt(pi) Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x²)/sqrt(pi) · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut fraction = a;
        for k in (1..60).rev() {
            fraction = a + (k as f64 / 2.0) / fraction;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / fraction
    };
    value.copysign(x)
}

/// Dense: `[rows, in] · [in, out] + bias`, then activation.
pub fn dense(
    input: &[f32],
    rows: usize,
    kernel: &[f32],
    bias: &[f32],
    in_features: usize,
    act: Activation,
) -> Vec<f32> {
    let out_features = bias.len();
    let mut out = vec![0.0; rows * out_features];
    for r in 0..rows {
        for o in 0..out_features {
            let mut sum = bias[o] as f64;
            for i in 0..in_features {
                sum += input[r * in_features + i] as f64 * kernel[i * out_features + o] as f64;
            }
            out[r * out_features + o] = activation(sum as f32, act);
        }
    }
    out
}

/// Conv2D on NHWC `input` of `[batch, h, w, c]` with an HWIO kernel; returns NHWC output
/// and its shape.
pub fn conv2d(
    input: &[f32],
    shape: [usize; 4],
    config: &Conv2dConfig,
    kernel: &[f32],
    bias: &[f32],
) -> (Vec<f32>, [usize; 4]) {
    let [batch, h, w, c] = shape;
    // An input smaller than the kernel has no output (the GPU op reports it as an error).
    let Some(window) = config.window(h, w) else { return (Vec::new(), [batch, 0, 0, config.filters]) };
    let (out_h, out_w) = window.out;
    let f = config.filters;
    let mut out = vec![0.0; batch * out_h * out_w * f];
    for b in 0..batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for co in 0..f {
                    let mut sum = bias[co] as f64;
                    for ky in 0..config.kernel.0 {
                        for kx in 0..config.kernel.1 {
                            let iy = (oy * config.strides.0 + ky * config.dilation.0) as isize - window.pad.0 as isize;
                            let ix = (ox * config.strides.1 + kx * config.dilation.1) as isize - window.pad.1 as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..c {
                                let x = input[((b * h + iy as usize) * w + ix as usize) * c + ci];
                                let k = kernel[((ky * config.kernel.1 + kx) * c + ci) * f + co];
                                sum += x as f64 * k as f64;
                            }
                        }
                    }
                    out[((b * out_h + oy) * out_w + ox) * f + co] = activation(sum as f32, config.activation);
                }
            }
        }
    }
    (out, [batch, out_h, out_w, f])
}

/// Max / average pooling on NHWC input; returns the output and its shape.
pub fn pool2d(input: &[f32], shape: [usize; 4], config: &Pool2dConfig) -> (Vec<f32>, [usize; 4]) {
    let [batch, h, w, c] = shape;
    let Some(window) = config.window(h, w) else { return (Vec::new(), [batch, 0, 0, c]) };
    let (out_h, out_w) = window.out;
    let mut out = vec![0.0; batch * out_h * out_w * c];
    for b in 0..batch {
        for oy in 0..out_h {
            for ox in 0..out_w {
                for ch in 0..c {
                    let mut values = Vec::new();
                    for py in 0..config.pool.0 {
                        for px in 0..config.pool.1 {
                            let iy = (oy * config.strides.0 + py) as isize - window.pad.0 as isize;
                            let ix = (ox * config.strides.1 + px) as isize - window.pad.1 as isize;
                            if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                values.push(input[((b * h + iy as usize) * w + ix as usize) * c + ch]);
                            }
                        }
                    }
                    out[((b * out_h + oy) * out_w + ox) * c + ch] = match config.kind {
                        PoolKind::Max => values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                        PoolKind::Average => {
                            (values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64) as f32
                        }
                    };
                }
            }
        }
    }
    (out, [batch, out_h, out_w, c])
}

/// Global average pooling: `[batch, h, w, c]` → `[batch, c]`.
pub fn global_average_pool2d(input: &[f32], shape: [usize; 4]) -> Vec<f32> {
    let [batch, h, w, c] = shape;
    let mut out = vec![0.0; batch * c];
    for b in 0..batch {
        for ch in 0..c {
            let sum: f64 = (0..h * w).map(|i| input[(b * h * w + i) * c + ch] as f64).sum();
            out[b * c + ch] = (sum / (h * w) as f64) as f32;
        }
    }
    out
}

/// Distances between rows `i` and `pairs + i` of a `[2·pairs, dim]` embedding.
pub fn pair_distances(embedding: &[f32], pairs: usize, dim: usize, metric: Distance) -> Vec<f32> {
    (0..pairs)
        .map(|i| {
            distance(&embedding[i * dim..(i + 1) * dim], &embedding[(pairs + i) * dim..(pairs + i + 1) * dim], metric)
        })
        .collect()
}

/// The distance between two embeddings. `Learned` needs its weights
/// ([`crate::ops::LearnedHead::probability`]): NaN here.
pub fn distance(a: &[f32], b: &[f32], metric: Distance) -> f32 {
    let diff = a.iter().zip(b).map(|(&x, &y)| x as f64 - y as f64);
    match metric {
        Distance::Euclidean => diff.map(|d| d * d).sum::<f64>().sqrt() as f32,
        Distance::SqEuclidean => diff.map(|d| d * d).sum::<f64>() as f32,
        Distance::Manhattan => diff.map(f64::abs).sum::<f64>() as f32,
        Distance::Cosine => {
            if a == b {
                return 0.0;
            }
            let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum();
            let nb: f64 = b.iter().map(|&y| y as f64 * y as f64).sum();
            (1.0 - dot / (na.max(1e-12).sqrt() * nb.max(1e-12).sqrt())).max(0.0) as f32
        }
        Distance::Learned => f32::NAN,
    }
}

/// A recurrent layer (LSTM/GRU, one or two directions) on `[batch, steps, features]`
/// input with a `[batch, steps]` mask (true = real step; masked steps keep the state and
/// repeat the previous output), Keras semantics. Returns `[batch, directions·units]`, or
/// `[batch, steps, directions·units]` with `return_sequences`.
pub fn recurrent(
    input: &[f32],
    shape: [usize; 3],
    mask: &[bool],
    config: &crate::ops::RecurrentConfig,
    weights: &[crate::ops::DirectionWeights],
) -> Vec<f32> {
    use crate::ops::Cell;
    let [batch, steps, features] = shape;
    let (u, g, dirs) = (config.units, config.gate_width(), config.directions);
    let width = dirs * u;
    let out_len = if config.return_sequences { batch * steps * width } else { batch * width };
    let mut out = vec![0.0; out_len];
    let gate = |x: f64| activation(x as f32, config.recurrent_activation) as f64;
    let act = |x: f64| activation(x as f32, config.activation) as f64;
    for (d, w) in weights.iter().enumerate() {
        for b in 0..batch {
            let mut h = vec![0.0f64; u];
            let mut c = vec![0.0f64; u];
            for step in 0..steps {
                let t = if d == 1 { steps - 1 - step } else { step };
                if mask[b * steps + t] {
                    let x = &input[(b * steps + t) * features..(b * steps + t + 1) * features];
                    // x·K + b_in and h·R + b_rec, per gate column.
                    let xk: Vec<f64> = (0..g)
                        .map(|j| {
                            w.input_bias[j] as f64
                                + (0..features).map(|k| x[k] as f64 * w.kernel[k * g + j] as f64).sum::<f64>()
                        })
                        .collect();
                    let hr = |state: &[f64], j: usize| -> f64 {
                        (0..u).map(|k| state[k] * w.recurrent_kernel[k * g + j] as f64).sum::<f64>()
                    };
                    match config.cell {
                        Cell::Lstm => {
                            let z: Vec<f64> = (0..g).map(|j| xk[j] + w.recurrent_bias[j] as f64 + hr(&h, j)).collect();
                            for i in 0..u {
                                let (ig, fg, cc, og) =
                                    (gate(z[i]), gate(z[u + i]), act(z[2 * u + i]), gate(z[3 * u + i]));
                                c[i] = fg * c[i] + ig * cc;
                                h[i] = og * act(c[i]);
                            }
                        }
                        Cell::Gru { reset_after } => {
                            let new_h: Vec<f64> = (0..u)
                                .map(|i| {
                                    let rec = |j: usize| w.recurrent_bias[j] as f64 + hr(&h, j);
                                    let update = gate(xk[i] + rec(i));
                                    let reset = gate(xk[u + i] + rec(u + i));
                                    let candidate = if reset_after {
                                        act(xk[2 * u + i] + reset * rec(2 * u + i))
                                    } else {
                                        let reset_h: Vec<f64> =
                                            (0..u).map(|k| gate(xk[u + k] + rec(u + k)) * h[k]).collect();
                                        act(xk[2 * u + i] + hr(&reset_h, 2 * u + i))
                                    };
                                    update * h[i] + (1.0 - update) * candidate
                                })
                                .collect();
                            h = new_h;
                        }
                    }
                }
                if config.return_sequences {
                    for i in 0..u {
                        out[(b * steps + t) * width + d * u + i] = h[i] as f32;
                    }
                }
            }
            if !config.return_sequences {
                for i in 0..u {
                    out[b * width + d * u + i] = h[i] as f32;
                }
            }
        }
    }
    out
}

/// `LayerNorm(x + residual)` per row of `hidden` values (biased variance, like PyTorch).
pub fn layer_norm(x: &[f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let hidden = gamma.len();
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(hidden).enumerate() {
        let values: Vec<f64> = row
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 + residual.map_or(0.0, |res| res[r * hidden + i] as f64))
            .collect();
        let mean = values.iter().sum::<f64>() / hidden as f64;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / hidden as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        out.extend(
            values.iter().enumerate().map(|(i, v)| ((v - mean) * inv * gamma[i] as f64 + beta[i] as f64) as f32),
        );
    }
    out
}

/// BERT embeddings: `LayerNorm(word[id] + position[t] + token_type[type])` for
/// `ids.len()` tokens in sequences of `steps`.
pub fn token_embedding(
    ids: &[u32],
    types: &[u32],
    steps: usize,
    tables: &crate::ops::EmbeddingTables,
    eps: f32,
) -> Vec<f32> {
    let hidden = tables.gamma.len();
    let mut sum = Vec::with_capacity(ids.len() * hidden);
    for (token, (&id, &kind)) in ids.iter().zip(types).enumerate() {
        let t = token % steps;
        for i in 0..hidden {
            sum.push(
                tables.word[id as usize * hidden + i]
                    + tables.position[t * hidden + i]
                    + tables.token_type[kind as usize * hidden + i],
            );
        }
    }
    layer_norm(&sum, None, tables.gamma, tables.beta, eps)
}

/// Table lookup (Keras Embedding): row `ids[t]` of a `[vocab, dim]` table for every id.
/// Ids out of range (the runner rejects them) read the last row, as the kernel clamps.
pub fn gather_rows(ids: &[f32], table: &[f32], vocab: usize, dim: usize) -> Vec<f32> {
    ids.iter()
        .flat_map(|&id| {
            let row = (id.max(0.0) as usize).min(vocab - 1);
            table[row * dim..(row + 1) * dim].iter().copied()
        })
        .collect()
}

/// Multi-head self-attention core over fused `[batch·steps, 3·hidden]` Q|K|V rows with a
/// `[batch·steps]` key mask: softmax(scale · q·kᵀ) · v per head, masked keys excluded.
pub fn self_attention(
    qkv: &[f32],
    batch: usize,
    steps: usize,
    heads: usize,
    head_dim: usize,
    scale: f32,
    mask: &[bool],
) -> Vec<f32> {
    let hidden = heads * head_dim;
    let mut out = vec![0.0; batch * steps * hidden];
    for b in 0..batch {
        for head in 0..heads {
            for t in 0..steps {
                let q = &qkv[(b * steps + t) * 3 * hidden + head * head_dim..][..head_dim];
                let keys: Vec<usize> = (0..steps).filter(|&k| mask[b * steps + k]).collect();
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&k| {
                        let key = &qkv[(b * steps + k) * 3 * hidden + hidden + head * head_dim..][..head_dim];
                        scale as f64 * q.iter().zip(key).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for i in 0..head_dim {
                    let value: f64 = keys
                        .iter()
                        .zip(&weights)
                        .map(|(&k, w)| w * qkv[(b * steps + k) * 3 * hidden + 2 * hidden + head * head_dim + i] as f64)
                        .sum();
                    out[(b * steps + t) * hidden + head * head_dim + i] =
                        if total > 0.0 { (value / total) as f32 } else { 0.0 };
                }
            }
        }
    }
    out
}

/// Mean over the real tokens of each `[steps, hidden]` sequence, optionally L2-normalised.
pub fn masked_mean_pool(
    x: &[f32],
    batch: usize,
    steps: usize,
    hidden: usize,
    mask: &[bool],
    normalize: bool,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(batch * hidden);
    for b in 0..batch {
        let count = (0..steps).filter(|&t| mask[b * steps + t]).count().max(1) as f64;
        let mean: Vec<f64> = (0..hidden)
            .map(|i| {
                (0..steps).filter(|&t| mask[b * steps + t]).map(|t| x[(b * steps + t) * hidden + i] as f64).sum::<f64>()
                    / count
            })
            .collect();
        let norm = if normalize { mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12) } else { 1.0 };
        out.extend(mean.iter().map(|v| (v / norm) as f32));
    }
    out
}
