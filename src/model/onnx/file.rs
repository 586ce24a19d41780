//! Reading an ONNX file: the protobuf (decoded by the `onnx-protobuf` crate's generated
//! messages and the `protobuf` runtime; nothing here decodes the wire format), its tensors
//! (inline `raw_data` or typed fields, or `external_data` in files beside the model, as
//! PyTorch's default exporter writes `model.onnx` + `model.onnx.data`) and node attributes.
//! Every size read from the file is checked before anything is allocated from it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::{AttributeProto, Message, ModelProto, NodeProto, TensorProto};
use protobuf::Enum;

use crate::error::{Error, Result};

/// The largest `.onnx` file read (protobuf messages cannot exceed 2 GiB; weights past that
/// live in external data files).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// The most values one tensor may hold (its bytes must also be in the file).
pub const MAX_TENSOR_VALUES: usize = 1 << 30;

/// A parsed ONNX model and where it came from.
#[derive(Debug)]
pub struct OnnxFile {
    /// The model file.
    pub path: PathBuf,
    /// The decoded protobuf.
    pub model: ModelProto,
    /// The default-domain (`ai.onnx`) opset the graph was written for.
    pub opset: i64,
}

/// The opsets whose operator definitions the importer follows.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=21;

impl OnnxFile {
    /// Reads and decodes `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if size > MAX_MODEL_BYTES {
            return Err(format_error(
                path,
                format!("{size} bytes; ONNX files hold at most 2 GiB (weights beyond that go in external data)"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let model = ModelProto::parse_from_bytes(&bytes)
            .map_err(|e| format_error(path, format!("not a valid ONNX protobuf (truncated or not ONNX): {e}")))?;
        if model.graph.0.is_none() {
            return Err(format_error(path, "the ONNX model has no graph".into()));
        }
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| format_error(path, "the model imports no default-domain (ai.onnx) opset".into()))?;
        if !OPSETS.contains(&opset) {
            return Err(format_error(
                path,
                format!("opset {opset} is not supported (supported: {} to {})", OPSETS.start(), OPSETS.end()),
            ));
        }
        Ok(Self { path: path.to_path_buf(), model, opset })
    }

    /// The file name, for errors.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The graph (checked present in [`read`](Self::read)).
    pub fn graph(&self) -> &onnx_protobuf::GraphProto {
        self.model.graph.as_ref().unwrap_or_else(|| onnx_protobuf::GraphProto::default_instance())
    }

    /// An error about this file.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        format_error(&self.path, reason.into())
    }

    /// Decodes `tensor` (an initializer or a Constant's value) to f32 or i64 values.
    pub fn tensor(&self, tensor: &TensorProto) -> Result<Tensor> {
        let what = || format!("tensor {:?}", tensor.name);
        let dims = tensor
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| self.error(format!("{}: negative dimension {d}", what()))))
            .collect::<Result<Vec<usize>>>()?;
        let count = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_TENSOR_VALUES)
            .ok_or_else(|| self.error(format!("{}: dimensions {dims:?} are too large", what())))?;
        let kind = DataType::from_i32(tensor.data_type)
            .ok_or_else(|| self.error(format!("{}: unknown data type {}", what(), tensor.data_type)))?;
        let width = match kind {
            DataType::FLOAT | DataType::INT32 | DataType::UINT32 => 4,
            DataType::DOUBLE | DataType::INT64 | DataType::UINT64 => 8,
            DataType::FLOAT16 | DataType::INT16 | DataType::UINT16 => 2,
            DataType::BOOL | DataType::INT8 | DataType::UINT8 => 1,
            other => return Err(self.error(format!("{}: data type {other:?} is not supported", what()))),
        };
        let external = tensor.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
        let raw = if external {
            Some(self.external_bytes(tensor, count * width)?)
        } else if !tensor.raw_data.is_empty() || count == 0 {
            Some(tensor.raw_data.clone())
        } else {
            None
        };
        let data = match raw {
            Some(bytes) => {
                if bytes.len() != count * width {
                    return Err(self.error(format!(
                        "{}: {} bytes of data for {count} values of {kind:?}",
                        what(),
                        bytes.len()
                    )));
                }
                decode_raw(kind, &bytes)
            }
            None => {
                let data = match kind {
                    DataType::FLOAT => Data::F32(tensor.float_data.clone()),
                    DataType::DOUBLE => Data::F32(tensor.double_data.iter().map(|&v| v as f32).collect()),
                    DataType::FLOAT16 => {
                        Data::F32(tensor.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f32()).collect())
                    }
                    DataType::INT64 => Data::I64(tensor.int64_data.clone()),
                    DataType::UINT64 | DataType::UINT32 => {
                        Data::I64(tensor.uint64_data.iter().map(|&v| v.min(i64::MAX as u64) as i64).collect())
                    }
                    _ => Data::I64(tensor.int32_data.iter().map(|&v| v as i64).collect()),
                };
                if data.len() != count {
                    return Err(self.error(format!("{}: {} values for dimensions {dims:?}", what(), data.len())));
                }
                data
            }
        };
        Ok(Tensor { dims, data })
    }

    /// The `length` bytes an external tensor names: `location` (a file in the model's
    /// folder), `offset`, `length`.
    fn external_bytes(&self, tensor: &TensorProto, expected: usize) -> Result<Vec<u8>> {
        let entry = |key: &str| tensor.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let what = format!("tensor {:?}", tensor.name);
        let location =
            entry("location").ok_or_else(|| self.error(format!("{what}: external data without a location")))?;
        let number = |key: &str| -> Result<Option<u64>> {
            entry(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| self.error(format!("{what}: external data {key} {v:?} is not a number")))
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let length = number("length")?.unwrap_or(expected as u64);
        let relative = Path::new(location);
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(self
                .error(format!("{what}: external data location {location:?} must name a file in the model's folder")));
        }
        let folder = self.path.parent().unwrap_or(Path::new("."));
        let data_path = folder.join(relative);
        let mut file = std::fs::File::open(&data_path).map_err(|e| {
            Error::io(&data_path, std::io::Error::new(e.kind(), format!("external data of {}: {e}", self.name())))
        })?;
        let size = file.metadata().map_err(|e| Error::io(&data_path, e))?.len();
        if length != expected as u64 || offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(Error::ModelFormat {
                file: data_path.display().to_string(),
                reason: format!(
                    "{what}: {length} bytes at offset {offset} (the tensor needs {expected}; the file has {size})"
                ),
            });
        }
        let mut bytes = vec![0; expected];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&data_path, e))?;
        Ok(bytes)
    }
}

