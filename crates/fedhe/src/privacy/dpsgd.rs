//! DP-SGD's settings and bookkeeping: the clip and noise multiplier, the
//! Poisson sample rate and steps the accountant assumes, per-example
//! clipping, a site's resolved budget and what a model file records. The
//! training step itself is a model concern (`model::dp_epoch`); this module
//! is a leaf below `model` and `plan`.

use serde::{Deserialize, Serialize};

/// DP-SGD settings of local training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpSgd {
    /// Per-example gradient norm bound C.
    pub clip: f64,
    /// σ: the noise's standard deviation is σ·C.
    pub noise_multiplier: f64,
    /// The secret key of the batches and the noise (never written
    /// anywhere with the settings); `None`: a fresh one from the operating
    /// system for every training run.
    #[serde(skip)]
    pub seed: Option<super::DpSeed>,
}

/// Sample rate of Poisson batches: expected batch size over rows.
pub fn sample_rate(rows: usize, batch_size: usize) -> f64 {
    (batch_size as f64 / rows.max(1) as f64).min(1.0)
}

/// Steps in one epoch: rows over the expected batch size (at least 1).
pub fn steps_per_epoch(rows: usize, batch_size: usize) -> u64 {
    ((rows as f64 / batch_size.max(1) as f64).round() as u64).max(1)
}

/// Scales `g` to norm at most `clip`; returns the norm before clipping.
pub fn clip_gradient(g: &mut [f64], clip: f64) -> f64 {
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > clip && norm > 0.0 {
        let s = clip / norm;
        g.iter_mut().for_each(|v| *v *= s);
    }
    norm
}

/// DP-SGD as a plan or a command asks for it: the clip, and either the
/// noise multiplier or the ε to reach by the end of training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSettings {
    /// Per-example gradient norm bound C.
    pub clip: f64,
    /// σ (give this or `target_epsilon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_multiplier: Option<f64>,
    /// The ε that all of training may spend; σ is chosen to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_epsilon: Option<f64>,
    /// With `noise_multiplier`: training stops before ε would pass this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epsilon: Option<f64>,
    /// δ; default min(1e-5, 1 / (10 · the site's training rows)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
}

impl DpSettings {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(format!("clip = {} must be positive", self.clip));
        }
        match (self.noise_multiplier, self.target_epsilon) {
            (Some(s), None) if s.is_finite() && s >= 0.0 => {}
            (None, Some(e)) if e.is_finite() && e > 0.0 => {}
            (Some(_), Some(_)) | (None, None) => {
                return Err("give either noise_multiplier or target_epsilon".into());
            }
            (Some(s), None) => return Err(format!("noise_multiplier = {s} must be ≥ 0")),
            (None, Some(e)) => return Err(format!("target_epsilon = {e} must be positive")),
        }
        if let Some(d) = self.delta
            && !(d > 0.0 && d < 1.0)
        {
            return Err(format!("delta = {d} must be between 0 and 1"));
        }
        if let Some(m) = self.max_epsilon
            && !(m.is_finite() && m > 0.0)
        {
            return Err(format!("max_epsilon = {m} must be positive"));
        }
        Ok(())
    }

    /// The least ε a site of `rows` training rows can spend over `epochs`
    /// epochs at the largest noise multiplier (`noise_multiplier_for`'s
    /// bound): a `target_epsilon` below it is unreachable there.
    pub fn epsilon_floor(
        &self,
        rows: usize,
        batch_size: usize,
        epochs: u64,
    ) -> Result<f64, super::PrivacyError> {
        let q = sample_rate(rows, batch_size);
        let steps = steps_per_epoch(rows, batch_size).saturating_mul(epochs);
        let delta = self
            .delta
            .unwrap_or_else(|| (0.1 / rows.max(1) as f64).min(1e-5));
        super::epsilon(q, super::accountant::MAX_NOISE_MULTIPLIER, steps, delta).map(|p| p.epsilon)
    }

    /// Refuses a `target_epsilon` below [`epsilon_floor`](Self::epsilon_floor)
    /// for a site of `rows` rows (no noise multiplier reaches it there).
    pub fn check_reachable(
        &self,
        rows: usize,
        batch_size: usize,
        epochs: u64,
    ) -> Result<(), super::PrivacyError> {
        let Some(target) = self.target_epsilon else {
            return Ok(());
        };
        let reached = self.epsilon_floor(rows, batch_size, epochs)?;
        if target < reached {
            return Err(super::PrivacyError::Unreachable {
                target,
                max: super::accountant::MAX_NOISE_MULTIPLIER,
                reached,
            });
        }
        Ok(())
    }

    /// The DP-SGD of a site with `rows` training rows, batches of
    /// `batch_size` and `epochs` epochs in all (every round together).
    pub fn budget(
        &self,
        rows: usize,
        batch_size: usize,
        epochs: u64,
    ) -> Result<DpBudget, super::PrivacyError> {
        let q = sample_rate(rows, batch_size);
        let per_epoch = steps_per_epoch(rows, batch_size);
        // Well below 1/rows: (ε, 1/rows) would allow publishing a row.
        let delta = self
            .delta
            .unwrap_or_else(|| (0.1 / rows.max(1) as f64).min(1e-5));
        let total = per_epoch.saturating_mul(epochs);
        let (sigma, max_epsilon) = match (self.noise_multiplier, self.target_epsilon) {
            (Some(s), _) => (s, self.max_epsilon),
            (None, Some(e)) => (super::noise_multiplier_for(q, total, delta, e)?, Some(e)),
            (None, None) => (0.0, self.max_epsilon),
        };
        Ok(DpBudget {
            dp: DpSgd {
                clip: self.clip,
                noise_multiplier: sigma,
                seed: None,
            },
            delta,
            sample_rate: q,
            steps_per_epoch: per_epoch,
            max_epsilon,
        })
    }
}

/// DP-SGD resolved for one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpBudget {
    pub dp: DpSgd,
    pub delta: f64,
    pub sample_rate: f64,
    pub steps_per_epoch: u64,
    /// Training stops before ε would pass this.
    pub max_epsilon: Option<f64>,
}

impl DpBudget {
    /// ε after `steps` steps.
    pub fn epsilon(&self, steps: u64) -> Result<f64, super::PrivacyError> {
        super::epsilon(
            self.sample_rate,
            self.dp.noise_multiplier,
            steps,
            self.delta,
        )
        .map(|p| p.epsilon)
    }

    /// What a model file records after `steps` steps.
    pub fn record(&self, steps: u64) -> Option<PrivacyRecord> {
        self.epsilon(steps).ok().map(|epsilon| PrivacyRecord {
            epsilon,
            delta: self.delta,
            noise_multiplier: self.dp.noise_multiplier,
            clip: self.dp.clip,
            sample_rate: self.sample_rate,
            steps,
        })
    }
}

/// What a model file records of DP-SGD training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacyRecord {
    pub epsilon: f64,
    pub delta: f64,
    pub noise_multiplier: f64,
    pub clip: f64,
    pub sample_rate: f64,
    pub steps: u64,
}
