//! Forward interval propagation with back-substitution refinement, and
//! back-substitution of a linear specification onto the input region.

use crate::fp::{down, gamma, Soundness, U64};
use crate::interval::{Interval, Region};
use crate::ops::activation::{self, Monotone, Slopes};
use crate::ops::{conv, elementwise, lane_sums, linear, negative_part, pool, positive_part, shape};
use crate::symbolic::{self, Domain, SymBounds};
use crate::{alpha, patches, BoundConfig, BoundsError, Method};
use nncert_model::forward::ConvCall;
use nncert_model::{BinaryKind, Graph, NodeId, Op};
use nncert_spec::Norm;
use std::collections::HashMap;

/// Sound bounds of every node, and each node's float32 error radius.
#[derive(Clone, Debug)]
pub struct NetworkBounds {
    pub nodes: Vec<Interval>,
    /// Per node: radius by which float32 (and the analyser) may move a value
    /// beyond the real-arithmetic bound; empty in real mode or for exact ops.
    pub err: Vec<Vec<f64>>,
    /// Symbolic intervals and zonotopes: the output's functions.
    pub symbolic_output: Option<(Domain, SymBounds)>,
}

type Result<T> = std::result::Result<T, BoundsError>;

/// What α- and β-CROWN add to a back-substitution: lower ReLU slopes,
/// multipliers of branch-and-bound split constraints, and a record of the
/// coefficients that reach each node (for the gradient).
#[derive(Clone, Default)]
pub(crate) struct Trace {
    /// Per ReLU node, lower slopes `[s, n]` of its unstable neurons.
    pub alphas: HashMap<NodeId, Vec<f64>>,
    /// Per split ReLU input node, the multipliers β ≥ 0 `[s, n]` of its split
    /// constraints (β-CROWN, Wang et al. 2021): `β·g(z)` with `g ≤ 0` on the
    /// subdomain is added to the objective, which lowers nothing there.
    pub betas: HashMap<NodeId, Vec<f64>>,
    /// Per split ReLU input node and neuron, the sign of z in its constraint
    /// `g(z) = sign·z ≤ 0`: −1 for z ≥ 0 (active), +1 for z ≤ 0, 0 unsplit.
    pub split_signs: HashMap<NodeId, Vec<f64>>,
    /// When `Some`, filled per node with the coefficients `[s, n]` reaching it.
    pub coeffs: Option<Vec<Option<Vec<f64>>>>,
    /// Per ReLU input node, neurons fixed to one phase in one row,
    /// `(row, neuron, active)`, as a split would fix them: strong branching
    /// bounds each candidate child as one row of a single back-substitution.
    pub fixed: HashMap<NodeId, Vec<(usize, usize, bool)>>,
}

fn unsupported(cfg: &BoundConfig, g: &Graph, id: NodeId, hint: &'static str) -> BoundsError {
    BoundsError::Unsupported {
        method: cfg.method.name(),
        op: g.nodes[id].op.name(),
        node: g.nodes[id].name.clone(),
        hint,
    }
}

fn slopes(cfg: &BoundConfig) -> Slopes {
    if cfg.method == Method::FastLin {
        Slopes::Parallel
    } else {
        Slopes::Adaptive
    }
}

