//! Reading and writing the arrays the CLI works with: `.npy` (via `npyz`) and PNG images
//! (via `png`).

use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{Error, Result};
use crate::tensor::Array;

fn decode_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Decode { path: path.to_path_buf(), reason: reason.into() }
}

/// How deep brackets may nest in a `.npy` header (see [`check_npy_header`]).
const MAX_NPY_HEADER_DEPTH: usize = 4;

/// Checks what npyz trusts before it parses a header: the declared header length (npyz
/// allocates it before reading: 4 GiB from 12 bytes), the bracket nesting (its parser is
/// exponential in it) and the shape's element count (npyz multiplies the dimensions
/// unchecked: an overflow panics in debug builds and wraps in release). Anything else this
/// does not recognise is left to npyz.
fn check_npy_header(bytes: &[u8], path: &Path) -> Result<()> {
    // Magic (6 bytes), version (2), header length: u16 for version 1, u32 for 2 and 3.
    let (start, declared): (usize, usize) = match bytes {
        [b'\x93', b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => (10, u16::from_le_bytes([*a, *b]) as usize),
        [b'\x93', b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d, ..] => {
            (12, u32::from_le_bytes([*a, *b, *c, *d]) as usize)
        }
        _ => return Ok(()),
    };
    let header = bytes.get(start..start.saturating_add(declared)).ok_or_else(|| {
        decode_error(
            path,
            format!("not a valid .npy file: the header claims {declared} bytes, the file has {}", bytes.len() - start),
        )
    })?;
    // npyz's Python-literal parser backtracks exponentially in the nesting depth (244 bytes
    // of `{{{...` keep it busy for minutes). A plain dtype's header nests two deep: the dict
    // and the shape tuple; structured dtypes, which are not supported, a little deeper.
    let mut depth = 0usize;
    for &byte in header {
        match byte {
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NPY_HEADER_DEPTH {
            return Err(decode_error(path, "not a valid .npy file: brackets nest too deep in the header"));
        }
    }
    // The shape as numpy writes it: `'shape': (3, 4), `; its dimensions must multiply
    // without overflow even with zero dimensions left out (npyz's strides skip none). Every
    // `'shape':` is checked, in case the text also appears elsewhere.
    let text = String::from_utf8_lossy(header);
    for (key, _) in text.match_indices("'shape'").chain(text.match_indices("\"shape\"")) {
        let Some(value) = text[key + "'shape'".len()..].trim_start().strip_prefix(':').map(str::trim_start) else {
            continue;
        };
        let close = match value.chars().next() {
            Some('(') => ')',
            Some('[') => ']',
            _ => continue,
        };
        let Some(end) = value.find(close) else { continue };
        let mut elements: u64 = 1;
        for token in value[1..end].split(',').map(str::trim).filter(|t| !t.is_empty()) {
            // Python 2 numpy wrote longs as `3L`.
            let dimension: u64 = token.trim_end_matches(['L', 'l']).parse().map_err(|_| {
                decode_error(path, format!("not a valid .npy file: shape dimension {token:?} is not a decimal integer"))
            })?;
            elements =
                elements.checked_mul(dimension.max(1)).filter(|&n| usize::try_from(n).is_ok()).ok_or_else(|| {
                    decode_error(path, format!("not a valid .npy file: shape {} has too many elements", &value[..=end]))
                })?;
        }
    }
    Ok(())
}

/// Reads a `.npy` file as f32: float32, float64 (cast) or integers (token ids; exact up to
/// 2^24); C order only.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_npy(&bytes, path)
}

/// [`read_npy`] on a file already in memory; `path` only names it in errors.
pub fn decode_npy(bytes: &[u8], path: &Path) -> Result<Array> {
    check_npy_header(bytes, path)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| decode_error(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(decode_error(path, "Fortran-order arrays are not supported: save with np.ascontiguousarray"));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype().descr().replace(['\'', '"'], "");
    let data: Vec<f32> = match dtype.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => npy.into_vec::<f32>().map_err(|e| decode_error(path, e.to_string()))?,
        "f8" => npy
            .into_vec::<f64>()
            .map_err(|e| decode_error(path, e.to_string()))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        // Integer arrays (token ids for Embedding models) are cast when f32 holds them exactly.
        "i4" | "i8" | "u1" | "u2" | "u4" | "i2" | "i1" => {
            let values: Vec<i64> = match dtype.trim_start_matches(['<', '>', '|', '=']) {
                "i8" => npy.into_vec::<i64>(),
                "i4" => npy.into_vec::<i32>().map(|v| v.into_iter().map(i64::from).collect()),
                "i2" => npy.into_vec::<i16>().map(|v| v.into_iter().map(i64::from).collect()),
                "i1" => npy.into_vec::<i8>().map(|v| v.into_iter().map(i64::from).collect()),
                "u4" => npy.into_vec::<u32>().map(|v| v.into_iter().map(i64::from).collect()),
                "u2" => npy.into_vec::<u16>().map(|v| v.into_iter().map(i64::from).collect()),
                _ => npy.into_vec::<u8>().map(|v| v.into_iter().map(i64::from).collect()),
            }
            .map_err(|e| decode_error(path, e.to_string()))?;
            const EXACT: i64 = 1 << 24;
            if let Some(v) = values.iter().find(|v| v.abs() > EXACT) {
                return Err(decode_error(path, format!("integer {v} is too large to be exact as float32 (> 2^24)")));
            }
            values.into_iter().map(|v| v as f32).collect()
        }
        _ => {
            return Err(decode_error(
                path,
                format!("dtype {dtype} is not supported: expected float32 (float64 and integers are cast)"),
            ))
        }
    };
    Array::new(shape, data).map_err(|e| decode_error(path, format!("truncated or inconsistent array: {e}")))
}

/// Reads sequence lengths: an int32 or int64 `.npy` of shape `[N]`, every value >= 0.
pub fn read_lengths(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_lengths(&bytes, path)
}

/// [`read_lengths`] on a file already in memory; `path` only names it in errors.
pub fn decode_lengths(bytes: &[u8], path: &Path) -> Result<Vec<usize>> {
    check_npy_header(bytes, path)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| decode_error(path, format!("not a valid .npy file: {e}")))?;
    if npy.shape().len() != 1 {
        return Err(decode_error(path, format!("lengths must be a 1-D array [N], got shape {:?}", npy.shape())));
    }
    let dtype = npy.dtype().descr().replace(['\'', '"'], "");
    let values: Vec<i64> = match dtype.trim_start_matches(['<', '>', '|', '=']) {
        "i4" => {
            npy.into_vec::<i32>().map_err(|e| decode_error(path, e.to_string()))?.into_iter().map(i64::from).collect()
        }
        "i8" => npy.into_vec::<i64>().map_err(|e| decode_error(path, e.to_string()))?,
        _ => {
            return Err(decode_error(
                path,
                format!("dtype {dtype} is not supported for lengths: expected int32 or int64"),
            ))
        }
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            usize::try_from(v).map_err(|_| decode_error(path, format!("length {v} at index {i} is negative")))
        })
        .collect()
}

