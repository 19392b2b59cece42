//! Winograd convolution F(m×m, r×r) (Lavin & Gray 2016) in float32: the
//! fp-exploit paper's NN_G,CWG, whose much larger rounding error its attack
//! exploits (cuDNN's WINOGRAD_NONFUSED computes 9×9 output tiles from 13×13
//! input tiles for 5×5 kernels). Sound mode does not cover this engine
//! (docs/soundness.md), so it is not among `all_engines`.
//!
//! Toom-Cook construction for correlation: with α = m + r − 1 points (α − 1
//! finite ones and ∞), `y = A^T [(G g) ⊙ (B^T d)]` where `G = V_r`,
//! `A^T = V_m^T` and `B^T = V^{-T}`, V_k the α×k evaluation matrix (row
//! `[1, p, …, p^{k−1}]` per finite point, `e_{k−1}` for ∞), V = V_α. The
//! matrices are computed in f64 and rounded to f32; everything at run time is f32.

use nncert_model::forward::ConvCall;

/// The first interpolation points: small and closely spaced, which keeps
/// F(9×9, 5×5) (12 finite points) nearer cuDNN's error than the textbook
/// order 0, ±1, ±2, ±1/2, ±3, ±1/3, 4 (docs/design.md, "Winograd points").
const FIRST_POINTS: [f64; 13] = [
    0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5, 0.75, -0.75, 0.25, -0.25,
];

/// `count` distinct interpolation points: `FIRST_POINTS`, then ±k, ±1/k
/// for k = 3, 4, …
fn points(count: usize) -> Vec<f64> {
    let mut p: Vec<f64> = FIRST_POINTS.iter().take(count).copied().collect();
    let mut k = 3.0;
    while p.len() < count {
        for v in [k, -k, 1.0 / k, -1.0 / k] {
            if p.len() < count && !p.contains(&v) {
                p.push(v);
            }
        }
        k += 1.0;
    }
    p
}

/// The α×k evaluation matrix (row-major).
fn evaluation(pts: &[f64], k: usize) -> Vec<f64> {
    let alpha = pts.len() + 1;
    let mut v = vec![0.0; alpha * k];
    for (i, &p) in pts.iter().enumerate() {
        for j in 0..k {
            v[i * k + j] = p.powi(j as i32);
        }
    }
    v[(alpha - 1) * k + k - 1] = 1.0;
    v
}

/// Inverse of an n×n matrix by Gauss–Jordan with partial pivoting.
fn inverse(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|i| f64::from(i / n == i % n)).collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| m[x * n + col].abs().total_cmp(&m[y * n + col].abs()))
            .expect("non-empty");
        for j in 0..n {
            m.swap(col * n + j, pivot * n + j);
            inv.swap(col * n + j, pivot * n + j);
        }
        let d = m[col * n + col];
        for j in 0..n {
            m[col * n + j] /= d;
            inv[col * n + j] /= d;
        }
        for row in (0..n).filter(|&r| r != col) {
            let f = m[row * n + col];
            for j in 0..n {
                m[row * n + j] -= f * m[col * n + j];
                inv[row * n + j] -= f * inv[col * n + j];
            }
        }
    }
    inv
}

/// The three transforms of F(m×m, r×r), rounded to f32.
#[derive(Clone, Debug)]
pub struct Winograd {
    pub m: usize,
    pub r: usize,
    pub alpha: usize,
    /// m×α
    at: Vec<f32>,
    /// α×r
    g: Vec<f32>,
    /// α×α
    bt: Vec<f32>,
}

impl Winograd {
    pub fn new(m: usize, r: usize) -> Winograd {
        let alpha = m + r - 1;
        let pts = points(alpha - 1);
        let (vm, vr) = (evaluation(&pts, m), evaluation(&pts, r));
        let vinv = inverse(&evaluation(&pts, alpha), alpha);
        let at = (0..m * alpha).map(|k| vm[(k % alpha) * m + k / alpha] as f32);
        // B^T = V^{-T}: B^T[i][j] = V^{-1}[j][i].
        let bt = (0..alpha * alpha).map(|k| vinv[(k % alpha) * alpha + k / alpha] as f32);
        Winograd {
            m,
            r,
            alpha,
            at: at.collect(),
            g: vr.iter().map(|&v| v as f32).collect(),
            bt: bt.collect(),
        }
    }

    /// Whether a convolution can run as F(m×m, r×r): one group, dilation 1,
    /// an r×r kernel. A stride-s convolution runs as the paper's stride-1
    /// formulation: the stride-1 convolution with the same pads, sampled at
    /// every s-th output (cuDNN's Winograd has no strided form).
    pub fn fits(&self, c: &ConvCall) -> bool {
        let w = &c.window;
        c.groups == 1 && w.dilation == [1, 1] && w.kernel == [self.r, self.r]
    }

