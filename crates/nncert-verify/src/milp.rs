//! Mixed-integer linear programming, MIPVerify's formulation (Tjeng et al.
//! 2019; fp-exploit-verified-nns.md §3.3), solved through `good_lp`.
//!
//! Affine ops stay affine expressions of the variables (as MIPVerify's JuMP
//! expressions do): a node's values are exact affine forms over the input
//! variables and the fresh variables of earlier activations
//! (`nncert_bounds::affine_step`). Only what is not affine gets variables:
//! an unstable ReLU `r = relu(z)`, `z ∈ [l, u]`, gets `r ∈ [0, u]` and a
//! binary `a` with `r ≥ z`, `r ≤ z − l(1 − a)`, `r ≤ u·a` (the big-M
//! constants are the bounds, tightened by CROWN); a stable one is `z` or 0.
//! Max-pool: `y ≥ x_i`, `y ≤ x_i + (U − l_i)(1 − a_i)`, `Σ a_i = 1` over the
//! inputs that can be the maximum.
//!
//! The solver works in floating point with tolerances and without a
//! certificate, so its "no counterexample" is a real-arithmetic claim: the
//! pipeline accepts it as a proof only in `--unsound` mode and reports it as
//! unconfirmed otherwise. Its counterexamples, like every other, count only
//! after re-execution (`Models::confirm`).

use crate::attack::descend_from;
use crate::bab::RowProblem;
use crate::witness::f32_point_inside;
use crate::{Models, Outcome, Result, VerifyError};
use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolutionStatus, SolverModel, Variable,
    VariableDefinition, WithTimeLimit,
};
use nncert_bounds::{affine_step, BoundsError, Interval, NetworkBounds, Soundness, SymBounds};
use nncert_model::{kernels, Deadline, Graph, Op};
use std::time::Duration;

/// The MILP solver behind `good_lp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MilpSolver {
    /// microlp: pure Rust, always built.
    MicroLp,
    /// COIN-OR CBC (feature `cbc`, needs `coinor-libcbc-dev`).
    Cbc,
}

impl MilpSolver {
    pub fn available(self) -> bool {
        match self {
            MilpSolver::MicroLp => true,
            MilpSolver::Cbc => cfg!(feature = "cbc"),
        }
    }
}

/// What the MILP minimises (MIPVerify's objectives).
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// The property's margin itself: its minimum over the input set
    /// (the "worst" input, the least confident classification).
    Worst,
    /// `‖x − x0‖∞` among the inputs that violate the property by τ (the closest).
    Closest { x0: Vec<f64> },
}

/// An affine function of the MILP variables, kept sparse.
#[derive(Clone, Debug, Default)]
struct Affine {
    terms: Vec<(usize, f64)>,
    constant: f64,
}

#[derive(Clone, Debug)]
enum Sense {
    /// `f ≤ 0`
    AtMostZero,
    /// `f = 0`
    Zero,
}

#[derive(Clone, Copy, Debug)]
struct VarDef {
    lo: f64,
    hi: f64,
    binary: bool,
}

/// A network and an input box as MILP constraints; queries add an objective.
#[derive(Clone, Debug)]
pub struct Encoding {
    vars: Vec<VarDef>,
    constraints: Vec<(Affine, Sense)>,
    outputs: Vec<Affine>,
    inputs: usize,
}

impl Encoding {
    pub fn binaries(&self) -> usize {
        self.vars.iter().filter(|v| v.binary).count()
    }

    pub fn variables(&self) -> usize {
        self.vars.len()
    }

    pub fn constraints(&self) -> usize {
        self.constraints.len()
    }

    fn add_var(&mut self, lo: f64, hi: f64, binary: bool) -> usize {
        self.vars.push(VarDef { lo, hi, binary });
        self.vars.len() - 1
    }
}

/// One element's affine form, read off a node's functions (lo = hi here).
fn form_of(s: &SymBounds, j: usize) -> Affine {
    let rows = s.rows();
    let terms = (0..rows - 1)
        .map(|r| (r, s.lo[r * s.n + j]))
        .filter(|&(_, c)| c != 0.0)
        .collect();
    Affine {
        terms,
        constant: s.lo[(rows - 1) * s.n + j],
    }
}

fn sum(parts: &[(&Affine, f64)], constant: f64) -> Affine {
    let mut out = Affine {
        terms: Vec::new(),
        constant,
    };
    for (f, c) in parts {
        out.terms.extend(f.terms.iter().map(|&(v, a)| (v, a * c)));
        out.constant += f.constant * c;
    }
    out
}

