// add.wgsl: elementwise sum of two tensors of one shape (Keras Add, residual connections).
// Prepended with common.wgsl (linear_index).
//
// Bindings (group 0):
//   0 params  uniform AddParams { len, _pad × 3 }
//   1 a       storage read [len]
//   2 b       storage read [len]
//   3 output  storage rw [len]
// Dispatch: one invocation per element, LINEAR_WORKGROUP per workgroup, spread over x and y.

struct AddParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: AddParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn add(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index < params.len {
        output[index] = a[index] + b[index];
    }
}
