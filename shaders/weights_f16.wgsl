// weights_f16.wgsl: kernel_row8 of weights.wgsl for weights rounded to f16 on upload
// (`--precision f16`): packed two per u32 word, low half first, each row padded with zeros
// to a multiple of 8 columns, so columns col0..col0+7 (col0 a multiple of 8) are 4 whole
// words: half the memory and upload, and 4 loads instead of 8. `row` is the row's first
// word; `c` is unused (padding columns read zeros). Arithmetic stays f32.
// unpack2x16float is core WGSL, but naga/wgpu ask for the SHADER_F16_IN_F32 downlevel
// capability (absent on WebGL2-class GL ES): the loader checks it before choosing f16.

fn kernel_row8(row: u32, col0: u32, c: array<u32, 8>) -> array<vec4<f32>, 2> {
    let at = row + col0 / 2u;
    let p0 = unpack2x16float(kernel[at]);
    let p1 = unpack2x16float(kernel[at + 1u]);
    let p2 = unpack2x16float(kernel[at + 2u]);
    let p3 = unpack2x16float(kernel[at + 3u]);
    return array<vec4<f32>, 2>(vec4<f32>(p0, p1), vec4<f32>(p2, p3));
}