    /// `p (a×b) · q (b×c)` in f32, summed in index order.
    fn mul(p: &[f32], q: &[f32], a: usize, b: usize, c: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; a * c];
        for i in 0..a {
            for k in 0..b {
                let v = p[i * b + k];
                for j in 0..c {
                    out[i * c + j] += v * q[k * c + j];
                }
            }
        }
        out
    }

    fn transpose(p: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|k| p[(k % rows) * cols + k / rows])
            .collect()
    }

    /// `L · X · L^T` for a k×n matrix L and an n×n X.
    fn sandwich(l: &[f32], x: &[f32], k: usize, n: usize) -> Vec<f32> {
        let lx = Self::mul(l, x, k, n, n);
        Self::mul(&lx, &Self::transpose(l, k, n), k, n, k)
    }

    /// The transformed kernels `U = G g G^T`, one α×α matrix per (out, in)
    /// channel pair (computed once per convolution, as cuDNN's NONFUSED does).
    pub fn kernel_transform(&self, c: &ConvCall) -> Vec<Vec<f32>> {
        let (r, a) = (self.r, self.alpha);
        c.weight
            .data
            .chunks(r * r)
            .map(|g| Self::sandwich(&self.g, g, a, r))
            .collect()
    }

    /// `V = B^T d B` of the α×α input tile of channel `ch` whose stride-1
    /// output tile starts at (ty, tx) (zeros outside the input).
    fn input_tile(
        &self,
        c: &ConvCall,
        xs: &[f32],
        ch: usize,
        (ty, tx): (usize, usize),
    ) -> Vec<f32> {
        let (_, ih, iw) = c.in_chw;
        let a = self.alpha;
        let [top, left, ..] = c.window.pads;
        let d: Vec<f32> = (0..a * a)
            .map(|k| {
                let py = (ty + k / a).checked_sub(top).filter(|&p| p < ih);
                let px = (tx + k % a).checked_sub(left).filter(|&p| p < iw);
                match (py, px) {
                    (Some(py), Some(px)) => xs[(ch * ih + py) * iw + px],
                    _ => 0.0,
                }
            })
            .collect();
        Self::sandwich(&self.bt, &d, a, a)
    }

    /// The convolution of a batch of `n` inputs (`fits` must hold; `u` from
    /// `kernel_transform`).
    pub fn conv(&self, c: &ConvCall, u: &[Vec<f32>], x: &[f32], n: usize) -> Vec<f32> {
        let (ic, ih, iw) = c.in_chw;
        let (oc, oh, ow) = c.out_chw;
        let (m, a) = (self.m, self.alpha);
        let [sy, sx] = c.window.stride;
        // The stride-1 outputs the strided ones are taken from.
        let (h1, w1) = ((oh - 1) * sy + 1, (ow - 1) * sx + 1);
        let mut y = vec![0.0f32; n * oc * oh * ow];
        for s in 0..n {
            let xs = &x[s * ic * ih * iw..(s + 1) * ic * ih * iw];
            for ty in (0..h1).step_by(m) {
                for tx in (0..w1).step_by(m) {
                    let v: Vec<Vec<f32>> = (0..ic)
                        .map(|ch| self.input_tile(c, xs, ch, (ty, tx)))
                        .collect();
                    for o in 0..oc {
                        let mut acc = vec![0.0f32; a * a];
                        for ch in 0..ic {
                            for (k, e) in acc.iter_mut().enumerate() {
                                *e += u[o * ic + ch][k] * v[ch][k];
                            }
                        }
                        let tile = Self::sandwich(&self.at, &acc, m, a);
                        let bias = c.bias.map_or(0.0, |b| b.data[o]);
                        let rows = (ty..(ty + m).min(h1)).filter(|p| p % sy == 0);
                        for py in rows {
                            for px in (tx..(tx + m).min(w1)).filter(|p| p % sx == 0) {
                                y[((s * oc + o) * oh + py / sy) * ow + px / sx] =
                                    tile[(py - ty) * m + px - tx] + bias;
                            }
                        }
                    }
                }
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nncert_model::forward::reference_forward;
    use nncert_model::testing::random_tensor;
    use nncert_model::{Graph, Op, Window2d};
    use rand::{Rng, SeedableRng};

    /// Small tiles are well conditioned: F(2×2, 3×3) (points 0, ±1, ∞) and
    /// F(4×4, 3×3) agree with the f64 reference to float32 accuracy, so the
    /// construction is right and the large tiles' error is conditioning.
    #[test]
    fn small_tiles_are_accurate() {
        let mut r = rand::rngs::StdRng::seed_from_u64(1);
        let mut g = Graph::with_input("x", vec![1, 2, 10, 10]);
        let op = Op::Conv2d {
            weight: random_tensor(&mut r, &[3, 2, 3, 3], 1.0),
            bias: Some(random_tensor(&mut r, &[3], 1.0)),
            window: Window2d {
                kernel: [3, 3],
                stride: [1, 1],
                pads: [1; 4],
                dilation: [1, 1],
            },
            groups: 1,
        };
        g.push("conv", op, vec![0]).unwrap();
        let c = ConvCall::of(&g, 1).unwrap();
        let x: Vec<f32> = (0..200).map(|_| r.gen_range(0.0..1.0)).collect();
        let want = reference_forward(&g, &x.iter().map(|&v| v as f64).collect::<Vec<_>>()).unwrap();
        for (m, tol) in [(2, 1e-5), (4, 1e-4)] {
            let w = Winograd::new(m, 3);
            assert!(w.fits(&c));
            let got = w.conv(&c, &w.kernel_transform(&c), &x, 1);
            for (a, b) in got.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < tol, "F({m}, 3): {a} vs {b}");
            }
        }
    }
}
