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
/// does not recognise is left to npyz. Returns where the data starts (None when the file
/// does not even start like a `.npy`, which npyz then reports).
fn check_npy_header(bytes: &[u8], path: &Path) -> Result<Option<usize>> {
    // Magic (6 bytes), version (2), header length: u16 for version 1, u32 for 2 and 3.
    let (start, declared): (usize, usize) = match bytes {
        [b'\x93', b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => (10, u16::from_le_bytes([*a, *b]) as usize),
        [b'\x93', b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d, ..] => {
            (12, u32::from_le_bytes([*a, *b, *c, *d]) as usize)
        }
        _ => return Ok(None),
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
    Ok(Some(start + header.len()))
}

/// A dtype as numpy writes it, unquoted: `<f4`, `|u1`.
fn dtype_name(dtype: &npyz::DType) -> String {
    dtype.descr().replace(['\'', '"'], "")
}

/// The array's shape as `usize`, after checking that the file holds every value the
/// header declares (npyz would only say "failed to fill whole buffer").
fn npy_shape_checked(
    npy: &npyz::NpyHeader,
    bytes: &[u8],
    data_start: Option<usize>,
    path: &Path,
) -> Result<Vec<usize>> {
    let dtype = npy.dtype();
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| decode_error(path, format!("shape {:?} does not fit this platform's memory", npy.shape())))?;
    let (Some(start), Some(item_bytes)) = (data_start, dtype.num_bytes()) else { return Ok(shape) };
    let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let needed = values.and_then(|n| n.checked_mul(item_bytes));
    let held = bytes.len().saturating_sub(start);
    match (values, needed) {
        (Some(_), Some(needed)) if held >= needed => Ok(shape),
        (values, needed) => Err(decode_error(
            path,
            format!(
                "truncated .npy: the header declares shape {shape:?} ({} values of dtype {} = {} bytes), \
                 the file holds only {held} bytes of data",
                values.map_or("too many".into(), |v| v.to_string()),
                dtype_name(&dtype),
                needed.map_or("too many".into(), |v| v.to_string()),
            ),
        )),
    }
}

/// Reads a `.npy` file as f32: float32, float64 (cast) or integers (token ids; exact up to
/// 2^24 in magnitude); C order only.
///
/// Values are used exactly as stored, never rescaled: a `uint8` image array stays 0–255
/// (feed what the model was trained on; only PNG files are scaled to [0, 1], see
/// [`read_png`]), and integer token ids stay integers.
pub fn read_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_npy(&bytes, path)
}

