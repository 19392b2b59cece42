//! A dense row-major float32 tensor: how weights are stored (the precision ONNX gives).

use serde::{Deserialize, Serialize};

/// Row-major float32 tensor. `data` is skipped by serde because the native
/// format keeps tensor data in safetensors, next to the JSON graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    #[serde(skip)]
    pub data: Vec<f32>,
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The shape both `a` and `b` broadcast to (ONNX/numpy multidirectional rules).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// For each flat index of `target`, the flat index into a tensor of shape
/// `from` that broadcasts to it. `from` must broadcast to `target`.
pub fn broadcast_index_map(from: &[usize], target: &[usize]) -> Vec<usize> {
    let n = target.len();
    let offset = n - from.len();
    let from_strides = strides(from);
    let total = numel(target);
    let mut map = Vec::with_capacity(total);
    let mut idx = vec![0usize; n];
    for _ in 0..total {
        let mut flat = 0;
        for (k, &fd) in from.iter().enumerate() {
            if fd != 1 {
                flat += idx[k + offset] * from_strides[k];
            }
        }
        map.push(flat);
        for d in (0..n).rev() {
            idx[d] += 1;
            if idx[d] < target[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    map
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(numel(&shape), data.len());
        Tensor { shape, data }
    }

    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = numel(&shape);
        Tensor::new(shape, vec![0.0; n])
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// This tensor broadcast (copied) to `target`, or None if incompatible.
    pub fn broadcast_to(&self, target: &[usize]) -> Option<Tensor> {
        if broadcast_shape(&self.shape, target)? != target {
            return None;
        }
        let map = broadcast_index_map(&self.shape, target);
        Some(Tensor::new(
            target.to_vec(),
            map.iter().map(|&i| self.data[i]).collect(),
        ))
    }

    /// Transpose of a 2-D tensor.
    pub fn transpose2d(&self) -> Tensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        Tensor::new(vec![c, r], out)
    }

    /// Whether every element equals the first (a per-tensor constant).
    pub fn is_uniform(&self) -> bool {
        self.data.windows(2).all(|w| w[0] == w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shape(&[1, 3, 1], &[4]), Some(vec![1, 3, 4]));
        assert_eq!(broadcast_shape(&[1, 3, 1], &[4, 1]), None);
        assert_eq!(broadcast_shape(&[2], &[3]), None);
        let t = Tensor::new(vec![3, 1], vec![1.0, 2.0, 3.0]);
        let b = t.broadcast_to(&[3, 2]).unwrap();
        assert_eq!(b.data, vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert!(t.broadcast_to(&[2, 2]).is_none());
    }

    #[test]
    fn transpose_twice_is_identity() {
        let t = Tensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect());
        assert_eq!(t.transpose2d().transpose2d(), t);
        assert_eq!(t.transpose2d().data, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }
}