/// Writes an f32 array as `.npy`.
pub fn write_npy(path: impl AsRef<Path>, array: &Array) -> Result<()> {
    let path = path.as_ref();
    let shape: Vec<u64> = array.shape().iter().map(|&d| d as u64).collect();
    let mut bytes = Vec::new();
    let mut write = || -> std::io::Result<()> {
        let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut bytes).begin_nd()?;
        writer.extend(array.data().iter().copied())?;
        writer.finish()
    };
    write().map_err(|e| Error::io(path, e))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

/// Reads a PNG as `[1, height, width, channels]` with values scaled to [0, 1].
/// `channels` converts: 1 (grayscale, ITU-R BT.601 luma from RGB) or 3 (RGB, gray
/// repeated); alpha is dropped. None keeps the file's own gray/RGB channels.
pub fn read_png(path: impl AsRef<Path>, channels: Option<usize>) -> Result<Array> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| decode_error(path, format!("not a valid PNG: {e}")))?;
    let size = reader.output_buffer_size().ok_or_else(|| decode_error(path, "image too large"))?;
    let mut buffer = vec![0; size];
    let frame = reader.next_frame(&mut buffer).map_err(|e| decode_error(path, format!("corrupt PNG: {e}")))?;
    let (height, width) = (frame.height as usize, frame.width as usize);
    let samples = frame.color_type.samples();
    let max = if frame.bit_depth == png::BitDepth::Sixteen { 65535.0 } else { 255.0 };
    let value = |i: usize| -> f32 {
        if frame.bit_depth == png::BitDepth::Sixteen {
            u16::from_be_bytes([buffer[2 * i], buffer[2 * i + 1]]) as f32 / max
        } else {
            buffer[i] as f32 / max
        }
    };
    let color = samples >= 3; // RGB or RGBA; gray and gray+alpha otherwise
    let out_channels = channels.unwrap_or(if color { 3 } else { 1 });
    if out_channels != 1 && out_channels != 3 {
        return Err(decode_error(path, format!("cannot convert to {out_channels} channels (the model wants 1 or 3)")));
    }
    let mut data = Vec::with_capacity(height * width * out_channels);
    for pixel in 0..height * width {
        let base = pixel * samples;
        let rgb = if color { [value(base), value(base + 1), value(base + 2)] } else { [value(base); 3] };
        if out_channels == 1 {
            data.push(if color { 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] } else { rgb[0] });
        } else {
            data.extend_from_slice(&rgb);
        }
    }
    Array::new(vec![1, height, width, out_channels], data)
}

