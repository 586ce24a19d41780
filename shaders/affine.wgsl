// affine.wgsl: a per-channel scale and shift over the last axis, with an activation fused:
//   output[i] = activate(input[i] · scale[c] + shift[c]),  c = i mod channels.
// Inference BatchNormalization is this with scale = γ / √(σ² + ε) and shift = β − μ·scale,
// computed on the host the way Keras computes them (`x · inv + (β − μ · inv)`).
// Prepended with common.wgsl (linear_index) and activation.wgsl (activate, override
// ACTIVATION).
//
// Bindings (group 0):
//   0 params        uniform AffineParams { len, channels, _pad × 2 }
//   1 input         storage read [len]
//   2 coefficients  storage read [channels] scale, then [channels] shift
//   3 output        storage rw [len]
// Dispatch: one invocation per element, LINEAR_WORKGROUP (256) per workgroup, spread
// over x and y.

struct AffineParams {
    len: u32,
    channels: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: AffineParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> coefficients: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn channel_affine(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index < params.len {
        let c = index % params.channels;
        output[index] = activate(input[index] * coefficients[c] + coefficients[params.channels + c]);
    }
}
