//! One seed image through the three steps of §4.2, against one verifier.

use crate::climb::{hill_climb, ClimbConfig};
use crate::oracle::{Claim, MilpVerifier, PipelineVerifier, Search, Verifier};
use crate::perturbation::{nextafter_box, project};
use nncert_exec::Engine;
use nncert_model::{Deadline, Graph, Op, Tensor};
use nncert_verify::{Result, VerifyError};
use serde::Serialize;

#[derive(Clone, Copy, Debug)]
pub struct AttackConfig {
    pub eps: f64,
    /// Step 1 dims the seed to the verifier's boundary (the paper); without
    /// it x0 is the seed itself (α = 1), and only the gap brings the margin
    /// near zero.
    pub dim: bool,
    /// Brightness bisection stops at this width (δ of step 1).
    pub alpha_width: f64,
    /// Grid points when the verifier times out inside the bisection.
    pub grid_points: usize,
    /// τ search: bracket τ_w ± this (δ_s of step 2) ...
    pub tau_bracket: f64,
    /// ... narrowed to this width.
    pub tau_width: f64,
    /// Steps 1 and 2 of one seed stop here, keeping the brackets they reached.
    pub seed_seconds: Option<f64>,
    pub climb: ClimbConfig,
}

impl AttackConfig {
    pub fn paper(eps: f64) -> Self {
        AttackConfig {
            eps,
            dim: true,
            alpha_width: 1e-7,
            grid_points: 16,
            tau_bracket: 3e-6,
            tau_width: 1e-7,
            seed_seconds: None,
            climb: ClimbConfig::default(),
        }
    }
}

/// Where one engine's climb on one network ended.
#[derive(Clone, Debug, Serialize)]
pub struct ClimbResult {
    /// The engine's CW loss there (negative: misclassified by this engine).
    pub cw_loss: f64,
    /// The same point on the f64 reference: what real arithmetic says.
    pub reference_cw_loss: f64,
    /// Sweeps run (fewer than configured when the loss went negative).
    pub sweeps: usize,
    pub x_adv: Vec<f32>,
}

/// A climb that ended misclassified by its engine.
fn broken(c: &Option<ClimbResult>) -> bool {
    c.as_ref().is_some_and(|c| c.cw_loss < 0.0)
}

/// One engine's climbs, on the network and on the network with the gap.
#[derive(Clone, Debug, Serialize)]
pub struct EngineResult {
    pub engine: String,
    /// Sound mode bounds this engine (Winograd: no), so its breaking a
    /// sound-certified x0 would be a soundness bug.
    pub covered_by_sound_mode: bool,
    /// None without dimming: x0's margin is then the seed's own, far beyond
    /// any float32 error, so only the gap variant is climbed.
    pub plain: Option<ClimbResult>,
    /// With τ0 folded into the label's bias (None: the verifier does not
    /// claim that network robust at x0).
    pub gap: Option<ClimbResult>,
    /// The verifier claimed x0 robust and this engine misclassifies a point
    /// of its ball (without, with the gap).
    pub success: bool,
    pub gap_success: bool,
}

/// How far one seed got, and what it produced (the JSON of one case).
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    pub index: usize,
    pub label: usize,
    pub eps: f64,
    pub verifier: String,
    /// "quasi_adversarial" when step 2 succeeded; otherwise where it stopped
    /// ("no_quasi_safe", "solver_timeout", "tau_unresolved": x1 found but
    /// its margin not within `tau_bracket` of a proven bound).
    pub status: String,
    pub alpha: Option<f64>,
    /// Width of step 1's final bracket (≤ `alpha_width` unless the seed's
    /// time ran out).
    pub alpha_bracket: Option<f64>,
    pub x0: Option<Vec<f32>>,
    pub tau_w: Option<f64>,
    pub tau0: Option<f64>,
    pub tau1: Option<f64>,
    pub x1: Option<Vec<f32>>,
    /// The float32 perturbation box around x0 that every climb stays in
    /// (for climbs by other runtimes: bench/runtime_climb.py).
    pub box_lo: Option<Vec<f32>>,
    pub box_hi: Option<Vec<f32>>,
    /// The attacked verifier's verdict on x0 (robust by construction) and on
    /// x0 with the gap.
    pub claim_x0: Option<String>,
    pub claim_x0_gap: Option<String>,
    /// nncert's sound verdicts on the same x0 and gap network (`audit`).
    pub sound_claim_x0: Option<String>,
    pub sound_claim_x0_gap: Option<String>,
    pub engines: Vec<EngineResult>,
    /// Test accuracy (%) of the gap network, when an engine broke it: the
    /// price of the gap (the paper's "min test acc").
    pub gap_test_accuracy: Option<f64>,
}

