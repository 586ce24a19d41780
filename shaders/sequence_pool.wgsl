// sequence_pool.wgsl: sentence embeddings from token states: the mean over real tokens
// (sentence-transformers' mean pooling), optionally L2-normalised (its Normalize module).
//   out[b] = normalize(Σ_t mask[b,t] · x[b,t] / max(Σ_t mask[b,t], 1e-9))
// Prepended with common.wgsl and reduce.wgsl.
//
// Bindings (group 0):
//   0 params  uniform SequencePoolParams { batch, steps, hidden, normalize }
//   1 input   storage read [batch, steps, hidden]
//   2 mask    storage read u32 [batch, steps]
//   3 output  storage rw [batch, hidden]
// Dispatch: one workgroup of REDUCE_WORKGROUP (64) invocations per sequence (x and y).
// Normalisation divides by max(|x|, 1e-12), as torch.nn.functional.normalize does.

struct SequencePoolParams {
    batch: u32,
    steps: u32,
    hidden: u32,
    normalize: u32,
}

@group(0) @binding(0) var<uniform> params: SequencePoolParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(REDUCE_WORKGROUP)
fn masked_mean_pool(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let b = workgroup_index(workgroup, num_workgroups);
    if b >= params.batch {
        return;
    }
    let h = params.hidden;
    var count = 0.0;
    for (var t = 0u; t < params.steps; t++) {
        count += f32(mask[b * params.steps + t]);
    }
    let inv_count = 1.0 / max(count, 1e-9);
    var squares = 0.0;
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        var sum = 0.0;
        for (var t = 0u; t < params.steps; t++) {
            sum += f32(mask[b * params.steps + t]) * input[(b * params.steps + t) * h + i];
        }
        let mean = sum * inv_count;
        output[b * h + i] = mean;
        squares += mean * mean;
    }
    let norm = sqrt(workgroup_sum(local, squares));
    if params.normalize != 0u {
        let inv_norm = 1.0 / max(norm, 1e-12);
        for (var i = local; i < h; i += REDUCE_WORKGROUP) {
            output[b * h + i] *= inv_norm;
        }
    }
}
