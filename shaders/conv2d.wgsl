// conv2d.wgsl: Keras Conv2D, channels-last, as an implicit GEMM (no im2col buffer).
//   output[b, oy, ox, co] = activate(bias[co] + Σ_{ky,kx,ci}
//       input[b, oy*stride_y - pad_top + ky*dilation_y, ox*stride_x - pad_left + kx*dilation_x, ci]
//       * kernel[ky, kx, ci, co] [+ residual[b, oy, ox, co]])
// Cross-correlation (no kernel flip); taps falling in the padding read 0.
//
// Bindings (group 0):
//   0 params  uniform Conv2dParams (below)
//   1 input   storage read  NHWC [batch, in_h, in_w, in_c]
//   2 kernel  storage read  HWIO [k_h, k_w, in_c, out_c] (Keras layout) as f32 bits, or
//             packed f16 rows of out_c padded to 8 (weights_f16.wgsl, `conv2d_f16`),
//             kernel_stride words per (ky, kx, ci) row
//   3 bias    storage read  [out_c] (zeros when the layer has no bias)
//   4 output  storage rw    NHWC [batch, out_h, out_w, out_c]
//   5 residual storage read NHWC [batch, out_h, out_w, out_c], added before the activation:
//             only in `conv2d_residual` / `conv2d_residual_f16` (residual.wgsl)
// Dispatch: workgroup 8×8; one invocation computes PIXELS output pixels (consecutive in
// b*out_h*out_w order) × 8 output channels: x = ceil(out_c / 64),
// y = ceil(batch*out_h*out_w / (8 × PIXELS)). The register blocking is dense.wgsl's (see
// there for the measurements). Loads use clamped indices (always in bounds); out-of-range
// results are skipped at the store.

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
    kernel_stride: u32,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> kernel: array<u32>;
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

// Output pixels per invocation (channels are fixed at 8: two vec4 accumulators per pixel),
// as in dense.wgsl; keep in step with `PIXELS` in src/ops/conv2d.rs.
const PIXELS: u32 = 16u;

// POOLED = true: a MaxPooling2D with 2×2 windows, stride 2 and valid padding directly
// follows, fused here. The 16 pixels of an invocation are then the 2×2 windows of 4
// consecutive pooled pixels (in b*pooled_h*pooled_w order), each window reduced to its
// max after bias and activation, so the conv output never reaches memory. `output` is
// then the pooled tensor [batch, out_h / 2, out_w / 2, out_c] (floor, as Keras).
override POOLED: bool = false;

// Work items: conv output pixels, or with POOLED 4 per pooled pixel.
fn work_items() -> u32 {
    if POOLED {
        return params.batch * (params.out_h / 2u) * (params.out_w / 2u) * 4u;
    }
    return params.batch * params.out_h * params.out_w;
}

// The conv output pixel (b*out_h*out_w order) that work item `item` computes.
fn conv_pixel(item: u32) -> u32 {
    if !POOLED {
        return item;
    }
    let pooled = item / 4u;
    let corner = item % 4u;
    let ph = params.out_h / 2u;
    let pw = params.out_w / 2u;
    let b = pooled / (ph * pw);
    let rest = pooled % (ph * pw);
    let oy = 2u * (rest / pw) + corner / 2u;
    let ox = 2u * (rest % pw) + corner % 2u;
    return (b * params.out_h + oy) * params.out_w + ox;
}

@compute @workgroup_size(8, 8)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pixels = work_items();
    let pix0 = gid.y * PIXELS;
    let co0 = gid.x * 8u;
    if pix0 >= pixels || co0 >= params.out_c {
        return;
    }
    let last_pixel = pixels - 1u;
    let last_co = params.out_c - 1u;
    var p: array<Pixel, PIXELS>;
    for (var r = 0u; r < PIXELS; r++) {
        p[r] = pixel(conv_pixel(min(pix0 + r, last_pixel)));
    }
    var c: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        c[j] = min(co0 + j, last_co);
    }
    let in_c = params.in_c;
    let out_c = params.out_c;

    // Channels co0..co0+3 in lo, co0+4..co0+7 in hi.
    var lo: array<vec4<f32>, PIXELS>;
    var hi: array<vec4<f32>, PIXELS>;
    for (var ky = 0u; ky < params.k_h; ky++) {
        for (var kx = 0u; kx < params.k_w; kx++) {
            // Input offset of channel 0 of this tap, and 1.0 / 0.0 for inside / padding.
            var offset: array<u32, PIXELS>;
            var inside: array<f32, PIXELS>;
            for (var r = 0u; r < PIXELS; r++) {
                let t = tap(p[r], ky, kx);
                offset[r] = t.x;
                inside[r] = f32(t.y);
            }
            var w = (ky * params.k_w + kx) * in_c * params.kernel_stride;
            for (var ci = 0u; ci < in_c; ci++) {
                let b = kernel_row8(w, co0, c);
                let b_lo = b[0];
                let b_hi = b[1];
                for (var r = 0u; r < PIXELS; r++) {
                    let x = inside[r] * input[offset[r] + ci];
                    lo[r] += x * b_lo;
                    hi[r] += x * b_hi;
                }
                w += params.kernel_stride;
            }
        }
    }

    if POOLED {
        // 4 pooled pixels; pixels 4q..4q+3 are the corners of pooled pixel q.
        for (var q = 0u; q < PIXELS / 4u; q++) {
            let item = pix0 + 4u * q;
            if item >= pixels {
                break;
            }
            for (var j = 0u; j < 8u; j++) {
                if co0 + j < out_c {
                    var best = -3.4028235e38;
                    for (var corner = 0u; corner < 4u; corner++) {
                        let r = 4u * q + corner;
                        let value = select(hi[r][j % 4u], lo[r][j % 4u], j < 4u);
                        best = max(best, activate(value + bias[c[j]]));
                    }
                    output[(item / 4u) * out_c + co0 + j] = best;
                }
            }
        }
        return;
    }
    for (var r = 0u; r < PIXELS; r++) {
        let index = pix0 + r;
        if index >= pixels {
            break;
        }
        for (var j = 0u; j < 8u; j++) {
            if co0 + j < out_c {
                let value = select(hi[r][j % 4u], lo[r][j % 4u], j < 4u);
                let at = index * out_c + co0 + j;
                output[at] = activate(add_residual(value + bias[c[j]], at));
            }
        }
    }
}