/// The interval of node `id` from its inputs' bounds, and (float32 mode)
/// its error radius.
fn interval_of(
    g: &Graph,
    id: NodeId,
    b: &[Interval],
    cfg: &BoundConfig,
) -> Result<(Interval, Vec<f64>)> {
    let node = &g.nodes[id];
    let x = |k: usize| &b[node.inputs[k]];
    let in_shape = |k: usize| g.nodes[node.inputs[k]].shape.as_slice();
    let exact = |i: Interval| (i, Vec::new());
    // The error radius only matters, and is only computed, in float32 mode.
    let sound = cfg.soundness == Soundness::Float32;
    let err = |radius: &dyn Fn() -> Vec<f64>| if sound { radius() } else { Vec::new() };
    Ok(match &node.op {
        Op::Input => unreachable!("the region gives the input"),
        Op::Constant(t) => exact(Interval {
            lo: t.data.iter().map(|&v| v as f64).collect(),
            hi: t.data.iter().map(|&v| v as f64).collect(),
        }),
        Op::Linear { weight, bias } => (
            linear::interval(weight, bias.as_ref(), x(0)),
            err(&|| linear::error_radius(weight, bias.as_ref(), x(0))),
        ),
        Op::Conv2d { .. } => {
            let c = ConvCall::of(g, id).expect("conv");
            (
                conv::interval(&c, x(0)),
                err(&|| conv::error_radius(&c, x(0))),
            )
        }
        Op::Affine { scale, shift } => (
            elementwise::affine_interval(x(0), scale.as_ref(), shift.as_ref()),
            err(&|| elementwise::affine_error_radius(x(0), scale.as_ref(), shift.as_ref())),
        ),
        Op::Binary(kind @ (BinaryKind::Add | BinaryKind::Sub)) if in_shape(0) == in_shape(1) => {
            let sign = if *kind == BinaryKind::Add { 1.0 } else { -1.0 };
            (
                elementwise::sum_interval(x(0), x(1), sign),
                err(&|| elementwise::sum_error_radius(x(0), x(1))),
            )
        }
        Op::Relu => (
            activation::interval(x(0), 0.0),
            err(&|| activation::error_radius(x(0), 0.0)),
        ),
        // The relaxations assume a convex, monotone leak: α < 0 is not
        // monotone (IBP's ends would be wrong), α > 1 is concave.
        Op::LeakyRelu { alpha } if !(0.0..=1.0).contains(alpha) => {
            return Err(unsupported(cfg, g, id, " (alpha outside [0, 1])"))
        }
        Op::LeakyRelu { alpha } => (
            activation::interval(x(0), *alpha as f64),
            err(&|| activation::error_radius(x(0), *alpha as f64)),
        ),
        op @ (Op::Sigmoid | Op::Tanh | Op::Atan) => {
            let y = activation::monotone_interval(x(0), monotone(op));
            let e = err(&|| activation::monotone_error_radius(&y));
            (y, e)
        }
        Op::MaxPool2d { window } => exact(pool::max_interval(x(0), in_shape(0), window)),
        Op::AvgPool2d {
            window,
            count_include_pad,
        } => (
            pool::avg_interval(x(0), in_shape(0), window, *count_include_pad),
            err(&|| pool::avg_error_radius(x(0), in_shape(0), window, *count_include_pad)),
        ),
        Op::Reshape => exact(x(0).clone()),
        Op::Transpose { perm } => exact(shape::gather_interval(
            x(0),
            &shape::transpose_map(in_shape(0), perm),
        )),
        Op::Pad { pads, value } => exact(shape::pad_interval(
            x(0),
            &shape::pad_map(in_shape(0), &node.shape, pads),
            *value as f64,
        )),
        Op::Concat { axis } => {
            let shapes: Vec<&[usize]> = (0..node.inputs.len()).map(in_shape).collect();
            let map = shape::concat_map(&shapes, *axis);
            let pick =
                |f: fn(&Interval) -> &Vec<f64>| map.iter().map(|&(k, i)| f(x(k))[i]).collect();
            exact(Interval {
                lo: pick(|v| &v.lo),
                hi: pick(|v| &v.hi),
            })
        }
        Op::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            epsilon,
        } => {
            let p = [gamma, beta, mean, var];
            let (scale, shift) = elementwise::batchnorm_affine(p, *epsilon, &node.shape);
            (
                elementwise::affine64_interval(x(0), &scale, &shift),
                err(&|| elementwise::batchnorm_error_radius(x(0), p, *epsilon, &node.shape)),
            )
        }
        Op::Binary(_) => {
            return Err(unsupported(
                cfg,
                g,
                id,
                "; canonicalise the model first (real mode folds it)",
            ))
        }
    })
}

pub(crate) fn monotone(op: &Op) -> Monotone {
    match op {
        Op::Sigmoid => Monotone::Sigmoid,
        Op::Tanh => Monotone::Tanh,
        _ => Monotone::Atan,
    }
}

/// Which elements of node `id` deserve back-substitution bounds: those its
/// consumers relax. ReLUs only need the neurons IBP leaves unstable (the
/// others relax exactly); S-shaped activations and max pooling gain from
/// tighter bounds everywhere. None when no consumer relaxes.
fn rows_to_refine(g: &Graph, id: NodeId, iv: &Interval, intersect_ibp: bool) -> Option<Vec<usize>> {
    // The output of an exact monotone op is already the image of its (refined) input.
    let monotone_output = matches!(
        g.nodes[id].op,
        Op::Relu | Op::LeakyRelu { .. } | Op::Sigmoid | Op::Tanh | Op::Atan | Op::MaxPool2d { .. }
    );
    if monotone_output {
        return None;
    }
    let consumers = || g.nodes.iter().filter(|n| n.inputs.contains(&id));
    let s_shaped_or_pool = consumers().any(|n| {
        matches!(
            n.op,
            Op::Sigmoid | Op::Tanh | Op::Atan | Op::MaxPool2d { .. }
        )
    });
    let relu = consumers().any(|n| matches!(n.op, Op::Relu | Op::LeakyRelu { .. }));
    if s_shaped_or_pool {
        return Some((0..iv.len()).collect());
    }
    if !relu {
        return None;
    }
    let unstable: Vec<usize> = (0..iv.len())
        .filter(|&j| iv.lo[j] < 0.0 && iv.hi[j] > 0.0)
        .collect();
    // auto_LiRPA's rule (`minimum_sparsity` 0.9): past 90% unstable it bounds every neuron.
    if !intersect_ibp && unstable.len() * 10 > iv.len() * 9 {
        return Some((0..iv.len()).collect());
    }
    Some(unstable)
}

