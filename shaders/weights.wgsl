// weights.wgsl: how GEMM-like kernels (dense, conv2d) read 8 consecutive columns of one
// kernel row, for both weight formats. Prepended to those kernels; they declare
// `kernel: array<u32>` at binding 2.
//
// HALF_WEIGHTS = false: the words are f32 bits; `row` is the row's first word and `c` the
//   8 column indices, already clamped into the row.
// HALF_WEIGHTS = true: the weights were rounded to f16 on upload (`--precision f16`) and
//   packed two per word, low half first, each row padded with zeros to a multiple of 8
//   columns, so columns col0..col0+7 (col0 a multiple of 8) are 4 whole words: half the
//   memory and upload, and 4 loads instead of 8. Arithmetic stays f32 (unpack2x16float is
//   core WGSL: no SHADER_F16 needed, so this runs on every backend).

override HALF_WEIGHTS: bool = false;

fn kernel_row8(row: u32, col0: u32, c: array<u32, 8>) -> array<vec4<f32>, 2> {
    if HALF_WEIGHTS {
        let at = row + col0 / 2u;
        let p0 = unpack2x16float(kernel[at]);
        let p1 = unpack2x16float(kernel[at + 1u]);
        let p2 = unpack2x16float(kernel[at + 2u]);
        let p3 = unpack2x16float(kernel[at + 3u]);
        return array<vec4<f32>, 2>(vec4<f32>(p0, p1), vec4<f32>(p2, p3));
    }
    return array<vec4<f32>, 2>(
        vec4<f32>(
            bitcast<f32>(kernel[row + c[0]]),
            bitcast<f32>(kernel[row + c[1]]),
            bitcast<f32>(kernel[row + c[2]]),
            bitcast<f32>(kernel[row + c[3]]),
        ),
        vec4<f32>(
            bitcast<f32>(kernel[row + c[4]]),
            bitcast<f32>(kernel[row + c[5]]),
            bitcast<f32>(kernel[row + c[6]]),
            bitcast<f32>(kernel[row + c[7]]),
        ),
    );
}
