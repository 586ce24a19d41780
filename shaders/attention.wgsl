// attention.wgsl: multi-head self-attention core, fused per query: scores, masked softmax
// over keys and the weighted sum of values in one pass (online softmax), so the T×T
// scores never go to global memory.
//   out[b, t, head] = Σ_k softmax_k(scale · q[b,t,head] · k[b,k,head] | mask[b,k]) · v[b,k,head]
//
// Bindings (group 0):
//   0 params  uniform AttentionParams { batch, steps, heads, head_dim, scale, _pad × 3 }
//   1 qkv     storage read [batch·steps, 3·hidden]: q | k | v, each [heads, head_dim]
//             (hidden = heads · head_dim), as one fused projection GEMM writes them
//   2 mask    storage read u32 [batch·steps], 1 for real tokens; padded keys are skipped
//   3 output  storage rw [batch·steps, hidden]
// Dispatch: one invocation per (b, t, head), LINEAR_WORKGROUP per workgroup, spread over x
// and y (prepended with common.wgsl). head_dim <= MAX_HEAD_DIM. A query with no real key
// (fully padded row) gets zeros.

const MAX_HEAD_DIM: u32 = 128u;

struct AttentionParams {
    batch: u32,
    steps: u32,
    heads: u32,
    head_dim: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: AttentionParams;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn self_attention(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    let heads = params.heads;
    if index >= params.batch * params.steps * heads {
        return;
    }
    let head = index % heads;
    let token = index / heads;
    let b = token / params.steps;
    let d = params.head_dim;
    let hidden = heads * d;
    let row = 3u * hidden;
    let q_base = token * row + head * d;

    var acc: array<f32, MAX_HEAD_DIM>;
    for (var i = 0u; i < d; i++) {
        acc[i] = 0.0;
    }
    var running_max = -3.402823e38;
    var total = 0.0;
    for (var key = b * params.steps; key < (b + 1u) * params.steps; key++) {
        if mask[key] == 0u {
            continue;
        }
        let k_base = key * row + hidden + head * d;
        var score = 0.0;
        for (var i = 0u; i < d; i++) {
            score += qkv[q_base + i] * qkv[k_base + i];
        }
        score *= params.scale;
        let new_max = max(running_max, score);
        let correction = exp(running_max - new_max);
        let weight = exp(score - new_max);
        total = total * correction + weight;
        let v_base = k_base + hidden;
        for (var i = 0u; i < d; i++) {
            acc[i] = acc[i] * correction + weight * qkv[v_base + i];
        }
        running_max = new_max;
    }
    let inv_total = select(0.0, 1.0 / total, total > 0.0);
    let out_base = token * hidden + head * d;
    for (var i = 0u; i < d; i++) {
        output[out_base + i] = acc[i] * inv_total;
    }
}
