//! Building ONNX graphs in tests with the protobuf messages (`onnx-protobuf`).

use std::path::Path;

use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{self, Value as TypeValue};
use onnx_protobuf::{TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};

/// A float32 graph input or output; `None` axes are the symbolic batch.
pub fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(match d {
            Some(v) => dimension::Value::DimValue(*v),
            None => dimension::Value::DimParam("batch".into()),
        });
        shape.dim.push(dim);
    }
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = 1;
    tensor.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(TypeValue::TensorType(tensor));
    let mut info = ValueInfoProto::new();
    info.name = name.into();
    info.type_ = Some(ty).into();
    info
}

/// A float32 initializer in `raw_data`.
pub fn floats(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = 1;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// The error loading `path` gives, as text (a panic when it loads).
pub fn load_err(path: &Path) -> String {
    match siamese_wgpu::model::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}
