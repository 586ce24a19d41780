// dense.wgsl: output = activate(input · kernel + bias), Keras Dense.
//
// Bindings (group 0):
//   0 params  uniform DenseParams { rows, in_features, out_features, _pad }
//   1 input   storage read  [rows, in_features] row-major
//   2 kernel  storage read  [in_features, out_features] row-major (Keras layout)
//   3 bias    storage read  [out_features] (zeros when the layer has no bias)
//   4 output  storage rw    [rows, out_features]
// Dispatch: workgroup 8×8; one invocation computes a 4×4 block of outputs (4 rows × 4
// columns), so x = ceil(out_features / 32), y = ceil(rows / 32).
// Register blocking: each loaded input value is used 4 times and each kernel value 4 times
// from registers; this beat workgroup-memory tiling on lavapipe and costs nothing on GPUs.
// Out-of-range rows/columns are clamped for loads (always in bounds, no branch in the inner
// loop) and skipped at the store.

struct DenseParams {
    rows: u32,
    in_features: u32,
    out_features: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: DenseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(8, 8)
fn dense(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if row0 >= params.rows || col0 >= params.out_features {
        return;
    }
    let k_len = params.in_features;
    let n = params.out_features;
    let last_row = params.rows - 1u;
    let last_col = n - 1u;
    let a0 = min(row0, last_row) * k_len;
    let a1 = min(row0 + 1u, last_row) * k_len;
    let a2 = min(row0 + 2u, last_row) * k_len;
    let a3 = min(row0 + 3u, last_row) * k_len;
    let c0 = col0;
    let c1 = min(col0 + 1u, last_col);
    let c2 = min(col0 + 2u, last_col);
    let c3 = min(col0 + 3u, last_col);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < k_len; k++) {
        let w = k * n;
        let b = vec4<f32>(kernel[w + c0], kernel[w + c1], kernel[w + c2], kernel[w + c3]);
        acc0 += input[a0 + k] * b;
        acc1 += input[a1 + k] * b;
        acc2 += input[a2 + k] * b;
        acc3 += input[a3 + k] * b;
    }

    let bias4 = vec4<f32>(bias[c0], bias[c1], bias[c2], bias[c3]);
    store_row(row0, col0, acc0 + bias4);
    store_row(row0 + 1u, col0, acc1 + bias4);
    store_row(row0 + 2u, col0, acc2 + bias4);
    store_row(row0 + 3u, col0, acc3 + bias4);
}

fn store_row(row: u32, col0: u32, value: vec4<f32>) {
    if row >= params.rows {
        return;
    }
    let base = row * params.out_features;
    for (var j = 0u; j < 4u; j++) {
        if col0 + j < params.out_features {
            output[base + col0 + j] = activate(value[j]);
        }
    }
}
