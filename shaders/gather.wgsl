// gather.wgsl: a table lookup (Keras Embedding): out[token, i] = table[id(token), i].
// Ids arrive as the model input, f32 values that the host checked are integers in
// [0, vocab); they are clamped again here so a bad id can never read out of bounds.
// Prepended with common.wgsl (linear_index).
//
// Bindings (group 0):
//   0 params  uniform GatherParams { tokens, dim, vocab, _pad }
//   1 ids     storage read [tokens] f32 token ids
//   2 table   storage read [vocab, dim]
//   3 output  storage rw [tokens, dim]
// Dispatch: one invocation per output value, LINEAR_WORKGROUP per workgroup, spread over x and y.

struct GatherParams {
    tokens: u32,
    dim: u32,
    vocab: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: GatherParams;
@group(0) @binding(1) var<storage, read> ids: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn gather_rows(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index >= params.tokens * params.dim {
        return;
    }
    let token = index / params.dim;
    let i = index % params.dim;
    let id = min(u32(max(ids[token], 0.0)), params.vocab - 1u);
    output[index] = table[id * params.dim + i];
}