fn format_error(path: &Path, reason: String) -> Error {
    Error::ModelFormat { file: path.display().to_string(), reason }
}

fn decode_raw(kind: DataType, bytes: &[u8]) -> Data {
    fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N]))
    }
    match kind {
        DataType::FLOAT => Data::F32(words::<4>(bytes).map(f32::from_le_bytes).collect()),
        DataType::DOUBLE => Data::F32(words::<8>(bytes).map(|w| f64::from_le_bytes(w) as f32).collect()),
        DataType::FLOAT16 => Data::F32(words::<2>(bytes).map(|w| half::f16::from_le_bytes(w).to_f32()).collect()),
        DataType::INT64 => Data::I64(words::<8>(bytes).map(i64::from_le_bytes).collect()),
        DataType::UINT64 => {
            Data::I64(words::<8>(bytes).map(|w| u64::from_le_bytes(w).min(i64::MAX as u64) as i64).collect())
        }
        DataType::INT32 => Data::I64(words::<4>(bytes).map(|w| i32::from_le_bytes(w) as i64).collect()),
        DataType::UINT32 => Data::I64(words::<4>(bytes).map(|w| u32::from_le_bytes(w) as i64).collect()),
        DataType::INT16 => Data::I64(words::<2>(bytes).map(|w| i16::from_le_bytes(w) as i64).collect()),
        DataType::UINT16 => Data::I64(words::<2>(bytes).map(|w| u16::from_le_bytes(w) as i64).collect()),
        DataType::INT8 => Data::I64(bytes.iter().map(|&b| b as i8 as i64).collect()),
        _ => Data::I64(bytes.iter().map(|&b| b as i64).collect()),
    }
}

/// A constant tensor's values: floats as f32, integers (and booleans) as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Floating-point values.
    F32(Vec<f32>),
    /// Integer values.
    I64(Vec<i64>),
}

impl Data {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A constant tensor: initializer, Constant output or a value folded at load.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Its dimensions (empty: a scalar).
    pub dims: Vec<usize>,
    /// Its values, row-major.
    pub data: Data,
}

impl Tensor {
    /// A 1-D integer tensor.
    pub fn ints(values: Vec<i64>) -> Self {
        Self { dims: vec![values.len()], data: Data::I64(values) }
    }

    /// The values as f32 (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64, when they are integers.
    pub fn as_ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }
}

/// A node's attributes, read by name with a default.
pub struct Attributes<'a> {
    node: &'a NodeProto,
}

impl<'a> Attributes<'a> {
    /// The attributes of `node`.
    pub fn of(node: &'a NodeProto) -> Self {
        Self { node }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    /// Whether the attribute is set.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An integer attribute.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    /// A float attribute.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    /// An integer list attribute (None: not set).
    pub fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }

    /// A string list attribute (None: not set).
    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
    }

    /// A string attribute.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// A tensor attribute (Constant's `value`).
    pub fn tensor(&self, name: &str) -> Option<&'a TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}
