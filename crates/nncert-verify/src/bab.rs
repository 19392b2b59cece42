//! Branch and bound on ReLU neurons for one linear property `spec · y > rhs`.
//!
//! A subdomain is the input region plus a set of ReLU splits (neuron ≥ 0 or
//! ≤ 0). Its intermediate bounds are CROWN's over the region with every
//! split neuron's interval clamped at 0 (`propagate_split`): sound, since
//! each subdomain's inputs lie in the region and satisfy its splits, and
//! the two children of a split cover their parent. Children reuse the
//! parent's bounds of every node up to the split one. The output bound is
//! CROWN's, or with `Method::AlphaCrown` β-CROWN's: slopes and one
//! Lagrange multiplier per split constraint optimised from the parent's
//! values, which imposes the splits on the input too. A subdomain is closed
//! when its bound exceeds `rhs`; otherwise the input point where its bound
//! is attained, and a short descent from it, are tried as counterexamples
//! (re-executed on every engine) and the subdomain is queued, to have the
//! neuron chosen by filtered strong branching split (of the best by BaBSR
//! score, the one whose worse child bounds highest). The lowest bound is split first
//! (on the first 1000 relu_stable MNIST images this found a counterexample
//! in 0.2 s that depth-first search missed in 5 s). Past a cap on the stored
//! bounds the search goes depth first, children before anything queued, so
//! the frontier stops growing and the search runs on to the deadline
//! instead of giving up (it does give up, `Unknown`, at twice the cap).
//!
//! Subdomains go in batches: each round pops the `workers` lowest, and
//! their children are split off and bounded on `workers` threads at once;
//! results are taken in a fixed order, so the search does not depend on
//! thread timing (only on the deadline).
//!
//! A subdomain left with no unstable neuron is an exact leaf (`leaf`): its
//! LP's dual multipliers, evaluated by β-CROWN's sound bound, close it or
//! its LP minimiser refutes the row; if neither (a solver failure, or a
//! minimiser some engine does not confirm), it stays open and the search
//! answers `Unknown`, never `Proved`.

use crate::attack::descend_from;
use crate::leaf::{decide_leaf, Leaf};
use crate::witness::f32_point_inside;
use crate::{Counterexample, LowestFirst, Models, Outcome, Result};
use nncert_bounds::{
    bound_for_branching, propagate_split, strongest_split, BoundConfig, BoundsError, Multipliers,
    NetworkBounds, Region, ReluSplit, SubdomainRow,
};
use nncert_spec::{InputSet, Property};
use std::collections::BinaryHeap;

/// PGD steps from each open subdomain's bound minimiser.
const GUIDED_STEPS: usize = 10;

/// Strong-branching candidates per open subdomain (see `BabConfig`). On
/// relu_stable's first 1000 images at 5 s: 1 (BaBSR alone) left 14 open, 3
/// 12, 8 11, 16 and 32 9, 64 9 but slower.
pub const BRANCH_CANDIDATES: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct BabConfig {
    /// Bounds per subdomain (CROWN, or β-CROWN with `Method::AlphaCrown`;
    /// its `deadline` is the search's).
    pub bounds: BoundConfig,
    /// Memory cap: f64 values of queued subdomains' bounds past which the
    /// search goes depth first (the frontier stops growing).
    pub max_stored_values: usize,
    /// Adam steps of β-CROWN on a child subdomain, warm-started from its
    /// parent's slopes and multipliers (the root takes `bounds`'). Fewer
    /// steps, more subdomains: on relu_stable's 11 hardest of the first 1000
    /// images (20 s each) 5 steps decided 3, 20 decided 2, 2 and 50 fewer.
    pub child_iterations: usize,
    /// Subdomains split per round, their children bounded on this many
    /// threads (1: one at a time on the calling thread).
    pub workers: usize,
    /// Candidates (best by BaBSR score) whose children are bounded to pick
    /// the split (filtered strong branching); 1: BaBSR's best alone.
    pub branch_candidates: usize,
}

impl BabConfig {
    pub fn new(bounds: BoundConfig) -> Self {
        BabConfig {
            bounds,
            max_stored_values: 1 << 27,
            child_iterations: 5,
            workers: 1,
            branch_candidates: BRANCH_CANDIDATES,
        }
    }
}

