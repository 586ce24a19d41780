// no_residual.wgsl: the GEMM modules built without a residual input (no binding 5).
fn add_residual(sum: f32, index: u32) -> f32 {
    return sum;
}
