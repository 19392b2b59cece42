//! Patches (auto_LiRPA's name for them): back-substitution rows that start
//! at single neurons of a convolution and walk back through a chain of
//! convolutions and ReLUs are nonzero only on the neuron's receptive field.
//! Each row is kept as a window of one size for the whole block (its own
//! position per row), so memory and work scale with the receptive field, not
//! with the node: on CIFAR-10 a dense row over the input has 3072 entries
//! where the window of a second-layer neuron has a few hundred.
//!
//! The arithmetic is back-substitution's (`propagate::backsubstitute`):
//! the same relaxations, rounding charges and early concretisations, over
//! the window's positions inside the node instead of the whole node.

use crate::fp::{down, gamma, Soundness, U64};
use crate::interval::Region;
use crate::ops::activation::{self, Slopes};
use crate::ops::conv;
use crate::propagate::{box_min_of, concretize_row, dot_abs, NetworkBounds};
use crate::{BoundConfig, BoundsError, Method};
use nncert_model::forward::ConvCall;
use nncert_model::{Graph, NodeId, Op, Window2d};

/// The nodes from `q` back to the input, when `q` is a convolution and the
/// path is a chain of convolutions and (leaky) ReLUs: the shape patches cover.
pub(crate) fn conv_chain(g: &Graph, q: NodeId) -> Option<Vec<NodeId>> {
    let mut chain = Vec::new();
    let mut id = q;
    ConvCall::of(g, q)?;
    loop {
        chain.push(id);
        match g.nodes[id].op {
            Op::Input => return (id == g.input).then_some(chain),
            Op::Conv2d { .. } => ConvCall::of(g, id).map(|_| ())?,
            Op::Relu | Op::LeakyRelu { .. } => {}
            _ => return None,
        }
        id = g.nodes[id].inputs[0];
    }
}

/// A block of rows over one node `[c, height, width]`: row r is `a[r]`, a
/// `[c, h, w]` window whose top-left corner sits at `origins[r]` (it may
/// hang over the node's edges; positions outside hold zeros).
struct Block {
    node: (usize, usize, usize),
    window: (usize, usize, usize),
    origins: Vec<(isize, isize)>,
    a: Vec<f64>,
}

impl Block {
    fn rows(&self) -> usize {
        self.origins.len()
    }

    fn len(&self) -> usize {
        self.window.0 * self.window.1 * self.window.2
    }

    /// Row r's coefficients.
    fn row(&self, r: usize) -> &[f64] {
        &self.a[r * self.len()..][..self.len()]
    }

    /// Row r's runs inside the node (`window_runs`).
    fn runs(&self, r: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        window_runs(self.window, self.node, self.origins[r])
    }

    /// `box_min_of` over row r's part inside the node, `lo` and `hi` over the node.
    fn box_min(&self, r: usize, lo: &[f64], hi: &[f64]) -> (f64, f64) {
        let row = self.row(r);
        self.runs(r).fold((0.0, 0.0), |(v, mag), (k, i, len)| {
            let (rv, rm) = box_min_of(&row[k..][..len], &lo[i..], &hi[i..]);
            (v + rv, mag + rm)
        })
    }

    /// `dot_abs` of row r's part inside the node with `e` over the node.
    fn dot_abs(&self, r: usize, e: &[f64]) -> f64 {
        let row = self.row(r);
        (self.runs(r))
            .map(|(k, i, len)| dot_abs(&row[k..][..len], &e[i..][..len]))
            .sum()
    }
}

/// The runs of a `[c, h, w]` window at `origin` inside a `[c, nh, nw]` node:
/// one per channel and window row that overlaps the node, as (window offset,
/// node offset, length) of positions contiguous in both, in window order.
fn window_runs(
    (c, h, w): (usize, usize, usize),
    (_, nh, nw): (usize, usize, usize),
    (oy, ox): (isize, isize),
) -> impl Iterator<Item = (usize, usize, usize)> {
    let (ys, xs) = (overlap(oy, h, nh), overlap(ox, w, nw));
    let (j0, len) = (xs.start, xs.len());
    let x0 = (ox + j0 as isize).max(0) as usize;
    (0..c)
        .flat_map(move |ch| ys.clone().map(move |i| (ch, i)))
        .filter(move |_| len > 0)
        .map(move |(ch, i)| {
            let y = (oy + i as isize) as usize;
            ((ch * h + i) * w + j0, (ch * nh + y) * nw + x0, len)
        })
}