/// Bounds of every node over `region`.
pub fn propagate(g: &Graph, region: &Region, cfg: &BoundConfig) -> Result<NetworkBounds> {
    Ok(propagate_split(g, region, cfg, &[], None)?.expect("without splits nothing is empty"))
}

/// A branch-and-bound decision on one ReLU neuron: element `index` of node
/// `pre` (the ReLU's input) is ≥ 0 (`active`) or ≤ 0 on the subdomain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReluSplit {
    pub pre: NodeId,
    pub index: usize,
    pub active: bool,
}

/// Rows `spec · y` of the network's output over one subdomain: the part of
/// `region` where every split holds, `bounds` its node bounds (computed
/// with the splits clamped).
#[derive(Clone, Copy)]
pub struct SubdomainRow<'a> {
    pub graph: &'a Graph,
    pub bounds: &'a NetworkBounds,
    pub region: &'a Region,
    pub spec: &'a [f64],
    pub splits: &'a [ReluSplit],
}

/// Bounds of every node over the part of `region` where every split holds
/// (each clamps its neuron's interval at 0 as soon as the node is bounded,
/// so later nodes are bounded with that neuron stable), or None when a
/// split contradicts the bounds: that part holds no input. `resume` takes
/// the nodes up to and including a node from the bounds of a larger
/// subdomain (valid as they are: no split of theirs is new); the later
/// nodes' new bounds are intersected with that subdomain's, valid here too.
pub fn propagate_split(
    g: &Graph,
    region: &Region,
    cfg: &BoundConfig,
    splits: &[ReluSplit],
    resume: Option<(&NetworkBounds, NodeId)>,
) -> Result<Option<NetworkBounds>> {
    if region.bbox.len() != g.input_len() {
        return Err(BoundsError::Dimension {
            got: region.bbox.len(),
            expected: g.input_len(),
        });
    }
    let mut nb = NetworkBounds {
        nodes: Vec::with_capacity(g.nodes.len()),
        err: Vec::with_capacity(g.nodes.len()),
        symbolic_output: None,
    };
    let domain = match cfg.method {
        Method::Symbolic => Some(Domain::Symbolic),
        Method::DeepZ => Some(Domain::Zonotope),
        _ => None,
    };
    let mut sym = domain.map(|d| SymbolicPass::new(g, d, region.bbox.len()));
    let mut first = 0;
    if let (Some((parent, last)), None) = (resume, &sym) {
        nb.nodes.extend_from_slice(&parent.nodes[..=last]);
        nb.err.extend_from_slice(&parent.err[..=last]);
        if !apply_splits(&mut nb.nodes[last], last, splits) {
            return Ok(None);
        }
        first = last + 1;
    }
    for id in first..g.nodes.len() {
        if cfg.deadline.expired() {
            return Err(BoundsError::Timeout);
        }
        if id == g.input {
            nb.nodes.push(region.bbox.clone());
            nb.err.push(Vec::new());
            if let Some(sym) = &mut sym {
                sym.step(g, id, &mut nb, region, cfg)?;
            }
            continue;
        }
        let (mut iv, err) = interval_of(g, id, &nb.nodes, cfg)?;
        if !err.is_empty() {
            iv = iv.widened(&err);
        }
        // A subdomain lies inside its parent: the parent's bounds hold here too.
        let parent = resume.map(|(p, _)| &p.nodes[id]);
        if let Some(p) = parent {
            iv = iv.intersect(p);
        }
        nb.nodes.push(iv);
        nb.err.push(err);
        if let Some(sym) = &mut sym {
            sym.step(g, id, &mut nb, region, cfg)?;
        } else if cfg.method != Method::Ibp {
            if let Some(rows) = rows_to_refine(g, id, &nb.nodes[id], cfg.intersect_ibp) {
                refine(g, id, &rows, &mut nb, region, cfg)?;
            }
        }
        if let Some(p) = parent {
            nb.nodes[id] = nb.nodes[id].intersect(p);
            // Two valid enclosures that do not meet: the subdomain is empty.
            if nb.nodes[id]
                .lo
                .iter()
                .zip(&nb.nodes[id].hi)
                .any(|(l, h)| l > h)
            {
                return Ok(None);
            }
        }
        if !apply_splits(&mut nb.nodes[id], id, splits) {
            return Ok(None);
        }
    }
    if let Some(mut sym) = sym {
        nb.symbolic_output = sym.funcs[g.output].take().map(|f| (sym.domain, f));
    }
    Ok(Some(nb))
}

