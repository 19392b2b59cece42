//! nncert-model: the graph IR every engine reads, ONNX import/export,
//! canonicalisation passes, the native format and the f64 reference forward pass.

pub mod deadline;
pub mod error;
pub mod forward;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod native;
pub mod onnx;
pub mod op;
pub mod passes;
pub mod tensor;
pub mod testing;

pub use deadline::Deadline;
pub use error::{ModelError, Result};
pub use forward::reference_forward;
pub use graph::{Graph, Node, NodeId};
pub use io::load_model;
pub use op::{BinaryKind, Op, Window2d};
pub use tensor::Tensor;