/// How many subdomains were bounded.
#[derive(Clone, Copy, Debug, Default)]
pub struct BabStats {
    pub subdomains: usize,
}

/// An open subdomain: its splits, bounds, lower bound, the neuron to split
/// next, and its optimised slopes and multipliers (the children's warm start).
struct Subdomain {
    splits: Vec<ReluSplit>,
    bounds: NetworkBounds,
    lower: f64,
    branch: Option<ReluSplit>,
    warm: Multipliers,
}

fn stored_values(nb: &NetworkBounds) -> usize {
    nb.nodes.iter().map(|iv| 2 * iv.len()).sum::<usize>()
        + nb.err.iter().map(Vec::len).sum::<usize>()
}

/// The open subdomains: queued lowest bound first, and the depth-first
/// dive taken before the queue (children of the subdomains split last,
/// lowest bound on top), with the f64 values their bounds hold.
#[derive(Default)]
struct Frontier {
    queue: BinaryHeap<LowestFirst<Subdomain>>,
    dive: Vec<Subdomain>,
    stored: usize,
}

impl Frontier {
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.dive.is_empty()
    }

    fn pop(&mut self) -> Option<Subdomain> {
        let sub = self
            .dive
            .pop()
            .or_else(|| self.queue.pop().map(|q| q.item))?;
        self.stored -= stored_values(&sub.bounds);
        Some(sub)
    }

    /// Queues `open`, or puts it on the dive when `depth_first`.
    fn add(&mut self, mut open: Vec<Subdomain>, depth_first: bool) {
        self.stored += open.iter().map(|s| stored_values(&s.bounds)).sum::<usize>();
        if depth_first {
            open.sort_by(|a, b| b.lower.total_cmp(&a.lower));
            self.dive.extend(open);
        } else {
            let lowest_first = |sub: Subdomain| LowestFirst {
                key: sub.lower,
                item: sub,
            };
            self.queue.extend(open.into_iter().map(lowest_first));
        }
    }
}

/// One linear property: `spec · y > rhs` over `region` is to be proved
/// (unsafe: `≤ rhs`); counterexamples are sought in `set` (which `region`
/// encloses) and confirmed against `property`.
pub struct RowProblem<'a> {
    pub property: &'a Property,
    pub region: &'a Region,
    pub set: &'a InputSet,
    pub spec: &'a [f64],
    pub rhs: f64,
}

/// Proves the row or finds a counterexample (see the module doc).
pub fn prove_row(m: &Models, q: &RowProblem, cfg: &BabConfig) -> Result<(Outcome, BabStats)> {
    let mut stats = BabStats::default();
    match search(m, q, cfg, &mut stats) {
        Err(crate::VerifyError::Bounds(BoundsError::Timeout)) => Ok((Outcome::Timeout, stats)),
        r => Ok((r?, stats)),
    }
}