/// Clamps node `id`'s interval by its splits; false when one leaves it empty.
fn apply_splits(iv: &mut Interval, id: NodeId, splits: &[ReluSplit]) -> bool {
    for sp in splits.iter().filter(|sp| sp.pre == id) {
        let j = sp.index;
        if sp.active {
            iv.lo[j] = iv.lo[j].max(0.0);
        } else {
            iv.hi[j] = iv.hi[j].min(0.0);
        }
        if iv.lo[j] > iv.hi[j] {
            return false;
        }
    }
    true
}

/// Symbolic intervals alongside IBP: each node's functions, concretised and
/// intersected with its IBP bounds; functions are dropped after their last reader.
struct SymbolicPass {
    domain: Domain,
    /// Variables so far: the input's coordinates, then fresh zonotope symbols.
    vars: usize,
    funcs: Vec<Option<SymBounds>>,
    /// Per node, its magnitude `Σ|c|·max|x| + |c₀|` (for the rounding charges).
    mags: Vec<Vec<f64>>,
    last_use: Vec<NodeId>,
}

impl SymbolicPass {
    fn new(g: &Graph, domain: Domain, input_len: usize) -> Self {
        let mut last_use: Vec<NodeId> = (0..g.nodes.len()).collect();
        for (id, n) in g.nodes.iter().enumerate() {
            n.inputs.iter().for_each(|&k| last_use[k] = id);
        }
        last_use[g.output] = usize::MAX;
        SymbolicPass {
            domain,
            vars: input_len,
            funcs: vec![None; g.nodes.len()],
            mags: vec![Vec::new(); g.nodes.len()],
            last_use,
        }
    }

    fn step(
        &mut self,
        g: &Graph,
        id: NodeId,
        nb: &mut NetworkBounds,
        region: &Region,
        cfg: &BoundConfig,
    ) -> Result<()> {
        let inputs = &g.nodes[id].inputs;
        let funcs = &self.funcs;
        let mut f = symbolic::step(
            g,
            id,
            self.domain,
            &region.bbox,
            &mut self.vars,
            |k| funcs[inputs[k]].as_ref().expect("inputs come first"),
            |k| &nb.nodes[inputs[k]],
        )?;
        let sound = cfg.soundness == Soundness::Float32;
        if sound {
            let mag = |k: usize| {
                let m = &self.mags[inputs[k]];
                Interval {
                    lo: m.iter().map(|v| -v).collect(),
                    hi: m.clone(),
                }
            };
            let rounding = symbolic::rounding_radius(g, id, mag);
            if !rounding.is_empty() {
                f.widen(&rounding);
            }
            if !nb.err[id].is_empty() {
                f.widen(&nb.err[id]);
            }
        }
        let (iv, mag) = f.concretize(
            &symbolic::variable_box(self.domain, region, f.rows()),
            sound,
        );
        nb.nodes[id] = nb.nodes[id].intersect(&iv);
        self.mags[id] = mag;
        self.funcs[id] = Some(f);
        for &k in inputs {
            if self.last_use[k] == id {
                self.funcs[k] = None;
            }
        }
        Ok(())
    }
}

/// Tightens the bounds of elements `rows` of node `id` by back-substitution.
fn refine(
    g: &Graph,
    id: NodeId,
    rows: &[usize],
    nb: &mut NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
) -> Result<()> {
    let n = nb.nodes[id].len();
    // Coefficient blocks stay below 2²³ values per node (64 MiB) whatever the layer sizes.
    let widest = g.nodes[..=id]
        .iter()
        .map(|m| m.shape.iter().product::<usize>())
        .max()
        .unwrap_or(1);
    let chain = patches::conv_chain(g, id);
    let nb_now: &NetworkBounds = nb;
    let bound_block = |block: &[usize]| -> Result<Vec<f64>> {
        let s = block.len();
        if let Some(chain) = &chain {
            return patches::bound_rows(g, chain, block, nb_now, region, cfg);
        }
        let mut spec = vec![0.0; 2 * s * n];
        for (r, &j) in block.iter().enumerate() {
            spec[r * n + j] = 1.0;
            spec[(s + r) * n + j] = -1.0;
        }
        backsubstitute(
            g,
            id,
            nb_now,
            region,
            cfg,
            &spec,
            2 * s,
            &mut Trace::default(),
        )
    };
    let chunk = (1usize << 22) / widest;
    for (block, lb) in in_row_blocks(rows, chunk, cfg, bound_block)? {
        let (iv, s) = (&mut nb.nodes[id], block.len());
        for (r, &j) in block.iter().enumerate() {
            (iv.lo[j], iv.hi[j]) = if cfg.intersect_ibp {
                (iv.lo[j].max(lb[r]), iv.hi[j].min(-lb[s + r]))
            } else {
                (lb[r], -lb[s + r])
            };
        }
    }
    Ok(())
}

/// Fewer rows than this per block are not worth a thread of their own.
const MIN_ROWS_PER_BLOCK: usize = 4;

