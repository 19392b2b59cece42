//! ONNX → Graph. Float ops are imported faithfully (canonicalisation happens in
//! `passes`); integer shape arithmetic (Shape, Gather, Concat of shapes, …) is
//! evaluated here, since the IR has only float tensors.

use super::proto::{self, tensor_proto::DataType};
use crate::error::{ModelError, Result};
use crate::graph::{Graph, NodeId};
use crate::kernels;
use crate::op::{BinaryKind, Op, Window2d};
use crate::tensor::Tensor;
use prost::Message;
use std::collections::HashMap;

/// Upper bound on the elements of any one tensor or value we accept (guards
/// against allocation bombs in malformed files).
const MAX_ELEMENTS: usize = crate::graph::MAX_NODE_ELEMENTS;
/// Upper bound on a kernel, stride, pad or dilation attribute.
const MAX_WINDOW_ATTR: i64 = 1 << 16;

/// A constant known at import time.
#[derive(Clone, Debug)]
struct Const {
    shape: Vec<usize>,
    data: ConstData,
}

#[derive(Clone, Debug)]
enum ConstData {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Const {
    fn floats(&self) -> Vec<f32> {
        match &self.data {
            ConstData::Float(v) => v.clone(),
            ConstData::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    fn ints(&self) -> Vec<i64> {
        match &self.data {
            ConstData::Float(v) => v.iter().map(|&x| x as i64).collect(),
            ConstData::Int(v) => v.clone(),
        }
    }
    fn tensor(&self) -> Tensor {
        Tensor::new(self.shape.clone(), self.floats())
    }
    /// Applies `f` to the data as f64 and keeps the integer/float kind.
    fn map_f64(&self, shape: Vec<usize>, f: impl Fn(&[f64]) -> Vec<f64>) -> Const {
        let data = match &self.data {
            ConstData::Float(v) => {
                ConstData::Float(f(&kernels::convert(v)).iter().map(|&x| x as f32).collect())
            }
            ConstData::Int(v) => ConstData::Int(
                f(&v.iter().map(|&x| x as f64).collect::<Vec<_>>())
                    .iter()
                    .map(|&x| x as i64)
                    .collect(),
            ),
        };
        Const { shape, data }
    }
}

#[derive(Clone, Debug)]
enum Value {
    Var(NodeId),
    Const(Const),
}

fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

/// Decodes (optionally gzip-compressed) ONNX bytes into a graph.
pub fn import_onnx_bytes(bytes: &[u8]) -> Result<Graph> {
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        raw = crate::io::gunzip(bytes).map_err(|e| ModelError::Decode(format!("gzip: {e}")))?;
        &raw[..]
    } else {
        bytes
    };
    let model = proto::ModelProto::decode(bytes).map_err(|e| ModelError::Decode(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(1);
    let graph = model
        .graph
        .ok_or_else(|| ModelError::Decode("the file holds no graph".into()))?;
    Importer::new(opset).import(&graph)
}

struct Importer {
    opset: i64,
    values: HashMap<String, Value>,
    graph: Option<Graph>,
    softmax_outputs: Vec<String>,
    const_nodes: HashMap<String, NodeId>,
}

/// Attribute access for one node.
struct Attrs<'a> {
    node: &'a proto::NodeProto,
    name: &'a str,
}

impl Attrs<'_> {
    fn get(&self, key: &str) -> Option<&proto::AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(key))
    }
    fn int(&self, key: &str, default: i64) -> i64 {
        self.get(key).and_then(|a| a.i).unwrap_or(default)
    }
    fn float(&self, key: &str, default: f32) -> f32 {
        self.get(key).and_then(|a| a.f).unwrap_or(default)
    }
    fn ints(&self, key: &str) -> Option<Vec<i64>> {
        self.get(key).map(|a| a.ints.clone())
    }
    fn string(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
    fn err(&self, reason: impl Into<String>) -> ModelError {
        ModelError::unsupported(self.node.op_type(), self.name, reason)
    }
    /// A non-negative window attribute (kernel, stride, pad, dilation).
    fn window_ints(&self, key: &str, default: Vec<i64>, len: usize) -> Result<Vec<usize>> {
        let v = self.ints(key).unwrap_or(default);
        if v.len() != len || v.iter().any(|&x| !(0..=MAX_WINDOW_ATTR).contains(&x)) {
            return Err(self.err(format!(
                "attribute `{key}` = {v:?} is not {len} values in [0, {MAX_WINDOW_ATTR}]"
            )));
        }
        Ok(v.iter().map(|&x| x as usize).collect())
    }
}

fn parse_tensor(t: &proto::TensorProto) -> Result<Const> {
    let name = t.name();
    let bad = |r: String| ModelError::Decode(format!("tensor `{name}`: {r}"));
    if t.data_location == Some(proto::tensor_proto::DataLocation::External as i32) {
        return Err(bad(
            "external data files are not supported; embed the weights".into(),
        ));
    }
    if t.dims.iter().any(|&d| d < 0) {
        return Err(bad(format!("negative dimension in {:?}", t.dims)));
    }
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let n = checked_numel(&shape).ok_or_else(|| bad(format!("too large: {shape:?}")))?;
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let le = |width: usize| -> Result<Vec<[u8; 8]>> {
        let r = raw.unwrap_or(&[]);
        if r.len() != n * width {
            return Err(bad(format!(
                "raw_data has {} bytes, expected {}",
                r.len(),
                n * width
            )));
        }
        Ok(r.chunks(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                b
            })
            .collect())
    };
    let data = match DataType::try_from(t.data_type()).unwrap_or(DataType::Undefined) {
        DataType::Float if raw.is_some() => ConstData::Float(
            le(4)?
                .iter()
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        DataType::Float => ConstData::Float(t.float_data.clone()),
        DataType::Double if raw.is_some() => ConstData::Float(
            le(8)?
                .iter()
                .map(|b| f64::from_le_bytes(*b) as f32)
                .collect(),
        ),
        DataType::Double => ConstData::Float(t.double_data.iter().map(|&v| v as f32).collect()),
        DataType::Int64 if raw.is_some() => {
            ConstData::Int(le(8)?.iter().map(|b| i64::from_le_bytes(*b)).collect())
        }
        DataType::Int64 => ConstData::Int(t.int64_data.clone()),
        DataType::Int32 if raw.is_some() => ConstData::Int(
            le(4)?
                .iter()
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
        ),
        DataType::Int32 => ConstData::Int(t.int32_data.iter().map(|&v| v as i64).collect()),
        other => return Err(bad(format!("element type {other:?} is not supported"))),
    };
    let len = match &data {
        ConstData::Float(v) => v.len(),
        ConstData::Int(v) => v.len(),
    };
    if len != n {
        return Err(bad(format!("{len} values for shape {shape:?}")));
    }
    Ok(Const { shape, data })
}

/// Resolves a Reshape target (0 copies the input dim, one -1 is inferred).
fn reshape_target(input: &[usize], spec: &[i64], node: &str) -> Result<Vec<usize>> {
    let err = |r: String| ModelError::shape(node, r);
    let total = checked_numel(input).ok_or_else(|| err("input too large".into()))?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 => {
                out.push(*input.get(i).ok_or_else(|| {
                    err(format!("0 at position {i} but input rank {}", input.len()))
                })?)
            }
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 && d as usize <= MAX_ELEMENTS => out.push(d as usize),
            _ => return Err(err(format!("invalid reshape target {spec:?}"))),
        }
    }
    let known = checked_numel(&out).ok_or_else(|| err(format!("target {spec:?} too large")))?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(err(format!("cannot reshape {input:?} to {spec:?}")));
        }
        out[i] = total / known;
    }
    if checked_numel(&out) != Some(total) {
        return Err(err(format!("cannot reshape {input:?} to {spec:?}")));
    }
    Ok(out)
}

