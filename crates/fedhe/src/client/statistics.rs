//! The statistics round (federated standardization): numeric sums, sums of
//! squares and present counts, category counts, rows and a regression's
//! target, limb-encoded and summed; every site fits the same `Encoder` and
//! standardization from the sum.

use crate::data::{Dataset, Encoder, RawColumn, RawStats, Standardizer, TaskKind};
use crate::model::TargetScaling;

use super::error::{LoopError, SiteError, SumError};
use super::exchange::RoundSum;
use super::limbs::{STAT_LIMBS, decode_limbs, encode_limbs};
use super::report::ClientEvent;
use super::round_loop::{LoopConfig, Next, RoundCtx, RoundKind};

/// The preprocessing every site fitted on the federation's statistics.
pub(crate) struct Prepared {
    pub encoder: Encoder,
    pub scaler: Standardizer,
    /// A regression target's federated scaling.
    pub target_scaling: Option<TargetScaling>,
    /// Training rows of the whole federation.
    pub global_rows: f64,
    /// The federation's statistics the preprocessing was fitted on (the
    /// trees' bins span their means and deviations).
    pub stats: RawStats,
}

/// The one statistics round; leaves the fitted [`Prepared`].
pub(crate) struct StatisticsRound<'a> {
    columns: &'a [RawColumn],
    regression: bool,
    /// This site's statistics, in `RawStats::to_vec`'s layout.
    values: Vec<f64>,
    limb_bits: i32,
    cfg: &'a LoopConfig,
    prepared: Option<Prepared>,
}

impl<'a> StatisticsRound<'a> {
    /// The round for the site's training rows `train`, limb-encoded in
    /// `limb_bits`; refuses statistics beyond what the limbs hold.
    pub(crate) fn new(
        train: &'a Dataset,
        cfg: &'a LoopConfig,
        limb_bits: i32,
    ) -> Result<Self, SiteError> {
        let regression = train.label.kind() == TaskKind::Regression;
        let local = RawStats::of(&train.columns, &train.x, regression.then_some(&train.y));
        let values = local.to_vec();
        check_range(&values, &train.columns, limb_bits)?;
        Ok(StatisticsRound {
            columns: &train.columns,
            regression,
            values,
            limb_bits,
            cfg,
            prepared: None,
        })
    }
}

impl RoundKind for StatisticsRound<'_> {
    type Output = Prepared;

    fn next(mut self, _ctx: &RoundCtx<'_>) -> Next<Self> {
        match self.prepared.take() {
            Some(p) => Next::Done(p),
            None => Next::Round(self),
        }
    }

    fn len(&self) -> usize {
        self.values.len() * STAT_LIMBS
    }

    fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        Ok(encode_limbs(&self.values, self.limb_bits))
    }

    fn take(&mut self, sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        let limbs = decode_limbs(&sum.values, self.limb_bits)?;
        let global = RawStats::from_vec(self.columns, self.regression, &limbs).map_err(|_| {
            SumError::StatisticsLayout {
                got: limbs.len(),
                want: RawStats::len(self.columns, self.regression),
            }
        })?;
        let cfg = self.cfg;
        let mut encoder = Encoder::new(self.columns, cfg.missing, cfg.missing_tokens.clone());
        let scaler = encoder.fit(&global);
        let target_scaling = global
            .target
            .map(|(sum, sum_sq)| TargetScaling::from_moments(global.rows, sum, sum_sq));
        ctx.emit(&ClientEvent::Standardized {
            encoder: encoder.clone(),
            scaler: scaler.clone(),
            target_scaling,
            global_rows: global.rows,
            cost: sum.cost,
        });
        self.prepared = Some(Prepared {
            encoder,
            scaler,
            target_scaling,
            global_rows: global.rows,
            stats: global,
        });
        Ok(())
    }
}

/// Refuses, before a site joins, training rows whose statistics the
/// statistics round could not add in `limb_bits` limbs (the check
/// [`StatisticsRound::new`] applies mid-federation), naming the column.
pub fn check_statistics(train: &Dataset, limb_bits: i32) -> Result<(), SiteError> {
    let regression = train.label.kind() == TaskKind::Regression;
    let local = RawStats::of(&train.columns, &train.x, regression.then_some(&train.y));
    check_range(&local.to_vec(), &train.columns, limb_bits)
}

/// Refuses statistics beyond what [`STAT_LIMBS`] limbs of `limb_bits` hold
/// (a sum of squares of very large values), naming the column.
fn check_range(values: &[f64], columns: &[RawColumn], limb_bits: i32) -> Result<(), SiteError> {
    let limit_log2 = limb_bits * (STAT_LIMBS as i32 - 1);
    let limit = f64::powi(2.0, limit_log2);
    let Some(i) = values.iter().position(|v| v.is_nan() || v.abs() >= limit) else {
        return Ok(());
    };
    // Which column the value belongs to, in `RawStats::to_vec`'s layout
    // (after the columns: rows, then the target's sum and sum of squares).
    let mut at = 0;
    let mut column = None;
    for c in columns {
        let n = match c {
            RawColumn::Numeric { .. } => 3,
            RawColumn::Categorical { categories, .. } => categories.len() + 2,
        };
        if i < at + n {
            column = Some(c.name().to_string());
            break;
        }
        at += n;
    }
    Err(SiteError::StatisticsRange {
        column,
        value: values[i],
        limit_log2,
    })
}
