//! Server optimizers (Reddi et al. 2021, "Adaptive Federated
//! Optimization", Algorithm 2; FedAvgM: Hsu et al. 2019): how a round's
//! mean update moves the global model.
//!
//! The aggregator only adds ciphertexts and cannot read the mean, so every
//! site applies the server optimizer itself to the decrypted mean, from the
//! same global model and the same state. The step is element-wise
//! additions, multiplications, divisions and square roots of `f64`s in a
//! fixed order (IEEE 754 rounds each exactly; no transcendental function,
//! no reduction whose order could vary), so every site's global model is
//! bit-for-bit the same. The state (the global model, the first and second
//! moments, the round) is kept in the client state file after each round
//! ([`ServerState`]), so a restarted site resumes it exactly.

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The server's step rule. Written as its name (a string, in every format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ServerOptimizerKind {
    /// `x ← x + η Δ` (η = 1: the mean itself, FedAvg as before).
    #[default]
    FedAvg,
    /// Server momentum: `m ← β m + Δ; x ← x + η m`.
    FedAvgM,
    /// `m ← β1 m + (1 − β1) Δ; v ← β2 v + (1 − β2) Δ²; x ← x + η m / (√v + τ)`.
    FedAdam,
    /// As FedAdam with `v ← v − (1 − β2) Δ² sign(v − Δ²)`.
    FedYogi,
    /// As FedAdam with `v ← v + Δ²`.
    FedAdagrad,
}

impl ServerOptimizerKind {
    pub const ALL: [ServerOptimizerKind; 5] = [
        ServerOptimizerKind::FedAvg,
        ServerOptimizerKind::FedAvgM,
        ServerOptimizerKind::FedAdam,
        ServerOptimizerKind::FedYogi,
        ServerOptimizerKind::FedAdagrad,
    ];

    /// The name in plans and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServerOptimizerKind::FedAvg => "fedavg",
            ServerOptimizerKind::FedAvgM => "fedavgm",
            ServerOptimizerKind::FedAdam => "fedadam",
            ServerOptimizerKind::FedYogi => "fedyogi",
            ServerOptimizerKind::FedAdagrad => "fedadagrad",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The server learning rate without `server_lr`: chosen by measurement
    /// (digits, 8 sites at Dirichlet 0.1, local SGD at lr 0.1; medians over
    /// 3 seeds in docs/models.md).
    pub fn default_lr(self) -> f64 {
        match self {
            ServerOptimizerKind::FedAvg | ServerOptimizerKind::FedAvgM => 1.0,
            ServerOptimizerKind::FedAdam | ServerOptimizerKind::FedYogi => 0.1,
            ServerOptimizerKind::FedAdagrad => 0.3,
        }
    }

    /// Whether local training should default to plain SGD with this rule:
    /// every rule but FedAvg (Reddi et al.'s clients run SGD; an adaptive
    /// step at both ends measured worse, docs/models.md).
    pub fn wants_plain_sgd(self) -> bool {
        self != ServerOptimizerKind::FedAvg
    }

    fn adaptive(self) -> bool {
        matches!(
            self,
            ServerOptimizerKind::FedAdam
                | ServerOptimizerKind::FedYogi
                | ServerOptimizerKind::FedAdagrad
        )
    }
}

impl From<ServerOptimizerKind> for String {
    fn from(k: ServerOptimizerKind) -> String {
        k.name().to_string()
    }
}

impl TryFrom<String> for ServerOptimizerKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ServerOptimizerKind::from_name(&s).ok_or_else(|| {
            format!(
                "unknown server optimizer {s:?}; expected one of {}",
                ServerOptimizerKind::ALL
                    .map(ServerOptimizerKind::name)
                    .join(", ")
            )
        })
    }
}

impl std::fmt::Display for ServerOptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The server optimizer's settings. The default is FedAvg at η = 1 (the
/// global model is the mean, as before these settings existed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOptimizer {
    pub kind: ServerOptimizerKind,
    /// The server learning rate η.
    pub lr: f64,
    /// FedAvgM's momentum β.
    pub momentum: f64,
    /// FedAdam's, FedYogi's and FedAdagrad's β1 (first moment).
    pub beta1: f64,
    /// FedAdam's and FedYogi's β2 (second moment).
    pub beta2: f64,
    /// The adaptivity τ (and `v`'s start, τ²).
    pub tau: f64,
}

impl Default for ServerOptimizer {
    fn default() -> Self {
        ServerOptimizer::FEDAVG
    }
}

impl ServerOptimizer {
    /// FedAvg: the global model is the mean of the sites' models.
    pub const FEDAVG: ServerOptimizer = ServerOptimizer {
        kind: ServerOptimizerKind::FedAvg,
        lr: 1.0,
        momentum: 0.5,
        beta1: 0.9,
        beta2: 0.99,
        tau: 1e-3,
    };

    /// `kind` at its default learning rate and constants.
    pub fn of(kind: ServerOptimizerKind) -> Self {
        ServerOptimizer {
            kind,
            lr: kind.default_lr(),
            ..ServerOptimizer::FEDAVG
        }
    }

