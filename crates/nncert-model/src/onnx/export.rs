//! Graph → ONNX (opset 13), so that trained models run in any ONNX runtime.

use super::proto::{self, tensor_proto::DataType};
use crate::error::{ModelError, Result};
use crate::graph::Graph;
use crate::op::{BinaryKind, Op, Window2d};
use crate::tensor::Tensor;
use prost::Message;
use std::path::Path;

const OPSET: i64 = 13;

fn float_tensor(name: &str, t: &Tensor) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_string()),
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(t.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn int_tensor(name: &str, v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_string()),
        dims: vec![v.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[usize]) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(proto::attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn float_attr(name: &str, v: f32) -> proto::AttributeProto {
    proto::AttributeProto {
        name: Some(name.to_string()),
        r#type: Some(proto::attribute_proto::AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn window_attrs(w: &Window2d, with_dilation: bool) -> Vec<proto::AttributeProto> {
    let mut v = vec![
        ints_attr("kernel_shape", &w.kernel),
        ints_attr("strides", &w.stride),
        ints_attr("pads", &w.pads),
    ];
    if with_dilation {
        v.push(ints_attr("dilations", &w.dilation));
    }
    v
}

fn value_info(name: &str, shape: &[usize]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dims = shape
        .iter()
        .map(|&d| Dimension {
            value: Some(Value::DimValue(d as i64)),
            ..Default::default()
        })
        .collect();
    proto::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(DataType::Float as i32),
                    shape: Some(proto::TensorShapeProto { dim: dims }),
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Accumulates ONNX nodes and initializers.
struct Builder {
    nodes: Vec<proto::NodeProto>,
    inits: Vec<proto::TensorProto>,
}

impl Builder {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<proto::AttributeProto>,
    ) {
        self.nodes.push(proto::NodeProto {
            op_type: Some(op.to_string()),
            name: Some(name.to_string()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }
    fn init(&mut self, t: proto::TensorProto) -> String {
        let name = t.name().to_string();
        self.inits.push(t);
        name
    }
    fn reshape(&mut self, name: &str, x: &str, shape: &[usize], out: &str) {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let s = self.init(int_tensor(&format!("{name}.shape"), &dims));
        self.node("Reshape", name, &[x, &s], out, vec![]);
    }
}

/// Serialises a graph as an ONNX model.
pub fn export_onnx_bytes(graph: &Graph) -> Result<Vec<u8>> {
    // A graph built in code names its output after its input
    // (`Graph::with_input`); ONNX defines each value once, so it gets its own.
    let output_name = if graph.output != graph.input && graph.output_name == graph.input_name {
        "output".to_string()
    } else {
        graph.output_name.clone()
    };
    let names: Vec<String> = (0..graph.nodes.len())
        .map(|i| match i {
            i if i == graph.input => graph.input_name.clone(),
            i if i == graph.output => output_name.clone(),
            i => format!("v{i}"),
        })
        .collect();
    let mut b = Builder {
        nodes: vec![],
        inits: vec![],
    };
    for (id, node) in graph.nodes.iter().enumerate() {
        let out = names[id].as_str();
        let nm = format!("{}_{id}", node.op.name());
        let x = node
            .inputs
            .first()
            .map(|&i| names[i].clone())
            .unwrap_or_default();
        let in_shape = node
            .inputs
            .first()
            .map(|&i| graph.nodes[i].shape.clone())
            .unwrap_or_default();
        match &node.op {
            Op::Input => {}
            Op::Constant(t) => {
                b.init(float_tensor(out, t));
            }
            Op::Linear { weight, bias } if in_shape.len() == 2 => {
                // Gemm keeps the bias inside the op, so re-import is bit-identical.
                let w = b.init(float_tensor(&format!("{nm}.weight"), weight));
                let mut ins = vec![x.clone(), w];
                ins.extend(
                    bias.as_ref()
                        .map(|t| b.init(float_tensor(&format!("{nm}.bias"), t))),
                );
                let refs: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
                b.node("Gemm", &nm, &refs, out, vec![int_attr("transB", 1)]);
            }
            Op::Linear { weight, bias } => {
                let w = b.init(float_tensor(&format!("{nm}.weight"), &weight.transpose2d()));
                match bias {
                    None => b.node("MatMul", &nm, &[&x, &w], out, vec![]),
                    Some(bias) => {
                        let bn = b.init(float_tensor(&format!("{nm}.bias"), bias));
                        let mm = format!("{nm}.mm");
                        b.node("MatMul", &nm, &[&x, &w], &mm, vec![]);
                        b.node("Add", &format!("{nm}.add"), &[&mm, &bn], out, vec![]);
                    }
                }
            }
            Op::Conv2d {
                weight,
                bias,
                window,
                groups,
            } => {
                let w = b.init(float_tensor(&format!("{nm}.weight"), weight));
                let mut inputs = vec![x.clone(), w];
                if let Some(bias) = bias {
                    inputs.push(b.init(float_tensor(&format!("{nm}.bias"), bias)));
                }
                let mut attrs = window_attrs(window, true);
                attrs.push(int_attr("group", *groups as i64));
                let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
                if in_shape.len() == 4 {
                    b.node("Conv", &nm, &refs, out, attrs);
                } else {
                    // ONNX Conv needs a batch axis; our [C,H,W] values get one around it.
                    let (x4, y4) = (format!("{nm}.x4"), format!("{nm}.y4"));
                    let mut s4 = vec![1];
                    s4.extend(&in_shape);
                    b.reshape(&format!("{nm}.in"), &x, &s4, &x4);
                    let mut refs = refs;
                    refs[0] = &x4;
                    b.node("Conv", &nm, &refs, &y4, attrs);
                    b.reshape(&format!("{nm}.out"), &y4, &node.shape, out);
                }
            }
            Op::Affine { scale, shift } => {
                let mut cur = x.clone();
                if let Some(s) = scale {
                    let sn = b.init(float_tensor(&format!("{nm}.scale"), s));
                    let o = if shift.is_some() {
                        format!("{nm}.scaled")
                    } else {
                        out.to_string()
                    };
                    b.node("Mul", &format!("{nm}.mul"), &[&cur, &sn], &o, vec![]);
                    cur = o;
                }
                match shift {
                    Some(s) => {
                        let sn = b.init(float_tensor(&format!("{nm}.shift"), s));
                        b.node("Add", &format!("{nm}.add"), &[&cur, &sn], out, vec![]);
                    }
                    None if scale.is_none() => b.node("Identity", &nm, &[&cur], out, vec![]),
                    None => {}
                }
            }
            Op::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                epsilon,
            } => {
                let ins: Vec<String> = [
                    ("gamma", gamma),
                    ("beta", beta),
                    ("mean", mean),
                    ("var", var),
                ]
                .iter()
                .map(|(k, t)| b.init(float_tensor(&format!("{nm}.{k}"), t)))
                .collect();
                b.node(
                    "BatchNormalization",
                    &nm,
                    &[&x, &ins[0], &ins[1], &ins[2], &ins[3]],
                    out,
                    vec![float_attr("epsilon", *epsilon)],
                );
            }
            Op::Binary(kind) => {
                let op = match kind {
                    BinaryKind::Add => "Add",
                    BinaryKind::Sub => "Sub",
                    BinaryKind::Mul => "Mul",
                    BinaryKind::Div => "Div",
                };
                let y = names[node.inputs[1]].clone();
                b.node(op, &nm, &[&x, &y], out, vec![]);
            }
            Op::Relu | Op::Sigmoid | Op::Tanh | Op::Atan => {
                b.node(node.op.name(), &nm, &[&x], out, vec![])
            }
            Op::LeakyRelu { alpha } => b.node(
                "LeakyRelu",
                &nm,
                &[&x],
                out,
                vec![float_attr("alpha", *alpha)],
            ),
            Op::MaxPool2d { window } | Op::AvgPool2d { window, .. } if in_shape.len() != 4 => {
                return Err(ModelError::unsupported(
                    node.op.name(),
                    &node.name,
                    "ONNX export of pooling needs a [1,C,H,W] input",
                ));
            }
            Op::MaxPool2d { window } => {
                b.node("MaxPool", &nm, &[&x], out, window_attrs(window, true))
            }
            Op::AvgPool2d {
                window,
                count_include_pad,
            } => {
                let mut attrs = window_attrs(window, false);
                attrs.push(int_attr("count_include_pad", *count_include_pad as i64));
                b.node("AveragePool", &nm, &[&x], out, attrs);
            }
            Op::Pad { pads, value } => {
                let p: Vec<i64> = pads.iter().map(|&v| v as i64).collect();
                let pn = b.init(int_tensor(&format!("{nm}.pads"), &p));
                let vn = b.init(float_tensor(
                    &format!("{nm}.value"),
                    &Tensor::new(vec![], vec![*value]),
                ));
                b.node("Pad", &nm, &[&x, &pn, &vn], out, vec![]);
            }
            Op::Reshape => b.reshape(&nm, &x, &node.shape, out),
            Op::Transpose { perm } => {
                b.node("Transpose", &nm, &[&x], out, vec![ints_attr("perm", perm)])
            }
            Op::Concat { axis } => {
                let ins: Vec<&str> = node.inputs.iter().map(|&i| names[i].as_str()).collect();
                b.node(
                    "Concat",
                    &nm,
                    &ins,
                    out,
                    vec![int_attr("axis", *axis as i64)],
                );
            }
        }
    }
    let model = proto::ModelProto {
        ir_version: Some(7),
        producer_name: Some("nncert".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        graph: Some(proto::GraphProto {
            name: Some("nncert".into()),
            node: b.nodes,
            initializer: b.inits,
            input: vec![value_info(&graph.input_name, graph.input_shape())],
            output: vec![value_info(&output_name, graph.output_shape())],
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

pub fn export_onnx(graph: &Graph, path: &Path) -> Result<()> {
    let bytes = export_onnx_bytes(graph)?;
    std::fs::write(path, bytes).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })
}
