// residual.wgsl: the residual input of the `*_residual` GEMM modules (dense, conv2d).
// A residual `Add` fused in: the epilogue is activate(value + bias + residual) at the
// same output index (never with conv2d's POOLED). Only these modules declare binding 5,
// so the others stay within downlevel's 4 storage buffers per stage.
//   5 residual storage read, the output's shape and layout
@group(0) @binding(5) var<storage, read> residual: array<f32>;

fn add_residual(sum: f32, index: u32) -> f32 {
    return sum + residual[index];
}