/// Row sets are cut into this many blocks (fewer when small): a layout that
/// does not depend on the thread count, so results are the same with
/// `--jobs 1` or `--jobs 3` to the last bit (the blocks' live columns set
/// their GEMMs' summation order).
const ROW_BLOCKS: usize = 4;

/// `bound` on consecutive blocks of `rows` (independent back-substitutions),
/// at most `max_rows` rows each, spread over the bound threads.
fn in_row_blocks<'r, T: Sync>(
    rows: &'r [T],
    max_rows: usize,
    cfg: &BoundConfig,
    bound: impl Fn(&[T]) -> Result<Vec<f64>> + Sync,
) -> Result<Vec<(&'r [T], Vec<f64>)>> {
    let threads = crate::ops::bound_threads();
    let chunk = rows
        .len()
        .div_ceil(ROW_BLOCKS)
        .max(MIN_ROWS_PER_BLOCK)
        .min(max_rows)
        .max(1);
    let bound_checked = |block: &'r [T]| {
        if cfg.deadline.expired() {
            return Err(BoundsError::Timeout);
        }
        Ok((block, bound(block)?))
    };
    if threads > 1 && rows.len() > chunk {
        use rayon::prelude::*;
        rows.par_chunks(chunk)
            .map(|block| crate::ops::with_serial_gemm(|| bound_checked(block)))
            .collect()
    } else {
        rows.chunks(chunk).map(bound_checked).collect()
    }
}

/// Lower bounds of `spec · y` (`rows` rows) for the output `y` of the graph.
pub fn lower_bounds(
    g: &Graph,
    nb: &NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
    spec: &[f64],
    rows: usize,
) -> Result<Vec<f64>> {
    let ibp = interval_lower(&nb.nodes[g.output], spec, rows, cfg.soundness);
    if cfg.method == Method::Ibp {
        return Ok(ibp);
    }
    // Both are sound; CROWN is usually, not always, the tighter one.
    let crown = if let Some((domain, f)) = &nb.symbolic_output {
        let sound = cfg.soundness == Soundness::Float32;
        let vars = symbolic::variable_box(*domain, region, f.rows());
        symbolic::spec_lower(f, spec, rows, &vars, sound)
    } else if cfg.method == Method::AlphaCrown {
        alpha::optimise(g, nb, region, cfg, spec, rows)?
    } else {
        // Spec rows are independent too: blocks of them over the cores.
        let n = nb.nodes[g.output].len();
        let spec_rows: Vec<usize> = (0..rows).collect();
        let blocks = in_row_blocks(&spec_rows, rows, cfg, |block| {
            let block_spec = &spec[block[0] * n..][..block.len() * n];
            let mut trace = Trace::default();
            backsubstitute(
                g,
                g.output,
                nb,
                region,
                cfg,
                block_spec,
                block.len(),
                &mut trace,
            )
        })?;
        blocks.into_iter().flat_map(|(_, lb)| lb).collect()
    };
    if !cfg.intersect_ibp {
        return Ok(crown);
    }
    Ok(crown.iter().zip(ibp).map(|(a, b)| a.max(b)).collect())
}

/// min over the box of each spec row, by interval arithmetic.
pub(crate) fn interval_lower(
    x: &Interval,
    spec: &[f64],
    rows: usize,
    soundness: Soundness,
) -> Vec<f64> {
    let n = x.len();
    (0..rows)
        .map(|r| {
            let (v, mag) = box_min(&spec[r * n..][..n], x);
            match soundness {
                Soundness::Real => v,
                Soundness::Float32 => down(v - gamma(n + 1, U64) * mag),
            }
        })
        .collect()
}

