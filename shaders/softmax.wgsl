// softmax.wgsl: reductions along one run of axes, in place: Keras Softmax and the softmax /
// log_softmax activations (MODE 0, 1), and UnitNormalization (MODE 2).
// Prepended with common.wgsl (workgroup_index) and reduce.wgsl (workgroup_sum, `partial`).
//
// A tensor is viewed as [outer, axis_len, inner] (the reduced axes merged into axis_len);
// one row is the axis_len values (outer o, inner i), at (o · axis_len + k) · inner + i.
//
// Bindings (group 0):
//   0 params  uniform AxisParams { rows (= outer · inner), axis_len, inner, _pad }
//   1 data    storage rw [outer · axis_len · inner], overwritten with the result
// Dispatch: one workgroup of REDUCE_WORKGROUP (64) invocations per row (spread over x and
// y); invocation `local` reads and writes the values k = local, local + 64, ... of its row
// only, so working in place is safe.
// MODE (override): 0 softmax exp(x − max) / Σ exp(x − max) (max subtracted: no overflow);
// 1 log_softmax (x − max) − log Σ exp(x − max); 2 L2 normalisation as Keras 3's
// ops.normalize(order=2, epsilon=1e-12): x · min(rsqrt(Σ x²), 1e12).

override MODE: u32 = 0u;

struct AxisParams {
    rows: u32,
    axis_len: u32,
    inner: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: AxisParams;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;

// Maximum of `value` over the workgroup (same contract as workgroup_sum).
fn workgroup_max(local: u32, value: f32) -> f32 {
    partial[local] = value;
    workgroupBarrier();
    for (var stride = REDUCE_WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if local < stride {
            partial[local] = max(partial[local], partial[local + stride]);
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(REDUCE_WORKGROUP)
fn softmax(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let row = workgroup_index(workgroup, num_workgroups);
    if row >= params.rows {
        return;
    }
    let n = params.axis_len;
    let stride = params.inner;
    let base = (row / stride) * n * stride + row % stride;
    if MODE == 2u {
        var squares = 0.0;
        for (var k = local; k < n; k += REDUCE_WORKGROUP) {
            let value = data[base + k * stride];
            squares += value * value;
        }
        let total = workgroup_sum(local, squares);
        // rsqrt(Σ) > 1e12 exactly when Σ < 1e-24 (zero rows stay zero).
        let scale = select(1e12, inverseSqrt(total), total >= 1e-24);
        for (var k = local; k < n; k += REDUCE_WORKGROUP) {
            data[base + k * stride] *= scale;
        }
        return;
    }
    var maximum = -3.402823e38;
    for (var k = local; k < n; k += REDUCE_WORKGROUP) {
        maximum = max(maximum, data[base + k * stride]);
    }
    maximum = workgroup_max(local, maximum);
    var sum = 0.0;
    for (var k = local; k < n; k += REDUCE_WORKGROUP) {
        sum += exp(data[base + k * stride] - maximum);
    }
    let total = workgroup_sum(local, sum);
    let log_total = log(total);
    for (var k = local; k < n; k += REDUCE_WORKGROUP) {
        let shifted = data[base + k * stride] - maximum;
        if MODE == 0u {
            data[base + k * stride] = exp(shifted) / total;
        } else {
            data[base + k * stride] = shifted - log_total;
        }
    }
}
