// pool2d.wgsl: Keras MaxPooling2D / AveragePooling2D and GlobalAveragePooling2D, NHWC.
// Prepended with common.wgsl (linear_index).
//
// Bindings (group 0):
//   0 params  uniform Pool2dParams (below)
//   1 input   storage read  NHWC [batch, in_h, in_w, channels]
//   2 output  storage rw    pool2d: NHWC [batch, out_h, out_w, channels];
//                           global_average_pool2d: [batch, channels]
// Dispatch: one invocation per output element, LINEAR_WORKGROUP (256) per workgroup,
// workgroups spread over x and y (see common.wgsl).
// MODE (override): 0 max, 1 average. With `same` padding the window is cut to the image,
// as Keras/TensorFlow do: max ignores the padding and average divides by the number of
// cells actually inside.

override MODE: u32 = 0u;

struct Pool2dParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    pool_h: u32,
    pool_w: u32,
    stride_y: u32,
    stride_x: u32,
    pad_top: u32,
    pad_left: u32,
}

@group(0) @binding(0) var<uniform> params: Pool2dParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(LINEAR_WORKGROUP)
fn pool2d(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    let c = params.channels;
    if index >= params.batch * params.out_h * params.out_w * c {
        return;
    }
    let ch = index % c;
    let pixel = index / c;
    let ox = pixel % params.out_w;
    let oy = (pixel / params.out_w) % params.out_h;
    let b = pixel / (params.out_w * params.out_h);

    // Window clipped to the image, in input coordinates.
    let y0 = i32(oy * params.stride_y) - i32(params.pad_top);
    let x0 = i32(ox * params.stride_x) - i32(params.pad_left);
    let y_begin = u32(max(y0, 0));
    let x_begin = u32(max(x0, 0));
    let y_end = u32(min(y0 + i32(params.pool_h), i32(params.in_h)));
    let x_end = u32(min(x0 + i32(params.pool_w), i32(params.in_w)));

    let image = b * params.in_h * params.in_w;
    var maximum = -3.402823e38;
    var sum = 0.0;
    for (var y = y_begin; y < y_end; y++) {
        for (var x = x_begin; x < x_end; x++) {
            let value = input[((image + y * params.in_w + x) * c) + ch];
            maximum = max(maximum, value);
            sum += value;
        }
    }
    if MODE == 0u {
        output[index] = maximum;
    } else {
        output[index] = sum / f32((y_end - y_begin) * (x_end - x_begin));
    }
}

@compute @workgroup_size(LINEAR_WORKGROUP)
fn global_average_pool2d(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) num_workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let index = linear_index(workgroup, num_workgroups, local);
    let c = params.channels;
    if index >= params.batch * c {
        return;
    }
    let ch = index % c;
    let b = index / c;
    let cells = params.in_h * params.in_w;
    var sum = 0.0;
    for (var i = 0u; i < cells; i++) {
        sum += input[(b * cells + i) * c + ch];
    }
    output[index] = sum / f32(cells);
}