/// The offsets `i < len` along one axis with `origin + i` inside `0..n`.
fn overlap(origin: isize, len: usize, n: usize) -> std::ops::Range<usize> {
    let end = (n as isize - origin).clamp(0, len as isize) as usize;
    ((-origin).clamp(0, len as isize) as usize).min(end)..end
}

fn chw(g: &Graph, id: NodeId) -> (usize, usize, usize) {
    match g.nodes[id].shape[..] {
        [1, c, h, w] => (c, h, w),
        _ => unreachable!("conv chains are [1, C, H, W] (checked by ConvCall::of)"),
    }
}

/// Back through convolution `id`: a transposed convolution of the windows
/// (the conv's own kernel on a virtual input just large enough, no padding),
/// then the positions over the input's edges (padding) are cleared.
fn conv_backward(g: &Graph, id: NodeId, b: Block) -> (Block, Vec<f64>) {
    let call = ConvCall::of(g, id).expect("conv chain");
    let wd = call.window;
    let (c_in, _, _) = call.in_chw;
    let (c, h, w) = b.window;
    let span =
        |n: usize, k: usize| (n - 1) * wd.stride[k] + wd.dilation[k] * (wd.kernel[k] - 1) + 1;
    let window = (c_in, span(h, 0), span(w, 1));
    let virtual_call = ConvCall {
        window: Window2d { pads: [0; 4], ..wd },
        in_chw: window,
        out_chw: (c, h, w),
        ..call
    };
    let (a, cst) = conv::backward(&virtual_call, &b.a, b.rows());
    let origins = b
        .origins
        .iter()
        .map(|&(oy, ox)| {
            (
                oy * wd.stride[0] as isize - wd.pads[0] as isize,
                ox * wd.stride[1] as isize - wd.pads[1] as isize,
            )
        })
        .collect();
    let mut out = Block {
        node: call.in_chw,
        window,
        origins,
        a,
    };
    clear_outside(&mut out);
    (out, cst)
}

fn clear_outside(b: &mut Block) {
    let n = b.len();
    for r in 0..b.rows() {
        let row = &mut b.a[r * n..][..n];
        let mut cleared = 0;
        for (k, _, len) in window_runs(b.window, b.node, b.origins[r]) {
            row[cleared..k].fill(0.0);
            cleared = k + len;
        }
        row[cleared..].fill(0.0);
    }
}

/// Lower bounds of `±z_q[j]` for every `j` of `rows` (first all the lower
/// rows `+z`, then the upper rows `−z`, as `refine` asks them), by CROWN
/// back-substitution along the conv chain `chain` (from `conv_chain`).
pub(crate) fn bound_rows(
    g: &Graph,
    chain: &[NodeId],
    rows: &[usize],
    nb: &NetworkBounds,
    region: &Region,
    cfg: &BoundConfig,
) -> Result<Vec<f64>, BoundsError> {
    let q = chain[0];
    let sound = cfg.soundness == Soundness::Float32;
    let (c, h, w) = chw(g, q);
    let s = 2 * rows.len();
    let mut b = Block {
        node: (c, h, w),
        window: (c, 1, 1),
        origins: Vec::with_capacity(s),
        a: vec![0.0; s * c],
    };
    for (r, sign) in [(0, 1.0), (rows.len(), -1.0)] {
        for (k, &j) in rows.iter().enumerate() {
            let (ch, y, x) = (j / (h * w), j / w % h, j % w);
            b.origins.push((y as isize, x as isize));
            b.a[(r + k) * c + ch] = sign;
        }
    }
    let mut sums = Sums::new(s);
    let mut early = vec![f64::NEG_INFINITY; s];
    for &id in chain {
        if cfg.deadline.expired() {
            return Err(BoundsError::Timeout);
        }
        let iv = &nb.nodes[id];
        if cfg.intersect_ibp && id != q && id != g.input {
            for (r, e) in early.iter_mut().enumerate() {
                let pending = b.box_min(r, &iv.lo, &iv.hi);
                *e = e.max(sums.pending(r, pending, iv.len(), sound));
            }
        }
        if sound && !nb.err[id].is_empty() {
            let pen: Vec<f64> = (0..s).map(|r| -b.dot_abs(r, &nb.err[id])).collect();
            sums.add(&pen);
        }
        match &g.nodes[id].op {
            Op::Input => concretize_rows(&b, region, &mut sums, sound),
            Op::Conv2d { .. } => {
                let (next, cst) = conv_backward(g, id, b);
                sums.add(&cst);
                b = next;
            }
            op @ (Op::Relu | Op::LeakyRelu { .. }) => {
                let leak = match op {
                    Op::LeakyRelu { alpha } => *alpha as f64,
                    _ => 0.0,
                };
                let cst = relu_backward(&mut b, &nb.nodes[g.nodes[id].inputs[0]], leak, cfg);
                sums.add(&cst);
            }
            _ => unreachable!("conv_chain admits convolutions and ReLUs only"),
        }
    }
    Ok((0..s).map(|r| sums.total(r, sound).max(early[r])).collect())
}

