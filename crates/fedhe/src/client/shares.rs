//! FedAvg shares: how much of a round's sum each site's rows weigh, and the
//! row-weighted mean read back from a training round's sum.

use super::error::SumError;
use super::exchange::RoundSum;

/// Training rows per unit of a site's FedAvg share, from the federation's
/// row count `global_rows`: the power of two that puts the summed share in
/// 256..512. A site uploads `share × parameters` and `share`, where
/// `share = rows / unit`, so that the sum of the first over the sum of the
/// second is exactly the row-weighted mean (FedAvg), whatever the sites'
/// sizes. Because a share is at most 512 (see [`site_share`]),
/// `|share × parameter|` stays within a key's fixed-point budget for
/// parameters up to 2^(budget − scale − 9) (128 with the default key) at any
/// site size, and the shares' sum keeps the rounding of the mean below
/// clients × 2^-(scale + 9).
pub fn weight_unit(global_rows: f64) -> f64 {
    let rows = global_rows.max(1.0);
    (rows.log2().ceil() - 9.0).exp2()
}

/// Largest share a site uploads: a site that joined after the statistics
/// round (its rows are not in the federation's count) is capped here, so
/// that it weighs at most as a 512-unit site instead of overflowing.
pub const MAX_SHARE: f64 = 512.0;

/// A site's FedAvg share: `rows` in units of [`weight_unit`], at most
/// [`MAX_SHARE`].
pub fn site_share(rows: usize, unit: f64) -> f64 {
    (rows as f64 / unit).min(MAX_SHARE)
}

/// This site's training update: its parameters times its share, then the
/// share (the slot [`fedavg`] divides by).
pub(crate) fn shared_update(params: &[f64], share: f64) -> Vec<f64> {
    let mut update: Vec<f64> = params.iter().map(|v| v * share).collect();
    update.push(share);
    update
}

/// The FedAvg mean of a training round's sum: the parameters' weighted sum
/// over the shares' sum, the one division. Returns the parameters and the
/// summed share.
pub(crate) fn fedavg(sum: &RoundSum, params: usize) -> Result<(Vec<f64>, f64), SumError> {
    if sum.values.len() != params + 1 {
        return Err(SumError::TrainingLength {
            got: sum.values.len(),
            params,
        });
    }
    let total = sum.values[params];
    if !(total.is_finite() && total > 0.0) {
        return Err(SumError::NoShare { total });
    }
    Ok((
        sum.values[..params].iter().map(|v| v / total).collect(),
        total,
    ))
}