/// Back-substitution: lower bounds of `spec · z_q` over the region, walking
/// the graph backwards from node `q` with linear relaxations.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backsubstitute(
    g: &Graph,
    q: NodeId,
    nb: &NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
    spec: &[f64],
    s: usize,
    trace: &mut Trace,
) -> Result<Vec<f64>> {
    let sound = cfg.soundness == Soundness::Float32;
    let mut acc: Vec<Option<Vec<f64>>> = vec![None; q + 1];
    acc[q] = Some(spec.to_vec());
    let mut cst = vec![0.0; s];
    // Σ|terms| added to `cst`, to bound the rounding of those additions.
    let mut cabs = vec![0.0; s];
    let mut result = vec![0.0; s];
    let add_const = |cst: &mut Vec<f64>, cabs: &mut Vec<f64>, c: &[f64]| {
        for si in 0..s {
            cst[si] += c[si];
            cabs[si] += c[si].abs();
        }
    };
    // Best bound from concretising early, over the intervals of the nodes
    // still pending (see `pending_bound`).
    let mut early = vec![f64::NEG_INFINITY; s];
    for id in (0..=q).rev() {
        if acc[id].is_none() {
            continue;
        }
        if cfg.intersect_ibp && id != q && id != g.input {
            let v = pending_bound(&acc[..=id], nb, &trace.fixed, &result, &cst, &cabs, sound);
            early.iter_mut().zip(v).for_each(|(e, v)| *e = e.max(v));
        }
        let a = acc[id].take().expect("checked");
        if cfg.deadline.expired() {
            return Err(BoundsError::Timeout);
        }
        let node = &g.nodes[id];
        if let Some(coeffs) = &mut trace.coeffs {
            coeffs[id] = Some(a.clone());
        }
        if sound && !nb.err[id].is_empty() {
            let pen: Vec<f64> = (0..s)
                .map(|si| -dot_abs(&a[si * nb.err[id].len()..][..nb.err[id].len()], &nb.err[id]))
                .collect();
            add_const(&mut cst, &mut cabs, &pen);
        }
        let pass = |acc: &mut Vec<Option<Vec<f64>>>, k: usize, a_in: Vec<f64>| {
            let target = node.inputs[k];
            match &mut acc[target] {
                Some(existing) => existing.iter_mut().zip(&a_in).for_each(|(e, v)| *e += v),
                slot => *slot = Some(a_in),
            }
        };
        let x = |k: usize| &nb.nodes[node.inputs[k]];
        let in_shape = |k: usize| g.nodes[node.inputs[k]].shape.as_slice();
        let in_len = |k: usize| g.nodes[node.inputs[k]].shape.iter().product::<usize>();
        match &node.op {
            Op::Input => {
                let v = concretize(&a, s, region, sound);
                result.iter_mut().zip(v).for_each(|(r, v)| *r += v);
            }
            Op::Constant(t) => {
                let n = t.numel();
                let c: Vec<f64> = (0..s)
                    .map(|si| {
                        a[si * n..][..n]
                            .iter()
                            .zip(&t.data)
                            .map(|(x, &y)| x * y as f64)
                            .sum()
                    })
                    .collect();
                add_const(&mut cst, &mut cabs, &c);
            }
            Op::Linear { weight, bias } => {
                let (a_in, c) = linear::backward(weight, bias.as_ref(), &a, s);
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::Conv2d { .. } => {
                let (a_in, c) = conv::backward(&ConvCall::of(g, id).expect("conv"), &a, s);
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::Affine { scale, shift } => {
                let (a_in, c) = elementwise::affine_backward(&a, s, scale.as_ref(), shift.as_ref());
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::Binary(kind @ (BinaryKind::Add | BinaryKind::Sub))
                if in_shape(0) == in_shape(1) =>
            {
                let second = if *kind == BinaryKind::Add {
                    a.clone()
                } else {
                    a.iter().map(|v| -v).collect()
                };
                pass(&mut acc, 0, a);
                pass(&mut acc, 1, second);
            }
            Op::Relu | Op::LeakyRelu { .. } => {
                let alpha = if let Op::LeakyRelu { alpha } = node.op {
                    alpha as f64
                } else {
                    0.0
                };
                let lower = trace.alphas.get(&id).map(Vec::as_slice);
                let pre = node.inputs[0];
                let fixed = trace.fixed.get(&pre);
                let before: Vec<f64> = fixed.map_or(Vec::new(), |f| {
                    f.iter().map(|&(si, j, _)| a[si * x(0).len() + j]).collect()
                });
                let mut a_in = a;
                let mut c = activation::backward(&mut a_in, s, x(0), alpha, slopes(cfg), lower);
                if let Some(fixed) = fixed {
                    activation::fix_phases(&before, &mut a_in, &mut c, x(0), alpha, fixed);
                }
                if let (Some(b), Some(sign)) = (trace.betas.get(&pre), trace.split_signs.get(&pre))
                {
                    let pen = add_split_terms(&mut a_in, b, sign, x(0), sound);
                    add_const(&mut cst, &mut cabs, &pen);
                }
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::AvgPool2d {
                window,
                count_include_pad,
            } => {
                let a_in = pool::avg_backward(&a, s, in_shape(0), window, *count_include_pad);
                pass(&mut acc, 0, a_in);
            }
            Op::Reshape => pass(&mut acc, 0, a),
            Op::Transpose { perm } => {
                let a_in = shape::gather_backward(
                    &a,
                    s,
                    &shape::transpose_map(in_shape(0), perm),
                    in_len(0),
                );
                pass(&mut acc, 0, a_in);
            }
            Op::Pad { pads, value } => {
                let map = shape::pad_map(in_shape(0), &node.shape, pads);
                let (a_in, c) = shape::pad_backward(&a, s, &map, in_len(0), *value as f64);
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::Concat { axis } => {
                let shapes: Vec<&[usize]> = (0..node.inputs.len()).map(in_shape).collect();
                let map = shape::concat_map(&shapes, *axis);
                let n = map.len();
                let mut parts: Vec<Vec<f64>> = (0..node.inputs.len())
                    .map(|k| vec![0.0; s * in_len(k)])
                    .collect();
                for si in 0..s {
                    for (o, &(k, i)) in map.iter().enumerate() {
                        parts[k][si * in_len(k) + i] += a[si * n + o];
                    }
                }
                for (k, p) in parts.into_iter().enumerate() {
                    pass(&mut acc, k, p);
                }
            }
            op @ (Op::Sigmoid | Op::Tanh | Op::Atan) => {
                let (a_in, c) = activation::s_shaped_backward(&a, s, x(0), monotone(op));
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::MaxPool2d { window } => {
                let (a_in, c) = pool::max_backward(&a, s, x(0), in_shape(0), window);
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                epsilon,
            } => {
                let (scale, shift) =
                    elementwise::batchnorm_affine([gamma, beta, mean, var], *epsilon, &node.shape);
                let (a_in, c) = elementwise::affine64_backward(&a, s, &scale, &shift);
                add_const(&mut cst, &mut cabs, &c);
                pass(&mut acc, 0, a_in);
            }
            Op::Binary(_) => return Err(unsupported(cfg, g, id, "; canonicalise the model first")),
        }
    }
    Ok((0..s)
        .map(|si| {
            let v = result[si] + cst[si];
            let v = if sound {
                // Rounding of the additions into `cst` and of this sum: 2⁻³⁰ covers < 10⁶ terms.
                down(v - (cabs[si] + result[si].abs()) / (1u64 << 30) as f64)
            } else {
                v
            };
            v.max(early[si])
        })
        .collect())
}

/// β-CROWN: adds `β·sign` to the coefficients `[s, n]` reaching a split
/// ReLU's input `z` (interval `x`). In sound mode each such addition rounds
/// by at most 2u₆₄ of its result, so `−2u₆₄·|c|·max|z|` per row is returned
/// as the constant that covers it (zero in real mode).
fn add_split_terms(
    a: &mut [f64],
    beta: &[f64],
    sign: &[f64],
    x: &Interval,
    sound: bool,
) -> Vec<f64> {
    let n = sign.len();
    a.chunks_mut(n)
        .zip(beta.chunks(n))
        .map(|(row, b)| {
            let mut pen = 0.0;
            for j in (0..n).filter(|&j| sign[j] != 0.0) {
                row[j] += b[j] * sign[j];
                pen += 2.0 * U64 * row[j].abs() * x.lo[j].abs().max(x.hi[j].abs());
            }
            if sound {
                // 2⁻³⁰ covers the rounding of this sum (< 10⁶ terms), as in `dot_abs`.
                -pen * (1.0 + 1.0 / (1u64 << 30) as f64)
            } else {
                0.0
            }
        })
        .collect()
}

/// Midway through back-substitution, `spec · y ≥ Σ_k acc_k · z_k + cst (+
/// result)` over the nodes k still pending; each z_k lies in its interval
/// (split clamps included), so minimising each term over its box is also a
/// lower bound. It can beat the bound at the input, where the interval
/// clamps of branch-and-bound splits are lost.
fn pending_bound(
    acc: &[Option<Vec<f64>>],
    nb: &NetworkBounds,
    fixed: &HashMap<NodeId, Vec<(usize, usize, bool)>>,
    result: &[f64],
    cst: &[f64],
    cabs: &[f64],
    sound: bool,
) -> Vec<f64> {
    let s = cst.len();
    let mut total: Vec<f64> = (0..s).map(|si| result[si] + cst[si]).collect();
    // Σ|terms| of the final additions, and the dot products' own rounding.
    let mut added: Vec<f64> = (0..s).map(|si| cabs[si] + result[si].abs()).collect();
    let mut rounding = vec![0.0; s];
    for (k, a) in acc.iter().enumerate() {
        let Some(a) = a else { continue };
        let iv = &nb.nodes[k];
        let n = iv.len();
        for si in 0..s {
            let (v, mag) = box_min(&a[si * n..][..n], iv);
            total[si] += v;
            added[si] += v.abs();
            rounding[si] += gamma(n + 1, U64) * mag;
        }
        // A neuron fixed in a row lies in its interval clamped at 0 there
        // (the magnitude above already covers the clamped term's rounding).
        for &(si, j, active) in fixed.get(&k).map_or(&[][..], Vec::as_slice) {
            let (c, lo, hi) = (a[si * n + j], iv.lo[j], iv.hi[j]);
            let (clo, chi) = if active {
                (lo.max(0.0), hi)
            } else {
                (lo, hi.min(0.0))
            };
            let term = |l: f64, h: f64| if c >= 0.0 { c * l } else { c * h };
            let change = term(clo, chi) - term(lo, hi);
            total[si] += change;
            added[si] += change.abs();
        }
    }
    (0..s)
        .map(|si| {
            if sound {
                down(total[si] - rounding[si] - added[si] / (1u64 << 30) as f64)
            } else {
                total[si]
            }
        })
        .collect()
}

/// min of `row · x` over the box, and Σ|row|·max(|lo|,|hi|) (the magnitude its rounding scales with).
fn box_min(row: &[f64], b: &Interval) -> (f64, f64) {
    box_min_of(row, &b.lo, &b.hi)
}

#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
pub(crate) fn box_min_of(row: &[f64], lo: &[f64], hi: &[f64]) -> (f64, f64) {
    let [v, mag] = lane_sums([row, lo, hi], |[c, l, h]| {
        let (l_abs, h_abs) = (l.abs(), h.abs());
        [
            positive_part(c) * l + negative_part(c) * h,
            c.abs() * if l_abs > h_abs { l_abs } else { h_abs },
        ]
    });
    (v, mag)
}

pub(crate) fn dot_abs(a: &[f64], e: &[f64]) -> f64 {
    a.iter().zip(e).map(|(x, y)| x.abs() * y).sum::<f64>() * (1.0 + 1.0 / (1u64 << 30) as f64)
}

/// min over the region of `a·x` per row: over the box, and over the norm
/// ball when there is one (both contain the region; the larger bound wins).
fn concretize(a: &[f64], s: usize, region: &Region, sound: bool) -> Vec<f64> {
    let b = &region.bbox;
    let n = b.len();
    let center = region.ball.as_ref().map(|(c, _, _)| c.as_slice());
    (0..s)
        .map(|si| concretize_row(&a[si * n..][..n], (&b.lo, &b.hi, center), region, n, sound))
        .collect()
}

/// `concretize` of one row given as its nonzero part: `row` with the box
/// ends and ball centre at the same places (`n`, the input length, sizes
/// the rounding charges).
pub(crate) fn concretize_row(
    row: &[f64],
    (lo, hi, center): (&[f64], &[f64], Option<&[f64]>),
    region: &Region,
    n: usize,
    sound: bool,
) -> f64 {
    let (v, mag) = box_min_of(row, lo, hi);
    let boxed = if sound {
        down(v - gamma(n + 2, U64) * mag)
    } else {
        v
    };
    let Some(((_, eps, norm), center)) = region.ball.as_ref().zip(center) else {
        return boxed;
    };
    let dual = match norm {
        Norm::Linf => lane_sums([row], |[c]| [c.abs()])[0],
        Norm::L2 => lane_sums([row], |[c]| [c * c])[0].sqrt(),
        Norm::L1 => row.iter().fold(0.0f64, |m, x| m.max(x.abs())),
    };
    let [at_center, cmag] = lane_sums([row, center], |[c, x]| [c * x, (c * x).abs()]);
    let ball = at_center - eps * dual;
    if sound {
        boxed.max(down(ball - gamma(n + 4, U64) * (cmag + eps * dual)))
    } else {
        boxed.max(ball)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use nncert_model::Deadline;
    use std::time::Duration;

    #[test]
    fn row_blocks_cover_every_row_in_order_within_the_budget() {
        let cfg = BoundConfig::new(Method::Crown, Soundness::Float32);
        let rows: Vec<usize> = (0..103).collect();
        for max_rows in [1, 7, 64, 1000] {
            let blocks = in_row_blocks(&rows, max_rows, &cfg, |b| {
                Ok(b.iter().map(|&r| r as f64 * 2.0).collect())
            })
            .unwrap();
            assert!(blocks.iter().all(|(b, _)| b.len() <= max_rows));
            assert!(blocks.len() <= ROW_BLOCKS.max(103usize.div_ceil(max_rows)));
            let seen: Vec<usize> = blocks.iter().flat_map(|(b, _)| b.to_vec()).collect();
            assert_eq!(seen, rows);
            let values: Vec<f64> = blocks.into_iter().flat_map(|(_, v)| v).collect();
            assert_eq!(
                values,
                rows.iter().map(|&r| r as f64 * 2.0).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn row_blocks_stop_at_the_deadline_and_pass_errors_on() {
        let mut cfg = BoundConfig::new(Method::Crown, Soundness::Float32);
        cfg.deadline = Deadline::after(Duration::ZERO);
        let rows: Vec<usize> = (0..50).collect();
        let r = in_row_blocks(&rows, 8, &cfg, |b| Ok(vec![0.0; b.len()]));
        assert!(matches!(r, Err(BoundsError::Timeout)));
        cfg.deadline = Deadline::none();
        let r = in_row_blocks(&rows, 8, &cfg, |b| {
            if b.contains(&40) {
                Err(BoundsError::Timeout)
            } else {
                Ok(vec![0.0; b.len()])
            }
        });
        assert!(r.is_err());
    }
}