/// Writes a `[height, width]` or `[1, height, width, 1]` array of values in [0, 1] as an
/// 8-bit grayscale PNG (used to make example inputs).
pub fn write_png_gray(path: impl AsRef<Path>, height: usize, width: usize, values: &[f32]) -> Result<()> {
    let path = path.as_ref();
    if values.len() != height * width {
        return Err(Error::shape("png", format!("{} values", height * width), format!("{}", values.len())));
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = values.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let mut writer = encoder.write_header().map_err(|e| decode_error(path, e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| decode_error(path, e.to_string()))?;
    writer.finish().map_err(|e| decode_error(path, e.to_string()))
}

/// Reads an image batch: one `.npy` file, or one or more PNG files stacked along the
/// batch axis (all the same size). `channels` is the model's channel count for PNGs.
pub fn read_batch(paths: &[impl AsRef<Path>], channels: Option<usize>) -> Result<Array> {
    let is_png = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    match paths {
        [] => Err(Error::input("batch", "no input file given")),
        [one] if !is_png(one.as_ref()) => read_npy(one),
        many => {
            let mut shape: Option<Vec<usize>> = None;
            let mut data = Vec::new();
            for path in many {
                let path = path.as_ref();
                if !is_png(path) {
                    return Err(decode_error(path, "several inputs must all be PNG files (or pass one .npy)"));
                }
                let image = read_png(path, channels)?;
                match &shape {
                    Some(s) if s[1..] != image.shape()[1..] => {
                        return Err(Error::shape(
                            format!("{}", path.display()),
                            format!("same size as the first image {:?}", &s[1..]),
                            format!("{:?}", &image.shape()[1..]),
                        ))
                    }
                    Some(_) => {}
                    None => shape = Some(image.shape().to_vec()),
                }
                data.extend_from_slice(image.data());
            }
            let mut shape = shape.unwrap_or_default();
            shape[0] = many.len();
            Array::new(shape, data)
        }
    }
}

/// Reads one sample per file and stacks them: PNG images, or `.npy` files holding one
/// sample (its shape, or `[1, ...]`). All samples must have one shape.
pub fn read_samples(paths: &[impl AsRef<Path>], channels: Option<usize>) -> Result<Array> {
    let mut shape: Option<Vec<usize>> = None;
    let mut data = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let is_png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let sample = if is_png { read_png(path, channels)? } else { read_npy(path)? };
        let sample_shape = match sample.shape() {
            [1, rest @ ..] if is_png || !rest.is_empty() => rest.to_vec(),
            other => other.to_vec(),
        };
        match &shape {
            Some(s) if *s != sample_shape => {
                return Err(Error::shape(
                    format!("{}", path.display()),
                    format!("one sample shaped like the first file's {s:?}"),
                    format!("{sample_shape:?}"),
                ))
            }
            Some(_) => {}
            None => shape = Some(sample_shape),
        }
        data.extend_from_slice(sample.data());
    }
    let shape = shape.ok_or_else(|| Error::input("samples", "no input file given"))?;
    Array::new(std::iter::once(paths.len()).chain(shape).collect(), data)
}

/// Reads sentence pairs: one pair per line, the two sentences separated by a TAB. Blank
/// lines are skipped; a line without exactly one TAB is an error naming the line.
pub fn read_pairs_tsv(path: impl AsRef<Path>) -> Result<Vec<(String, String)>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_pairs_tsv(&text, path)
}

/// [`read_pairs_tsv`] on text already in memory; `path` only names it in errors.
pub fn parse_pairs_tsv(text: &str, path: &Path) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some(a), Some(b), None) => pairs.push((a.to_string(), b.to_string())),
            _ => {
                return Err(decode_error(
                    path,
                    format!("line {}: expected two sentences separated by one TAB", number + 1),
                ))
            }
        }
    }
    if pairs.is_empty() {
        return Err(decode_error(path, "no sentence pairs in the file"));
    }
    Ok(pairs)
}