fn search(m: &Models, q: &RowProblem, cfg: &BabConfig, stats: &mut BabStats) -> Result<Outcome> {
    let g = m.bounded;
    let Some(root) = propagate_split(g, q.region, &cfg.bounds, &[], None)? else {
        return Ok(Outcome::Proved);
    };
    let mut frontier = Frontier::default();
    stats.subdomains += 1;
    match examine(
        m,
        q,
        cfg,
        (Vec::new(), root, f64::NEG_INFINITY),
        &Multipliers::default(),
    )? {
        Examined::Closed => return Ok(Outcome::Proved),
        Examined::Refuted(ce) => return Ok(Outcome::Counterexample(ce)),
        Examined::Open(sub) => frontier.add(vec![*sub], false),
    }
    let mut open_leaf = false;
    while !frontier.is_empty() {
        if cfg.bounds.deadline.expired() {
            return Ok(Outcome::Timeout);
        }
        let depth_first = frontier.stored > cfg.max_stored_values;
        // Depth first, the stored bounds grow only with the depth of the
        // dive; twice the cap (at least 2²¹ values, room for a small cap's
        // dive) means the dive outgrew the cap itself: give up.
        if frontier.stored > 2 * cfg.max_stored_values.max(1 << 20) {
            return Ok(Outcome::Unknown);
        }
        let mut batch = Vec::new();
        while batch.len() < cfg.workers.max(1) {
            let Some(sub) = frontier.pop() else {
                break;
            };
            match sub.branch {
                Some(split) => batch.push((sub, split)),
                None => open_leaf = true,
            }
        }
        let children: Vec<_> = batch
            .iter()
            .flat_map(|(sub, split)| [false, true].map(|active| (sub, *split, active)))
            .collect();
        let examined = in_parallel(&children, cfg.workers, |&(sub, split, active)| {
            let mut splits = sub.splits.clone();
            splits.push(ReluSplit { active, ..split });
            let resume = Some((&sub.bounds, split.pre));
            match propagate_split(g, q.region, &cfg.bounds, &splits, resume)? {
                None => Ok(None),
                Some(b) => examine(m, q, cfg, (splits, b, sub.lower), &sub.warm).map(Some),
            }
        });
        let mut open = Vec::new();
        for child in examined {
            let Some(child) = child? else { continue };
            stats.subdomains += 1;
            match child {
                Examined::Closed => {}
                Examined::Refuted(ce) => return Ok(Outcome::Counterexample(ce)),
                Examined::Open(child) => open.push(*child),
            }
        }
        frontier.add(open, depth_first);
    }
    Ok(if open_leaf {
        Outcome::Unknown
    } else {
        Outcome::Proved
    })
}

/// `f` over `items` on up to `workers` scoped threads (contiguous shares),
/// results in the items' order; with one worker, on the calling thread.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if workers <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let share = items.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|part| {
                let f = &f;
                s.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("branch-and-bound worker panicked"))
            .collect()
    })
}

enum Examined {
    /// The bound proves the row on the subdomain.
    Closed,
    Refuted(Counterexample),
    Open(Box<Subdomain>),
}

/// Bounds one subdomain (its splits, bounds and its parent's lower bound,
/// valid here too) and, if that does not close it, tries the bound's
/// minimiser and a short descent from it as counterexamples.
fn examine(
    m: &Models,
    q: &RowProblem,
    cfg: &BabConfig,
    (splits, bounds, inherited): (Vec<ReluSplit>, NetworkBounds, f64),
    warm: &Multipliers,
) -> Result<Examined> {
    let row_cfg = BoundConfig {
        alpha_stop_above: Some(q.rhs),
        alpha_iterations: if splits.is_empty() {
            cfg.bounds.alpha_iterations
        } else {
            cfg.child_iterations
        },
        ..cfg.bounds
    };
    let row = SubdomainRow {
        graph: m.bounded,
        bounds: &bounds,
        region: q.region,
        spec: q.spec,
        splits: &splits,
    };
    let rb = bound_for_branching(&row, &row_cfg, warm)?;
    let lower = rb.lower.max(inherited);
    if lower > q.rhs {
        return Ok(Examined::Closed);
    }
    if rb.candidates.is_empty() {
        match decide_leaf(m, q, &cfg.bounds, &splits, &bounds)? {
            Leaf::Closed => return Ok(Examined::Closed),
            Leaf::Refuted(ce) => return Ok(Examined::Refuted(ce)),
            Leaf::Open => {}
        }
    }
    if let Some(x) = f32_point_inside(&rb.minimiser, &q.set.bounding_box()) {
        if let Some(ce) = m.confirm(q.property, &[x])? {
            return Ok(Examined::Refuted(ce));
        }
    }
    let deadline = cfg.bounds.deadline;
    let start = rb.minimiser.clone();
    if let Some(ce) = descend_from(
        m,
        q.property,
        q.set,
        q.spec,
        q.rhs,
        start,
        GUIDED_STEPS,
        deadline,
    )? {
        return Ok(Examined::Refuted(ce));
    }
    let branch = strongest_split(&row, &row_cfg, &rb, cfg.branch_candidates)?;
    Ok(Examined::Open(Box::new(Subdomain {
        splits,
        bounds,
        lower,
        branch,
        warm: rb.multipliers,
    })))
}
