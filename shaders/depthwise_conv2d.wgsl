// depthwise_conv2d.wgsl: grouped Conv2D, channels-last, Keras semantics; DepthwiseConv2D is
// the case groups = in_c (group_in = 1, group_out = depth_multiplier).
//   g = co / group_out
//   output[b, oy, ox, co] = activate(bias[co] + Σ_{ky,kx,k < group_in}
//       input[b, oy*stride_y - pad_top + ky*dilation_y, ox*stride_x - pad_left + kx*dilation_x,
//             g*group_in + k]
//       * kernel[ky, kx, k, co])
// Cross-correlation (no kernel flip); taps falling in the padding read 0. Keras' depthwise
// kernel (k_h, k_w, in_c, m) is this kernel with group_in = 1 and co = c*m + j, so it is
// uploaded unchanged.
//
// Bindings (group 0):
//   0 params  uniform DepthwiseParams (below)
//   1 input   storage read  NHWC [batch, in_h, in_w, in_c]
//   2 kernel  storage read  [k_h, k_w, group_in, out_c] as f32 bits, or packed f16 rows of
//             out_c padded to 8 (weights_f16.wgsl, `depthwise_conv2d_f16`), kernel_stride
//             words per (ky, kx, k) row
//   3 bias    storage read  [out_c] (zeros when the layer has no bias)
//   4 output  storage rw    NHWC [batch, out_h, out_w, out_c]
// Dispatch: workgroup 8×8; one invocation computes PIXELS output pixels (consecutive in
// b*out_h*out_w order) × 8 consecutive output channels, so each 8-channel kernel row it
// loads serves PIXELS pixels: x = ceil(out_c / 64), y = ceil(batch*out_h*out_w / (8 × PIXELS)).
// When the 8 channels share one group (`shared_input`: group_out a multiple of 8) each input
// value is loaded once for all 8; otherwise (depthwise) once per channel. Loads use clamped
// indices (always in bounds); out-of-range results are skipped at the store.

struct DepthwiseParams {
    batch: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    k_h: u32,
    k_w: u32,
    stride_y: u32,
    stride_x: u32,
    dilation_y: u32,
    dilation_x: u32,
    pad_top: u32,
    pad_left: u32,
    kernel_stride: u32,
    group_in: u32,
    group_out: u32,
    shared_input: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Output pixels per invocation; keep in step with `PIXELS` in src/ops/depthwise_conv2d.rs.
const PIXELS: u32 = 4u;

@compute @workgroup_size(8, 8)
fn depthwise_conv2d(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = params.batch * params.out_h * params.out_w;
    let pix0 = gid.y * PIXELS;
    let co0 = gid.x * 8u;
    if pix0 >= pixels || co0 >= params.out_c {
        return;
    }
    let last_co = params.out_c - 1u;
    var c: array<u32, 8>;
    // First input channel of each output channel's group.
    var base: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        c[j] = min(co0 + j, last_co);
        base[j] = (c[j] / params.group_out) * params.group_in;
    }
    // Receptive-field origin (may be negative, in the padding) and image offset per pixel.
    var origin_y: array<i32, PIXELS>;
    var origin_x: array<i32, PIXELS>;
    var image: array<u32, PIXELS>;
    let per_image = params.out_h * params.out_w;
    for (var r = 0u; r < PIXELS; r++) {
        let index = min(pix0 + r, pixels - 1u);
        let rest = index % per_image;
        origin_y[r] = i32((rest / params.out_w) * params.stride_y) - i32(params.pad_top);
        origin_x[r] = i32((rest % params.out_w) * params.stride_x) - i32(params.pad_left);
        image[r] = (index / per_image) * params.in_h * params.in_w * params.in_c;
    }
    let shared_input = params.shared_input != 0u;

    // Channels co0..co0+3 in lo, co0+4..co0+7 in hi.
    var lo: array<vec4<f32>, PIXELS>;
    var hi: array<vec4<f32>, PIXELS>;
    for (var ky = 0u; ky < params.k_h; ky++) {
        for (var kx = 0u; kx < params.k_w; kx++) {
            // Input offset of channel 0 of this tap (0 in the padding) and whether it is inside.
            var offset: array<u32, PIXELS>;
            var inside: array<bool, PIXELS>;
            for (var r = 0u; r < PIXELS; r++) {
                let iy = origin_y[r] + i32(ky * params.dilation_y);
                let ix = origin_x[r] + i32(kx * params.dilation_x);
                inside[r] = iy >= 0 && iy < i32(params.in_h) && ix >= 0 && ix < i32(params.in_w);
                let at = image[r] + (u32(max(iy, 0)) * params.in_w + u32(max(ix, 0))) * params.in_c;
                offset[r] = select(0u, at, inside[r]);
            }
            var w = (ky * params.k_w + kx) * params.group_in * params.kernel_stride;
            for (var k = 0u; k < params.group_in; k++) {
                let b = kernel_row8(w, co0, c);
                for (var r = 0u; r < PIXELS; r++) {
                    var x_lo: vec4<f32>;
                    var x_hi: vec4<f32>;
                    if shared_input {
                        let x = input[offset[r] + base[0] + k];
                        x_lo = vec4<f32>(x);
                        x_hi = vec4<f32>(x);
                    } else {
                        let o = offset[r] + k;
                        x_lo = vec4<f32>(input[o + base[0]], input[o + base[1]], input[o + base[2]], input[o + base[3]]);
                        x_hi = vec4<f32>(input[o + base[4]], input[o + base[5]], input[o + base[6]], input[o + base[7]]);
                    }
                    // select, not a multiply by 0: a padding tap stays 0 whatever input[0] holds.
                    lo[r] += select(vec4<f32>(0.0), x_lo, inside[r]) * b[0];
                    hi[r] += select(vec4<f32>(0.0), x_hi, inside[r]) * b[1];
                }
                w += params.kernel_stride;
            }
        }
    }

    let out_c = params.out_c;
    for (var r = 0u; r < PIXELS; r++) {
        let index = pix0 + r;
        if index >= pixels {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            if co0 + j < out_c {
                let value = select(hi[r][j % 4u], lo[r][j % 4u], j < 4u);
                output[index * out_c + co0 + j] = activate(value + bias[c[j]]);
            }
        }
    }
}
