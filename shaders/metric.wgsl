// metric.wgsl: the distance metrics' last step, shared by the pair reduction
// (distance.wgsl) and the gallery search (search.wgsl) so both follow one formula.
// METRIC (override): 0 euclidean sqrt(Σ(a-b)²), 1 squared euclidean Σ(a-b)²,
// 2 cosine 1 - a·b / (|a| |b|), 3 manhattan Σ|a-b|.

override METRIC: u32 = 0u;

// Whether the metric sums (a-b)² (else |a-b|).
fn metric_squares() -> bool {
    return METRIC <= 1u;
}

// Whether x is NaN or ±inf, from its bits: compilers may assume no NaN in float compares.
fn not_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

// A quiet NaN, written where an input value was not finite (the host reports it).
fn nan_bits() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// The power of two 2^-e that brings `largest` (>= 0) into [0.5, 4): summing squares of
// values scaled by it cannot overflow, and, being a power of two, it changes no bits of a
// sum that did not overflow (it is undone exactly by `unscale`). e is kept in [-125, 126]
// so that both the scale and its inverse are normal f32 values.
fn pow2_exponent(largest: f32) -> i32 {
    return clamp(i32((bitcast<u32>(largest) >> 23u) & 0xffu) - 126, -125, 126);
}
fn scale_of(e: i32) -> f32 {
    return bitcast<f32>(u32(127 - e) << 23u);
}
fn unscale_of(e: i32) -> f32 {
    return bitcast<f32>(u32(127 + e) << 23u);
}

// diff: Σ(a-b)² for euclidean / squared euclidean, Σ|a-b| for cosine / manhattan, each
// difference scaled by 2^-e; dot: Σab; norm_a, norm_b: Σa², Σb², with a scaled by 2^-e_a
// and b by 2^-e_b (cosine only). Callers that do not scale pass e = e_a = e_b = 0.
// Guards: identical rows give exactly 0 for every metric (Σ|a-b| = 0 short-cuts cosine,
// whose rounding would otherwise leave ~1e-7); cosine norms are sqrt(max(Σx², 1e-12))
// like Keras' l2_normalize, so zero vectors give no NaN; cosine is clamped at 0 from below.
fn finish_metric_scaled(diff: f32, dot: f32, norm_a: f32, norm_b: f32, e: i32, e_a: i32, e_b: i32) -> f32 {
    let unscale = unscale_of(e);
    switch METRIC {
        case 0u: { return sqrt(diff) * unscale; }
        case 1u: { return diff * unscale * unscale; }
        case 2u: {
            if diff == 0.0 {
                return 0.0;
            }
            // 1 / max(|a|, 1e-6) in terms of the scaled sums: |a| = sqrt(norm_a) · 2^e_a.
            let unscale_a = unscale_of(e_a);
            let unscale_b = unscale_of(e_b);
            let tiny_a = norm_a * unscale_a * unscale_a < 1e-12;
            let tiny_b = norm_b * unscale_b * unscale_b < 1e-12;
            let factor_a = select(inverseSqrt(norm_a), unscale_a * 1e6, tiny_a);
            let factor_b = select(inverseSqrt(norm_b), unscale_b * 1e6, tiny_b);
            let cosine = dot * factor_a * factor_b;
            return max(1.0 - cosine, 0.0);
        }
        default: { return diff * unscale; }
    }
}

// finish_metric_scaled for sums of unscaled values.
fn finish_metric(diff: f32, dot: f32, norm_a: f32, norm_b: f32) -> f32 {
    return finish_metric_scaled(diff, dot, norm_a, norm_b, 0, 0, 0);
}
