// reduce.wgsl: a workgroup-wide sum for kernels that run one workgroup of
// REDUCE_WORKGROUP invocations per row (layer norms, pooling), prepended by src/shaders.rs.

const REDUCE_WORKGROUP: u32 = 64u;

var<workgroup> partial: array<f32, REDUCE_WORKGROUP>;

// Sum of `value` over the workgroup: every invocation must call it (it has barriers), and
// every invocation gets the total.
fn workgroup_sum(local: u32, value: f32) -> f32 {
    partial[local] = value;
    workgroupBarrier();
    for (var stride = REDUCE_WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if local < stride {
            partial[local] += partial[local + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
