// conv2d.wgsl: Keras Conv2D, channels-last, as an implicit GEMM (no im2col buffer).
//   output[b, oy, ox, co] = activate(bias[co] + Σ_{ky,kx,ci}
//       input[b, oy*stride_y - pad_top + ky*dilation_y, ox*stride_x - pad_left + kx*dilation_x, ci]
//       * kernel[ky, kx, ci, co])
// Cross-correlation (no kernel flip); taps falling in the padding read 0.
//
// Bindings (group 0):
//   0 params  uniform Conv2dParams (below)
//   1 input   storage read  NHWC [batch, in_h, in_w, in_c]
//   2 kernel  storage read  HWIO [k_h, k_w, in_c, out_c] (Keras layout)
//   3 bias    storage read  [out_c] (zeros when the layer has no bias)
//   4 output  storage rw    NHWC [batch, out_h, out_w, out_c]
// Dispatch: workgroup 8×8; one invocation computes 4 output pixels (consecutive in
// b*out_h*out_w order) × 4 output channels: x = ceil(out_c / 32),
// y = ceil(batch*out_h*out_w / 32). Loads use clamped indices (always in bounds);
// out-of-range results are skipped at the store.

struct Conv2dParams {
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
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Where one output pixel's receptive field starts: the input origin (may be negative,
// inside the padding) and the offset of its image in the input.
struct Pixel {
    origin_y: i32,
    origin_x: i32,
    image: u32,
}

fn pixel(index: u32) -> Pixel {
    let per_image = params.out_h * params.out_w;
    let b = index / per_image;
    let rest = index % per_image;
    let oy = rest / params.out_w;
    let ox = rest % params.out_w;
    return Pixel(
        i32(oy * params.stride_y) - i32(params.pad_top),
        i32(ox * params.stride_x) - i32(params.pad_left),
        b * params.in_h * params.in_w * params.in_c,
    );
}

// Input offset of channel 0 of tap (ky, kx) for pixel p, and whether the tap is inside
// the image. Offsets of taps in the padding are 0 so loads stay in bounds.
fn tap(p: Pixel, ky: u32, kx: u32) -> vec2<u32> {
    let iy = p.origin_y + i32(ky * params.dilation_y);
    let ix = p.origin_x + i32(kx * params.dilation_x);
    let inside = iy >= 0 && iy < i32(params.in_h) && ix >= 0 && ix < i32(params.in_w);
    let offset = p.image + (u32(max(iy, 0)) * params.in_w + u32(max(ix, 0))) * params.in_c;
    return select(vec2<u32>(0u, 0u), vec2<u32>(offset, 1u), inside);
}

@compute @workgroup_size(8, 8)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = params.batch * params.out_h * params.out_w;
    let pix0 = gid.y * 4u;
    let co0 = gid.x * 4u;
    if pix0 >= pixels || co0 >= params.out_c {
        return;
    }
    let last_pixel = pixels - 1u;
    let last_co = params.out_c - 1u;
    let p0 = pixel(pix0);
    let p1 = pixel(min(pix0 + 1u, last_pixel));
    let p2 = pixel(min(pix0 + 2u, last_pixel));
    let p3 = pixel(min(pix0 + 3u, last_pixel));
    let c1 = min(co0 + 1u, last_co);
    let c2 = min(co0 + 2u, last_co);
    let c3 = min(co0 + 3u, last_co);
    let in_c = params.in_c;
    let out_c = params.out_c;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < params.k_h; ky++) {
        for (var kx = 0u; kx < params.k_w; kx++) {
            let t0 = tap(p0, ky, kx);
            let t1 = tap(p1, ky, kx);
            let t2 = tap(p2, ky, kx);
            let t3 = tap(p3, ky, kx);
            let m0 = f32(t0.y);
            let m1 = f32(t1.y);
            let m2 = f32(t2.y);
            let m3 = f32(t3.y);
            var w = (ky * params.k_w + kx) * in_c * out_c;
            for (var ci = 0u; ci < in_c; ci++) {
                let b = vec4<f32>(kernel[w + co0], kernel[w + c1], kernel[w + c2], kernel[w + c3]);
                acc0 += (m0 * input[t0.x + ci]) * b;
                acc1 += (m1 * input[t1.x + ci]) * b;
                acc2 += (m2 * input[t2.x + ci]) * b;
                acc3 += (m3 * input[t3.x + ci]) * b;
                w += out_c;
            }
        }
    }

    let bias4 = vec4<f32>(bias[co0], bias[c1], bias[c2], bias[c3]);
    store_pixel(pix0, pixels, co0, acc0 + bias4);
    store_pixel(pix0 + 1u, pixels, co0, acc1 + bias4);
    store_pixel(pix0 + 2u, pixels, co0, acc2 + bias4);
    store_pixel(pix0 + 3u, pixels, co0, acc3 + bias4);
}

fn store_pixel(index: u32, pixels: u32, co0: u32, value: vec4<f32>) {
    if index >= pixels {
        return;
    }
    let base = index * params.out_c;
    for (var j = 0u; j < 4u; j++) {
        if co0 + j < params.out_c {
            output[base + co0 + j] = activate(value[j]);
        }
    }
}
