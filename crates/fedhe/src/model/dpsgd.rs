//! DP-SGD for any model: Poisson-sampled batches, every example's gradient
//! clipped to norm `clip`, Gaussian noise of standard deviation
//! `noise_multiplier × clip` added to the batch's sum, divided by the
//! expected batch size (Abadi et al. 2016; the sampling the accountant
//! assumes, as Opacus does). Settings and the accountant live in `privacy`.
//!
//! The batches and the noise come from the secret [`DpRng`] only (never
//! from the public seed), and the noise is the exact discrete Gaussian on a
//! grid fine against the clip ([`NoiseGrid`]): clipped gradients are
//! rounded to the grid, summed as integers, and the integer noise added
//! before anything is a float again.

use ndarray::{Array2, Axis};

use super::{Model, TrainConfig};
use crate::privacy::{DpRng, DpSgd, NoiseGrid, clip_gradient, sample_rate, steps_per_epoch};

/// One DP-SGD epoch of `model` on `x`, `y`: [`steps_per_epoch`] steps, each
/// on a Poisson sample of the rows. Returns the steps taken (for the
/// accountant).
pub fn dp_epoch(
    model: &mut dyn Model,
    x: &Array2<f64>,
    y: &[f64],
    cfg: &TrainConfig,
    dp: &DpSgd,
    rng: &mut DpRng,
) -> u64 {
    let n = x.nrows();
    let q = sample_rate(n, cfg.batch_size);
    let steps = steps_per_epoch(n, cfg.batch_size);
    let expected = (q * n as f64).max(1.0);
    let p = model.params().len();
    let grid = NoiseGrid::new(dp.clip, dp.noise_multiplier, p);
    let mut sum = vec![0i64; p];
    let mut velocity = vec![0.0; p];
    for _ in 0..steps {
        sum.iter_mut().for_each(|v| *v = 0);
        for i in 0..n {
            if !rng.sampled(q) {
                continue;
            }
            let row = x.select(Axis(0), &[i]);
            let (_, mut g) = model.objective_gradient(&row, &y[i..=i], 0.0);
            clip_gradient(&mut g, grid.clip);
            for (s, v) in sum.iter_mut().zip(&g) {
                *s += grid.to_units(*v);
            }
        }
        // The noisy mean, plus the L2 term (a function of the parameters
        // only, so it costs no privacy).
        let mut grad: Vec<f64> = sum
            .iter()
            .map(|&s| {
                let noisy = i128::from(s) + rng.discrete_gaussian(grid.variance);
                noisy as f64 * grid.unit / expected
            })
            .collect();
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