    /// FedAvg at η = 1 (what a plan without these settings means).
    pub fn is_fedavg(&self) -> bool {
        *self == ServerOptimizer::FEDAVG
    }

    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Setting(m));
        let unit = |v: f64| v.is_finite() && (0.0..1.0).contains(&v);
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "the server learning rate must be positive, got {}",
                self.lr
            ));
        }
        if !unit(self.momentum) || !unit(self.beta1) || !unit(self.beta2) {
            return bad(format!(
                "the server's momentum, beta1 and beta2 must be in [0, 1), got {}, {} and {}",
                self.momentum, self.beta1, self.beta2
            ));
        }
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return bad(format!(
                "the server's tau must be positive, got {}",
                self.tau
            ));
        }
        Ok(())
    }

    /// One server step: moves `global` (the model every site held before
    /// the round) by the round's `mean` (the mean of the sites' models)
    /// and advances `state` to `round`. Deterministic (see the module).
    pub fn step(&self, state: &mut ServerState, round: u64, global: &mut [f64], mean: &[f64]) {
        state.round = round;
        let n = global.len().min(mean.len());
        let (eta, kind) = (self.lr, self.kind);
        if kind == ServerOptimizerKind::FedAvg {
            if eta == 1.0 {
                // Exactly the mean, as FedAvg always was.
                global[..n].copy_from_slice(&mean[..n]);
            } else {
                for (x, m) in global.iter_mut().zip(mean) {
                    *x += eta * (m - *x);
                }
            }
            return;
        }
        if state.m.len() != n {
            state.m = vec![0.0; n];
        }
        if kind == ServerOptimizerKind::FedAvgM {
            for ((x, m), mu) in global.iter_mut().zip(&mut state.m).zip(mean) {
                *m = self.momentum * *m + (mu - *x);
                *x += eta * *m;
            }
            return;
        }
        debug_assert!(kind.adaptive());
        if state.v.len() != n {
            state.v = vec![self.tau * self.tau; n];
        }
        let (b1, b2, tau) = (self.beta1, self.beta2, self.tau);
        for i in 0..n {
            let d = mean[i] - global[i];
            let d2 = d * d;
            let m = b1 * state.m[i] + (1.0 - b1) * d;
            let v = state.v[i];
            let v = match kind {
                ServerOptimizerKind::FedYogi => v - (1.0 - b2) * d2 * sign(v - d2),
                ServerOptimizerKind::FedAdagrad => v + d2,
                _ => b2 * v + (1.0 - b2) * d2,
            };
            state.m[i] = m;
            state.v[i] = v;
            global[i] += eta * m / (v.sqrt() + tau);
        }
    }
}

/// `sign(x)` with `sign(0) = 0`, as Yogi's update.
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The server optimizer's state after a round: the global model it moved
/// and its moments. Kept in the client state file, the floats as their
/// exact bits (JSON's decimal floats need not read back bit-for-bit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    /// The training round this state is after (1-based; 0: none yet).
    pub round: u64,
    /// The global model after `round`.
    #[serde(with = "bits")]
    pub global: Vec<f64>,
    /// First moment (FedAvgM's momentum; empty for FedAvg).
    #[serde(with = "bits", default)]
    pub m: Vec<f64>,
    /// Second moment (FedAdam, FedYogi, FedAdagrad).
    #[serde(with = "bits", default)]
    pub v: Vec<f64>,
}

/// `Vec<f64>` as the `u64` bit patterns of its values.
mod bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.to_bits())
            .collect::<Vec<u64>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reddi et al.'s FedAdam, FedYogi and FedAdagrad, FedAvgM and FedAvg
    /// take their documented first step from a zero state.
    #[test]
    fn first_steps_follow_the_paper() {
        let mean = [1.0, -2.0];
        let step = |kind| {
            let mut g = vec![0.0, 0.0];
            let mut st = ServerState::default();
            ServerOptimizer {
                lr: 0.5,
                ..ServerOptimizer::of(kind)
            }
            .step(&mut st, 1, &mut g, &mean);
            (g, st)
        };
        assert_eq!(step(ServerOptimizerKind::FedAvg).0, vec![0.5, -1.0]);
        assert_eq!(step(ServerOptimizerKind::FedAvgM).0, vec![0.5, -1.0]);
        let (adam, st) = step(ServerOptimizerKind::FedAdam);
        let tau = 1e-3;
        let v0 = 0.99 * (tau * tau) + (1.0 - 0.99) * 1.0;
        assert_eq!(st.v[0], v0);
        assert_eq!(adam[0], 0.5 * ((1.0 - 0.9) * 1.0) / (v0.sqrt() + tau));
        let (ada, st) = step(ServerOptimizerKind::FedAdagrad);
        assert_eq!(st.v[1], tau * tau + 4.0);
        assert_eq!(
            ada[1],
            0.5 * ((1.0 - 0.9) * -2.0) / ((tau * tau + 4.0f64).sqrt() + tau)
        );
        let (_, st) = step(ServerOptimizerKind::FedYogi);
        // v0 = τ² < Δ²: Yogi adds (1 − β2) Δ².
        assert_eq!(st.v[0], tau * tau + (1.0 - 0.99));
        let json = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<ServerState>(&json).unwrap(), st);
    }
}
