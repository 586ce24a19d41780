// strided.wgsl: one elementwise kernel over strided views, for every layer that combines or
// moves values without arithmetic of its own:
//   for each index i of an iteration space of `rank` axes (sizes `dims`, row-major),
//   output[out_offset + Σ c_k·out_strides[k]] =
//       combine(a[a_offset + Σ c_k·a_strides[k]], b[b_offset + Σ c_k·b_strides[k]]) / divisor
// where c_k is i's coordinate on axis k. A stride of 0 broadcasts that operand along the
// axis (Keras merges of `[N,1,1,C]` and `[N,H,W,C]`, a scalar constant), permuted strides
// transpose (Permute), and an output stride larger than the input's writes a slab of a
// larger tensor (Concatenate). `plain` = 1 when all three are contiguous over the same
// space: no coordinate arithmetic. `divisor` is 1 except for the last step of Average.
// Prepended with common.wgsl (linear_index).
//
// Override constant OP: 0 a (copy), 1 a + b, 2 a - b, 3 a · b, 4 a / b, 5 max(a, b), 6 min(a, b),
// 7 |a - b|, 8 (a - b)².
//
// Bindings (group 0):
//   0 params  uniform StridedParams
//   1 a       storage read
//   2 b       storage read (any buffer when OP = 0: it is not read)
//   3 output  storage rw
// Dispatch: one invocation per index of the iteration space, LINEAR_WORKGROUP per workgroup,
// spread over x and y.

override OP: u32 = 1u;

struct StridedParams {
    len: u32,
    rank: u32,
    plain: u32,
    divisor: f32,
    out_offset: u32,
    a_offset: u32,
    b_offset: u32,
    _pad0: u32,
    dims: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
    out_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: StridedParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

fn combine(x: f32, y: f32) -> f32 {
    switch OP {
        case 1u: { return x + y; }
        case 2u: { return x - y; }
        case 3u: { return x * y; }
        case 4u: { return x / y; }
        case 5u: { return max(x, y); }
        case 6u: { return min(x, y); }
        case 7u: { return abs(x - y); }
        case 8u: { let d = x - y; return d * d; }
        default: { return x; }
    }
}

@compute @workgroup_size(LINEAR_WORKGROUP)
fn strided(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    if index >= params.len {
        return;
    }
    var ia = index;
    var ib = index;
    var io = index;
    if params.plain == 0u {
        ia = 0u;
        ib = 0u;
        io = 0u;
        var rest = index;
        for (var k = 0u; k < params.rank; k += 1u) {
            let axis = params.rank - 1u - k;
            let v = axis / 4u;
            let l = axis % 4u;
            let size = params.dims[v][l];
            let c = rest % size;
            rest = rest / size;
            ia += c * params.a_strides[v][l];
            ib += c * params.b_strides[v][l];
            io += c * params.out_strides[v][l];
        }
    }
    var value = a[params.a_offset + ia];
    if OP != 0u {
        value = combine(value, b[params.b_offset + ib]);
    }
    output[params.out_offset + io] = value / params.divisor;
}
