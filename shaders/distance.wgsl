// distance.wgsl: the Siamese reduction. The encoder ran on one batch of 2N rows (rows
// 0..N the left twin, N..2N the right); pair i compares rows i and N+i, each flattened to
// `dim` values (the reduction runs over all non-batch axes).
// Prepended with common.wgsl (linear_index and LINEAR_WORKGROUP), reduce.wgsl
// (workgroup_sum) and metric.wgsl (METRIC, finish_metric).
//
// Bindings (group 0):
//   0 params     uniform DistanceParams { pairs, dim, _pad × 2 }
//   1 embedding  storage read [2 * pairs, dim]
//   2 distance   storage rw   [pairs]
//   3 head       storage read [dim + 1] learned head w then b (pair_match_probability only)
// Dispatch: one workgroup of 256 invocations per pair (spread over x and y); each
// invocation accumulates a strided slice, then a tree reduction in workgroup memory.
// METRIC (override): 0 euclidean sqrt(Σ(a-b)²), 1 squared euclidean Σ(a-b)²,
// 2 cosine 1 - a·b / (|a| |b|), 3 manhattan Σ|a-b|.
// pair_match_probability: the learned metric head (Koch et al. 2015),
// σ(Σ_j w_j·|a_j − b_j| + b), one workgroup of REDUCE_WORKGROUP per pair (reduce.wgsl); SQUARED (override) = 1 uses
// (a_j − b_j)² instead (a Keras head of Subtract → Multiply(d, d) → Dense(1, sigmoid)).
// Numeric guards: identical rows give exactly 0 for every metric (Σ|a-b| = 0 short-cuts
// cosine, whose rounding would otherwise leave ~1e-7); cosine uses |x| =
// sqrt(max(Σx², 1e-12)) like Keras' l2_normalize, so zero vectors give no NaN; cosine is
// clamped at 0 from below. Large finite embeddings give finite distances: when the plain
// sums overflow (or Σ(a-b)² underflows while the rows differ), the pair is summed again
// over values scaled by powers of two (metric.wgsl's pow2_exponent, from the largest |a|,
// |b|), so Σ(a-b)² cannot overflow when the distance itself fits f32; the plain sums,
// kept otherwise, are the same bits as before. A NaN or infinite embedding value makes
// its pair's result NaN (never a clamped 0 or 1), which the host reports naming the twin
// and row.

override SQUARED: u32 = 0u;

