//! A small builder for ONNX graphs over tract's prost types (`tract_onnx::pb`): named values,
//! initializers and one node per call. It knows nothing about the model; `export::onnx` walks
//! the model with it.

use tract_onnx::pb::{attribute_proto::AttributeType, tensor_proto::DataType};
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    counter: usize,
    /// Names of named initializers already added: a weight shared by several streams
    /// (`shared_weights`) is stored once and referenced from each use.
    named: std::collections::HashSet<String>,
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float32 tensor value description with a symbolic batch dimension `N` first: the runtime
/// crate's own, which builds the inputs of the parts it cuts a composed model into, so both
/// sides of a model file describe values with one function.
pub use mbt_infer::parts::value_info;

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// A float32 initializer (little-endian raw data).
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        if !self.named.insert(name.to_string()) {
            return name.to_string();
        }
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// An int64 constant (shapes, indices, slice bounds).
    pub fn ints(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An int8 or uint8 initializer (`signed` picks which).
    pub fn bytes(&mut self, name: &str, dims: &[usize], data: Vec<u8>, signed: bool) -> String {
        if !self.named.insert(name.to_string()) {
            return name.to_string();
        }
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: if signed {
                DataType::Int8 as i32
            } else {
                DataType::Uint8 as i32
            },
            raw_data: data,
            ..Default::default()
        });
        name.to_string()
    }

    /// Appends a node with several outputs and returns their names.
    pub fn node_multi(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs)
            .map(|_| self.fresh(&op.to_ascii_lowercase()))
            .collect();
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            name,
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            attribute: attrs,
            ..Default::default()
        });
        outs
    }

    /// A float32 scalar constant.
    pub fn scalar(&mut self, hint: &str, v: f32) -> String {
        let name = self.fresh(hint);
        self.weight(&name, &[], &[v])
    }

    /// Appends a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node_named(op, inputs, attrs, &out);
        out
    }

    /// Appends a node whose single output has the given name (graph outputs).
    pub fn node_named(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: &str) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            name,
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }

    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.node("MatMul", &[a, b], vec![])
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.node("Mul", &[a, b], vec![])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    /// `Reshape` to `shape` (0 copies the input's dimension: keeps the batch symbolic).
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints("shape", &[shape.len()], shape);
        self.node("Reshape", &[x, &s], vec![])
    }

    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(&mut self, x: &str, axis: i64, start: i64, end: i64) -> String {
        let st = self.ints("starts", &[1], &[start]);
        let en = self.ints("ends", &[1], &[end]);
        let ax = self.ints("axes", &[1], &[axis]);
        self.node("Slice", &[x, &st, &en, &ax], vec![])
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, vec![attr_int("axis", axis)])
    }

    /// Broadcasts a `[1, k, d]` parameter to `[N, k, d]` with `N` taken from `like`'s first
    /// dimension at run time.
    pub fn expand_batch(&mut self, param: &str, like: &str, k: usize, d: usize) -> String {
        let shape = self.node("Shape", &[like], vec![]);
        let idx = self.ints("batch_index", &[1], &[0]);
        let n = self.node("Gather", &[&shape, &idx], vec![attr_int("axis", 0)]);
        let rest = self.ints("kd", &[2], &[k as i64, d as i64]);
        let target = self.concat(&[&n, &rest], 0);
        self.node("Expand", &[param, &target], vec![])
    }
}
