//! `conv::backward` (back-substitution through a convolution) on the
//! shapes of the oval21 CIFAR-10 nets' layers, with dense rows (the rows of a
//! fully connected layer's bounds after its backward pass) and one-hot rows
//! (a convolution's own neurons, as intermediate bounds start), best of five.
//! `cargo bench -p nncert-bounds --bench conv_backward`

use nncert_bounds::ops::conv;
use nncert_model::forward::ConvCall;
use nncert_model::{Tensor, Window2d};
use std::time::Instant;

/// (name, in channels, out channels, input side): 4×4 kernels, stride 2, pad 1.
const LAYERS: [(&str, usize, usize, usize); 4] = [
    ("base conv1", 3, 8, 32),
    ("base conv2", 8, 16, 16),
    ("wide conv1", 3, 16, 32),
    ("wide conv2", 16, 32, 16),
];

fn tensor(shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product::<usize>();
    let data = (0..n)
        .map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6)
        .collect();
    Tensor { shape, data }
}

fn main() {
    let rows = 50;
    println!("conv::backward, {rows} dense rows: ms per call (best of 5)");
    for (name, ic, oc, side) in LAYERS {
        let (weight, bias) = (tensor(vec![oc, ic, 4, 4]), tensor(vec![oc]));
        let window = Window2d {
            kernel: [4, 4],
            stride: [2, 2],
            pads: [1, 1, 1, 1],
            dilation: [1, 1],
        };
        let out = side / 2;
        let call = ConvCall {
            weight: &weight,
            bias: Some(&bias),
            window,
            groups: 1,
            in_chw: (ic, side, side),
            out_chw: (oc, out, out),
        };
        let n = oc * out * out;
        let dense: Vec<f64> = (0..rows * n)
            .map(|i| ((i * 31) % 17) as f64 - 8.0)
            .collect();
        let one_hot_rows = n.min(512);
        let mut one_hot = vec![0.0; one_hot_rows * n];
        for r in 0..one_hot_rows {
            one_hot[r * n + r * n / one_hot_rows] = 1.0;
        }
        println!(
            "{name}: {:.3} ms dense, {:.3} ms for {one_hot_rows} one-hot rows",
            best_ms(&call, &dense, rows),
            best_ms(&call, &one_hot, one_hot_rows)
        );
    }
}

fn best_ms(call: &ConvCall, a: &[f64], rows: usize) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..10 {
                std::hint::black_box(conv::backward(call, a, rows));
            }
            t.elapsed().as_secs_f64() * 100.0
        })
        .fold(f64::MAX, f64::min)
}
