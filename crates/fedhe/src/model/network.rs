//! A dense feed-forward network with ReLU hidden layers and a task head —
//! with no hidden layer it is logistic, softmax or linear regression. The
//! parameters are one flat vector (what a federation averages): per layer
//! the weights (inputs × outputs, row-major) then the biases.
//!
//! Batches are matrix products (ndarray's `general_mat_mul`, which picks
//! AVX/FMA kernels at run time), so an epoch costs a few gemm calls per
//! batch rather than a loop per row.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, s};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::head::Head;
use super::optim::{OptState, OptimizerKind, Step};
use super::{Architecture, Model, ModelError, TrainConfig};

/// Rows per forward pass when scoring a whole data set (bounds memory).
const CHUNK_ROWS: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    architecture: Architecture,
    /// Inputs, hidden sizes, outputs.
    sizes: Vec<usize>,
    head: Head,
    params: Vec<f64>,
    /// The optimizer's state while it trains (empty in a fresh model).
    state: OptState,
}

/// Activations and gradients of one batch, reused across batches.
struct Workspace {
    /// Per layer input (layer 0: the batch), then the outputs.
    acts: Vec<Array2<f64>>,
    /// d loss / d (pre-activation) of the current layer.
    delta: Array2<f64>,
    grad: Vec<f64>,
}

impl Network {
    /// All parameters zero (the linear models' start).
    pub(crate) fn zeros(architecture: Architecture, sizes: Vec<usize>, head: Head) -> Network {
        let n = param_count(&sizes);
        Network {
            architecture,
            sizes,
            head,
            params: vec![0.0; n],
            state: OptState::default(),
        }
    }

