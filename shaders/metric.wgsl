// metric.wgsl: the distance metrics' last step, shared by the pair reduction
// (distance.wgsl) and the gallery search (search.wgsl) so both give the same numbers.
// METRIC (override): 0 euclidean sqrt(Σ(a-b)²), 1 squared euclidean Σ(a-b)²,
// 2 cosine 1 - a·b / (|a| |b|), 3 manhattan Σ|a-b|.

override METRIC: u32 = 0u;

// Whether the metric sums (a-b)² (else |a-b|).
fn metric_squares() -> bool {
    return METRIC <= 1u;
}

// diff: Σ(a-b)² for euclidean / squared euclidean, Σ|a-b| for cosine / manhattan;
// dot: Σab; norm_a, norm_b: Σa², Σb² (cosine only).
// Guards: identical rows give exactly 0 for every metric (Σ|a-b| = 0 short-cuts cosine,
// whose rounding would otherwise leave ~1e-7); cosine norms are sqrt(max(Σx², 1e-12))
// like Keras' l2_normalize, so zero vectors give no NaN; cosine is clamped at 0 from below.
fn finish_metric(diff: f32, dot: f32, norm_a: f32, norm_b: f32) -> f32 {
    switch METRIC {
        case 0u: { return sqrt(diff); }
        case 1u: { return diff; }
        case 2u: {
            if diff == 0.0 {
                return 0.0;
            }
            let cosine = dot * inverseSqrt(max(norm_a, 1e-12)) * inverseSqrt(max(norm_b, 1e-12));
            return max(1.0 - cosine, 0.0);
        }
        default: { return diff; }
    }
}
