// elementwise.wgsl: a standalone activation (Keras Activation / ReLU layers that could
// not be fused into the op before them), applied in place. Prepended with common.wgsl
// (linear_index) and activation.wgsl (activate, override ACTIVATION).
//
// Bindings (group 0):
//   0 params  uniform ElementwiseParams { len, _pad × 3 }
//   1 data    storage rw [len]
// Dispatch: one invocation per element, LINEAR_WORKGROUP (256) per workgroup, spread
// over x and y.

struct ElementwiseParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ElementwiseParams;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn activate_in_place(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index < params.len {
        data[index] = activate(data[index]);
    }
}
