//! Local optimizers: SGD (with momentum or Nesterov momentum), Adam and
//! AdamW (with bias correction), a learning-rate schedule over a
//! federation's rounds, and optional per-example gradient clipping (for
//! robustness to outlying rows; separate from DP-SGD's).
//!
//! The optimizer's state (momentum, Adam's moments and step count) lives in
//! the model being trained and starts afresh in every federated round: each
//! round's local training starts from a fresh copy of the global model.
//! After averaging, one site's moments describe a model that no longer
//! exists, so carrying them would mix each site's own trajectory into the
//! next round's steps; resetting keeps every round a function of the global
//! model and the site's rows alone, so a site resumed after a crash needs no
//! optimizer state. This is how FedOpt's clients run (Reddi et al. 2021,
//! "Adaptive Federated Optimization", Algorithm 2: local steps from the
//! global model each round); state that should outlive a round belongs to a
//! server optimizer (FedAvgM, FedAdam: `fedopt.rs`), which every site
//! applies to the same mean.

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::fedopt::ServerOptimizer;

/// The local step rule. Written as its name (a string, in every format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum OptimizerKind {
    /// `v ← μ v + g; w ← w − lr v` (μ: `momentum`; 0 is plain SGD).
    #[default]
    Sgd,
    /// Nesterov momentum: `v ← μ v + g; w ← w − lr (g + μ v)`.
    Nesterov,
    /// Adam with bias correction; `weight_decay` is added to the gradient.
    Adam,
    /// AdamW: Adam with decoupled weight decay `w ← w − lr · wd · w`.
    AdamW,
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::Nesterov,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
    ];

    /// The name in plans and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Nesterov => "nesterov",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn adaptive(self) -> bool {
        matches!(self, OptimizerKind::Adam | OptimizerKind::AdamW)
    }
}

impl From<OptimizerKind> for String {
    fn from(k: OptimizerKind) -> String {
        k.name().to_string()
    }
}

impl TryFrom<String> for OptimizerKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        OptimizerKind::from_name(&s).ok_or_else(|| {
            format!(
                "unknown optimizer {s:?}; expected one of {}",
                OptimizerKind::ALL.map(OptimizerKind::name).join(", ")
            )
        })
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The learning rate over a federation's rounds (or, in one machine's
/// training, over its epochs).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` throughout.
    #[default]
    Constant,
    /// `lr · gamma^⌊(t − 1) / every⌋`.
    Step { every: u64, gamma: f64 },
    /// `lr · (1 + cos(π (t − 1) / T)) / 2`, from `lr` down towards 0.
    Cosine,
}

impl Schedule {
    /// The names in plans and on the command line.
    pub const NAMES: [&'static str; 3] = ["constant", "step", "cosine"];

    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Cosine => "cosine",
        }
    }

    /// The learning rate of step `t` (1-based) of `total`.
    pub fn lr(&self, lr: f64, t: u64, total: u64) -> f64 {
        let t0 = t.saturating_sub(1);
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => {
                let k = t0 / every.max(1);
                lr * gamma.powi(i32::try_from(k).unwrap_or(i32::MAX))
            }
            Schedule::Cosine => {
                let total = total.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * t0 as f64 / total).cos())
            }
        }
    }
}

/// The local optimizer's settings beyond SGD's (see [`LocalSgd`](super::LocalSgd)).
/// The default is plain SGD as before these settings existed, at a
/// constant rate without clipping, so that a plan without them means what
/// it always did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    /// Adam's decay of the first moment.
    pub beta1: f64,
    /// Adam's decay of the second moment.
    pub beta2: f64,
    /// Adam's ε.
    pub eps: f64,
    /// Weight decay (not of biases): added to the gradient (SGD, Adam) or
    /// decoupled (AdamW).
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Per-example gradient clipping to this L2 norm (0: none). Separate
    /// from DP-SGD: no noise and no accounting, only robustness to rows
    /// whose gradient is far larger than the rest.
    pub clip: f64,
    /// FedProx's proximal term `μ/2 · |w − w_global|²` (0: none): each
    /// local step is pulled back towards the model the round started from
    /// (Li et al. 2020), for sites whose rows differ.
    pub prox_mu: f64,
    /// How every site moves the global model by a round's mean (a
    /// federation's setting; one machine's training ignores it).
    pub server: ServerOptimizer,
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::PLAIN
    }
}

impl Optimizer {
    /// Plain SGD at a constant rate without clipping (the default).
    pub const PLAIN: Optimizer = Optimizer {
        kind: OptimizerKind::Sgd,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        schedule: Schedule::Constant,
        clip: 0.0,
        prox_mu: 0.0,
        server: ServerOptimizer::FEDAVG,
    };

