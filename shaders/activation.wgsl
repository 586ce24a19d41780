// activation.wgsl: the activation functions, prepended (by src/shaders.rs) to every kernel
// that fuses one into its epilogue. The choice is the override constant ACTIVATION, so each
// activation is its own pipeline with the branch compiled away. Codes match
// `ops::Activation` in src/ops/mod.rs:
//   0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 gelu (exact, erf), 5 silu (swish),
//   6 elu (alpha 1), 7 softplus, 8 selu, 9 hard_sigmoid (Keras 3: relu6(x + 3) / 6),
//   10 Keras 2's hard_sigmoid (clip(0.2·x + 0.5, 0, 1)),
//   11 gelu, tanh approximation (0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), `gelu_new`),
//   12 relu6, 13 hard_silu (x·relu6(x + 3)/6), 14 mish (x·tanh(softplus(x))),
//   15 leaky_relu (slope: override ACTIVATION_SLOPE),
//   16 elu with alpha ACTIVATION_SLOPE,
//   17 Keras 3 relu with every setting: min(x > ACTIVATION_THRESHOLD ? x : 0, ACTIVATION_MAX)
//      − ACTIVATION_SLOPE · max(ACTIVATION_THRESHOLD − x, 0); ACTIVATION_MAX < 0: no cap.
// `apply_activation(code, x)` serves kernels that need two activations (the recurrent
// cells' gate and cell activations, each its own override constant).

override ACTIVATION: u32 = 0u;
// The negative slope of LeakyReLU (code 15).
override ACTIVATION_SLOPE: f32 = 0.3;
// Code 17's cap (negative: none; Keras refuses negative caps) and threshold.
override ACTIVATION_MAX: f32 = -1.0;
override ACTIVATION_THRESHOLD: f32 = 0.0;

// Keras 3's ReLU (ops.relu with negative_slope, max_value, threshold), as its static_call
// composes it: the part above the threshold, capped, minus the slope times the part below.
fn relu_with(x: f32) -> f32 {
    var above = select(0.0, x, x > ACTIVATION_THRESHOLD);
    if ACTIVATION_MAX >= 0.0 {
        above = clamp(above, 0.0, ACTIVATION_MAX);
    }
    return above - ACTIVATION_SLOPE * max(ACTIVATION_THRESHOLD - x, 0.0);
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, below f32 resolution of gelu's
// output); WGSL has no erf builtin.
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-a * a);
    return select(y, -y, x < 0.0);
}

// Logistic sigmoid written so that exp never overflows (no inf/inf = NaN).
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let s = 1.0 / (1.0 + e);
    return select(1.0 - s, s, x >= 0.0);
}

fn activate(x: f32) -> f32 {
    return apply_activation(ACTIVATION, x);
}

fn apply_activation(code: u32, x: f32) -> f32 {
    switch code {
        case 1u: { return max(x, 0.0); }
        case 2u: { return sigmoid(x); }
        // tanh(±15) is ±1 in f32; the clamp keeps backends that build tanh from exp finite.
        case 3u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 4u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
        case 5u: { return x * sigmoid(x); }
        case 6u: { return select(exp(min(x, 0.0)) - 1.0, x, x > 0.0); }
        case 7u: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case 8u: {
            return 1.0507009873554805 * select(1.6732632423543772 * (exp(min(x, 0.0)) - 1.0), x, x > 0.0);
        }
        case 9u: { return clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 10u: { return clamp(0.2 * x + 0.5, 0.0, 1.0); }
        case 11u: {
            let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh(clamp(inner, -15.0, 15.0)));
        }
        case 12u: { return clamp(x, 0.0, 6.0); }
        case 13u: { return x * clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 14u: {
            let softplus = max(x, 0.0) + log(1.0 + exp(-abs(x)));
            return x * tanh(clamp(softplus, -15.0, 15.0));
        }
        case 15u: { return select(ACTIVATION_SLOPE * x, x, x >= 0.0); }
        case 16u: { return select(ACTIVATION_SLOPE * (exp(min(x, 0.0)) - 1.0), x, x > 0.0); }
        case 17u: { return relu_with(x); }
        default: { return x; }
    }
}
