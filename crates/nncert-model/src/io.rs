//! Loading models from disk in any supported format.

use crate::error::{ModelError, Result};
use crate::graph::Graph;
use std::io::Read;
use std::path::Path;

pub fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Loads `.onnx`, `.onnx.gz` or a native model (`.json` with its `.safetensors` beside it).
pub fn load_model(path: &Path) -> Result<Graph> {
    let name = path.to_string_lossy();
    if name.ends_with(".json") {
        return crate::native::load_native(path);
    }
    crate::onnx::import_onnx_bytes(&read_file(path)?)
}

/// The `shared/` folder of reference data (papers' models, VNN-COMP benchmarks)
/// used by the larger tests and benchmarks: `$NNCERT_SHARED`, else `../shared`
/// next to the workspace. None when absent (those tests then say they skip).
pub fn shared_dir() -> Option<std::path::PathBuf> {
    let candidate = match std::env::var_os("NNCERT_SHARED") {
        Some(p) => std::path::PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    candidate.is_dir().then_some(candidate)
}

/// Every `.onnx` / `.onnx.gz` file under `dir`, sorted.
pub fn onnx_files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(onnx_files_under(&p));
        } else if p.to_string_lossy().ends_with(".onnx")
            || p.to_string_lossy().ends_with(".onnx.gz")
        {
            out.push(p);
        }
    }
    out.sort();
    out
}