fn var(v: usize) -> Affine {
    Affine {
        terms: vec![(v, 1.0)],
        constant: 0.0,
    }
}

fn unsupported(g: &Graph, id: usize, hint: &'static str) -> VerifyError {
    VerifyError::Bounds(BoundsError::Unsupported {
        method: "milp",
        op: g.nodes[id].op.name(),
        node: g.nodes[id].name.clone(),
        hint,
    })
}

/// Where the MILP's big-M constants come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BigM {
    /// The bound-propagation enclosures (CROWN in the pipeline).
    Propagated,
    /// Those, tightened per neuron by LP (each call at most [`LP_CALL_LIMIT`]).
    Lp,
}

/// Time limit of one tightening LP.
pub const LP_CALL_LIMIT: Duration = Duration::from_secs(1);

impl BigM {
    pub fn tightening(self, solver: MilpSolver, deadline: Deadline) -> Option<LpTightening> {
        match self {
            BigM::Propagated => None,
            BigM::Lp => Some(LpTightening {
                solver,
                time_limit: LP_CALL_LIMIT,
                deadline,
            }),
        }
    }
}

/// Per-neuron LP tightening of the big-M constants (MIPVerify's `lp`
/// tightening): before an unstable ReLU gets its binary, the minimum and
/// maximum of its input over the LP relaxation of the layers encoded so far
/// replace the bound-propagation ones where tighter. A call that times out
/// keeps the old bound; past `deadline` no more calls are made.
#[derive(Clone, Copy, Debug)]
pub struct LpTightening {
    pub solver: MilpSolver,
    pub time_limit: Duration,
    pub deadline: Deadline,
}

/// Encodes `g` over the input box `input`, with `bounds` (enclosures of every
/// node's real values over that box) as the big-M constants, tightened
/// first by LP when `tightening` is given.
pub fn encode(
    g: &Graph,
    bounds: &NetworkBounds,
    input: &Interval,
    tightening: Option<&LpTightening>,
) -> Result<Encoding> {
    let d = input.len();
    let mut enc = Encoding {
        vars: (0..d)
            .map(|i| VarDef {
                lo: input.lo[i],
                hi: input.hi[i],
                binary: false,
            })
            .collect(),
        constraints: Vec::new(),
        outputs: Vec::new(),
        inputs: d,
    };
    let mut uses = g.use_counts();
    let mut forms: Vec<Option<SymBounds>> = vec![None; g.nodes.len()];
    for id in 0..g.nodes.len() {
        let node = &g.nodes[id];
        let arg = |k: usize| forms[node.inputs[k]].as_ref().expect("inputs come first");
        let vars = enc.vars.len();
        let out = match &node.op {
            Op::Input => SymBounds::identity(d),
            Op::Relu | Op::LeakyRelu { .. } => {
                let alpha = match node.op {
                    Op::LeakyRelu { alpha } if (0.0..=1.0).contains(&alpha) => alpha as f64,
                    Op::LeakyRelu { .. } => {
                        return Err(unsupported(g, id, " (slope outside [0, 1])"))
                    }
                    _ => 0.0,
                };
                let z = arg(0).padded(vars);
                let mut b = bounds.nodes[node.inputs[0]].clone();
                if let Some(t) = tightening {
                    tighten(&enc, &z, &mut b, t)?;
                }
                relu(&mut enc, &z, &b, alpha)
            }
            Op::MaxPool2d { window } => {
                let in_shape = &g.nodes[node.inputs[0]].shape;
                let b = &bounds.nodes[node.inputs[0]];
                let mut windows = Vec::new();
                kernels::for_each_window(in_shape, window, |idx, _| windows.push(idx.collect()));
                max_pool(&mut enc, &arg(0).padded(vars), b, &windows)
            }
            _ => match affine_step(g, id, vars, arg) {
                Some(s) => s,
                None => return Err(unsupported(g, id, " (not piecewise linear)")),
            },
        };
        for &i in &node.inputs {
            uses[i] -= 1;
            if uses[i] == 0 {
                forms[i] = None;
            }
        }
        forms[id] = Some(out);
    }
    let out = forms[g.output].as_ref().expect("output encoded");
    enc.outputs = (0..out.n).map(|j| form_of(out, j)).collect();
    Ok(enc)
}

/// Relative slack on LP optima used as bounds: the solver's optimum is
/// accurate to its tolerances, not exactly.
const LP_SLACK: f64 = 1e-6;

