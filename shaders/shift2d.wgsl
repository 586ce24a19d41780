// shift2d.wgsl: an NHWC image moved by (off_y, off_x) into an output of its own size, zeros
// where nothing lands: ZeroPadding2D (positive offsets, a larger output) and Cropping2D
// (negative offsets, a smaller one):
//   output[b, y, x, c] = input[b, y - off_y, x - off_x, c], or 0 outside the input.
// Prepended with common.wgsl (linear_index).
//
// Bindings (group 0):
//   0 params  uniform Shift2dParams { batch, in_h, in_w, channels, out_h, out_w, off_y, off_x }
//             (off_y, off_x: i32)
//   1 input   storage read [batch, in_h, in_w, channels]
//   2 output  storage rw [batch, out_h, out_w, channels]
// Dispatch: one invocation per output value, LINEAR_WORKGROUP per workgroup, spread over x and y.

struct Shift2dParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    off_y: i32,
    off_x: i32,
}

@group(0) @binding(0) var<uniform> params: Shift2dParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn shift2d(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    let c = params.channels;
    if index >= params.batch * params.out_h * params.out_w * c {
        return;
    }
    let pixel = index / c;
    let x = i32(pixel % params.out_w) - params.off_x;
    let y = i32((pixel / params.out_w) % params.out_h) - params.off_y;
    let b = pixel / (params.out_w * params.out_h);
    var value = 0.0;
    if x >= 0 && y >= 0 && x < i32(params.in_w) && y < i32(params.in_h) {
        value = input[((b * params.in_h + u32(y)) * params.in_w + u32(x)) * c + index % c];
    }
    output[index] = value;
}
