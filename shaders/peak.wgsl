// peak.wgsl: microkernels that measure what the adapter can do at best, so benchmark
// figures can be read as a fraction of it (`siamese bench --peak`).
// Prepended with common.wgsl (linear_index, LINEAR_WORKGROUP).
//
// Bindings (group 0):
//   0 params  uniform PeakParams { len, iterations, _pad × 2 }
//   1 input   storage read [len] vec4<f32>
//   2 output  storage rw   [len] vec4<f32>
// fma_rate: one invocation per vec4 slot: 8 independent vec4 multiply-add chains of
//   `iterations` steps each (8 × 4 × 2 = 64 FLOP per step), one store at the end so
//   nothing is optimised away. Dispatch: len / LINEAR_WORKGROUP workgroups over x and y.
// copy_bandwidth: output[i] = input[i] (16 bytes read + 16 written per invocation).

struct PeakParams {
    len: u32,
    iterations: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: PeakParams;
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<f32>>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn fma_rate(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index >= params.len {
        return;
    }
    let x = input[index];
    let m = x * 1e-3 + vec4<f32>(0.999);
    var a0 = x;
    var a1 = x + vec4<f32>(1.0);
    var a2 = x + vec4<f32>(2.0);
    var a3 = x + vec4<f32>(3.0);
    var a4 = x + vec4<f32>(4.0);
    var a5 = x + vec4<f32>(5.0);
    var a6 = x + vec4<f32>(6.0);
    var a7 = x + vec4<f32>(7.0);
    for (var i = 0u; i < params.iterations; i += 1u) {
        a0 = fma(a0, m, x);
        a1 = fma(a1, m, x);
        a2 = fma(a2, m, x);
        a3 = fma(a3, m, x);
        a4 = fma(a4, m, x);
        a5 = fma(a5, m, x);
        a6 = fma(a6, m, x);
        a7 = fma(a7, m, x);
    }
    output[index] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

@compute @workgroup_size(LINEAR_WORKGROUP)
fn copy_bandwidth(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index < params.len {
        output[index] = input[index];
    }
}
