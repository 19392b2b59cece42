//! Local robustness of one input, decided label by label (target-label-guided
//! verification, Algorithm 1): CROWN bounds each margin `y_label − y_t`;
//! labels whose margin is already positive cannot beat the label and are
//! dropped; the rest are taken most dangerous first (smallest margin bound,
//! i.e. largest upper bound of `y_t − y_label`), each through attack (PGD),
//! α-CROWN and ReLU branch and bound. The first confirmed counterexample
//! ends the search; a label left undecided makes the answer unknown.
//! Unguided, every label is taken in index order and none is dropped.

use crate::attack::{pgd, PgdConfig};
use crate::bab::{prove_row, BabConfig, RowProblem};
use crate::{Counterexample, Models, Outcome, Result};
use nncert_bounds::{lower_bounds, propagate, Ball, BoundConfig, BoundsError, Method, Region};
use nncert_spec::{robustness_property_per_target, InputSet, NormBall};
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Bounds of the incomplete stage (method, soundness, deadline).
    pub bounds: BoundConfig,
    pub pgd: PgdConfig,
    /// Order labels by their bounds and drop the impossible ones.
    pub guided: bool,
    /// Run ReLU branch and bound on labels the incomplete stage leaves open.
    pub branch_and_bound: bool,
}

#[derive(Debug)]
pub enum Verdict {
    Robust,
    NotRobust {
        target: usize,
        witness: Counterexample,
    },
    Unknown,
    Timeout,
}

/// Which stage settled a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Bounds,
    Attack,
    AlphaCrown,
    BranchAndBound,
}

#[derive(Debug)]
pub struct LabelResult {
    pub target: usize,
    /// The incomplete method's lower bound of `y_label − y_target`.
    pub margin_lower: f64,
    /// The stage that settled it (None: open or not reached).
    pub settled_by: Option<Stage>,
    pub subdomains: usize,
}

#[derive(Debug)]
pub struct RobustnessReport {
    pub verdict: Verdict,
    pub labels: Vec<LabelResult>,
    /// Time to bound every margin and order the labels (t_sort), ms.
    pub sort_ms: f64,
}

/// Decides whether every input of `ball` around `x0` keeps `label` on the
/// float32 network (see the module doc).
pub fn verify_robustness(
    m: &Models,
    x0: &[f64],
    label: usize,
    ball: Ball,
    cfg: &PipelineConfig,
) -> Result<RobustnessReport> {
    let classes = m.bounded.output_len();
    let nball = NormBall {
        center: x0.to_vec(),
        eps: ball.eps,
        norm: ball.norm,
        domain: ball.domain,
    };
    let region = Region::of(&InputSet::Ball(nball.clone()), cfg.bounds.soundness);
    let t_sort = Instant::now();
    let properties =
        robustness_property_per_target(x0, label, classes, ball.eps, ball.norm, ball.domain);
    let spec: Vec<f64> = properties
        .iter()
        .flat_map(|(_, p)| p.cases[0].unsafe_output.terms[0][0].coeffs.clone())
        .collect();
    let bounded = propagate(m.bounded, &region, &cfg.bounds).and_then(|nb| {
        Ok((
            lower_bounds(
                m.bounded,
                &nb,
                &region,
                &cfg.bounds,
                &spec,
                properties.len(),
            )?,
            nb,
        ))
    });
    let (margins, nb) = match bounded {
        Err(BoundsError::Timeout) => {
            return Ok(RobustnessReport {
                verdict: Verdict::Timeout,
                labels: Vec::new(),
                sort_ms: t_sort.elapsed().as_secs_f64() * 1e3,
            })
        }
        r => r?,
    };
    let mut labels: Vec<LabelResult> = properties
        .iter()
        .zip(&margins)
        .map(|(&(target, _), &margin_lower)| LabelResult {
            target,
            margin_lower,
            settled_by: (cfg.guided && margin_lower > 0.0).then_some(Stage::Bounds),
            subdomains: 0,
        })
        .collect();
    let mut order: Vec<usize> = (0..labels.len())
        .filter(|&k| labels[k].settled_by.is_none())
        .collect();
    if cfg.guided {
        order.sort_by(|&a, &b| labels[a].margin_lower.total_cmp(&labels[b].margin_lower));
    }
    let sort_ms = t_sort.elapsed().as_secs_f64() * 1e3;
    let mut open = false;
    for k in order {
        let (target, p) = &properties[k];
        let row = &spec[k * classes..][..classes];
        let label_outcome = decide_label(m, p, &nball, &region, &nb, row, cfg, &mut labels[k])?;
        match label_outcome {
            Outcome::Proved => {}
            Outcome::Counterexample(witness) => {
                let verdict = Verdict::NotRobust {
                    target: *target,
                    witness,
                };
                return Ok(RobustnessReport {
                    verdict,
                    labels,
                    sort_ms,
                });
            }
            Outcome::Unknown => open = true,
            Outcome::Timeout => {
                let verdict = Verdict::Timeout;
                return Ok(RobustnessReport {
                    verdict,
                    labels,
                    sort_ms,
                });
            }
        }
    }
    let verdict = if open {
        Verdict::Unknown
    } else {
        Verdict::Robust
    };
    Ok(RobustnessReport {
        verdict,
        labels,
        sort_ms,
    })
}

/// Attack, then α-CROWN, then branch and bound, on one label's margin.
#[allow(clippy::too_many_arguments)]
fn decide_label(
    m: &Models,
    p: &nncert_spec::Property,
    nball: &NormBall,
    region: &Region,
    nb: &nncert_bounds::NetworkBounds,
    row: &[f64],
    cfg: &PipelineConfig,
    result: &mut LabelResult,
) -> Result<Outcome> {
    let deadline = cfg.bounds.deadline;
    if let Some(ce) = pgd(
        m,
        p,
        &InputSet::Ball(nball.clone()),
        row,
        0.0,
        &cfg.pgd,
        deadline,
    )? {
        result.settled_by = Some(Stage::Attack);
        return Ok(Outcome::Counterexample(ce));
    }
    if deadline.expired() {
        return Ok(Outcome::Timeout);
    }
    let alpha = BoundConfig {
        method: Method::AlphaCrown,
        alpha_stop_above: Some(0.0),
        ..cfg.bounds
    };
    match lower_bounds(m.bounded, nb, region, &alpha, row, 1) {
        Ok(lb) if lb[0] > 0.0 => {
            result.settled_by = Some(Stage::AlphaCrown);
            return Ok(Outcome::Proved);
        }
        Ok(_) => {}
        Err(BoundsError::Timeout) => return Ok(Outcome::Timeout),
        Err(e) => return Err(e.into()),
    }
    if !cfg.branch_and_bound {
        return Ok(Outcome::Unknown);
    }
    let crown = BoundConfig {
        method: Method::Crown,
        ..cfg.bounds
    };
    let set = InputSet::Ball(nball.clone());
    let problem = RowProblem {
        property: p,
        region,
        set: &set,
        spec: row,
        rhs: 0.0,
    };
    let (outcome, stats) = prove_row(m, &problem, &BabConfig::new(crown))?;
    result.subdomains = stats.subdomains;
    if matches!(outcome, Outcome::Proved | Outcome::Counterexample(_)) {
        result.settled_by = Some(Stage::BranchAndBound);
    }
    Ok(outcome)
}