/// [`read_npy`] on a file already in memory; `path` only names it in errors.
pub fn decode_npy(bytes: &[u8], path: &Path) -> Result<Array> {
    let data_start = check_npy_header(bytes, path)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| decode_error(path, format!("not a valid .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(decode_error(path, "Fortran-order arrays are not supported: save with np.ascontiguousarray"));
    }
    let shape = npy_shape_checked(npy.header(), bytes, data_start, path)?;
    let dtype = dtype_name(&npy.dtype());
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
            // unsigned_abs: i64::MIN.abs() overflows (and wraps to itself in release builds).
            if let Some(v) = values.iter().find(|v| v.unsigned_abs() > EXACT.unsigned_abs()) {
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
    let data_start = check_npy_header(bytes, path)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| decode_error(path, format!("not a valid .npy file: {e}")))?;
    if npy.shape().len() != 1 {
        return Err(decode_error(path, format!("lengths must be a 1-D array [N], got shape {:?}", npy.shape())));
    }
    npy_shape_checked(npy.header(), bytes, data_start, path)?;
    let dtype = dtype_name(&npy.dtype());
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

/// The most pixels a PNG input may declare: 64 megapixels (64 × 2^20, e.g. 8192 × 8192),
/// whatever the caller expects. The size is read from the header and checked before any
/// pixel is decoded, so a small file that declares a huge image allocates nothing.
pub const MAX_PNG_PIXELS: u64 = 64 << 20;

/// What a PNG has to be before it is decoded.
#[derive(Clone, Copy, Debug)]
enum PngTarget<'a> {
    /// A channel count to convert to (None: the file's own gray or RGB); any size up to
    /// [`MAX_PNG_PIXELS`].
    Channels(Option<usize>),
    /// A model's input shape of one sample: PNGs need `[height, width, 1 or 3]` and must
    /// be that size (a 0 dimension takes any size up to [`MAX_PNG_PIXELS`]).
    ModelInput(&'a [usize]),
}

/// The size and channels a [`PngTarget`] asks for.
struct PngExpected {
    /// `(height, width)`, None for any.
    size: Option<(usize, usize)>,
    channels: Option<usize>,
}

const PNG_MODEL_INPUT: &str = "PNG images need a model whose input is [height, width, 1 or 3]";

impl PngTarget<'_> {
    fn expected(self, path: &Path) -> Result<PngExpected> {
        let wrong = |reason: String| Error::input(path.display().to_string(), reason);
        match self {
            PngTarget::Channels(channels @ (None | Some(1 | 3))) => Ok(PngExpected { size: None, channels }),
            PngTarget::Channels(Some(other)) => {
                Err(wrong(format!("{PNG_MODEL_INPUT}; {other} channels were asked for")))
            }
            PngTarget::ModelInput(&[height, width, channels @ (1 | 3)]) => Ok(PngExpected {
                size: (height != 0 && width != 0).then_some((height, width)),
                channels: Some(channels),
            }),
            PngTarget::ModelInput(shape) => Err(wrong(format!("{PNG_MODEL_INPUT}; this model's input is {shape:?}"))),
        }
    }
}

/// Reads a PNG as `[1, height, width, channels]` with values scaled to [0, 1] (8-bit
/// values divided by 255, 16-bit by 65535: our convention for image files; `.npy` arrays
/// are used as stored, see [`read_npy`]).
/// `channels` converts: 1 (grayscale, ITU-R BT.601 luma from RGB) or 3 (RGB, gray
/// repeated); alpha is dropped. None keeps the file's own gray/RGB channels. Images over
/// [`MAX_PNG_PIXELS`] are refused from their header; [`read_png_for`] also checks the size
/// against a model's input.
pub fn read_png(path: impl AsRef<Path>, channels: Option<usize>) -> Result<Array> {
    decode_png_file(path.as_ref(), PngTarget::Channels(channels))
}

/// [`read_png`] for a model whose input of one sample is `model_input` (e.g.
/// `model.input_shape()`): it must be `[height, width, 1 or 3]`, and the PNG must be
/// `height × width` (checked from its header, before decoding); converted to its channels.
pub fn read_png_for(path: impl AsRef<Path>, model_input: &[usize]) -> Result<Array> {
    decode_png_file(path.as_ref(), PngTarget::ModelInput(model_input))
}

fn decode_png_file(path: &Path, target: PngTarget) -> Result<Array> {
    // The model's shape first: no file needs opening to know a token model takes no PNG.
    let expected = target.expected(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    decode_png(std::io::BufReader::new(file), path, &expected)
}

/// Checks the size the header declares against what is expected and [`MAX_PNG_PIXELS`].
fn check_png_size(path: &Path, (width, height): (u32, u32), expected: &PngExpected) -> Result<()> {
    let (width, height) = (width as usize, height as usize);
    if let Some((want_height, want_width)) = expected.size {
        if (height, width) != (want_height, want_width) {
            return Err(Error::shape(
                path.display().to_string(),
                format!("a {want_height}×{want_width} image (height×width of the model's input)"),
                format!("{height}×{width} (declared in the PNG header)"),
            ));
        }
    }
    let pixels = (height as u64).saturating_mul(width as u64);
    if pixels > MAX_PNG_PIXELS {
        return Err(decode_error(
            path,
            format!(
                "the PNG header declares {height}×{width} = {pixels} pixels; PNG inputs may have at most \
                 {MAX_PNG_PIXELS} (64 megapixels)"
            ),
        ));
    }
    Ok(())
}

fn decode_png(source: impl std::io::BufRead + std::io::Seek, path: &Path, expected: &PngExpected) -> Result<Array> {
    let mut decoder = png::Decoder::new(source);
    decoder.set_transformations(png::Transformations::EXPAND);
    let header = decoder.read_header_info().map_err(|e| decode_error(path, format!("not a valid PNG: {e}")))?;
    check_png_size(path, header.size(), expected)?;
    let mut reader = decoder.read_info().map_err(|e| decode_error(path, format!("not a valid PNG: {e}")))?;
    let size = reader.output_buffer_size().ok_or_else(|| decode_error(path, "image too large"))?;
    let mut buffer = vec![0; size];
    let frame = reader.next_frame(&mut buffer).map_err(|e| decode_error(path, format!("corrupt PNG: {e}")))?;
    let (height, width) = (frame.height as usize, frame.width as usize);
    check_png_size(path, (frame.width, frame.height), expected)?;
    let samples = frame.color_type.samples();
    let sixteen = frame.bit_depth == png::BitDepth::Sixteen;
    let sample_bytes = if sixteen { 2 } else { 1 };
    let max = if sixteen { 65535.0 } else { 255.0 };
    let color = samples >= 3; // RGB or RGBA; gray and gray+alpha otherwise
    let out_channels = expected.channels.unwrap_or(if color { 3 } else { 1 });
    // Under MAX_PNG_PIXELS these cannot overflow, but nothing computed from a file is
    // trusted unchecked.
    let too_large = || decode_error(path, format!("a {height}×{width} image is too large"));
    let pixels = height.checked_mul(width).ok_or_else(too_large)?;
    let pixel_bytes = samples * sample_bytes;
    let image_bytes = pixels.checked_mul(pixel_bytes).ok_or_else(too_large)?;
    let image = buffer.get(..image_bytes).filter(|_| frame.buffer_size() == image_bytes).ok_or_else(|| {
        decode_error(
            path,
            format!("decoded {} bytes for a {height}×{width} image, expected {image_bytes}", frame.buffer_size()),
        )
    })?;
    let mut data = Vec::with_capacity(pixels.checked_mul(out_channels).ok_or_else(too_large)?);
    for pixel in image.chunks_exact(pixel_bytes) {
        let value = |k: usize| -> f32 {
            if sixteen {
                u16::from_be_bytes([pixel[2 * k], pixel[2 * k + 1]]) as f32 / max
            } else {
                pixel[k] as f32 / max
            }
        };
        let rgb = if color { [value(0), value(1), value(2)] } else { [value(0); 3] };
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
    let size = |dimension: usize| u32::try_from(dimension).ok();
    let (Some(png_width), Some(_), Some(pixels)) = (size(width), size(height), height.checked_mul(width)) else {
        return Err(Error::input("png", format!("a {height}×{width} image is too large for PNG")));
    };
    if values.len() != pixels {
        return Err(Error::shape("png", format!("{pixels} values"), format!("{}", values.len())));
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), png_width, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = values.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let mut writer = encoder.write_header().map_err(|e| decode_error(path, e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| decode_error(path, e.to_string()))?;
    writer.finish().map_err(|e| decode_error(path, e.to_string()))
}

fn is_png(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Reads an image batch: one `.npy` file, or one or more PNG files stacked along the
/// batch axis (all the same size). `channels` is the model's channel count for PNGs;
/// [`read_batch_for`] checks PNGs against the model's whole input shape instead.
pub fn read_batch(paths: &[impl AsRef<Path>], channels: Option<usize>) -> Result<Array> {
    stack_batch(paths, PngTarget::Channels(channels))
}

/// [`read_batch`] for a model whose input of one sample is `model_input` (e.g.
/// `model.input_shape()`): PNGs are checked against it as by [`read_png_for`]; a `.npy`
/// is read as it is (the model checks its shape).
pub fn read_batch_for(paths: &[impl AsRef<Path>], model_input: &[usize]) -> Result<Array> {
    stack_batch(paths, PngTarget::ModelInput(model_input))
}

fn stack_batch(paths: &[impl AsRef<Path>], target: PngTarget) -> Result<Array> {
    match paths {
        [] => Err(Error::input("batch", "no input file given")),
        [one] if !is_png(one.as_ref()) => read_npy(one),
        many => {
            if let Some(path) = many.iter().map(AsRef::as_ref).find(|p| !is_png(p)) {
                return Err(decode_error(path, "several inputs must all be PNG files (or pass one .npy)"));
            }
            stack(many, |path| {
                let image = decode_png_file(path, target)?;
                Ok((image.shape()[1..].to_vec(), image.into_data()))
            })
        }
    }
}

/// Reads one sample per file and stacks them: PNG images, or `.npy` files holding one
/// sample (its shape, or `[1, ...]`). All samples must have one shape. `channels` is the
/// model's channel count for PNGs; [`read_samples_for`] checks PNGs against the model's
/// whole input shape instead.
pub fn read_samples(paths: &[impl AsRef<Path>], channels: Option<usize>) -> Result<Array> {
    read_samples_as(paths, PngTarget::Channels(channels))
}

/// [`read_samples`] for a model whose input of one sample is `model_input` (e.g.
/// `model.input_shape()`): PNGs are checked against it as by [`read_png_for`].
pub fn read_samples_for(paths: &[impl AsRef<Path>], model_input: &[usize]) -> Result<Array> {
    read_samples_as(paths, PngTarget::ModelInput(model_input))
}

fn read_samples_as(paths: &[impl AsRef<Path>], target: PngTarget) -> Result<Array> {
    if paths.is_empty() {
        return Err(Error::input("samples", "no input file given"));
    }
    stack(paths, |path| {
        let png = is_png(path);
        let sample = if png { decode_png_file(path, target)? } else { read_npy(path)? };
        let shape = match sample.shape() {
            [1, rest @ ..] if png || !rest.is_empty() => rest.to_vec(),
            other => other.to_vec(),
        };
        Ok((shape, sample.into_data()))
    })
}

/// Reads one sample per file and stacks them along a new batch axis; every sample must
/// have the first one's shape (the error names the file that differs).
/// `read` gives a file's sample shape and values.
fn stack<P: AsRef<Path>>(paths: &[P], mut read: impl FnMut(&Path) -> Result<(Vec<usize>, Vec<f32>)>) -> Result<Array> {
    let mut shape: Option<Vec<usize>> = None;
    let mut data = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let (sample_shape, values) = read(path)?;
        match &shape {
            Some(s) if *s != sample_shape => {
                return Err(Error::shape(
                    path.display().to_string(),
                    format!("one sample shaped like the first file's {s:?}"),
                    format!("{sample_shape:?}"),
                ))
            }
            Some(_) => {}
            None => shape = Some(sample_shape),
        }
        data.extend_from_slice(&values);
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
