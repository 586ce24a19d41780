// layer_norm.wgsl: residual add + LayerNorm over the last axis (BERT's "Add & Norm"):
//   output[row] = LayerNorm(input[row] + residual[row]) · gamma + beta
//
// Bindings (group 0):
//   0 params    uniform LayerNormParams { rows, hidden, eps, has_residual }
//   1 input     storage read [rows, hidden]
//   2 residual  storage read [rows, hidden] (ignored when has_residual = 0)
//   3 affine    storage read gamma [hidden], then beta [hidden]
//   4 output    storage rw [rows, hidden]
// Prepended with common.wgsl and reduce.wgsl.
// Dispatch: one workgroup of REDUCE_WORKGROUP (64) invocations per row (spread over x and y). Two-pass
// statistics (mean, then Σ(x − mean)²), as PyTorch computes them.

struct LayerNormParams {
    rows: u32,
    hidden: u32,
    eps: f32,
    has_residual: u32,
}

@group(0) @binding(0) var<uniform> params: LayerNormParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> residual: array<f32>;
@group(0) @binding(3) var<storage, read> affine: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(REDUCE_WORKGROUP)
fn add_layer_norm(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = workgroup_index(workgroup, num_workgroups);
    if row >= params.rows {
        return;
    }
    let h = params.hidden;
    let base = row * h;
    var sum = 0.0;
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        var value = input[base + i];
        if params.has_residual != 0u {
            value += residual[base + i];
        }
        output[base + i] = value;
        sum += value;
    }
    let mean = workgroup_sum(local, sum) / f32(h);
    var squares = 0.0;
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        let d = output[base + i] - mean;
        squares += d * d;
    }
    let inv_std = inverseSqrt(workgroup_sum(local, squares) / f32(h) + params.eps);
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        output[base + i] = (output[base + i] - mean) * inv_std * affine[i] + affine[h + i];
    }
}
