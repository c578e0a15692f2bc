//! DP-SGD's spending over a site's training rounds: what each round costs
//! and which round would pass the privacy budget.

use crate::privacy::{DpBudget, DpSettings, DpSgd, PrivacyError, PrivacyRecord, SiteSecret};

/// The privacy spent on this site's rows so far (nothing without DP-SGD).
pub(crate) struct Spending {
    budget: Option<DpBudget>,
    /// The site's DP secret and the plan (hex fingerprint) each round's
    /// seed is derived with; `None`: a fresh seed from the operating system
    /// for every round.
    secret: Option<(SiteSecret, String)>,
    /// Local epochs per round.
    epochs: u64,
    /// DP-SGD steps taken (or counted as taken).
    steps: u64,
    /// Why this site stopped training (its budget), once it did.
    stopped: Option<String>,
}

impl Spending {
    /// The budget of `rows` rows in batches of `batch_size`, over `rounds`
    /// rounds of `epochs` local epochs.
    pub(crate) fn new(
        dp: Option<&DpSettings>,
        rows: usize,
        batch_size: usize,
        rounds: u64,
        epochs: usize,
    ) -> Result<Spending, PrivacyError> {
        let epochs = epochs as u64;
        let budget = dp
            .map(|d| d.budget(rows, batch_size, rounds.saturating_mul(epochs)))
            .transpose()?;
        Ok(Spending {
            budget,
            secret: None,
            epochs,
            steps: 0,
            stopped: None,
        })
    }

    /// Derives every round's DP seed from the site's secret (kept in its
    /// state file), so a restarted site retrains a round exactly as before.
    pub(crate) fn with_secret(mut self, secret: Option<(SiteSecret, String)>) -> Spending {
        self.secret = secret;
        self
    }

    /// The clipping and noise of training round `k`, with its secret seed.
    /// A retrained round (after a restart) draws the same batches and noise
    /// and so gives the same values: the same release again, which costs
    /// no privacy; the accountant counts every round once.
    pub(crate) fn dp_for(&self, k: u64) -> Option<DpSgd> {
        self.budget.as_ref().map(|b| DpSgd {
            seed: self.secret.as_ref().map(|(s, plan)| s.round_seed(plan, k)),
            ..b.dp.clone()
        })
    }

    /// A round that closed while this site was away: the site may have
    /// trained on its rows for it before a restart, so it counts as spent,
    /// the safe side of the accountant.
    pub(crate) fn charge_round(&mut self) {
        if let Some(b) = &self.budget {
            self.steps += b.steps_per_epoch * self.epochs;
        }
    }

    /// Steps local training took.
    pub(crate) fn add(&mut self, steps: u64) {
        self.steps += steps;
    }

    /// Whether this site trains in training round `k`: not once a round
    /// would have passed the budget (the first such round says why in
    /// [`stopped`](Self::stopped)).
    pub(crate) fn allows(&mut self, k: u64) -> Result<bool, PrivacyError> {
        if let Some(b) = &self.budget {
            let next = self.steps + b.steps_per_epoch * self.epochs;
            let eps = b.epsilon(next)?;
            if let Some(max) = b.max_epsilon
                && eps > max * (1.0 + 1e-9)
                && self.stopped.is_none()
            {
                self.stopped = Some(format!(
                    "privacy budget: round {k} would bring ε to {eps:.3} > {max}; this site \
                     stopped training after round {} at ε = {:.3}",
                    k - 1,
                    b.epsilon(self.steps).unwrap_or(0.0)
                ));
            }
        }
        Ok(self.stopped.is_none())
    }

    /// ε spent so far (with DP-SGD).
    pub(crate) fn epsilon(&self) -> Option<f64> {
        self.record().map(|r| r.epsilon)
    }

    /// What the model file records of the spending so far.
    pub(crate) fn record(&self) -> Option<PrivacyRecord> {
        self.budget.as_ref().and_then(|b| b.record(self.steps))
    }

    /// Why this site stopped training before the plan's last round.
    pub(crate) fn stopped(&self) -> Option<String> {
        self.stopped.clone()
    }
}
