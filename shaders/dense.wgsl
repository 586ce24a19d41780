// dense.wgsl: output = activate(input · kernel + bias [+ residual]), Keras Dense.
//
// Bindings (group 0):
//   0 params  uniform DenseParams { rows, in_features, out_features, kernel_stride }
//   1 input   storage read  [rows, in_features] row-major
//   2 kernel  storage read  [in_features, out_features] row-major (Keras layout), as f32
//             bits (weights.wgsl), or as packed f16 rows padded to a multiple of 8 columns
//             (weights_f16.wgsl, the `dense_f16` module); kernel_stride words per row
//   3 bias    storage read  [out_features] (zeros when the layer has no bias)
//   4 output  storage rw    [rows, out_features]
//   5 residual storage read [rows, out_features], added before the activation: only in
//             `dense_residual` / `dense_residual_f16` (residual.wgsl)
// Dispatch: workgroup 8×8; one invocation computes a block of ROWS rows × 8 columns, so
// x = ceil(out_features / 64), y = ceil(rows / (8 × ROWS)).
//
// Register blocking: each kernel value loaded is used ROWS times and each input value 8
// times from registers. On lavapipe every storage load costs about as much as six vector
// multiply-adds, so the block is as tall as the compiler keeps in registers: measured on
// a 15488×288×64 GEMM, 4×4 blocks ran 10 GFLOP/s, 8×8 18, 16×8 20 (half of `bench
// --peak`), and 24×8 5 (the accumulator arrays are no longer unrolled into registers).
// The loops over the block have constant bounds, so the compiler unrolls them and keeps
// `lo`/`hi` in registers. Out-of-range rows/columns are clamped for loads (always in
// bounds, no branch in the inner loop) and skipped at the store.

struct DenseParams {
    rows: u32,
    in_features: u32,
    out_features: u32,
    kernel_stride: u32,
}

@group(0) @binding(0) var<uniform> params: DenseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Rows per invocation (columns are fixed at 8: two vec4 accumulators per row). Keep in
// step with `ROWS` in src/ops/dense.rs.
const ROWS: u32 = 16u;

@compute @workgroup_size(8, 8)
fn dense(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * ROWS;
    let col0 = gid.x * 8u;
    if row0 >= params.rows || col0 >= params.out_features {
        return;
    }
    let k_len = params.in_features;
    let n = params.out_features;
    let last_row = params.rows - 1u;
    let last_col = n - 1u;
    var a: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        a[r] = min(row0 + r, last_row) * k_len;
    }
    var c: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        c[j] = min(col0 + j, last_col);
    }

    // Columns col0..col0+3 in lo, col0+4..col0+7 in hi.
    var lo: array<vec4<f32>, ROWS>;
    var hi: array<vec4<f32>, ROWS>;
    for (var k = 0u; k < k_len; k++) {
        let b = kernel_row8(k * params.kernel_stride, col0, c);
        let b_lo = b[0];
        let b_hi = b[1];
        for (var r = 0u; r < ROWS; r++) {
            let x = input[a[r] + k];
            lo[r] += x * b_lo;
            hi[r] += x * b_hi;
        }
    }

    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r;
        if row >= params.rows {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            if col0 + j < n {
                let value = select(hi[r][j % 4u], lo[r][j % 4u], j < 4u);
                let index = row * n + col0 + j;
                output[index] = activate(add_residual(value + bias[c[j]], index));
            }
        }
    }
}