    /// He-uniform hidden layers, Glorot-uniform output layer, zero biases,
    /// drawn from `seed` (every site of a federation starts the same).
    pub(crate) fn seeded(
        architecture: Architecture,
        sizes: Vec<usize>,
        head: Head,
        seed: u64,
    ) -> Network {
        let mut net = Network::zeros(architecture, sizes, head);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4D4C_5049_4E49_5400);
        let layers = net.sizes.len() - 1;
        let mut off = 0;
        for l in 0..layers {
            let (i, o) = (net.sizes[l], net.sizes[l + 1]);
            let bound = if l + 1 < layers {
                (6.0 / i.max(1) as f64).sqrt()
            } else {
                (6.0 / (i + o).max(1) as f64).sqrt()
            };
            for w in &mut net.params[off..off + i * o] {
                *w = rng.random_range(-bound..bound);
            }
            off += i * o + o;
        }
        net
    }

    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Offsets of layer `l`'s weights and biases in `params`.
    fn offsets(&self, l: usize) -> (usize, usize) {
        let mut off = 0;
        for k in 0..l {
            off += self.sizes[k] * self.sizes[k + 1] + self.sizes[k + 1];
        }
        (off, off + self.sizes[l] * self.sizes[l + 1])
    }

    fn weights(&self, l: usize) -> ArrayView2<'_, f64> {
        let (w, b) = self.offsets(l);
        let shape = (self.sizes[l], self.sizes[l + 1]);
        // The slice has exactly rows × cols values by construction of
        // `offsets` and `param_count`.
        ArrayView2::from_shape(shape, &self.params[w..b]).unwrap_or_else(|_| unreachable!())
    }

    fn workspace(&self, rows: usize) -> Workspace {
        Workspace {
            acts: self
                .sizes
                .iter()
                .map(|&n| Array2::zeros((rows, n)))
                .collect(),
            delta: Array2::zeros((rows, 0)),
            grad: vec![0.0; self.params.len()],
        }
    }

    /// Forward pass of `ws.acts[0]` (its first `rows` rows).
    fn forward(&self, ws: &mut Workspace) {
        let layers = self.layers();
        for l in 0..layers {
            let (_, b) = self.offsets(l);
            let out = self.sizes[l + 1];
            let bias = &self.params[b..b + out];
            let (before, after) = ws.acts.split_at_mut(l + 1);
            let input = &before[l];
            let next = &mut after[0];
            for mut row in next.rows_mut() {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v = *b);
            }
            general_mat_mul(1.0, input, &self.weights(l), 1.0, next);
            if l + 1 < layers {
                next.mapv_inplace(|v| v.max(0.0));
            }
        }
    }

    /// Loss (weighted by `row_weights`, summed) of the batch in
    /// `ws.acts[0]`, and its gradient (also summed, without L2) in `ws.grad`.
    fn backward(&self, ws: &mut Workspace, y: &[f64], row_weights: Option<&[f64]>) -> f64 {
        self.forward(ws);
        let layers = self.layers();
        let rows = ws.acts[0].nrows();
        let outs = self.sizes[layers];
        let mut loss = 0.0;
        ws.delta = Array2::zeros((rows, outs));
        for (i, (z, mut d)) in ws.acts[layers]
            .rows()
            .into_iter()
            .zip(ws.delta.rows_mut())
            .enumerate()
        {
            let (Some(z), Some(d)) = (z.as_slice(), d.as_slice_mut()) else {
                continue;
            };
            let w = row_weights.map_or(1.0, |r| r[i]);
            loss += w * self.head.loss_grad(z, y[i], d);
            if w != 1.0 {
                d.iter_mut().for_each(|g| *g *= w);
            }
        }
        ws.grad.iter_mut().for_each(|g| *g = 0.0);
        for l in (0..layers).rev() {
            let (wo, bo) = self.offsets(l);
            let (inp, out) = (self.sizes[l], self.sizes[l + 1]);
            {
                let (gw, gb) = ws.grad[wo..bo + out].split_at_mut(inp * out);
                let mut gw =
                    ArrayViewMut2::from_shape((inp, out), gw).unwrap_or_else(|_| unreachable!());
                general_mat_mul(1.0, &ws.acts[l].t(), &ws.delta, 0.0, &mut gw);
                for (g, col) in gb.iter_mut().zip(ws.delta.axis_iter(Axis(1))) {
                    *g = col.sum();
                }
            }
            if l > 0 {
                let mut prev = Array2::zeros((rows, inp));
                general_mat_mul(1.0, &ws.delta, &self.weights(l).t(), 0.0, &mut prev);
                // ReLU: no gradient where the unit was off.
                prev.zip_mut_with(&ws.acts[l], |d, &a| {
                    if a <= 0.0 {
                        *d = 0.0;
                    }
                });
                ws.delta = prev;
            }
        }
        loss
    }

    /// Adds `l2 · w` for every weight (not the biases) to `grad`, and
    /// returns `l2 / 2 · |w|²`.
    fn add_l2(&self, l2: f64, grad: &mut [f64]) -> f64 {
        if l2 == 0.0 {
            return 0.0;
        }
        let mut penalty = 0.0;
        for l in 0..self.layers() {
            let (w, b) = self.offsets(l);
            for (g, p) in grad[w..b].iter_mut().zip(&self.params[w..b]) {
                *g += l2 * p;
                penalty += p * p;
            }
        }
        0.5 * l2 * penalty
    }
}

/// Parameters of a network with these layer sizes.
impl Network {
    /// The mean of the batch's per-example gradients, each clipped to L2
    /// norm `clip` (row weights scale a row's gradient before clipping).
    fn clipped_gradient(
        &self,
        x: &Array2<f64>,
        y: &[f64],
        row_weights: Option<&[f64]>,
        rows: &[usize],
        clip: f64,
    ) -> Vec<f64> {
        let mut ws = self.workspace(1);
        let mut sum = vec![0.0; self.params.len()];
        for &i in rows {
            copy_rows(x, &[i], &mut ws.acts[0]);
            let w = row_weights.map(|r| &r[i..=i]);
            self.backward(&mut ws, &y[i..=i], w);
            let norm = ws.grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            let s = if norm > clip { clip / norm } else { 1.0 };
            for (a, g) in sum.iter_mut().zip(&ws.grad) {
                *a += s * g;
            }
        }
        let n = rows.len().max(1) as f64;
        sum.iter_mut().for_each(|a| *a /= n);
        sum
    }
}

