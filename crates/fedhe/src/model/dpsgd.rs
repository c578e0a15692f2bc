//! DP-SGD for any model: Poisson-sampled batches, every example's gradient
//! clipped to norm `clip`, Gaussian noise of standard deviation
//! `noise_multiplier × clip` added to the batch's sum, divided by the
//! expected batch size (Abadi et al. 2016; the sampling the accountant
//! assumes, as Opacus does). Settings and the accountant live in `privacy`.

use ndarray::{Array2, Axis};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::{Model, TrainConfig};
use crate::privacy::{DpSgd, clip_gradient, sample_rate, steps_per_epoch};

/// One DP-SGD epoch of `model` on `x`, `y`: [`steps_per_epoch`] steps, each
/// on a Poisson sample of the rows. Returns the steps taken (for the
/// accountant).
pub fn dp_epoch(
    model: &mut dyn Model,
    x: &Array2<f64>,
    y: &[f64],
    cfg: &TrainConfig,
    dp: &DpSgd,
    rng: &mut ChaCha8Rng,
) -> u64 {
    let n = x.nrows();
    let q = sample_rate(n, cfg.batch_size);
    let steps = steps_per_epoch(n, cfg.batch_size);
    let expected = (q * n as f64).max(1.0);
    let p = model.params().len();
    // A standard deviation of σ·C is finite and non-negative (validated).
    let noise = Normal::new(0.0, (dp.noise_multiplier * dp.clip).max(0.0)).ok();
    let mut sum = vec![0.0; p];
    let mut velocity = vec![0.0; p];
    for _ in 0..steps {
        sum.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            if rng.random::<f64>() >= q {
                continue;
            }
            let row = x.select(Axis(0), &[i]);
            let (_, mut g) = model.objective_gradient(&row, &y[i..=i], 0.0);
            clip_gradient(&mut g, dp.clip);
            for (s, v) in sum.iter_mut().zip(&g) {
                *s += v;
            }
        }
        if let Some(noise) = &noise {
            for s in &mut sum {
                *s += noise.sample(rng);
            }
        }
        // The noisy mean, plus the L2 term (a function of the parameters
        // only, so it costs no privacy).
        let mut grad: Vec<f64> = sum.iter().map(|s| s / expected).collect();
        model.add_l2(cfg.l2, &mut grad);
        let mut next = model.params().to_vec();
        for ((w, v), g) in next.iter_mut().zip(&mut velocity).zip(&grad) {
            *v = cfg.momentum * *v + g;
            *w -= cfg.lr * *v;
        }
        // Same length as the model's parameters, by construction.
        let _ = model.set_params(&next);
    }
    steps
}
