//! ONNX import and export. The protobuf code in `proto.rs` is generated from
//! the vendored `proto/onnx.proto` by `tools/protogen` and committed, so no
//! build needs `protoc`.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto;

mod export;
mod import;

pub use export::{export_onnx, export_onnx_bytes};
pub use import::import_onnx_bytes;
