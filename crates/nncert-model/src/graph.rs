//! The graph IR: a topologically sorted list of nodes with one input and one output.

use crate::error::{ModelError, Result};
use crate::op::Op;
use crate::tensor::numel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type NodeId = usize;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Per-sample output shape (ONNX's shape, batch dimension of 1 included).
    pub shape: Vec<usize>,
}

/// A feed-forward network. Nodes are topologically sorted: every input of
/// node `i` has an id smaller than `i`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub input: NodeId,
    pub output: NodeId,
    /// ONNX names of the input and output, kept for export.
    pub input_name: String,
    pub output_name: String,
    /// A final Softmax was dropped at import (verification works on logits).
    #[serde(default)]
    pub softmax_dropped: bool,
}

/// Largest number of values one node may hold per sample.
pub const MAX_NODE_ELEMENTS: usize = 1 << 28;

/// Rejects empty and oversized values (they would only hide a malformed model).
fn check_size(node: &str, shape: &[usize]) -> Result<()> {
    match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n > 0 && n <= MAX_NODE_ELEMENTS => Ok(()),
        _ => Err(ModelError::shape(
            node,
            format!("value of shape {shape:?} is empty or too large"),
        )),
    }
}

impl Graph {
    /// A graph with just an input node of the given per-sample shape.
    pub fn with_input(name: &str, shape: Vec<usize>) -> Graph {
        Graph {
            nodes: vec![Node {
                name: name.to_string(),
                op: Op::Input,
                inputs: vec![],
                shape,
            }],
            input: 0,
            output: 0,
            input_name: name.to_string(),
            output_name: name.to_string(),
            softmax_dropped: false,
        }
    }

    /// Appends a node, inferring and checking its output shape. The new node becomes the output.
    pub fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>) -> Result<NodeId> {
        self.push_reshaped(name, op, inputs, None)
    }

    /// Like `push`, with the declared target shape of a `Reshape`.
    pub fn push_reshaped(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<NodeId>,
        reshape_to: Option<&[usize]>,
    ) -> Result<NodeId> {
        if let Some(&bad) = inputs.iter().find(|&&i| i >= self.nodes.len()) {
            return Err(ModelError::Invalid(format!(
                "node `{name}` uses undefined node {bad}"
            )));
        }
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| self.nodes[i].shape.as_slice())
            .collect();
        let shape = op.output_shape(name, &shapes, reshape_to)?;
        check_size(name, &shape)?;
        self.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
            shape,
        });
        self.output = self.nodes.len() - 1;
        Ok(self.output)
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[self.input].shape
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.output].shape
    }

    pub fn input_len(&self) -> usize {
        numel(self.input_shape())
    }

    pub fn output_len(&self) -> usize {
        numel(self.output_shape())
    }

    pub fn param_count(&self) -> usize {
        self.nodes.iter().map(|n| n.op.param_count()).sum()
    }

    /// How many nodes use each node's value (the output counts as one use).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                uses[i] += 1;
            }
        }
        uses[self.output] += 1;
        uses
    }

    /// Op name → count, for summaries.
    pub fn op_histogram(&self) -> BTreeMap<&'static str, usize> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            *h.entry(n.op.name()).or_insert(0) += 1;
        }
        h
    }

    /// Checks structure, shapes and weights: topological order, one Input,
    /// shapes that re-infer to what is stored, finite weights.
    pub fn validate(&self) -> Result<()> {
        if self.nodes.is_empty()
            || self.input >= self.nodes.len()
            || self.output >= self.nodes.len()
        {
            return Err(ModelError::Invalid(
                "graph has no valid input/output".into(),
            ));
        }
        for (id, n) in self.nodes.iter().enumerate() {
            if matches!(n.op, Op::Input) != (id == self.input) {
                return Err(ModelError::Invalid(format!(
                    "node `{}`: exactly one Input node expected",
                    n.name
                )));
            }
            if let Some(&bad) = n.inputs.iter().find(|&&i| i >= id) {
                return Err(ModelError::Invalid(format!(
                    "node `{}` uses node {bad} before it is defined",
                    n.name
                )));
            }
            check_size(&n.name, &n.shape)?;
            if id != self.input {
                let shapes: Vec<&[usize]> = n
                    .inputs
                    .iter()
                    .map(|&i| self.nodes[i].shape.as_slice())
                    .collect();
                let shape = n.op.output_shape(&n.name, &shapes, Some(&n.shape))?;
                if shape != n.shape {
                    return Err(ModelError::shape(
                        &n.name,
                        format!("stored {:?}, inferred {shape:?}", n.shape),
                    ));
                }
            }
            let mut op = n.op.clone();
            if op.tensors_mut().iter().any(|(_, t)| !t.is_finite()) {
                return Err(ModelError::NonFinite {
                    node: n.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Drops nodes the output does not depend on and renumbers the rest.
    pub fn prune(&mut self) {
        let mut live = vec![false; self.nodes.len()];
        live[self.output] = true;
        live[self.input] = true;
        for id in (0..self.nodes.len()).rev() {
            if live[id] {
                for &i in &self.nodes[id].inputs {
                    live[i] = true;
                }
            }
        }
        let mut new_id = vec![usize::MAX; self.nodes.len()];
        let mut kept = Vec::new();
        for (id, node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if live[id] {
                new_id[id] = kept.len();
                kept.push(node);
            }
        }
        for n in &mut kept {
            for i in &mut n.inputs {
                *i = new_id[*i];
            }
        }
        self.nodes = kept;
        self.input = new_id[self.input];
        self.output = new_id[self.output];
    }

    /// Replaces every use of node `old` by node `new` (and the output, if it was `old`).
    pub fn redirect(&mut self, old: NodeId, new: NodeId) {
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                if *i == old {
                    *i = new;
                }
            }
        }
        if self.output == old {
            self.output = new;
        }
    }
}
