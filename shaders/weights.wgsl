// weights.wgsl: how GEMM-like kernels (dense, conv2d) read 8 consecutive columns of one
// kernel row stored as f32. Prepended to those kernels; they declare
// `kernel: array<u32>` at binding 2 (f32 bits). `row` is the row's first word and `c` the
// 8 column indices, already clamped into the row. weights_f16.wgsl is the same function
// for f16 weights (`--precision f16`), in a module of its own (dense_f16, conv2d_f16) so
// that the f32 kernels need no optional capability.

fn kernel_row8(row: u32, col0: u32, c: array<u32, 8>) -> array<vec4<f32>, 2> {
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
