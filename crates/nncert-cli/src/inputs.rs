//! Parsing of data-set and input-vector arguments.

use crate::{embedded, CliResult, UserError};
use nncert_data::Dataset;
use std::path::PathBuf;

/// `--data mnist:DIR` | `cifar10:PATH` | `embedded`.
#[derive(Clone, Debug)]
pub enum DataSource {
    Embedded,
    Mnist(PathBuf),
    Cifar10(PathBuf),
}

impl std::str::FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            _ if s == "embedded" => Ok(DataSource::Embedded),
            Some(("mnist", p)) if !p.is_empty() => Ok(DataSource::Mnist(p.into())),
            Some(("cifar10", p)) if !p.is_empty() => Ok(DataSource::Cifar10(p.into())),
            _ => Err(format!(
                "`{s}`: expected mnist:DIR, cifar10:PATH or embedded"
            )),
        }
    }
}

impl DataSource {
    /// The test split of the data set.
    pub fn load(&self) -> CliResult<Dataset> {
        Ok(match self {
            DataSource::Embedded => embedded::mnist_test(),
            DataSource::Mnist(dir) => nncert_data::load_mnist(dir, "t10k")?,
            DataSource::Cifar10(p) => nncert_data::load_cifar10(p)?,
        })
    }
}

/// Numbers separated by whitespace, commas or brackets (plain text or a JSON array).
pub fn parse_vector(text: &str, origin: &str) -> CliResult<Vec<f32>> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']'))
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .map_err(|_| UserError(format!("{origin}: `{t}` is not a number")))
        })
        .collect()
}