impl CaseReport {
    fn new(index: usize, label: usize, eps: f64, verifier: &str) -> Self {
        CaseReport {
            index,
            label,
            eps,
            verifier: verifier.to_string(),
            status: String::new(),
            alpha: None,
            alpha_bracket: None,
            x0: None,
            tau_w: None,
            tau0: None,
            tau1: None,
            x1: None,
            box_lo: None,
            box_hi: None,
            claim_x0: None,
            claim_x0_gap: None,
            sound_claim_x0: None,
            sound_claim_x0_gap: None,
            engines: Vec::new(),
            gap_test_accuracy: None,
        }
    }

    pub fn quasi_adversarial(&self) -> bool {
        self.status == "quasi_adversarial"
    }

    /// Engines sound mode covers that misclassify a point of an x0 it
    /// certified (with or without the gap): each one a soundness bug.
    pub fn sound_violations(&self) -> usize {
        self.sound_certified_breaks(true)
    }

    /// The same breaks by engines sound mode does not cover (Winograd):
    /// expected, and the reason docs/soundness.md excludes them.
    pub fn uncovered_breaks(&self) -> usize {
        self.sound_certified_breaks(false)
    }

    fn sound_certified_breaks(&self, covered: bool) -> usize {
        let robust = |c: &Option<String>| c.as_deref() == Some("robust");
        let plain = robust(&self.sound_claim_x0);
        let gap = robust(&self.sound_claim_x0_gap);
        self.engines
            .iter()
            .filter(|e| e.covered_by_sound_mode == covered)
            .map(|e| (plain && broken(&e.plain)) as usize + (gap && broken(&e.gap)) as usize)
            .sum()
    }
}

/// Records sound mode's verdicts on the case's x0, on the network and on
/// the network with the gap.
pub fn audit(r: &mut CaseReport, sound: &dyn Verifier, g: &Graph) -> Result<()> {
    let (Some(x0), Some(tau0)) = (&r.x0, r.tau0) else {
        return Ok(());
    };
    r.sound_claim_x0 = Some(claim_name(sound.claim(g, x0, r.label)?));
    let gapped = with_gap(g, r.label, tau0)?;
    r.sound_claim_x0_gap = Some(claim_name(sound.claim(&gapped, x0, r.label)?));
    Ok(())
}

fn scaled(x: &[f32], alpha: f64) -> Vec<f32> {
    let a = alpha as f32;
    x.iter().map(|&v| a * v).collect()
}

