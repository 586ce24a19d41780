// prelu.wgsl: Keras PReLU in place, a trained slope per value:
//   data[i] = data[i] >= 0 ? data[i] : alpha[i mod alpha_len] · data[i]
// (Keras: relu(x) − alpha · relu(−x)). The host stores alpha over the trailing axes it varies
// along (per channel: alpha_len = channels), repeated over the shared leading ones.
// Prepended with common.wgsl (linear_index).
//
// Bindings (group 0):
//   0 params  uniform PreluParams { len, alpha_len, _pad × 2 }
//   1 alpha   storage read [alpha_len]
//   2 data    storage rw [len]
// Dispatch: one invocation per element, LINEAR_WORKGROUP (256) per workgroup, spread over
// x and y.

struct PreluParams {
    len: u32,
    alpha_len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: PreluParams;
@group(0) @binding(1) var<storage, read> alpha: array<f32>;
@group(0) @binding(2) var<storage, read_write> data: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn prelu(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index < params.len {
        let x = data[index];
        data[index] = select(alpha[index % params.alpha_len] * x, x, x >= 0.0);
    }
}
