//! One IBP training step (loss forward + backward + Adam) of Table 1's small
//! net on a batch of 100 random 28×28 images, ε = 0.2, κ = 0.5: the unit of
//! `nncert train`'s cost. `cargo bench -p nncert-train --bench train_step`
//! prints the minimum and median over 40 steps (after 5 warm-up steps).

use candle_core::{Device, Tensor};
use nncert_train::adam::Adam;
use nncert_train::loss::{ibp_loss, LossWeights};
use nncert_train::net::Normalization;
use nncert_train::{Architecture, Net};
use std::time::Instant;

// As in the `nncert` binary, so the figures are what `nncert train` sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    nncert_train::tune_candle_threads();
    let norm = Normalization {
        mean: 0.13,
        std: 0.31,
    };
    for arch in [Architecture::Small, Architecture::Medium] {
        let net = Net::new(&arch, [1, 28, 28], 10, norm, 0)?;
        let x = Tensor::rand(0f32, 1f32, (100, 1, 28, 28), &Device::Cpu)?;
        let labels: Vec<u32> = (0..100).map(|i| i % 10).collect();
        let y = Tensor::from_vec(labels, 100, &Device::Cpu)?;
        let weights = LossWeights {
            eps: 0.2,
            kappa: 0.5,
            lambda: 0.0,
            relu_stability: 0.0,
        };
        let vars = net.vars();
        let mut adam = Adam::new(&vars)?;
        let mut times = Vec::new();
        for step in 0..45 {
            let start = Instant::now();
            let loss = ibp_loss(&net, &x, &y, weights)?;
            let grads = loss.total.backward()?;
            adam.step(&vars, &grads, 1e-4)?;
            if step >= 5 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{arch:?}: IBP step, batch 100: min {:.1} ms, median {:.1} ms",
            times[0],
            times[times.len() / 2]
        );
    }
    Ok(())
}