    /// Adam with its usual constants.
    pub fn adam() -> Self {
        Optimizer {
            kind: OptimizerKind::Adam,
            ..Optimizer::default()
        }
    }

    /// Plain SGD at a constant rate without clipping (what a plan without
    /// these settings means).
    pub fn is_plain(&self) -> bool {
        *self == Optimizer::default()
    }

    pub(crate) fn validate(&self, momentum: f64) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Setting(m));
        let unit = |v: f64| v.is_finite() && (0.0..1.0).contains(&v);
        if !unit(self.beta1) || !unit(self.beta2) {
            return bad(format!(
                "beta1 and beta2 must be in [0, 1), got {} and {}",
                self.beta1, self.beta2
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps must be positive, got {}", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay must be zero or positive, got {}",
                self.weight_decay
            ));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return bad(format!(
                "clip must be zero (off) or positive, got {}",
                self.clip
            ));
        }
        if let Schedule::Step { every, gamma } = self.schedule
            && (every == 0 || !(gamma.is_finite() && gamma > 0.0 && gamma <= 1.0))
        {
            return bad(format!(
                "a step schedule needs every ≥ 1 and gamma in (0, 1], got {every} and {gamma}"
            ));
        }
        if !(self.prox_mu.is_finite() && self.prox_mu >= 0.0) {
            return bad(format!(
                "prox_mu must be zero (off) or positive, got {}",
                self.prox_mu
            ));
        }
        self.server.validate()?;
        if self.kind == OptimizerKind::Nesterov && momentum <= 0.0 {
            return bad("nesterov needs a momentum above 0 (e.g. --momentum 0.9)".into());
        }
        Ok(())
    }
}

/// The optimizer's running state for one training run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OptState {
    /// Momentum, or Adam's first moment.
    m: Vec<f64>,
    /// Adam's second moment.
    v: Vec<f64>,
    /// Adam's steps so far.
    t: i32,
    /// FedProx's anchor: the parameters training started from.
    anchor: Vec<f64>,
}

impl OptState {
    /// `grad + μ (w − w₀)`, where `w₀` (the anchor) is the parameters of
    /// this run's first step: the global model the round started from.
    fn proximal(&mut self, mu: f64, params: &[f64], grad: &[f64]) -> Vec<f64> {
        if self.anchor.len() != params.len() {
            self.anchor = params.to_vec();
        }
        grad.iter()
            .zip(params)
            .zip(&self.anchor)
            .map(|((g, w), a)| g + mu * (w - a))
            .collect()
    }
}

/// One step's settings.
pub(crate) struct Step<'a> {
    pub opt: &'a Optimizer,
    pub momentum: f64,
    pub lr: f64,
}

impl OptState {
    /// One step of `params` along `grad` (which holds the L2 term already);
    /// `decay` is `wd · w` for the weights (AdamW's decoupled decay), or
    /// empty.
    pub(crate) fn step(&mut self, s: &Step<'_>, params: &mut [f64], grad: &[f64], decay: &[f64]) {
        let n = params.len();
        let prox;
        let grad = if s.opt.prox_mu > 0.0 {
            prox = self.proximal(s.opt.prox_mu, params, grad);
            &prox[..]
        } else {
            grad
        };
        let (kind, lr, mu) = (s.opt.kind, s.lr, s.momentum);
        if kind == OptimizerKind::Sgd && mu == 0.0 {
            for (p, g) in params.iter_mut().zip(grad) {
                *p -= lr * g;
            }
            return;
        }
        if self.m.len() != n {
            self.m = vec![0.0; n];
        }
        if !kind.adaptive() {
            let nesterov = kind == OptimizerKind::Nesterov;
            for ((p, v), g) in params.iter_mut().zip(&mut self.m).zip(grad) {
                *v = mu * *v + g;
                *p -= lr * if nesterov { g + mu * *v } else { *v };
            }
            return;
        }
        if self.v.len() != n {
            self.v = vec![0.0; n];
        }
        self.t = self.t.saturating_add(1);
        let (b1, b2) = (s.opt.beta1, s.opt.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for (i, p) in params.iter_mut().enumerate() {
            let g = grad[i];
            let m = &mut self.m[i];
            let v = &mut self.v[i];
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let step = (*m / c1) / ((*v / c2).sqrt() + s.opt.eps);
            *p -= lr * (step + decay.get(i).copied().unwrap_or(0.0));
        }
    }
}