fn norm_axis(axis: i64, rank: usize, node: &str) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(ModelError::shape(
            node,
            format!("axis {axis} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

impl Importer {
    fn new(opset: i64) -> Self {
        Importer {
            opset,
            values: HashMap::new(),
            graph: None,
            softmax_outputs: Vec::new(),
            const_nodes: HashMap::new(),
        }
    }

    fn g(&mut self) -> &mut Graph {
        self.graph.as_mut().expect("input created first")
    }

    fn import(mut self, gp: &proto::GraphProto) -> Result<Graph> {
        for init in &gp.initializer {
            self.values
                .insert(init.name().to_string(), Value::Const(parse_tensor(init)?));
        }
        let inputs: Vec<&proto::ValueInfoProto> = gp
            .input
            .iter()
            .filter(|i| !self.values.contains_key(i.name()))
            .collect();
        let [input] = inputs[..] else {
            return Err(ModelError::Invalid(format!(
                "the model must have exactly one input, it has {}",
                inputs.len()
            )));
        };
        let shape = input_shape(input)?;
        self.graph = Some(Graph::with_input(input.name(), shape));
        self.values.insert(input.name().to_string(), Value::Var(0));
        for (i, node) in gp.node.iter().enumerate() {
            let name = match node.name() {
                "" => format!("{}_{i}", node.op_type()),
                n => n.to_string(),
            };
            self.import_node(node, &name)?;
        }
        let [output] = &gp.output[..] else {
            return Err(ModelError::Invalid(format!(
                "the model must have exactly one output, it has {}",
                gp.output.len()
            )));
        };
        let mut graph = self.graph.take().expect("graph");
        graph.output = match self.values.get(output.name()) {
            Some(Value::Var(id)) => *id,
            Some(Value::Const(_)) => {
                return Err(ModelError::Invalid(
                    "the output does not depend on the input".into(),
                ))
            }
            None => {
                return Err(ModelError::Invalid(format!(
                    "output `{}` is never computed",
                    output.name()
                )))
            }
        };
        graph.output_name = output.name().to_string();
        graph.softmax_dropped = self.softmax_outputs.iter().any(|s| s == output.name());
        graph.prune();
        graph.validate()?;
        Ok(graph)
    }

    fn input(&self, node: &proto::NodeProto, k: usize, name: &str) -> Result<Value> {
        let key = node.input.get(k).filter(|s| !s.is_empty()).ok_or_else(|| {
            ModelError::unsupported(node.op_type(), name, format!("missing input {k}"))
        })?;
        if self.softmax_outputs.contains(key) {
            return Err(ModelError::unsupported(
                "Softmax",
                name,
                "Softmax is only supported as the last op",
            ));
        }
        self.values.get(key).cloned().ok_or_else(|| {
            ModelError::Invalid(format!(
                "node `{name}` reads `{key}`, which is not defined before it"
            ))
        })
    }

    fn optional_input(
        &self,
        node: &proto::NodeProto,
        k: usize,
        name: &str,
    ) -> Result<Option<Value>> {
        match node.input.get(k) {
            Some(s) if !s.is_empty() => self.input(node, k, name).map(Some),
            _ => Ok(None),
        }
    }

    fn const_input(&self, node: &proto::NodeProto, k: usize, name: &str) -> Result<Const> {
        match self.input(node, k, name)? {
            Value::Const(c) => Ok(c),
            Value::Var(_) => Err(ModelError::unsupported(node.op_type(), name, format!("input {k} must be a constant (weights computed from the network input are not supported)"))),
        }
    }

    /// The node id holding a value, materialising constants as Constant nodes.
    fn var(&mut self, v: Value, key: &str) -> Result<NodeId> {
        match v {
            Value::Var(id) => Ok(id),
            Value::Const(c) => {
                if let Some(&id) = self.const_nodes.get(key) {
                    return Ok(id);
                }
                let id = self.g().push(key, Op::Constant(c.tensor()), vec![])?;
                self.const_nodes.insert(key.to_string(), id);
                Ok(id)
            }
        }
    }

    fn shape_of(&self, v: &Value) -> Vec<usize> {
        match v {
            Value::Var(id) => self.graph.as_ref().expect("graph").nodes[*id].shape.clone(),
            Value::Const(c) => c.shape.clone(),
        }
    }

    fn set(&mut self, node: &proto::NodeProto, v: Value) {
        if let Some(out) = node.output.first() {
            self.values.insert(out.clone(), v);
        }
    }

    fn push(
        &mut self,
        node: &proto::NodeProto,
        name: &str,
        op: Op,
        inputs: Vec<NodeId>,
    ) -> Result<()> {
        let id = self.g().push(name, op, inputs)?;
        self.set(node, Value::Var(id));
        Ok(())
    }

    /// Reshape of a value to an already resolved shape.
    fn reshape(
        &mut self,
        node: &proto::NodeProto,
        name: &str,
        v: Value,
        shape: Vec<usize>,
    ) -> Result<()> {
        let out = match v {
            Value::Const(c) => Value::Const(Const {
                shape,
                data: c.data,
            }),
            Value::Var(id) => {
                Value::Var(
                    self.g()
                        .push_reshaped(name, Op::Reshape, vec![id], Some(&shape))?,
                )
            }
        };
        self.set(node, out);
        Ok(())
    }

    fn import_node(&mut self, node: &proto::NodeProto, name: &str) -> Result<()> {
        let a = Attrs { node, name };
        let op = node.op_type();
        match op {
            "Constant" => {
                let at = a
                    .get("value")
                    .and_then(|x| x.t.as_ref())
                    .map(parse_tensor)
                    .transpose()?;
                let c = at
                    .or_else(|| {
                        a.get("value_float").and_then(|x| x.f).map(|f| Const {
                            shape: vec![],
                            data: ConstData::Float(vec![f]),
                        })
                    })
                    .or_else(|| {
                        a.get("value_floats").map(|x| Const {
                            shape: vec![x.floats.len()],
                            data: ConstData::Float(x.floats.clone()),
                        })
                    })
                    .or_else(|| {
                        a.get("value_int").and_then(|x| x.i).map(|i| Const {
                            shape: vec![],
                            data: ConstData::Int(vec![i]),
                        })
                    })
                    .or_else(|| {
                        a.get("value_ints").map(|x| Const {
                            shape: vec![x.ints.len()],
                            data: ConstData::Int(x.ints.clone()),
                        })
                    })
                    .ok_or_else(|| a.err("Constant without a supported value attribute"))?;
                self.set(node, Value::Const(c));
            }
            "Identity" | "Dropout" => {
                let v = self.input(node, 0, name)?;
                self.set(node, v);
            }
            "Softmax" => {
                let v = self.input(node, 0, name)?;
                self.set(node, v);
                self.softmax_outputs.extend(node.output.first().cloned());
            }
            "Shape" => {
                let s = self.shape_of(&self.input(node, 0, name)?);
                let r = s.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (start, end) = (clamp(a.int("start", 0)), clamp(a.int("end", r)));
                let dims: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
                self.set(
                    node,
                    Value::Const(Const {
                        shape: vec![dims.len()],
                        data: ConstData::Int(dims),
                    }),
                );
            }
            "Cast" => {
                let v = self.input(node, 0, name)?;
                let to = a.int("to", 1);
                let out = match (v, to) {
                    (Value::Const(c), 1 | 11) => Value::Const(Const {
                        shape: c.shape.clone(),
                        data: ConstData::Float(c.floats()),
                    }),
                    (Value::Const(c), 6 | 7) => Value::Const(Const {
                        shape: c.shape.clone(),
                        data: ConstData::Int(c.ints()),
                    }),
                    (Value::Var(id), 1) => Value::Var(id),
                    _ => return Err(a.err(format!("cast to element type {to} is not supported"))),
                };
                self.set(node, out);
            }
            "Gather" => self.import_gather(node, &a)?,
            "Flatten" => {
                let v = self.input(node, 0, name)?;
                let s = self.shape_of(&v);
                let axis = if a.int("axis", 1) == s.len() as i64 {
                    s.len()
                } else {
                    norm_axis(a.int("axis", 1), s.len(), name)?
                };
                let shape = vec![s[..axis].iter().product(), s[axis..].iter().product()];
                self.reshape(node, name, v, shape)?;
            }
            "Reshape" => {
                let v = self.input(node, 0, name)?;
                let spec = self.const_input(node, 1, name)?.ints();
                let shape = reshape_target(&self.shape_of(&v), &spec, name)?;
                self.reshape(node, name, v, shape)?;
            }
            "Squeeze" | "Unsqueeze" => self.import_squeeze(node, &a)?,
            "Transpose" => {
                let v = self.input(node, 0, name)?;
                let s = self.shape_of(&v);
                let default: Vec<i64> = (0..s.len() as i64).rev().collect();
                let perm: Vec<usize> = a
                    .ints("perm")
                    .unwrap_or(default)
                    .iter()
                    .map(|&p| norm_axis(p, s.len(), name))
                    .collect::<Result<_>>()?;
                match v {
                    Value::Const(c) => {
                        let op = Op::Transpose { perm: perm.clone() };
                        let out = op.output_shape(name, &[&c.shape], None)?;
                        let map = kernels::transpose_map(&c.shape, &perm);
                        self.set(
                            node,
                            Value::Const(c.map_f64(out, |x| map.iter().map(|&i| x[i]).collect())),
                        );
                    }
                    Value::Var(id) => self.push(node, name, Op::Transpose { perm }, vec![id])?,
                }
            }
            "Concat" => self.import_concat(node, &a)?,
            "Add" | "Sub" | "Mul" | "Div" => self.import_binary(node, &a)?,
            "Neg" => match self.input(node, 0, name)? {
                Value::Const(c) => self.set(
                    node,
                    Value::Const(c.map_f64(c.shape.clone(), |x| x.iter().map(|v| -v).collect())),
                ),
                Value::Var(id) => {
                    let s = self.shape_of(&Value::Var(id));
                    let scale = Tensor::new(s.clone(), vec![-1.0; s.iter().product()]);
                    self.push(
                        node,
                        name,
                        Op::Affine {
                            scale: Some(scale),
                            shift: None,
                        },
                        vec![id],
                    )?
                }
            },
            "MatMul" => self.import_matmul(node, &a)?,
            "Gemm" => self.import_gemm(node, &a)?,
            "Conv" => self.import_conv(node, &a)?,
            "Relu" | "Sigmoid" | "Tanh" | "Atan" | "LeakyRelu" => {
                let x = self.input(node, 0, name)?;
                let x = self.var(x, &node.input[0])?;
                let op = match op {
                    "Relu" => Op::Relu,
                    "Sigmoid" => Op::Sigmoid,
                    "Tanh" => Op::Tanh,
                    "Atan" => Op::Atan,
                    _ => Op::LeakyRelu {
                        alpha: a.float("alpha", 0.01),
                    },
                };
                self.push(node, name, op, vec![x])?;
            }
            "MaxPool" | "AveragePool" | "GlobalAveragePool" => self.import_pool(node, &a)?,
            "Pad" => self.import_pad(node, &a)?,
            "BatchNormalization" => {
                if a.int("training_mode", 0) != 0 {
                    return Err(a.err("training_mode = 1 is not supported"));
                }
                let x = self.input(node, 0, name)?;
                let x = self.var(x, &node.input[0])?;
                let p: Vec<Tensor> = (1..5)
                    .map(|k| self.const_input(node, k, name).map(|c| c.tensor()))
                    .collect::<Result<_>>()?;
                let [gamma, beta, mean, var] = <[Tensor; 4]>::try_from(p).expect("four tensors");
                let bn = Op::BatchNorm {
                    gamma,
                    beta,
                    mean,
                    var,
                    epsilon: a.float("epsilon", 1e-5),
                };
                self.push(node, name, bn, vec![x])?;
            }
            other => {
                return Err(ModelError::UnsupportedOp {
                    op: other.to_string(),
                    node: name.to_string(),
                });
            }
        }
        Ok(())
    }

    fn import_gather(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let data = self.const_input(node, 0, a.name)?;
        let idx = self.const_input(node, 1, a.name)?;
        let axis = norm_axis(a.int("axis", 0), data.shape.len(), a.name)?;
        let dim = data.shape[axis] as i64;
        let picks: Vec<usize> = idx
            .ints()
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim } else { i };
                (0..dim)
                    .contains(&j)
                    .then_some(j as usize)
                    .ok_or_else(|| a.err(format!("index {i} out of range")))
            })
            .collect::<Result<_>>()?;
        let outer: usize = data.shape[..axis].iter().product();
        let inner: usize = data.shape[axis + 1..].iter().product();
        let mut shape = data.shape[..axis].to_vec();
        shape.extend(&idx.shape);
        shape.extend(&data.shape[axis + 1..]);
        let out = data.map_f64(shape, |x| {
            let mut v = Vec::new();
            for o in 0..outer {
                for &p in &picks {
                    v.extend_from_slice(&x[(o * dim as usize + p) * inner..][..inner]);
                }
            }
            v
        });
        self.set(node, Value::Const(out));
        Ok(())
    }

    fn import_squeeze(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let v = self.input(node, 0, a.name)?;
        let s = self.shape_of(&v);
        let axes = if self.opset >= 13 && node.input.len() > 1 {
            Some(self.const_input(node, 1, a.name)?.ints())
        } else {
            a.ints("axes")
        };
        let shape = if node.op_type() == "Squeeze" {
            match axes {
                None => s.iter().copied().filter(|&d| d != 1).collect(),
                Some(ax) => {
                    let ax: Vec<usize> = ax
                        .iter()
                        .map(|&x| norm_axis(x, s.len(), a.name))
                        .collect::<Result<_>>()?;
                    if ax.iter().any(|&x| s[x] != 1) {
                        return Err(ModelError::shape(
                            a.name,
                            format!("cannot squeeze axes {ax:?} of {s:?}"),
                        ));
                    }
                    s.iter()
                        .enumerate()
                        .filter(|(i, _)| !ax.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                }
            }
        } else {
            let ax = axes.ok_or_else(|| a.err("Unsqueeze needs axes"))?;
            let rank = s.len() + ax.len();
            let mut ax: Vec<usize> = ax
                .iter()
                .map(|&x| norm_axis(x, rank, a.name))
                .collect::<Result<_>>()?;
            ax.sort_unstable();
            let mut out = s.clone();
            for x in ax {
                out.insert(x.min(out.len()), 1);
            }
            out
        };
        self.reshape(node, a.name, v, shape)
    }

    fn import_concat(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let vals: Vec<Value> = (0..node.input.len())
            .map(|k| self.input(node, k, a.name))
            .collect::<Result<_>>()?;
        let rank = vals
            .first()
            .map(|v| self.shape_of(v).len())
            .ok_or_else(|| a.err("Concat without inputs"))?;
        let axis = norm_axis(a.int("axis", 0), rank, a.name)?;
        if vals.iter().all(|v| matches!(v, Value::Const(_))) {
            let cs: Vec<Const> = vals
                .into_iter()
                .map(|v| match v {
                    Value::Const(c) => c,
                    _ => unreachable!(),
                })
                .collect();
            let shapes: Vec<&[usize]> = cs.iter().map(|c| c.shape.as_slice()).collect();
            let shape = Op::Concat { axis }.output_shape(a.name, &shapes, None)?;
            let f64s: Vec<Vec<f64>> = cs
                .iter()
                .map(|c| c.map_f64(c.shape.clone(), |x| x.to_vec()))
                .map(|c| match c.data {
                    ConstData::Float(v) => kernels::convert(&v),
                    ConstData::Int(v) => v.iter().map(|&x| x as f64).collect(),
                })
                .collect();
            let parts: Vec<(&[f64], &[usize])> = f64s
                .iter()
                .zip(&shapes)
                .map(|(d, s)| (d.as_slice(), *s))
                .collect();
            let joined = kernels::concat(&parts, axis, 1);
            let out = cs[0].map_f64(shape, |_| joined.clone());
            self.set(node, Value::Const(out));
            return Ok(());
        }
        let ids: Vec<NodeId> = vals
            .into_iter()
            .zip(&node.input)
            .map(|(v, k)| self.var(v, k))
            .collect::<Result<_>>()?;
        self.push(node, a.name, Op::Concat { axis }, ids)
    }

    fn import_binary(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let kind = match node.op_type() {
            "Add" => BinaryKind::Add,
            "Sub" => BinaryKind::Sub,
            "Mul" => BinaryKind::Mul,
            _ => BinaryKind::Div,
        };
        let (x, y) = (self.input(node, 0, a.name)?, self.input(node, 1, a.name)?);
        if let (Value::Const(c), Value::Const(d)) = (&x, &y) {
            let out = crate::tensor::broadcast_shape(&c.shape, &d.shape).ok_or_else(|| {
                ModelError::shape(
                    a.name,
                    format!("cannot broadcast {:?} with {:?}", c.shape, d.shape),
                )
            })?;
            let dv = d.map_f64(d.shape.clone(), |v| v.to_vec());
            let dv: Vec<f64> = match dv.data {
                ConstData::Float(v) => kernels::convert(&v),
                ConstData::Int(v) => v.iter().map(|&x| x as f64).collect(),
            };
            let r = c.map_f64(out.clone(), |cv| {
                kernels::binary(kind, (cv, &c.shape), (&dv, &d.shape), &out, 1)
            });
            self.set(node, Value::Const(r));
            return Ok(());
        }
        let xi = self.var(x, &node.input[0])?;
        let yi = self.var(y, &node.input[1])?;
        self.push(node, a.name, Op::Binary(kind), vec![xi, yi])
    }

    fn import_matmul(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let (w, xi) = match (self.input(node, 0, a.name)?, self.input(node, 1, a.name)?) {
            (Value::Var(xi), Value::Const(w)) => (w, xi),
            // W·x with a vector x (VNN-COMP's test networks): a Linear with weight W.
            (Value::Const(w), Value::Var(xi))
                if w.shape.len() == 2 && self.shape_of(&Value::Var(xi)).len() == 1 =>
            {
                return self.push(
                    node,
                    a.name,
                    Op::Linear {
                        weight: w.tensor(),
                        bias: None,
                    },
                    vec![xi],
                );
            }
            _ => return Err(a.err(
                "one operand must be a constant weight matrix and the other depend on the input",
            )),
        };
        let wt = w.tensor();
        match wt.shape.len() {
            2 => self.push(
                node,
                a.name,
                Op::Linear {
                    weight: wt.transpose2d(),
                    bias: None,
                },
                vec![xi],
            ),
            1 => {
                // x[..., k] · w[k] drops the last axis: a 1-output Linear, then a reshape.
                let id = self.g().push(
                    &format!("{}.matvec", a.name),
                    Op::Linear {
                        weight: Tensor::new(vec![1, wt.numel()], wt.data),
                        bias: None,
                    },
                    vec![xi],
                )?;
                let mut s = self.shape_of(&Value::Var(id));
                s.pop();
                self.reshape(node, a.name, Value::Var(id), s)
            }
            _ => Err(a.err(format!(
                "batched weight of shape {:?} is not supported",
                wt.shape
            ))),
        }
    }

    fn import_gemm(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        if a.int("transA", 0) != 0 {
            return Err(a.err("transA = 1 is not supported"));
        }
        let Value::Var(xi) = self.input(node, 0, a.name)? else {
            return Err(a.err("input A must depend on the network input"));
        };
        let b = self.const_input(node, 1, a.name)?.tensor();
        if b.shape.len() != 2 {
            return Err(ModelError::shape(
                a.name,
                format!("Gemm B must be 2-D, got {:?}", b.shape),
            ));
        }
        let mut weight = if a.int("transB", 0) != 0 {
            b
        } else {
            b.transpose2d()
        };
        let alpha = a.float("alpha", 1.0);
        if alpha != 1.0 {
            weight.data.iter_mut().for_each(|v| *v *= alpha);
        }
        let out = weight.shape[0];
        let bias = match self.optional_input(node, 2, a.name)? {
            None => None,
            Some(Value::Var(_)) => return Err(a.err("bias C must be a constant")),
            Some(Value::Const(c)) => {
                let beta = a.float("beta", 1.0);
                let t = c.tensor();
                let flat = Tensor::new(vec![t.numel()], t.data);
                let mut bias = flat.broadcast_to(&[out]).ok_or_else(|| {
                    ModelError::shape(
                        a.name,
                        format!("bias {:?} does not broadcast to [{out}]", c.shape),
                    )
                })?;
                bias.data.iter_mut().for_each(|v| *v *= beta);
                Some(bias)
            }
        };
        self.push(node, a.name, Op::Linear { weight, bias }, vec![xi])
    }

    /// Explicit pads from `pads` or `auto_pad` for a 2-D window.
    fn window_pads(
        &self,
        a: &Attrs,
        in_hw: (usize, usize),
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
    ) -> Result<[usize; 4]> {
        match a.string("auto_pad").as_deref() {
            None | Some("NOTSET") | Some("") => {
                let p = a.window_ints("pads", vec![0; 4], 4)?;
                Ok([p[0], p[1], p[2], p[3]])
            }
            Some("VALID") => Ok([0; 4]),
            Some(mode @ ("SAME_UPPER" | "SAME_LOWER")) => {
                let total = |n: usize, i: usize| {
                    let out = n.div_ceil(s[i]);
                    ((out - 1) * s[i] + d[i] * (k[i] - 1) + 1).saturating_sub(n)
                };
                let (th, tw) = (total(in_hw.0, 0), total(in_hw.1, 1));
                let (small_h, small_w) = (th / 2, tw / 2);
                Ok(if mode == "SAME_UPPER" {
                    [small_h, small_w, th - small_h, tw - small_w]
                } else {
                    [th - small_h, tw - small_w, small_h, small_w]
                })
            }
            Some(other) => Err(a.err(format!("auto_pad = {other} is not supported"))),
        }
    }

    fn import_conv(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let x = self.input(node, 0, a.name)?;
        let x = self.var(x, &node.input[0])?;
        let weight = self.const_input(node, 1, a.name)?.tensor();
        let bias = self.optional_input(node, 2, a.name)?;
        let bias = match bias {
            None => None,
            Some(Value::Const(c)) => Some(c.tensor()),
            Some(Value::Var(_)) => return Err(a.err("bias must be a constant")),
        };
        if weight.shape.len() != 4 {
            return Err(a.err(format!(
                "only 2-D convolutions are supported (weight {:?})",
                weight.shape
            )));
        }
        let kernel = [weight.shape[2], weight.shape[3]];
        let ks = a.window_ints("kernel_shape", vec![kernel[0] as i64, kernel[1] as i64], 2)?;
        let st = a.window_ints("strides", vec![1, 1], 2)?;
        let dl = a.window_ints("dilations", vec![1, 1], 2)?;
        let in_shape = self.shape_of(&Value::Var(x));
        let (_, h, w) = crate::op::chw(&in_shape).ok_or_else(|| {
            ModelError::shape(a.name, format!("Conv needs [1,C,H,W], got {in_shape:?}"))
        })?;
        let (stride, dilation) = ([st[0], st[1]], [dl[0], dl[1]]);
        if stride.contains(&0) {
            return Err(a.err("strides must be ≥ 1"));
        }
        let pads = self.window_pads(a, (h, w), kernel, stride, dilation)?;
        let window = Window2d {
            kernel: [ks[0], ks[1]],
            stride,
            pads,
            dilation,
        };
        let groups = a.int("group", 1);
        if !(1..=MAX_WINDOW_ATTR).contains(&groups) {
            return Err(a.err(format!("group = {groups}")));
        }
        self.push(
            node,
            a.name,
            Op::Conv2d {
                weight,
                bias,
                window,
                groups: groups as usize,
            },
            vec![x],
        )
    }

    fn import_pool(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        if node.output.len() > 1 && !node.output[1].is_empty() {
            return Err(a.err("the indices output of MaxPool is not supported"));
        }
        if a.int("ceil_mode", 0) != 0 {
            return Err(a.err("ceil_mode = 1 is not supported"));
        }
        let x = self.input(node, 0, a.name)?;
        let x = self.var(x, &node.input[0])?;
        let in_shape = self.shape_of(&Value::Var(x));
        let (_, h, w) = crate::op::chw(&in_shape).ok_or_else(|| {
            ModelError::shape(a.name, format!("pooling needs [1,C,H,W], got {in_shape:?}"))
        })?;
        let global = node.op_type() == "GlobalAveragePool";
        let k = if global {
            vec![h, w]
        } else {
            a.window_ints("kernel_shape", vec![], 2)?
        };
        let st = if global {
            vec![1, 1]
        } else {
            a.window_ints("strides", vec![1, 1], 2)?
        };
        let dl = a.window_ints("dilations", vec![1, 1], 2)?;
        let (kernel, stride, dilation) = ([k[0], k[1]], [st[0], st[1]], [dl[0], dl[1]]);
        if stride.contains(&0) {
            return Err(a.err("strides must be ≥ 1"));
        }
        let pads = self.window_pads(a, (h, w), kernel, stride, dilation)?;
        let window = Window2d {
            kernel,
            stride,
            pads,
            dilation,
        };
        let op = if node.op_type() == "MaxPool" {
            Op::MaxPool2d { window }
        } else {
            if dilation != [1, 1] {
                return Err(a.err("dilated average pooling is not supported"));
            }
            Op::AvgPool2d {
                window,
                count_include_pad: a.int("count_include_pad", 0) != 0,
            }
        };
        self.push(node, a.name, op, vec![x])
    }

    fn import_pad(&mut self, node: &proto::NodeProto, a: &Attrs) -> Result<()> {
        let mode = a.string("mode").unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(a.err(format!("mode = {mode} is not supported (only constant)")));
        }
        if node.input.len() > 3 && !node.input[3].is_empty() {
            return Err(a.err("the axes input is not supported"));
        }
        let x = self.input(node, 0, a.name)?;
        let rank = self.shape_of(&x).len();
        let (pads, value) = if self.opset >= 11 {
            let p = self.const_input(node, 1, a.name)?.ints();
            let v = self.optional_input(node, 2, a.name)?;
            let v = match v {
                Some(Value::Const(c)) => c.floats().first().copied().unwrap_or(0.0),
                Some(Value::Var(_)) => return Err(a.err("the pad value must be constant")),
                None => 0.0,
            };
            (p, v)
        } else {
            (a.ints("pads").unwrap_or_default(), a.float("value", 0.0))
        };
        if pads.len() != 2 * rank || pads.iter().any(|&p| !(0..=MAX_WINDOW_ATTR).contains(&p)) {
            return Err(a.err(format!(
                "pads {pads:?} must be {} values in [0, {MAX_WINDOW_ATTR}]",
                2 * rank
            )));
        }
        let pads: Vec<usize> = pads.iter().map(|&p| p as usize).collect();
        let x = self.var(x, &node.input[0])?;
        self.push(node, a.name, Op::Pad { pads, value }, vec![x])
    }
}

fn input_shape(input: &proto::ValueInfoProto) -> Result<Vec<usize>> {
    let bad = |r: &str| ModelError::Invalid(format!("input `{}`: {r}", input.name()));
    let tt = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(tt)) => tt,
        _ => return Err(bad("not a tensor")),
    };
    if tt.elem_type.unwrap_or(1) != DataType::Float as i32 {
        return Err(bad("element type must be float32"));
    }
    let dims = &tt.shape.as_ref().ok_or_else(|| bad("has no shape"))?.dim;
    let shape: Vec<usize> = dims
        .iter()
        .map(|d| match d.value {
            Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                Ok(v as usize)
            }
            // A symbolic or unknown dimension is the batch: verification runs one sample.
            Some(proto::tensor_shape_proto::dimension::Value::DimParam(_)) | None => Ok(1),
            _ => Err(bad("has a non-positive dimension")),
        })
        .collect::<Result<_>>()?;
    checked_numel(&shape).ok_or_else(|| bad("is too large"))?;
    Ok(shape)
}
