//! `nncert info MODEL`.

use crate::{existing, CliResult};
use clap::Args;
use nncert_model::passes::{canonicalize, is_canonical, PassOptions};
use nncert_model::Graph;
use std::path::PathBuf;

#[derive(Args)]
pub struct InfoArgs {
    /// ONNX (.onnx, .onnx.gz) or native (.json + .safetensors) model.
    model: PathBuf,
}

fn histogram(g: &Graph) -> String {
    g.op_histogram()
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn run(a: InfoArgs) -> CliResult {
    let g = nncert_model::load_model(existing(&a.model)?)?;
    let (c, report) = canonicalize(&g, PassOptions::default())?;
    println!("model:      {}", a.model.display());
    println!(
        "input:      `{}` {:?} ({} values)",
        g.input_name,
        g.input_shape(),
        g.input_len()
    );
    let softmax = if g.softmax_dropped {
        "  (final Softmax dropped: verification uses logits)"
    } else {
        ""
    };
    println!(
        "output:     `{}` {:?} ({} values){softmax}",
        g.output_name,
        g.output_shape(),
        g.output_len()
    );
    println!("parameters: {}", g.param_count());
    println!("imported:   {} nodes: {}", g.nodes.len(), histogram(&g));
    println!("canonical:  {} nodes: {}", c.nodes.len(), histogram(&c));
    println!(
        "passes:     constants folded {}, shape ops resolved {}, batch norms folded {}, affines folded {}, bias adds folded {}, linear chains fused {}",
        report.constants_folded, report.shape_ops_resolved, report.batchnorms_folded, report.affines_folded, report.bias_adds_folded, report.linear_chains_fused
    );
    let left: Vec<&str> = c
        .nodes
        .iter()
        .filter(|n| !is_canonical(&n.op))
        .map(|n| n.name.as_str())
        .collect();
    println!(
        "non-canonical ops left: {}",
        if left.is_empty() {
            "none".to_string()
        } else {
            left.join(", ")
        }
    );
    println!("\ncanonical graph:");
    for (i, n) in c.nodes.iter().enumerate() {
        let ins: Vec<String> = n.inputs.iter().map(|i| format!("#{i}")).collect();
        println!(
            "  #{i:<3} {:<10} {:<24} {:<18} <- {}",
            n.op.name(),
            format!("{:?}", n.shape),
            n.name,
            ins.join(", ")
        );
    }
    Ok(())
}
