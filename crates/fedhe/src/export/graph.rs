//! A small builder over the generated ONNX types: unique value names, nodes
//! with one output, constant tensors (initializers), attributes, and typed
//! graph inputs and outputs whose first dimension is the row count `N`.

use std::collections::HashSet;

use super::ExportError;
use super::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto,
    type_proto,
};

/// The `ai.onnx.ml` domain (LabelEncoder, OneHotEncoder).
pub(super) const ML: &str = "ai.onnx.ml";

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dim {
    /// The batch: as many as the rows given.
    Rows,
    Fixed(i64),
}

/// A graph under construction.
#[derive(Debug, Default)]
pub(super) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    used: HashSet<String>,
}

impl Graph {
    /// Claims `name` exactly (a graph input or output); a second claim is an
    /// error naming both uses.
    pub(super) fn claim(&mut self, name: &str, what: &str) -> Result<(), ExportError> {
        if self.used.insert(name.to_string()) {
            Ok(())
        } else {
            Err(ExportError::NameClash {
                name: name.to_string(),
                what: what.to_string(),
            })
        }
    }

    /// A name not used yet, from `hint`.
    pub(super) fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut k = 1;
        while self.used.contains(&name) {
            k += 1;
            name = format!("{hint}_{k}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Declares a graph input (its name claimed already).
    pub(super) fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem, dims));
    }

    /// Declares a graph output (its name claimed already).
    pub(super) fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    /// A node of `op` writing `output` (a claimed or fresh name).
    pub(super) fn node_into(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            domain: domain.to_string(),
            attribute: attributes,
            ..NodeProto::default()
        });
    }

    /// A node of `op` in the standard domain; returns its (fresh) output.
    pub(super) fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        hint: &str,
        attributes: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(hint);
        self.node_into(op, "", inputs, &out, attributes);
        out
    }

    /// A node of `op` in `ai.onnx.ml`; returns its (fresh) output.
    pub(super) fn ml_op(
        &mut self,
        op: &str,
        inputs: &[&str],
        hint: &str,
        attributes: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(hint);
        self.node_into(op, ML, inputs, &out, attributes);
        out
    }

    /// A constant tensor of doubles with shape `dims`.
    pub(super) fn doubles(&mut self, hint: &str, dims: &[i64], values: &[f64]) -> String {
        self.constant(
            hint,
            TensorProto {
                dims: dims.to_vec(),
                data_type: DataType::Double as i32,
                double_data: values.to_vec(),
                ..TensorProto::default()
            },
        )
    }

    /// A constant tensor of 64-bit integers with shape `dims`.
    pub(super) fn int64s(&mut self, hint: &str, dims: &[i64], values: &[i64]) -> String {
        self.constant(
            hint,
            TensorProto {
                dims: dims.to_vec(),
                data_type: DataType::Int64 as i32,
                int64_data: values.to_vec(),
                ..TensorProto::default()
            },
        )
    }

    /// `tensor` as an initializer under a fresh name; the name.
    fn constant(&mut self, hint: &str, tensor: TensorProto) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            ..tensor
        });
        name
    }

    pub(super) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The finished graph.
    pub(super) fn finish(self, name: &str, doc: String) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: name.to_string(),
            initializer: self.initializers,
            doc_string: doc,
            input: self.inputs,
            output: self.outputs,
            ..GraphProto::default()
        }
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Rows => tensor_shape_proto::dimension::Value::DimParam("N".into()),
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
            }),
            ..tensor_shape_proto::Dimension::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// An integer attribute.
pub(super) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..AttributeProto::default()
    }
}

/// A list-of-integers attribute.
pub(super) fn ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: v,
        ..AttributeProto::default()
    }
}

/// A list-of-strings attribute.
pub(super) fn strings(name: &str, v: &[String]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Strings as i32,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..AttributeProto::default()
    }
}

/// `Cast`'s `to` attribute.
pub(super) fn cast_to(t: DataType) -> AttributeProto {
    int("to", t as i64)
}

/// A string attribute.
pub(super) fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..AttributeProto::default()
    }
}

/// A list-of-floats attribute.
pub(super) fn floats(name: &str, v: Vec<f32>) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Floats as i32,
        floats: v,
        ..AttributeProto::default()
    }
}

/// A tensor attribute holding the doubles `v` (shape `[v.len()]`): the
/// `*_as_tensor` attributes of `ai.onnx.ml`'s tree ensembles.
pub(super) fn double_tensor(name: &str, v: Vec<f64>) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Tensor as i32,
        t: Some(TensorProto {
            dims: vec![v.len() as i64],
            data_type: DataType::Double as i32,
            double_data: v,
            ..TensorProto::default()
        }),
        ..AttributeProto::default()
    }
}
