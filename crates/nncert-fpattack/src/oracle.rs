//! The verifiers under attack, behind one question: does the verifier claim
//! that every input within ε (L∞, clipped to [0, 1]) of x0 keeps `label`?
//!
//! - `MilpVerifier`: MIPVerify's real-arithmetic MILP (the attacked verifier
//!   of the paper, and the attacker's tool for the worst point and τ).
//! - `PipelineVerifier`: nncert's own pipeline, in float32 (sound) mode or,
//!   as a plain verifier to attack, in real arithmetic.

use nncert_bounds::{
    lower_bounds, propagate, Ball, BoundConfig, BoundsError, Interval, Method, Region, Soundness,
};
use nncert_exec::Engine;
use nncert_model::{Deadline, Graph};
use nncert_spec::{robustness_property_per_target, InputBox, InputSet, Norm, NormBall};
use nncert_verify::attack::PgdConfig;
use nncert_verify::bab::{prove_row, BabConfig, RowProblem};
use nncert_verify::milp::{self, BigM, Encoding, MilpSolver, MilpStatus, Objective, Query};
use nncert_verify::robustness::{verify_robustness, CompleteEngine, PipelineConfig, Verdict};
use nncert_verify::{Models, Outcome, Result, VerifyError};
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

/// nncert's pipeline (CROWN, attack, α-CROWN, β-CROWN branch and bound):
/// in float32 mode the sound verifier, in real mode a plain one (what
/// α,β-CROWN computes, blind to floating point; its counterexamples are
/// checked on the f64 reference only).
pub struct PipelineVerifier<'a> {
    pub eps: f64,
    /// Seconds per call.
    pub timeout: f64,
    /// The float32 engines a counterexample must fool (none in real mode).
    pub engines: &'a [Engine],
    pub soundness: Soundness,
}

impl<'a> PipelineVerifier<'a> {
    pub fn sound(eps: f64, timeout: f64, engines: &'a [Engine]) -> Self {
        PipelineVerifier {
            eps,
            timeout,
            engines,
            soundness: Soundness::Float32,
        }
    }

    pub fn real(eps: f64, timeout: f64) -> Self {
        PipelineVerifier {
            eps,
            timeout,
            engines: &[],
            soundness: Soundness::Real,
        }
    }
}

impl PipelineVerifier<'_> {
    fn models<'g>(&'g self, g: &'g Graph) -> Models<'g> {
        Models {
            executed: g,
            bounded: g,
            engines: self.engines,
        }
    }

    fn ball(&self) -> Ball {
        Ball {
            eps: self.eps,
            norm: Norm::Linf,
            domain: (0.0, 1.0),
        }
    }

    /// Step 2's decision query by branch and bound: an input of the ball
    /// whose margin `y_label − y_t` is at most `cutoff` for some target
    /// (targets in ascending order of their CROWN bound, those above the
    /// cutoff skipped), or the proof that none exists.
    pub fn below(&self, g: &Graph, x0: &[f32], label: usize, cutoff: f64) -> Result<Search> {
        match self.search_below(g, x0, label, cutoff) {
            Err(VerifyError::Bounds(BoundsError::Timeout)) => Ok(Search::Timeout),
            r => r,
        }
    }

    fn search_below(&self, g: &Graph, x0: &[f32], label: usize, cutoff: f64) -> Result<Search> {
        let x: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
        let ball = self.ball();
        let set = InputSet::Ball(NormBall {
            center: x.clone(),
            eps: ball.eps,
            norm: ball.norm,
            domain: ball.domain,
        });
        let region = Region::of(&set, self.soundness);
        let cfg = BoundConfig {
            deadline: Deadline::after_secs(self.timeout),
            ..BoundConfig::new(Method::AlphaCrown, self.soundness)
        };
        let crown = BoundConfig {
            method: Method::Crown,
            ..cfg
        };
        let classes = g.output_len();
        let nb = propagate(g, &region, &crown)?;
        let mut targets =
            robustness_property_per_target(&x, label, classes, ball.eps, ball.norm, ball.domain);
        let spec: Vec<f64> = targets
            .iter()
            .flat_map(|&(t, _)| margin_row(classes, label, t))
            .collect();
        let lower = lower_bounds(g, &nb, &region, &crown, &spec, targets.len())?;
        let mut order: Vec<usize> = (0..targets.len()).filter(|&k| lower[k] <= cutoff).collect();
        order.sort_by(|&a, &b| lower[a].total_cmp(&lower[b]));
        let m = self.models(g);
        for k in order {
            let (t, p) = &mut targets[k];
            p.cases[0].unsafe_output.terms[0][0].rhs = cutoff;
            let q = RowProblem {
                property: p,
                region: &region,
                set: &set,
                spec: &spec[k * classes..][..classes],
                rhs: cutoff,
            };
            match prove_row(&m, &q, &BabConfig::new(cfg))?.0 {
                Outcome::Proved => {}
                Outcome::Counterexample(ce) => {
                    return Ok(Search::Found {
                        value: ce.y[label] - ce.y[*t],
                        target: *t,
                        x: ce.x,
                    })
                }
                _ => return Ok(Search::Timeout),
            }
        }
        Ok(Search::Infeasible)
    }
}

impl Verifier for PipelineVerifier<'_> {
    fn claim(&self, g: &Graph, x0: &[f32], label: usize) -> Result<Claim> {
        let cfg = PipelineConfig {
            bounds: BoundConfig {
                deadline: Deadline::after_secs(self.timeout),
                ..BoundConfig::new(Method::Crown, self.soundness)
            },
            pgd: PgdConfig::default(),
            guided: true,
            complete: CompleteEngine::BranchAndBound,
            milp_solver: MilpSolver::MicroLp,
            milp_big_m: BigM::Propagated,
            bab_workers: 1,
        };
        let x: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
        Ok(
            match verify_robustness(&self.models(g), &x, label, self.ball(), &cfg)?.verdict {
                Verdict::Robust => Claim::Robust,
                Verdict::Timeout => Claim::Timeout,
                // Undecided is no claim of robustness.
                Verdict::NotRobust { .. } | Verdict::Unknown => Claim::NotRobust,
            },
        )
    }
}