/// Each row's part inside the input concretised (`concretize_row` on the
/// row's runs gathered, with the box ends and ball centre there).
fn concretize_rows(b: &Block, region: &Region, sums: &mut Sums, sound: bool) {
    let center = region.ball.as_ref().map(|(c, _, _)| c.as_slice());
    let (mut row, mut lo, mut hi, mut ctr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..b.rows() {
        for buf in [&mut row, &mut lo, &mut hi, &mut ctr] {
            buf.clear();
        }
        for (k, i, len) in b.runs(r) {
            row.extend_from_slice(&b.row(r)[k..][..len]);
            lo.extend_from_slice(&region.bbox.lo[i..][..len]);
            hi.extend_from_slice(&region.bbox.hi[i..][..len]);
            if let Some(c) = center {
                ctr.extend_from_slice(&c[i..][..len]);
            }
        }
        let ends = (lo.as_slice(), hi.as_slice(), center.map(|_| ctr.as_slice()));
        sums.result[r] += concretize_row(&row, ends, region, region.bbox.len(), sound);
    }
}

/// The ReLU relaxation on each row's positions (CROWN's lines for lower
/// bounds: positive coefficients take the lower line, negative the upper).
fn relu_backward(b: &mut Block, x: &crate::Interval, leak: f64, cfg: &BoundConfig) -> Vec<f64> {
    let slopes = if cfg.method == Method::FastLin {
        Slopes::Parallel
    } else {
        Slopes::Adaptive
    };
    let [sl, su, bu] = activation::line_arrays(x, leak, slopes);
    let n = b.len();
    let mut cst = vec![0.0; b.rows()];
    for (r, c) in cst.iter_mut().enumerate() {
        let row = &mut b.a[r * n..][..n];
        for (k, i, len) in window_runs(b.window, b.node, b.origins[r]) {
            *c += activation::relax_row(&mut row[k..][..len], &sl[i..], &su[i..], &bu[i..]);
        }
    }
    cst
}

/// The running constant of each row, `Σ|terms|` added to it (for the
/// rounding of those additions) and the input's concretised part: the
/// bookkeeping of `backsubstitute`.
struct Sums {
    cst: Vec<f64>,
    cabs: Vec<f64>,
    result: Vec<f64>,
}

impl Sums {
    fn new(s: usize) -> Self {
        Sums {
            cst: vec![0.0; s],
            cabs: vec![0.0; s],
            result: vec![0.0; s],
        }
    }

    fn add(&mut self, c: &[f64]) {
        for (r, &v) in c.iter().enumerate() {
            self.cst[r] += v;
            self.cabs[r] += v.abs();
        }
    }

    /// `pending_bound` with one pending node whose box minimum is `(v, mag)`.
    fn pending(&self, r: usize, (v, mag): (f64, f64), n: usize, sound: bool) -> f64 {
        let total = self.result[r] + self.cst[r] + v;
        if !sound {
            return total;
        }
        let added = self.cabs[r] + self.result[r].abs() + v.abs();
        down(total - gamma(n + 1, U64) * mag - added / (1u64 << 30) as f64)
    }

    fn total(&self, r: usize, sound: bool) -> f64 {
        let v = self.result[r] + self.cst[r];
        if sound {
            down(v - (self.cabs[r] + self.result[r].abs()) / (1u64 << 30) as f64)
        } else {
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagate::{backsubstitute, propagate, Trace};
    use nncert_model::testing::random_conv_chain;
    use nncert_spec::{InputBox, InputSet, Norm, NormBall};
    use rand::{Rng, SeedableRng};

    /// Patches compute what dense back-substitution computes, in real and
    /// float32 mode, with and without the early concretisations, over
    /// boxes and balls.
    #[test]
    fn patches_equal_dense_back_substitution() {
        for seed in 0..4 {
            let g = random_conv_chain(seed);
            let mut r = rand::rngs::StdRng::seed_from_u64(seed);
            let center: Vec<f64> = (0..g.input_len()).map(|_| r.gen_range(0.0..1.0)).collect();
            let eps = 0.05;
            let sets = [
                InputSet::Box(InputBox {
                    lo: center.iter().map(|c| c - eps).collect(),
                    hi: center.iter().map(|c| c + eps).collect(),
                }),
                InputSet::Ball(NormBall {
                    center: center.clone(),
                    eps,
                    norm: Norm::L2,
                    domain: (0.0, 1.0),
                }),
            ];
            let configs = [
                (Method::Crown, Soundness::Real, true),
                (Method::Crown, Soundness::Float32, true),
                (Method::FastLin, Soundness::Float32, false),
            ];
            for set in &sets {
                for (method, soundness, intersect_ibp) in configs {
                    let cfg = BoundConfig {
                        intersect_ibp,
                        ..BoundConfig::new(method, soundness)
                    };
                    let region = Region::of(set, soundness);
                    let nb = propagate(&g, &region, &cfg).unwrap();
                    let convs = (0..g.nodes.len()).filter(|&id| ConvCall::of(&g, id).is_some());
                    for q in convs {
                        let chain = conv_chain(&g, q).expect("a conv chain");
                        let n = nb.nodes[q].len();
                        let rows: Vec<usize> = (0..n).collect();
                        let patched = bound_rows(&g, &chain, &rows, &nb, &region, &cfg).unwrap();
                        let mut spec = vec![0.0; 2 * n * n];
                        for j in 0..n {
                            spec[j * n + j] = 1.0;
                            spec[(n + j) * n + j] = -1.0;
                        }
                        let mut t = Trace::default();
                        let dense = backsubstitute(&g, q, &nb, &region, &cfg, &spec, 2 * n, &mut t)
                            .unwrap();
                        for (p, d) in patched.iter().zip(&dense) {
                            assert!(
                                (p - d).abs() <= 1e-12 * (1.0 + d.abs()),
                                "seed {seed} {method:?} {soundness:?} node {q}: {p} vs {d}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn overlap_keeps_exactly_the_offsets_inside_the_node() {
        for origin in -6isize..8 {
            for len in 0..6 {
                for n in 0..5 {
                    let want: Vec<usize> = (0..len)
                        .filter(|&i| (0..n as isize).contains(&(origin + i as isize)))
                        .collect();
                    assert_eq!(overlap(origin, len, n).collect::<Vec<_>>(), want);
                }
            }
        }
    }

    #[test]
    fn only_chains_of_convolutions_and_relus_qualify() {
        let g = random_conv_chain(0);
        let names: Vec<&str> = conv_chain(&g, 5)
            .unwrap()
            .iter()
            .map(|&id| g.nodes[id].name.as_str())
            .collect();
        assert_eq!(names, ["conv3", "leaky", "conv2", "relu1", "conv1", "x"]);
        // The linear layer and the ReLU are not convolutions.
        assert!(conv_chain(&g, g.output).is_none());
        assert!(conv_chain(&g, 2).is_none());
    }
}
