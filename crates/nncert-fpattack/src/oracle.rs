//! The verifiers under attack, behind one question: does the verifier claim
//! that every input within ε (L∞, clipped to [0, 1]) of x0 keeps `label`?
//!
//! - `MilpVerifier`: MIPVerify's real-arithmetic MILP (the attacked verifier
//!   of the paper, and the attacker's tool for the worst point and τ).
//! - `SoundVerifier`: nncert's own pipeline in float32 (sound) mode.

use nncert_bounds::{
    lower_bounds, propagate, Ball, BoundConfig, Interval, Method, Region, Soundness,
};
use nncert_exec::Engine;
use nncert_model::{Deadline, Graph};
use nncert_spec::{InputBox, InputSet, Norm};
use nncert_verify::attack::PgdConfig;
use nncert_verify::milp::{self, BigM, Encoding, MilpSolver, MilpStatus, Objective, Query};
use nncert_verify::robustness::{verify_robustness, CompleteEngine, PipelineConfig, Verdict};
use nncert_verify::{Models, Result};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    Robust,
    NotRobust,
    /// The verifier ran out of time (the brightness search falls back to a grid).
    Timeout,
}

pub trait Verifier {
    fn claim(&self, g: &Graph, x0: &[f32], label: usize) -> Result<Claim>;
}

/// The L∞ ball of radius ε around x0, clipped to [0, 1], in float64.
pub fn ball_box(x0: &[f32], eps: f64) -> InputBox {
    InputBox {
        lo: x0.iter().map(|&v| (v as f64 - eps).max(0.0)).collect(),
        hi: x0.iter().map(|&v| (v as f64 + eps).min(1.0)).collect(),
    }
}

/// `e_label − e_t`.
fn margin_row(classes: usize, label: usize, t: usize) -> Vec<f64> {
    let mut row = vec![0.0; classes];
    row[label] = 1.0;
    row[t] = -1.0;
    row
}

/// The smallest margin found below a cutoff, or over all targets.
#[derive(Clone, Debug)]
pub enum Search {
    /// No input of the box has a margin at or below the cutoff (the solver's claim).
    Infeasible,
    Found {
        value: f64,
        target: usize,
        x: Vec<f64>,
    },
    Timeout,
}

/// The real-arithmetic MILP verifier (MIPVerify's formulation, CROWN bounds
/// as big-M constants, targets taken in ascending order of their CROWN bound).
pub struct MilpVerifier {
    pub eps: f64,
    pub solver: MilpSolver,
    /// Per MILP solve.
    pub time_limit: Duration,
    pub big_m: BigM,
}

/// One image's MILP and its targets' CROWN lower bounds, ascending.
pub struct Setup {
    enc: Encoding,
    targets: Vec<(usize, f64)>,
    classes: usize,
    label: usize,
}

impl MilpVerifier {
    pub fn setup(&self, g: &Graph, x0: &[f32], label: usize) -> Result<Setup> {
        let b = ball_box(x0, self.eps);
        let region = Region::of(&InputSet::Box(b.clone()), Soundness::Real);
        let cfg = BoundConfig::new(Method::Crown, Soundness::Real);
        let nb = propagate(g, &region, &cfg)?;
        let classes = g.output_len();
        let others: Vec<usize> = (0..classes).filter(|&t| t != label).collect();
        let spec: Vec<f64> = others
            .iter()
            .flat_map(|&t| margin_row(classes, label, t))
            .collect();
        let lower = lower_bounds(g, &nb, &region, &cfg, &spec, others.len())?;
        let mut targets: Vec<(usize, f64)> = others.into_iter().zip(lower).collect();
        targets.sort_by(|a, b| a.1.total_cmp(&b.1));
        let input = Interval { lo: b.lo, hi: b.hi };
        let tightening = self.big_m.tightening(self.solver, Deadline::none());
        Ok(Setup {
            enc: milp::encode(g, &nb, &input, tightening.as_ref())?,
            targets,
            classes,
            label,
        })
    }

    /// With a cutoff: the first target whose margin can be at most the cutoff
    /// (a decision query); without: the minimum margin over all targets (the
    /// `worst` objective), skipping targets whose CROWN bound cannot beat it.
    pub fn search(&self, s: &Setup, cutoff: Option<f64>) -> Result<Search> {
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for &(t, crown) in &s.targets {
            let bar = best
                .as_ref()
                .map(|b| b.0)
                .or(cutoff)
                .unwrap_or(f64::INFINITY);
            if crown > bar {
                break;
            }
            let row = margin_row(s.classes, s.label, t);
            let q = Query {
                spec: &row,
                cutoff,
                objective: Objective::Worst,
                time_limit: self.time_limit,
                solver: self.solver,
            };
            match milp::solve(&s.enc, &q)? {
                MilpStatus::Infeasible => {}
                MilpStatus::Timeout => return Ok(Search::Timeout),
                // Without a cutoff only the optimum answers the question.
                MilpStatus::Solution { optimal: false, .. } if cutoff.is_none() => {
                    return Ok(Search::Timeout)
                }
                MilpStatus::Solution { x, margin, .. } => {
                    if cutoff.is_some() {
                        return Ok(Search::Found {
                            value: margin,
                            target: t,
                            x,
                        });
                    }
                    if best.as_ref().is_none_or(|b| margin < b.0) {
                        best = Some((margin, t, x));
                    }
                }
            }
        }
        Ok(match best {
            Some((value, target, x)) => Search::Found { value, target, x },
            None => Search::Infeasible,
        })
    }
}

impl Verifier for MilpVerifier {
    fn claim(&self, g: &Graph, x0: &[f32], label: usize) -> Result<Claim> {
        let s = self.setup(g, x0, label)?;
        Ok(match self.search(&s, Some(0.0))? {
            Search::Infeasible => Claim::Robust,
            Search::Found { .. } => Claim::NotRobust,
            Search::Timeout => Claim::Timeout,
        })
    }
}

/// nncert's pipeline in float32 (sound) mode: CROWN, attack, α-CROWN, ReLU
/// branch and bound; only a proof counts as a claim of robustness.
pub struct SoundVerifier<'a> {
    pub eps: f64,
    pub timeout: f64,
    pub engines: &'a [Engine],
}

impl Verifier for SoundVerifier<'_> {
    fn claim(&self, g: &Graph, x0: &[f32], label: usize) -> Result<Claim> {
        let m = Models {
            executed: g,
            bounded: g,
            engines: self.engines,
        };
        let cfg = PipelineConfig {
            bounds: BoundConfig {
                deadline: Deadline::after_secs(self.timeout),
                ..BoundConfig::new(Method::Crown, Soundness::Float32)
            },
            pgd: PgdConfig::default(),
            guided: true,
            complete: CompleteEngine::BranchAndBound,
            milp_solver: MilpSolver::MicroLp,
            milp_big_m: BigM::Propagated,
        };
        let ball = Ball {
            eps: self.eps,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        };
        let x: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
        Ok(
            match verify_robustness(&m, &x, label, ball, &cfg)?.verdict {
                Verdict::Robust => Claim::Robust,
                // Undecided is no claim (and no reason to search a grid).
                _ => Claim::NotRobust,
            },
        )
    }
}