/// LP tightening of the unstable elements of `b` (see [`LpTightening`]).
fn tighten(enc: &Encoding, z: &SymBounds, b: &mut Interval, t: &LpTightening) -> Result<()> {
    for j in 0..z.n {
        if !(b.lo[j] < 0.0 && b.hi[j] > 0.0) {
            continue;
        }
        let f = form_of(z, j);
        if let Some(v) = lp_minimum(enc, &f, t)? {
            b.lo[j] = b.lo[j].max(v - LP_SLACK * (1.0 + v.abs()));
        }
        if b.lo[j] >= 0.0 {
            continue;
        }
        if let Some(v) = lp_minimum(enc, &sum(&[(&f, -1.0)], 0.0), t)? {
            b.hi[j] = b.hi[j].min(-v + LP_SLACK * (1.0 + v.abs()));
        }
    }
    Ok(())
}

/// The optimum of `f` over the encoding's LP relaxation; `None` when the
/// solver does not reach it (time limit, deadline, numerical failure).
fn lp_minimum(enc: &Encoding, f: &Affine, t: &LpTightening) -> Result<Option<f64>> {
    let time_limit = match t.deadline.remaining() {
        Some(r) if r.is_zero() => return Ok(None),
        Some(r) => r.min(t.time_limit),
        None => t.time_limit,
    };
    let model = Model::new(enc, true);
    let objective = model.expr(f);
    let read = |s: &dyn Fn(&Expression) -> f64, optimal: bool| optimal.then(|| s(&objective));
    match model.minimise(objective.clone(), time_limit, t.solver, false, read) {
        Ok(Solved::Solution(v)) => Ok(v),
        Ok(_) | Err(VerifyError::Solver(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `leaky(z) = α·z + (1 − α)·relu(z)`; each unstable element's relu gets a
/// fresh continuous variable and a binary (module doc).
fn relu(enc: &mut Encoding, z: &SymBounds, b: &Interval, alpha: f64) -> SymBounds {
    let unstable: Vec<usize> = (0..z.n)
        .filter(|&j| b.lo[j] < 0.0 && b.hi[j] > 0.0)
        .collect();
    let first = enc.vars.len();
    for &j in &unstable {
        enc.add_var(0.0, b.hi[j], false);
    }
    for (k, &j) in unstable.iter().enumerate() {
        let (l, u, r) = (b.lo[j], b.hi[j], first + k);
        let a = enc.add_var(0.0, 1.0, true);
        let zj = form_of(z, j);
        let (rv, av) = (var(r), var(a));
        // r ≥ z;  r ≤ z − l + l·a;  r ≤ u·a.
        let rows = [
            sum(&[(&zj, 1.0), (&rv, -1.0)], 0.0),
            sum(&[(&rv, 1.0), (&zj, -1.0), (&av, -l)], l),
            sum(&[(&rv, 1.0), (&av, -u)], 0.0),
        ];
        enc.constraints
            .extend(rows.into_iter().map(|f| (f, Sense::AtMostZero)));
    }
    let slope = |j: usize| match (b.lo[j] >= 0.0, b.hi[j] <= 0.0) {
        (true, _) => 1.0,
        _ => alpha,
    };
    let fresh: Vec<(usize, f64)> = unstable.iter().map(|&j| (j, 1.0 - alpha)).collect();
    z.scaled(slope, |_| 0.0).with_fresh(first, &fresh)
}

/// Max over each window (indices into the input node); an output whose
/// maximiser is known from the bounds is that input's form.
fn max_pool(enc: &mut Encoding, x: &SymBounds, b: &Interval, windows: &[Vec<usize>]) -> SymBounds {
    let first = enc.vars.len();
    let mut picks = Vec::with_capacity(windows.len());
    let mut fresh = Vec::new();
    for (o, w) in windows.iter().enumerate() {
        let best_lo = w.iter().map(|&i| b.lo[i]).fold(f64::NEG_INFINITY, f64::max);
        let cands: Vec<usize> = w.iter().copied().filter(|&i| b.hi[i] >= best_lo).collect();
        if cands.len() == 1 {
            picks.push(Some(cands[0]));
            continue;
        }
        let top = cands
            .iter()
            .map(|&i| b.hi[i])
            .fold(f64::NEG_INFINITY, f64::max);
        picks.push(None);
        fresh.push((o, cands, top));
        enc.add_var(best_lo, top, false);
    }
    for (k, (_, cands, top)) in fresh.iter().enumerate() {
        let y = var(first + k);
        let mut one_hot = Affine {
            terms: Vec::new(),
            constant: -1.0,
        };
        for &i in cands {
            let a = enc.add_var(0.0, 1.0, true);
            one_hot.terms.push((a, 1.0));
            let xi = form_of(x, i);
            let m = top - b.lo[i];
            // y ≥ x_i;  y ≤ x_i + m·(1 − a_i).
            enc.constraints
                .push((sum(&[(&xi, 1.0), (&y, -1.0)], 0.0), Sense::AtMostZero));
            let upper = sum(&[(&y, 1.0), (&xi, -1.0), (&var(a), m)], -m);
            enc.constraints.push((upper, Sense::AtMostZero));
        }
        enc.constraints.push((one_hot, Sense::Zero));
    }
    let x = x.padded(enc.vars.len());
    let (rows, n_out) = (x.rows(), windows.len());
    let mut lo = vec![0.0; rows * n_out];
    for (o, p) in picks.iter().enumerate() {
        if let Some(i) = *p {
            for r in 0..rows {
                lo[r * n_out + o] = x.lo[r * x.n + i];
            }
        }
    }
    // The fresh maxima are variables first.. (their binaries follow them).
    for (k, &(o, _, _)) in fresh.iter().enumerate() {
        lo[(first + k) * n_out + o] = 1.0;
    }
    SymBounds {
        hi: lo.clone(),
        lo,
        n: n_out,
    }
}

/// How a query ended.
#[derive(Clone, Debug)]
pub enum MilpStatus {
    /// The solver proved the constraints infeasible (real arithmetic, its tolerances).
    Infeasible,
    /// A solution, optimal or the best found before the time limit.
    Solution {
        x: Vec<f64>,
        /// `spec · y` at the solution, by the solver's own evaluation.
        margin: f64,
        objective: f64,
        optimal: bool,
    },
    /// The time limit passed without a solution.
    Timeout,
}

/// One query: `spec · y` over the encoding's outputs, at most
/// `cutoff` when given (`None`: unconstrained, for the `worst` objective).
/// With a cutoff and the `worst` objective the query is a decision, and the
/// solver may return any feasible point, not the minimum.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub spec: &'a [f64],
    pub cutoff: Option<f64>,
    pub objective: Objective,
    pub time_limit: Duration,
    pub solver: MilpSolver,
}

/// The encoding's variables and constraints as a `good_lp` problem; with
/// `relax`, binaries become continuous in [0, 1] (the LP relaxation).
struct Model {
    pv: ProblemVariables,
    system: System,
}

/// A model's variables and constraints, kept to check returned points.
struct System {
    vars: Vec<Variable>,
    /// `e ≤ 0` (false) or `e = 0` (true).
    rows: Vec<(Expression, bool)>,
    integers: Vec<Variable>,
}

/// How far a returned point may violate a row or integrality and still be
/// taken as the solver's solution (its own tolerances are ≈ 1e-7).
const FEASIBILITY_TOL: f64 = 1e-5;

impl Model {
    fn new(enc: &Encoding, relax: bool) -> Model {
        let mut pv = ProblemVariables::new();
        let mut integers = Vec::new();
        let vars: Vec<Variable> = enc
            .vars
            .iter()
            .map(|v| {
                let def = VariableDefinition::new().min(v.lo).max(v.hi);
                if v.binary && !relax {
                    let var = pv.add(def.binary());
                    integers.push(var);
                    var
                } else {
                    pv.add(def)
                }
            })
            .collect();
        let mut system = System {
            vars,
            rows: Vec::new(),
            integers,
        };
        system.rows = enc
            .constraints
            .iter()
            .map(|(f, s)| (system.expr(f), matches!(s, Sense::Zero)))
            .collect();
        Model { pv, system }
    }

    fn expr(&self, f: &Affine) -> Expression {
        self.system.expr(f)
    }
}

impl System {
    fn expr(&self, f: &Affine) -> Expression {
        let mut e = Expression::from(f.constant);
        for &(v, c) in &f.terms {
            e.add_mul(c, self.vars[v]);
        }
        e
    }

    /// Whether the point `value` gives satisfies every row and integrality:
    /// a solver stopped by its time limit may hand back a point that is not
    /// a solution (CBC returns its last LP point when it has no incumbent).
    fn admits(&self, value: &dyn Fn(&Expression) -> f64) -> bool {
        let rows_hold = self.rows.iter().all(|(e, eq)| {
            let v = value(e);
            v <= FEASIBILITY_TOL && (!eq || v >= -FEASIBILITY_TOL)
        });
        let integral = self.integers.iter().all(|&b| {
            let v = value(&Expression::from(b));
            (v - v.round()).abs() <= FEASIBILITY_TOL
        });
        rows_hold && integral
    }
}

impl Model {
    /// Minimises `objective`; `read` turns the solution (an evaluator and
    /// whether it is optimal) into the caller's answer. With `any_solution`
    /// the first feasible point will do (CBC stops there; microlp cannot).
    /// A returned point that is not a solution counts as a timeout.
    fn minimise<T>(
        self,
        objective: Expression,
        time_limit: Duration,
        solver: MilpSolver,
        any_solution: bool,
        read: impl Fn(&dyn Fn(&Expression) -> f64, bool) -> T,
    ) -> Result<Solved<T>> {
        let seconds = time_limit.as_secs_f64().max(0.001);
        let Model { pv, system: check } = self;
        let problem = pv.minimise(objective);
        let constraints: Vec<good_lp::Constraint> = check
            .rows
            .iter()
            .map(|(e, eq)| match eq {
                true => e.clone().eq(0.0),
                false => e.clone().leq(0.0),
            })
            .collect();
        macro_rules! run {
            ($model:expr) => {{
                let mut model = $model.with_time_limit(seconds);
                for c in constraints {
                    model.add_constraint(c);
                }
                match model.solve() {
                    Ok(sol) => {
                        let value = |e: &Expression| sol.eval(e);
                        let optimal = matches!(sol.status(), SolutionStatus::Optimal);
                        if check.admits(&value) {
                            Ok(Solved::Solution(read(&value, optimal)))
                        } else if optimal {
                            Err(VerifyError::Solver(
                                "the solver's optimum violates the constraints".into(),
                            ))
                        } else {
                            Ok(Solved::Timeout)
                        }
                    }
                    Err(ResolutionError::Infeasible) => Ok(Solved::Infeasible),
                    Err(ResolutionError::Other(m)) if m.contains("Time limit") => {
                        Ok(Solved::Timeout)
                    }
                    Err(e) => Err(VerifyError::Solver(e.to_string())),
                }
            }};
        }
        match solver {
            MilpSolver::MicroLp => {
                let _ = any_solution; // microlp has no early stop
                run!(problem.using(good_lp::solvers::microlp::microlp))
            }
            #[cfg(feature = "cbc")]
            MilpSolver::Cbc => {
                let mut model = problem.using(good_lp::solvers::coin_cbc::coin_cbc);
                model.set_parameter("log", "0");
                model.set_parameter("slogLevel", "0");
                model.set_parameter("threads", "1");
                if any_solution {
                    // An absolute gap no incumbent can exceed: the first one ends the search.
                    model.set_parameter("allowableGap", "1e30");
                }
                run!(model)
            }
            #[cfg(not(feature = "cbc"))]
            MilpSolver::Cbc => Err(VerifyError::Solver(
                "this build has no CBC; rebuild with `--features cbc`".into(),
            )),
        }
    }
}

enum Solved<T> {
    Infeasible,
    Solution(T),
    Timeout,
}

/// Solves one query on the encoding.
pub fn solve(enc: &Encoding, q: &Query) -> Result<MilpStatus> {
    let mut model = Model::new(enc, false);
    let parts: Vec<(&Affine, f64)> = enc
        .outputs
        .iter()
        .zip(q.spec)
        .map(|(f, &c)| (f, c))
        .collect();
    let margin = model.expr(&sum(&parts, 0.0));
    if let Some(c) = q.cutoff {
        model.system.rows.push((margin.clone() - c, false));
    }
    let objective = match &q.objective {
        Objective::Worst => margin.clone(),
        Objective::Closest { x0 } => {
            let t = model.pv.add(VariableDefinition::new().min(0.0));
            for (i, &c) in x0.iter().enumerate().take(enc.inputs) {
                let xi = model.system.vars[i];
                // |x_i − c| ≤ t
                model.system.rows.push((xi - t - c, false));
                model.system.rows.push((c - xi - t, false));
            }
            Expression::from(t)
        }
    };
    let inputs: Vec<Variable> = model.system.vars[..enc.inputs].to_vec();
    let read = |s: &dyn Fn(&Expression) -> f64, optimal: bool| MilpStatus::Solution {
        // Clamped: the solver's feasibility tolerance may leave the box slightly.
        x: inputs
            .iter()
            .zip(&enc.vars)
            .map(|(&v, d)| s(&Expression::from(v)).clamp(d.lo, d.hi))
            .collect(),
        margin: s(&margin),
        objective: s(&objective),
        optimal,
    };
    // A cutoff on the margin itself is a decision: any solution answers it.
    let any_solution = q.cutoff.is_some() && q.objective == Objective::Worst;
    let solved = model.minimise(
        objective.clone(),
        q.time_limit,
        q.solver,
        any_solution,
        read,
    )?;
    Ok(match solved {
        Solved::Infeasible => MilpStatus::Infeasible,
        Solved::Solution(s) => s,
        Solved::Timeout => MilpStatus::Timeout,
    })
}

/// PGD steps from a MILP solution the engines do not confirm (rounding it to
/// float32 can move it back across the boundary).
const POLISH_STEPS: usize = 20;

/// Decides one row `spec · y > rhs` with the MILP (its encoding is over the
/// bounding box of `q.set`, an L∞ ball or a box). A solution is re-executed
/// as a counterexample; infeasibility is a proof only in real-arithmetic mode
/// (`Soundness::Real`) and `Outcome::Unconfirmed` otherwise.
pub fn decide_row(
    m: &Models,
    q: &RowProblem,
    enc: &Encoding,
    solver: MilpSolver,
    soundness: Soundness,
    deadline: Deadline,
) -> Result<Outcome> {
    // Without a deadline, an hour per query.
    let time_limit = deadline.remaining().unwrap_or(Duration::from_secs(3600));
    if time_limit.is_zero() {
        return Ok(Outcome::Timeout);
    }
    let query = Query {
        spec: q.spec,
        cutoff: Some(q.rhs),
        objective: Objective::Worst,
        time_limit,
        solver,
    };
    let status = match solve(enc, &query) {
        // A solver failure (microlp can report a singular basis) leaves the row open.
        Err(VerifyError::Solver(_)) => return Ok(Outcome::Unknown),
        r => r?,
    };
    match status {
        MilpStatus::Infeasible if soundness == Soundness::Real => Ok(Outcome::Proved),
        MilpStatus::Infeasible => Ok(Outcome::Unconfirmed),
        MilpStatus::Timeout => Ok(Outcome::Timeout),
        MilpStatus::Solution { x, .. } => {
            let bbox = q.set.bounding_box();
            if let Some(xf) = f32_point_inside(&x, &bbox) {
                if let Some(ce) = m.confirm(q.property, &[xf])? {
                    return Ok(Outcome::Counterexample(ce));
                }
            }
            let polished = descend_from(
                m,
                q.property,
                q.set,
                q.spec,
                q.rhs,
                x,
                POLISH_STEPS,
                deadline,
            )?;
            Ok(polished.map_or(Outcome::Unknown, Outcome::Counterexample))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `r = relu(x)` for x ∈ [−1, 1]: one binary, three rows.
    fn one_relu() -> Encoding {
        let mut g = Graph::with_input("x", vec![1]);
        g.push("relu", Op::Relu, vec![0]).unwrap();
        let input = Interval {
            lo: vec![-1.0],
            hi: vec![1.0],
        };
        let set = nncert_spec::InputSet::Box(nncert_spec::InputBox {
            lo: input.lo.clone(),
            hi: input.hi.clone(),
        });
        let region = nncert_bounds::Region::of(&set, Soundness::Real);
        let cfg = nncert_bounds::BoundConfig::new(nncert_bounds::Method::Ibp, Soundness::Real);
        let bounds = nncert_bounds::propagate(&g, &region, &cfg).unwrap();
        encode(&g, &bounds, &input, None).unwrap()
    }

    #[test]
    fn a_point_off_the_constraints_or_fractional_is_no_solution() {
        let enc = one_relu();
        assert_eq!(enc.binaries(), 1);
        let m = Model::new(&enc, false);
        let (x, r, a) = (m.system.vars[0], m.system.vars[1], m.system.vars[2]);
        let at = |xv: f64, rv: f64, av: f64| {
            let point: HashMap<Variable, f64> = [(x, xv), (r, rv), (a, av)].into();
            m.system.admits(&|e: &Expression| e.eval_with(&point))
        };
        assert!(at(0.5, 0.5, 1.0));
        assert!(at(-0.5, 0.0, 0.0));
        // The LP relaxation's point r = 0.25 at x = −0.5 (a = 0.25): fractional.
        assert!(!at(-0.5, 0.25, 0.25));
        // Integral but r < x.
        assert!(!at(0.5, 0.25, 1.0));
    }
}
