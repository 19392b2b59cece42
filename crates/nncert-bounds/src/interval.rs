//! Per-node interval bounds and the input region.

use crate::fp::{down, float32_enclosure, up, Soundness};
use nncert_spec::{InputSet, Norm};

/// Elementwise bounds `lo ≤ v ≤ hi` of one node's value (one sample).
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

impl Interval {
    pub fn len(&self) -> usize {
        self.lo.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lo.is_empty()
    }
    /// max(|lo|, |hi|) per element: the magnitude error terms scale with.
    pub fn magnitude(&self) -> Vec<f64> {
        self.lo
            .iter()
            .zip(&self.hi)
            .map(|(l, h)| l.abs().max(h.abs()))
            .collect()
    }
    pub fn contains(&self, v: &[f64]) -> bool {
        v.len() == self.len()
            && v.iter()
                .zip(self.lo.iter().zip(&self.hi))
                .all(|(x, (l, h))| l <= x && x <= h)
    }
    /// The tighter of two sound enclosures of the same value.
    pub fn intersect(&self, other: &Interval) -> Interval {
        Interval {
            lo: self
                .lo
                .iter()
                .zip(&other.lo)
                .map(|(a, b)| a.max(*b))
                .collect(),
            hi: self
                .hi
                .iter()
                .zip(&other.hi)
                .map(|(a, b)| a.min(*b))
                .collect(),
        }
    }
    /// Each end pushed out by `r[i]` (rounded outward).
    pub fn widened(mut self, r: &[f64]) -> Interval {
        for ((l, h), e) in self.lo.iter_mut().zip(self.hi.iter_mut()).zip(r) {
            *l = down(*l - e);
            *h = up(*h + e);
        }
        self
    }
}

/// The input region bounds are computed over: a box, optionally intersected
/// with a norm ball (CROWN concretises over both and keeps the better bound).
#[derive(Clone, Debug)]
pub struct Region {
    pub bbox: Interval,
    pub ball: Option<(Vec<f64>, f64, Norm)>,
}

impl Region {
    /// The region of an input set. In float32 mode the box grows to the next
    /// float32 outside each end and ball radii by 2⁻²⁰ (relative), covering
    /// the points a float32 reading of the constraints admits.
    pub fn of(set: &InputSet, soundness: Soundness) -> Region {
        let b = set.bounding_box();
        let bbox = match soundness {
            Soundness::Real => Interval {
                lo: b.lo.clone(),
                hi: b.hi.clone(),
            },
            Soundness::Float32 => {
                let (lo, hi) =
                    b.lo.iter()
                        .zip(&b.hi)
                        .map(|(&l, &h)| float32_enclosure(l, h))
                        .unzip();
                Interval { lo, hi }
            }
        };
        let ball = match set {
            InputSet::Ball(nb) if nb.norm != Norm::Linf => {
                let eps = match soundness {
                    Soundness::Real => nb.eps,
                    Soundness::Float32 => up(nb.eps * (1.0 + 1.0 / (1u64 << 20) as f64)),
                };
                Some((nb.center.clone(), eps, nb.norm))
            }
            _ => None,
        };
        Region { bbox, ball }
    }
}
