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