pub(crate) fn param_count(sizes: &[usize]) -> usize {
    sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

fn copy_rows(x: &Array2<f64>, rows: &[usize], into: &mut Array2<f64>) {
    for (mut dst, &i) in into.rows_mut().into_iter().zip(rows) {
        dst.assign(&x.row(i));
    }
}

impl Model for Network {
    fn architecture(&self) -> Architecture {
        self.architecture.clone()
    }

    fn head(&self) -> Head {
        self.head
    }

    fn inputs(&self) -> usize {
        self.sizes[0]
    }

    fn params(&self) -> &[f64] {
        &self.params
    }

    fn set_params(&mut self, params: &[f64]) -> Result<(), ModelError> {
        if params.len() != self.params.len() {
            return Err(ModelError::Shape(format!(
                "expected {} parameters for layers {:?}, got {}",
                self.params.len(),
                self.sizes,
                params.len()
            )));
        }
        self.params.copy_from_slice(params);
        Ok(())
    }

    fn outputs(&self, x: &Array2<f64>) -> Array2<f64> {
        let n = x.nrows();
        let outs = self.head.outputs();
        let mut result = Array2::zeros((n, outs));
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK_ROWS).min(n);
            let mut ws = self.workspace(end - start);
            ws.acts[0].assign(&x.slice(s![start..end, ..]));
            self.forward(&mut ws);
            result
                .slice_mut(s![start..end, ..])
                .assign(&ws.acts[self.layers()]);
            start = end;
        }
        result
    }

    fn objective_gradient(&self, x: &Array2<f64>, y: &[f64], l2: f64) -> (f64, Vec<f64>) {
        let n = x.nrows().max(1) as f64;
        let mut ws = self.workspace(x.nrows());
        ws.acts[0].assign(x);
        let loss = self.backward(&mut ws, y, None);
        let mut grad: Vec<f64> = ws.grad.iter().map(|g| g / n).collect();
        let penalty = self.add_l2(l2, &mut grad);
        (loss / n + penalty, grad)
    }

    fn fit_epoch(
        &mut self,
        x: &Array2<f64>,
        y: &[f64],
        row_weights: Option<&[f64]>,
        order: &[usize],
        cfg: &TrainConfig,
    ) {
        let batch = cfg.batch_size.max(1);
        let mut ws = self.workspace(batch);
        let mut yb = vec![0.0; batch];
        let mut wb = vec![0.0; batch];
        let opt = &cfg.optimizer;
        let step = Step {
            opt,
            momentum: cfg.momentum,
            lr: cfg.lr,
        };
        let mut decay = Vec::new();
        for rows in order.chunks(batch) {
            let mut grad = if opt.clip > 0.0 {
                self.clipped_gradient(x, y, row_weights, rows, opt.clip)
            } else {
                if rows.len() != ws.acts[0].nrows() {
                    ws = self.workspace(rows.len());
                }
                copy_rows(x, rows, &mut ws.acts[0]);
                for (k, &i) in rows.iter().enumerate() {
                    yb[k] = y[i];
                    if let Some(r) = row_weights {
                        wb[k] = r[i];
                    }
                }
                let weights = row_weights.map(|_| &wb[..rows.len()]);
                self.backward(&mut ws, &yb[..rows.len()], weights);
                let scale = 1.0 / rows.len() as f64;
                ws.grad.iter().map(|g| g * scale).collect()
            };
            self.add_l2(cfg.l2, &mut grad);
            if opt.kind == OptimizerKind::AdamW {
                decay.clear();
                decay.resize(grad.len(), 0.0);
                self.add_l2(opt.weight_decay, &mut decay);
            } else {
                self.add_l2(opt.weight_decay, &mut grad);
            }
            let mut state = std::mem::take(&mut self.state);
            state.step(&step, &mut self.params, &grad, &decay);
            self.state = state;
        }
    }

    fn add_l2(&self, l2: f64, grad: &mut [f64]) -> f64 {
        Network::add_l2(self, l2, grad)
    }

    fn clone_box(&self) -> Box<dyn Model> {
        Box::new(self.clone())
    }
}
