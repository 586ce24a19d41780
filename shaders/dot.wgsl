// dot.wgsl: Keras Dot over the last axis of two [rows, len] tensors, one value per row:
//   output[r] = Σ_i a[r, i] · b[r, i]
// and with NORMALIZE = 1 (Dot(normalize=True): cosine similarity) each side first scaled by
// min(rsqrt(Σ x²), 1 / EPSILON), as Keras 3's ops.normalize does (epsilon 1e-7).
// Prepended with common.wgsl (linear_index).
//
// Override constant NORMALIZE: 0 plain dot product, 1 L2-normalised sides.
//
// Bindings (group 0):
//   0 params  uniform DotParams { rows, len, _pad × 2 }
//   1 a       storage read [rows · len]
//   2 b       storage read [rows · len]
//   3 output  storage rw [rows]
// Dispatch: one invocation per row, LINEAR_WORKGROUP (256) per workgroup, spread over x
// and y (a twin head has one row per pair, far fewer rows than values per row).

override NORMALIZE: u32 = 0u;

const EPSILON: f32 = 1e-7;

struct DotParams {
    rows: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: DotParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn dot_rows(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = linear_index(workgroup, num_workgroups, local);
    if row >= params.rows {
        return;
    }
    let base = row * params.len;
    var ab = 0.0;
    var aa = 0.0;
    var bb = 0.0;
    for (var i = 0u; i < params.len; i += 1u) {
        let x = a[base + i];
        let y = b[base + i];
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if NORMALIZE == 1u {
        ab = ab * min(inverseSqrt(aa), 1.0 / EPSILON) * min(inverseSqrt(bb), 1.0 / EPSILON);
    }
    output[row] = ab;
}