struct DistanceParams {
    pairs: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: DistanceParams;
@group(0) @binding(1) var<storage, read> embedding: array<f32>;
@group(0) @binding(2) var<storage, read_write> distance: array<f32>;
@group(0) @binding(3) var<storage, read> head: array<f32>;

// x: Σ(a-b)², y: Σ|a-b|, z: Σab; norms: x Σa², y Σb² (of scaled values on the slow path).
var<workgroup> partial_diff: array<vec3<f32>, LINEAR_WORKGROUP>;
var<workgroup> partial_norm: array<vec2<f32>, LINEAR_WORKGROUP>;
// Slow path, first pass: x max|a|, y max|b|, z 1.0 when a value is NaN or infinite.
var<workgroup> partial_max: array<vec3<f32>, LINEAR_WORKGROUP>;
// 1 when the plain sums overflowed or underflowed: the pair is summed again, scaled.
var<workgroup> rescale: u32;

// Sums over the pair, with d = a·s − b·s and a·s_a, b·s_b (s = 1: the plain sums), into
// partial_diff[0] and partial_norm[0]. Every invocation must call it (it has barriers).
fn sum_pair(left: u32, right: u32, local: u32, s: f32, s_a: f32, s_b: f32) {
    var diff = vec3<f32>(0.0);
    var norm = vec2<f32>(0.0);
    for (var i = local; i < params.dim; i += LINEAR_WORKGROUP) {
        let a = embedding[left + i];
        let b = embedding[right + i];
        let d = a * s - b * s;
        let a1 = a * s_a;
        let b1 = b * s_b;
        diff += vec3<f32>(d * d, abs(d), a1 * b1);
        norm += vec2<f32>(a1 * a1, b1 * b1);
    }
    partial_diff[local] = diff;
    partial_norm[local] = norm;
    workgroupBarrier();
    for (var stride = LINEAR_WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if local < stride {
            partial_diff[local] += partial_diff[local + stride];
            partial_norm[local] += partial_norm[local + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(LINEAR_WORKGROUP)
fn pair_distance(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // One workgroup per pair: the "element" index of linear_index is the pair here.
    let pair = workgroup_index(workgroup, num_workgroups);
    // `pair` is uniform across the workgroup, so this early exit keeps barriers uniform.
    if pair >= params.pairs {
        return;
    }
    let left = pair * params.dim;
    let right = (pair + params.pairs) * params.dim;
    // Fast path: the plain sums (no scaling), kept unless they overflowed (or a value was
    // not finite) or the squares underflowed while the values differ.
    sum_pair(left, right, local, 1.0, 1.0, 1.0);
    if local == 0u {
        let total = partial_diff[0];
        let norms = partial_norm[0];
        let overflow = not_finite(total.x) || not_finite(total.y) || not_finite(total.z)
            || not_finite(norms.x) || not_finite(norms.y);
        let underflow = metric_squares() && total.x < 1e-30 && total.y > 0.0;
        rescale = select(0u, 1u, overflow || underflow);
        if !(overflow || underflow) {
            distance[pair] = finish_metric(select(total.y, total.x, metric_squares()), total.z, norms.x, norms.y);
        }
    }
    if workgroupUniformLoad(&rescale) == 0u {
        return;
    }
    // Slow path: the largest |a|, |b| (and whether a value is not finite), then the sums
    // of values scaled by powers of two.
    var largest = vec3<f32>(0.0);
    for (var i = local; i < params.dim; i += LINEAR_WORKGROUP) {
        let a = embedding[left + i];
        let b = embedding[right + i];
        let bad = not_finite(a) || not_finite(b);
        largest = max(largest, vec3<f32>(abs(a), abs(b), select(0.0, 1.0, bad)));
    }
    partial_max[local] = largest;
    workgroupBarrier();
    for (var stride = LINEAR_WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if local < stride {
            partial_max[local] = max(partial_max[local], partial_max[local + stride]);
        }
        workgroupBarrier();
    }
    let extremes = workgroupUniformLoad(&partial_max[0]);
    // A non-finite value: this pair's result is NaN, whatever the metric.
    if extremes.z != 0.0 {
        if local == 0u {
            distance[pair] = nan_bits();
        }
        return;
    }
    // One scale for the difference (from the larger of the two rows), one per row for
    // cosine's dot product and norms.
    let e = pow2_exponent(max(extremes.x, extremes.y));
    let e_a = pow2_exponent(extremes.x);
    let e_b = pow2_exponent(extremes.y);
    sum_pair(left, right, local, scale_of(e), scale_of(e_a), scale_of(e_b));
    if local == 0u {
        let total = partial_diff[0];
        let norms = partial_norm[0];
        let summed = select(total.y, total.x, metric_squares());
        distance[pair] = finish_metric_scaled(summed, total.z, norms.x, norms.y, e, e_a, e_b);
    }
}

@compute @workgroup_size(REDUCE_WORKGROUP)
fn pair_match_probability(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let pair = workgroup_index(workgroup, num_workgroups);
    if pair >= params.pairs {
        return;
    }
    let left = pair * params.dim;
    let right = (pair + params.pairs) * params.dim;
    var sum = 0.0;
    var bad = 0.0;
    for (var i = local; i < params.dim; i += REDUCE_WORKGROUP) {
        let a = embedding[left + i];
        let b = embedding[right + i];
        let d = a - b;
        sum += head[i] * select(abs(d), d * d, SQUARED == 1u);
        bad = max(bad, select(0.0, 1.0, not_finite(a) || not_finite(b)));
    }
    let z = workgroup_sum(local, sum) + head[params.dim];
    let any_bad = workgroup_sum(local, bad);
    if local == 0u {
        distance[pair] = select(1.0 / (1.0 + exp(-z)), nan_bits(), any_bad != 0.0);
    }
}
