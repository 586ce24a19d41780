// embedding.wgsl: BERT input embeddings with their LayerNorm fused:
//   out[token] = LayerNorm(word[id] + position[t] + token_type[type]) · gamma + beta
// (token = b·steps + t).
//
// Bindings (group 0):
//   0 params  uniform EmbeddingParams { tokens, steps, hidden, vocab, types, positions, eps, _pad }
//   1 ids     storage read f32 [tokens, 2]: (token id, token type id) per token, exact integers
//   2 word    storage read [vocab, hidden]
//   3 extras  storage read position [positions, hidden], then token type [types, hidden],
//             then gamma [hidden], then beta [hidden]
//   4 output  storage rw [tokens, hidden]
// Prepended with common.wgsl and reduce.wgsl.
// Dispatch: one workgroup of REDUCE_WORKGROUP (64) invocations per token (spread over x and y). Ids are
// checked on the host; out-of-range ids are clamped here so a bad id can never read out of
// bounds.

struct EmbeddingParams {
    tokens: u32,
    steps: u32,
    hidden: u32,
    vocab: u32,
    types: u32,
    positions: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: EmbeddingParams;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
@group(0) @binding(2) var<storage, read> word: array<f32>;
@group(0) @binding(3) var<storage, read> extras: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(REDUCE_WORKGROUP)
fn embed_tokens(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let token = workgroup_index(workgroup, num_workgroups);
    if token >= params.tokens {
        return;
    }
    let h = params.hidden;
    let id = min(u32(max(ids[2u * token], 0.0)), params.vocab - 1u);
    let kind = min(u32(max(ids[2u * token + 1u], 0.0)), params.types - 1u);
    let t = min(token % params.steps, params.positions - 1u);
    let type_base = params.positions * h;
    let gamma_base = type_base + params.types * h;
    let beta_base = gamma_base + h;
    var sum = 0.0;
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        let value = word[id * h + i] + extras[t * h + i] + extras[type_base + kind * h + i];
        output[token * h + i] = value;
        sum += value;
    }
    let mean = workgroup_sum(local, sum) / f32(h);
    var squares = 0.0;
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        let d = output[token * h + i] - mean;
        squares += d * d;
    }
    let inv_std = inverseSqrt(workgroup_sum(local, squares) / f32(h) + params.eps);
    for (var i = local; i < h; i += REDUCE_WORKGROUP) {
        output[token * h + i] = (output[token * h + i] - mean) * inv_std * extras[gamma_base + i] + extras[beta_base + i];
    }
}
