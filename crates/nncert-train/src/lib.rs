//! Certified training (constrained-ibp-training.md): interval bound
//! propagation through the network with candle's autodiff, the IBP loss of
//! Gowal et al. and the constrained-IBP loss with its hidden-layer bound-size
//! penalty, ε/κ/learning-rate schedules, Adam, checkpoints, and evaluation
//! (clean, PGD, and verified error by nncert-bounds' IBP and CROWN).

pub mod adam;
pub mod conv;
pub mod crown_ibp;
pub mod eval;
pub mod loss;
pub mod net;
pub mod plot;
pub mod schedule;
pub mod train;

pub use net::{Architecture, Net};

/// Threads of candle's element-wise worker pool (its matmuls too).
const CANDLE_THREADS: &str = "CANDLE_NUM_THREADS";

/// On a machine with few cores, runs candle's element-wise ops on the
/// calling thread. A training step's element-wise ops are 10⁴–10⁵ values
/// each; candle hands them to a worker pool that spins 25,000 times after
/// each op before parking, and that spinning holds the core the
/// convolutions (their own threads, `conv.rs`) need: on 2 cores one IBP
/// step of the small net went from ≈ 80 to ≈ 62 ms (docs/benchmarks.md).
/// Keeps a value the user set; leaves machines with more than 4 cores
/// alone (not measured there). Call it first thing in `main`, before any
/// thread exists: it sets an environment variable candle reads once.
pub fn tune_candle_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 4 && std::env::var_os(CANDLE_THREADS).is_none() {
        std::env::set_var(CANDLE_THREADS, "1");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Model(#[from] nncert_model::ModelError),
    #[error(transparent)]
    Bounds(#[from] nncert_bounds::BoundsError),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, TrainError>;
