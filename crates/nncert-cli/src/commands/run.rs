//! `nncert run MODEL --input FILE | --mnist-index N`.

use super::argmax;
use crate::inputs::{parse_vector, DataSource};
use crate::{existing, CliResult, UserError};
use clap::{Args, ValueEnum};
use nncert_exec::{Engine, EngineKind};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineChoice {
    /// f64, fixed summation order: the semantics bounds are checked against.
    Reference,
    Direct,
    Im2col,
    Toeplitz,
    /// Winograd F(9×9, r×r) convolutions (high error; not covered by sound mode).
    Winograd,
    /// The reference and every float32 engine sound mode covers.
    All,
}

#[derive(Args)]
pub struct RunArgs {
    /// ONNX (.onnx, .onnx.gz) or native (.json) model.
    model: PathBuf,
    /// Input values: whitespace/comma separated text or a JSON array.
    #[arg(
        long,
        conflicts_with = "mnist_index",
        required_unless_present = "mnist_index"
    )]
    input: Option<PathBuf>,
    /// Use test image N of --data instead of --input.
    #[arg(long)]
    mnist_index: Option<usize>,
    /// Data set for --mnist-index: mnist:DIR, cifar10:PATH or embedded.
    #[arg(long, default_value = "embedded")]
    data: DataSource,
    #[arg(long, value_enum, default_value = "all")]
    engine: EngineChoice,
    /// Print `{"outputs": {ENGINE: [logits…]}}` with every digit instead of
    /// the table.
    #[arg(long)]
    json: bool,
}

fn print_row(name: &str, y: &[f64]) {
    let vals: Vec<String> = y.iter().map(|v| format!("{v:.6}")).collect();
    println!("{name:<10} argmax {:<3} [{}]", argmax(y), vals.join(", "));
}

pub fn run(a: RunArgs) -> CliResult {
    let g = nncert_model::load_model(existing(&a.model)?)?;
    let x: Vec<f32> = match (&a.input, a.mnist_index) {
        (Some(p), _) => parse_vector(
            &std::fs::read_to_string(existing(p)?)?,
            &p.display().to_string(),
        )?,
        (None, Some(i)) => {
            let ds = a.data.load()?;
            if i >= ds.len() {
                return Err(UserError(format!(
                    "--mnist-index {i}: the data set has {} images",
                    ds.len()
                )));
            }
            if !a.json {
                println!("image {i}, label {}", ds.labels[i]);
            }
            ds.image(i).to_vec()
        }
        (None, None) => unreachable!("clap requires one"),
    };
    if x.len() != g.input_len() {
        return Err(UserError(format!(
            "the input has {} values but the model expects {} (shape {:?})",
            x.len(),
            g.input_len(),
            g.input_shape()
        )));
    }
    let mut outputs = serde_json::Map::new();
    let mut report = |name: &str, y: Vec<f64>| match a.json {
        true => _ = outputs.insert(name.to_string(), y.into()),
        false => print_row(name, &y),
    };
    if matches!(a.engine, EngineChoice::Reference | EngineChoice::All) {
        let y =
            nncert_model::reference_forward(&g, &x.iter().map(|&v| v as f64).collect::<Vec<_>>())?;
        report("reference", y);
    }
    let kinds: Vec<EngineKind> = match a.engine {
        EngineChoice::Reference => vec![],
        EngineChoice::Direct => vec![EngineKind::Direct],
        EngineChoice::Im2col => vec![EngineKind::Im2col],
        EngineChoice::Toeplitz => vec![EngineKind::Toeplitz],
        EngineChoice::Winograd => vec![EngineKind::Winograd],
        EngineChoice::All => EngineKind::ALL.to_vec(),
    };
    for k in kinds {
        let y = Engine::new(k, &g)?.run(&g, &x)?;
        report(k.name(), y.iter().map(|&v| v as f64).collect());
    }
    if a.json {
        println!("{}", serde_json::json!({ "outputs": outputs }));
    }
    Ok(())
}
