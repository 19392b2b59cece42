//! Native format: the graph as JSON (`NAME.json`) and its tensors in
//! safetensors (`NAME.safetensors` beside it), named `{node index}.{field}`.

use crate::error::{ModelError, Result};
use crate::graph::Graph;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::{Path, PathBuf};

fn weights_path(json: &Path) -> PathBuf {
    json.with_extension("safetensors")
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `path` (JSON graph) and the `.safetensors` file beside it.
pub fn save_native(graph: &Graph, path: &Path) -> Result<()> {
    let mut g = graph.clone();
    let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, node) in g.nodes.iter_mut().enumerate() {
        for (field, t) in node.op.tensors_mut() {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            blobs.push((format!("{i}.{field}"), t.shape.clone(), bytes));
        }
    }
    let views: Vec<(String, TensorView)> = blobs
        .iter()
        .map(|(k, s, b)| {
            Ok((
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map_err(|e| ModelError::Invalid(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let st =
        safetensors::serialize(views, &None).map_err(|e| ModelError::Invalid(e.to_string()))?;
    let json = serde_json::to_string_pretty(&g).map_err(|e| ModelError::Invalid(e.to_string()))?;
    std::fs::write(weights_path(path), st).map_err(|e| io_err(&weights_path(path), e))?;
    std::fs::write(path, json).map_err(|e| io_err(path, e))
}

/// Reads a model written by `save_native`, validating it.
pub fn load_native(path: &Path) -> Result<Graph> {
    let json = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let mut g: Graph = serde_json::from_slice(&json)
        .map_err(|e| ModelError::Decode(format!("{}: {e}", path.display())))?;
    let wp = weights_path(path);
    let bytes = std::fs::read(&wp).map_err(|e| io_err(&wp, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| ModelError::Decode(format!("{}: {e}", wp.display())))?;
    for (i, node) in g.nodes.iter_mut().enumerate() {
        for (field, t) in node.op.tensors_mut() {
            let key = format!("{i}.{field}");
            let view = st.tensor(&key).map_err(|_| {
                ModelError::Decode(format!("{}: missing tensor {key}", wp.display()))
            })?;
            if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
                return Err(ModelError::Decode(format!(
                    "{}: tensor {key} has the wrong type or shape",
                    wp.display()
                )));
            }
            t.data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        }
    }
    g.validate()?;
    Ok(g)
}