/// Step 1: the brightness α in [0, 1] where the verifier's claim flips, to
/// within `alpha_width`: robust at α = `hi`, not at `lo`. A timeout inside
/// the bisection switches to a grid over the current bracket; the deadline
/// ends the search with the bracket it reached.
pub fn brightness_search(
    v: &dyn Verifier,
    g: &Graph,
    seed: &[f32],
    label: usize,
    cfg: &AttackConfig,
    deadline: Deadline,
    progress: &dyn Fn(String),
) -> Result<Option<(f64, f64)>> {
    // The grid fallback revisits points the bisection asked about.
    let asked = std::cell::RefCell::new(Vec::<(f64, Claim)>::new());
    let claim = |a: f64| -> Result<Claim> {
        if let Some(&(_, c)) = asked.borrow().iter().find(|p| p.0 == a) {
            return Ok(c);
        }
        let t = std::time::Instant::now();
        let c = v.claim(g, &scaled(seed, a), label)?;
        progress(format!(
            "step 1: α = {a:.9} {c:?} ({:.2} s)",
            t.elapsed().as_secs_f64()
        ));
        asked.borrow_mut().push((a, c));
        Ok(c)
    };
    if claim(1.0)? != Claim::Robust || claim(0.0)? == Claim::Robust {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while hi - lo > cfg.alpha_width && !deadline.expired() {
        let mid = 0.5 * (lo + hi);
        match claim(mid)? {
            Claim::Robust => hi = mid,
            Claim::NotRobust => lo = mid,
            Claim::Timeout => match grid_bracket(&claim, lo, hi, cfg.grid_points, deadline)? {
                (l, h) if h - l < hi - lo => (lo, hi) = (l, h),
                _ => break,
            },
        }
    }
    Ok(Some((lo, hi)))
}

/// The narrowest (not robust, robust) neighbours on a grid over [lo, hi].
fn grid_bracket(
    claim: &dyn Fn(f64) -> Result<Claim>,
    lo: f64,
    hi: f64,
    points: usize,
    deadline: Deadline,
) -> Result<(f64, f64)> {
    let mut last_not_robust = lo;
    for k in (1..points).take_while(|_| !deadline.expired()) {
        let a = lo + (hi - lo) * k as f64 / points as f64;
        match claim(a)? {
            Claim::Robust => return Ok((last_not_robust, a)),
            Claim::NotRobust => last_not_robust = a,
            Claim::Timeout => {}
        }
    }
    Ok((last_not_robust, hi))
}

/// The outcome of step 2.
pub struct TauSearch {
    /// The worst (smallest) margin over the ball: the MILP's optimum, or
    /// with branch and bound the smallest margin found (x1's).
    pub tau_w: f64,
    pub tau0: f64,
    pub tau1: f64,
    /// The quasi-adversarial point found at τ1.
    pub x1: Vec<f64>,
}

/// The real-arithmetic complete verifier that finds step 2's points.
#[derive(Clone, Copy)]
pub enum Finder<'a> {
    /// MIPVerify's MILP: the worst margin τ_w by its `worst` objective,
    /// then decision queries in τ_w ± `tau_bracket`.
    Milp(&'a MilpVerifier),
    /// β-CROWN branch and bound in real arithmetic: decision queries from
    /// [0, the margin of a first point], each found point lowering the top.
    Bab(&'a PipelineVerifier<'a>),
}

/// Step 2: τ0 < τ1 within `tau_width` (or as near as the deadline allows),
/// no input of margin ≤ τ0 (the finder's claim) and the quasi-adversarial
/// point x1 of margin ≤ τ1. None on a solver timeout.
pub fn tau_search(
    finder: Finder,
    g: &Graph,
    x0: &[f32],
    label: usize,
    cfg: &AttackConfig,
    deadline: Deadline,
) -> Result<Option<TauSearch>> {
    match finder {
        Finder::Milp(milp) => {
            let s = milp.setup(g, x0, label)?;
            let Search::Found { value: tau_w, .. } = milp.search(&s, None)? else {
                return Ok(None);
            };
            let bracket = (tau_w - cfg.tau_bracket, tau_w + cfg.tau_bracket);
            let below = |c| milp.search(&s, Some(c));
            bisect_tau(&below, bracket, Some(tau_w), cfg, deadline)
        }
        Finder::Bab(bab) => {
            let below = |c| bab.below(g, x0, label, c);
            bisect_tau(&below, (0.0, f64::MAX), None, cfg, deadline)
        }
    }
}

/// Bisection of τ in `(lo, hi)`: `below(lo)` must be infeasible and
/// `below(hi)` must find a point; a found point's margin lowers the top.
fn bisect_tau(
    below: &dyn Fn(f64) -> Result<Search>,
    (mut lo, hi): (f64, f64),
    tau_w: Option<f64>,
    cfg: &AttackConfig,
    deadline: Deadline,
) -> Result<Option<TauSearch>> {
    let Search::Found { value, x, .. } = below(hi)? else {
        return Ok(None);
    };
    let (mut hi, mut x1) = (value.min(hi), x);
    if !matches!(below(lo)?, Search::Infeasible) {
        return Ok(None);
    }
    while hi - lo > cfg.tau_width && !deadline.expired() {
        let mid = 0.5 * (lo + hi);
        match below(mid)? {
            Search::Infeasible => lo = mid,
            Search::Found { value, x, .. } => (hi, x1) = (value.min(mid), x),
            // Keep the bracket reached: x1 is still a point of margin ≤ τ1.
            Search::Timeout => break,
        }
    }
    Ok(Some(TauSearch {
        tau_w: tau_w.unwrap_or(hi),
        tau0: lo,
        tau1: hi,
        x1,
    }))
}

/// The network with `tau` subtracted from the label's logit, folded into the
/// last layer's bias (the "with gap" variant). The float32 bias is rounded
/// up, so it subtracts at most `tau`: where every margin exceeds `tau`, the
/// gap network's still exceed 0 in real arithmetic (rounding to nearest
/// could subtract up to half an ulp more, ≈ 2e-7 at logits near 5, and
/// undo the verifier's claim).
pub fn with_gap(g: &Graph, label: usize, tau: f64) -> Result<Graph> {
    let mut out = g.clone();
    let node = &mut out.nodes[g.output];
    let Op::Linear { weight, bias } = &mut node.op else {
        return Err(VerifyError::Solver(format!(
            "the gap variant needs a final linear layer (node `{}` is {})",
            node.name,
            node.op.name()
        )));
    };
    let rows = weight.shape[0];
    let b = bias.get_or_insert_with(|| Tensor::new(vec![rows], vec![0.0; rows]));
    let target = b.data[label] as f64 - tau;
    let nearest = target as f32;
    b.data[label] = if (nearest as f64) < target {
        nearest.next_up()
    } else {
        nearest
    };
    Ok(out)
}

fn claim_name(c: Claim) -> String {
    match c {
        Claim::Robust => "robust",
        Claim::NotRobust => "not_robust",
        Claim::Timeout => "timeout",
    }
    .to_string()
}

/// One climb, and the f64 reference's CW loss where it ended.
fn climb_result(
    engine: &Engine,
    g: &Graph,
    start: &[f32],
    bounds: (&[f32], &[f32]),
    label: usize,
    cfg: &AttackConfig,
) -> Result<ClimbResult> {
    let climb = cfg.climb.for_engine(engine.kind());
    let c = hill_climb(engine, g, start, bounds, label, &climb)?;
    let x: Vec<f64> = c.x.iter().map(|&v| v as f64).collect();
    let y = nncert_model::reference_forward(g, &x)?;
    Ok(ClimbResult {
        cw_loss: c.loss,
        reference_cw_loss: crate::cw_loss(&y, label),
        sweeps: c.sweeps,
        x_adv: c.x,
    })
}

/// The whole attack on one seed image (which the verifier must claim robust).
/// `progress` hears what is being tried (for a progress bar).
#[allow(clippy::too_many_arguments)]
pub fn attack_seed(
    verifier: (&str, &dyn Verifier),
    finder: Finder,
    g: &Graph,
    engines: &[Engine],
    index: usize,
    seed: &[f32],
    label: usize,
    cfg: &AttackConfig,
    progress: &dyn Fn(String),
) -> Result<CaseReport> {
    let mut r = CaseReport::new(index, label, cfg.eps, verifier.0);
    let deadline = cfg
        .seed_seconds
        .map_or(Deadline::none(), Deadline::after_secs);
    if cfg.dim {
        let search = brightness_search(verifier.1, g, seed, label, cfg, deadline, progress)?;
        let Some((alpha_lo, alpha)) = search else {
            r.status = "no_quasi_safe".into();
            return Ok(r);
        };
        (r.alpha, r.alpha_bracket) = (Some(alpha), Some(alpha - alpha_lo));
    }
    let x0 = scaled(seed, r.alpha.unwrap_or(1.0));
    r.x0 = Some(x0.clone());
    r.claim_x0 = Some(claim_name(verifier.1.claim(g, &x0, label)?));
    progress("step 2: τ search".into());
    let Some(TauSearch {
        tau_w,
        tau0,
        tau1,
        x1,
    }) = tau_search(finder, g, &x0, label, cfg, deadline)?
    else {
        r.status = "solver_timeout".into();
        return Ok(r);
    };
    let (lo, hi) = nextafter_box(&x0, cfg.eps);
    let mut x1: Vec<f32> = x1.iter().map(|&v| v as f32).collect();
    project(&mut x1, &lo, &hi);
    (r.tau_w, r.tau0, r.tau1, r.x1) = (Some(tau_w), Some(tau0), Some(tau1), Some(x1.clone()));
    (r.box_lo, r.box_hi) = (Some(lo.clone()), Some(hi.clone()));
    // Quasi-adversarial: x1's margin within the paper's bracket of a proven
    // lower bound. Wider (the decisions timed out), climbing from x1 is futile.
    if tau1 - tau0 > cfg.tau_bracket {
        r.status = "tau_unresolved".into();
        return Ok(r);
    }
    r.status = "quasi_adversarial".into();
    let gapped = with_gap(g, label, tau0)?;
    let gap_claim = verifier.1.claim(&gapped, &x0, label)?;
    r.claim_x0_gap = Some(claim_name(gap_claim));
    let claimed = r.claim_x0.as_deref() == Some("robust");
    progress(format!(
        "step 3: hill climbing on {} engines",
        engines.len()
    ));
    // The climbs are independent: one thread per engine and network.
    let (start, bounds, gapped) = (x1.as_slice(), (lo.as_slice(), hi.as_slice()), &gapped);
    let climbs = std::thread::scope(|scope| {
        let jobs: Vec<_> = engines
            .iter()
            .map(|e| {
                let climb = move |net| move || climb_result(e, net, start, bounds, label, cfg);
                let plain = cfg.dim.then(|| scope.spawn(climb(g)));
                let gap = (gap_claim == Claim::Robust).then(|| scope.spawn(climb(gapped)));
                (plain, gap)
            })
            .collect();
        let join = |h: Option<std::thread::ScopedJoinHandle<'_, _>>| {
            h.map(|h| h.join().expect("a climb thread panicked"))
                .transpose()
        };
        jobs.into_iter()
            .map(|(plain, gap)| Ok((join(plain)?, join(gap)?)))
            .collect::<Result<Vec<_>>>()
    })?;
    for (e, (plain, gap)) in engines.iter().zip(climbs) {
        r.engines.push(EngineResult {
            engine: e.kind().name().to_string(),
            covered_by_sound_mode: e.kind().covered_by_sound_mode(),
            success: claimed && broken(&plain),
            gap_success: broken(&gap),
            plain,
            gap,
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn climb(cw_loss: f64) -> Option<ClimbResult> {
        Some(ClimbResult {
            cw_loss,
            reference_cw_loss: 1e-7,
            sweeps: 1,
            x_adv: Vec::new(),
        })
    }

    fn engine(name: &str, covered: bool, plain_loss: f64, gap_loss: f64) -> EngineResult {
        EngineResult {
            engine: name.into(),
            covered_by_sound_mode: covered,
            plain: climb(plain_loss),
            gap: climb(gap_loss),
            success: false,
            gap_success: false,
        }
    }

    /// Only engines sound mode covers can violate it; a Winograd break of a
    /// sound-certified x0 is counted apart, and breaks of x0 sound mode did
    /// not certify count nowhere.
    #[test]
    fn violations_count_only_engines_sound_mode_covers() {
        let mut r = CaseReport::new(0, 1, 0.1, "milp");
        r.engines = vec![
            engine("direct", true, -1e-7, 1e-7),
            engine("im2col", true, 1e-7, -1e-7),
            engine("winograd", false, -1e-3, -1e-3),
        ];
        assert_eq!((r.sound_violations(), r.uncovered_breaks()), (0, 0));
        r.sound_claim_x0 = Some("robust".into());
        assert_eq!((r.sound_violations(), r.uncovered_breaks()), (1, 1));
        r.sound_claim_x0_gap = Some("robust".into());
        assert_eq!((r.sound_violations(), r.uncovered_breaks()), (2, 2));
        r.sound_claim_x0 = Some("timeout".into());
        assert_eq!((r.sound_violations(), r.uncovered_breaks()), (1, 1));
    }
}
