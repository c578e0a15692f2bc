//! The best split of a node from its histogram of quantized gradient and
//! hessian sums: XGBoost's gain with a fixed tie-break, so every site finds
//! the same split in the same floating-point order.

use serde::{Deserialize, Serialize};

use super::GbdtSettings;
use super::bins::{Cuts, FeatureCuts};
use super::grower::GRAD_SCALE;

/// Gradient and hessian sums of a set of rows, in [`GRAD_SCALE`] units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sums {
    pub g: i64,
    pub h: i64,
}

impl Sums {
    pub fn add(self, o: Sums) -> Sums {
        Sums {
            g: self.g + o.g,
            h: self.h + o.h,
        }
    }

    pub fn sub(self, o: Sums) -> Sums {
        Sums {
            g: self.g - o.g,
            h: self.h - o.h,
        }
    }

    fn real(self) -> (f64, f64) {
        (self.g as f64 / GRAD_SCALE, self.h as f64 / GRAD_SCALE)
    }

    /// `G² / (H + λ)`, 0 where `H + λ` is not positive.
    fn score(self, lambda: f64) -> f64 {
        let (g, h) = self.real();
        if h + lambda > 0.0 {
            g * g / (h + lambda)
        } else {
            0.0
        }
    }

    /// The leaf weight `−G / (H + λ)`, times the learning rate.
    pub fn leaf(self, s: &GbdtSettings) -> f64 {
        let (g, h) = self.real();
        if h + s.lambda > 0.0 {
            -g / (h + s.lambda) * s.learning_rate
        } else {
            0.0
        }
    }
}

/// Which bins go left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum BinRule {
    /// Bins `0..=t` (values below cut `t`).
    Upto(u16),
    /// These bins (sorted); categorical.
    Set(Vec<u16>),
}

impl BinRule {
    pub fn left(&self, bin: u16) -> bool {
        match self {
            BinRule::Upto(t) => bin <= *t,
            BinRule::Set(s) => s.binary_search(&bin).is_ok(),
        }
    }
}

/// A split found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    pub feature: usize,
    pub rule: BinRule,
    pub default_left: bool,
    pub gain: f64,
    pub left: Sums,
    pub right: Sums,
}

/// The histogram of one node: per feature its bins then the missing slot,
/// each slot `(g, h)`.
pub(crate) struct NodeHist<'a> {
    pub values: &'a [i64],
    pub offsets: &'a [usize],
}

impl NodeHist<'_> {
    fn slot(&self, f: usize, b: usize) -> Sums {
        let i = 2 * (self.offsets[f] + b);
        Sums {
            g: self.values[i],
            h: self.values[i + 1],
        }
    }

    /// The node's totals (every row is in one slot of feature 0).
    pub fn total(&self, cuts: &Cuts) -> Sums {
        if cuts.features.is_empty() {
            return Sums::default();
        }
        (0..=cuts.width(0)).fold(Sums::default(), |a, b| a.add(self.slot(0, b)))
    }
}

/// The search's running best: replaced only by a strictly larger gain, and
/// candidates come in (feature, bin, default direction right before left)
/// order, so ties go to the lowest.
struct Best<'s> {
    s: &'s GbdtSettings,
    parent: f64,
    found: Option<Found>,
}

impl Best<'_> {
    fn offer(
        &mut self,
        feature: usize,
        rule: impl FnOnce() -> BinRule,
        left: Sums,
        right: Sums,
        default_left: bool,
    ) {
        let mcw = self.s.min_child_weight * GRAD_SCALE;
        let (hl, hr) = (left.h as f64, right.h as f64);
        if hl < mcw
            || hr < mcw
            || hl <= 0.0 && self.s.lambda <= 0.0
            || hr <= 0.0 && self.s.lambda <= 0.0
        {
            return;
        }
        let gain = left.score(self.s.lambda) + right.score(self.s.lambda) - self.parent;
        if self.found.as_ref().is_none_or(|f| gain > f.gain) {
            self.found = Some(Found {
                feature,
                rule: rule(),
                default_left,
                gain,
                left,
                right,
            });
        }
    }
}

/// The best split of a node over the `columns` allowed, if its gain is
/// above XGBoost's 1e-6 and at least `min_split_gain`.
pub(crate) fn best_split(
    hist: &NodeHist<'_>,
    total: Sums,
    cuts: &Cuts,
    columns: &[bool],
    s: &GbdtSettings,
) -> Option<Found> {
    let mut best = Best {
        s,
        parent: total.score(s.lambda),
        found: None,
    };
    for (f, fc) in cuts.features.iter().enumerate() {
        if !columns.get(f).copied().unwrap_or(false) {
            continue;
        }
        match fc {
            FeatureCuts::Numeric { cuts: c } => {
                numeric(&mut best, hist, f, c.len(), cuts.width(f), total)
            }
            FeatureCuts::Categorical { .. } => {
                categorical(&mut best, hist, f, cuts.width(f), total)
            }
        }
    }
    best.found
        .filter(|f| f.gain > 1e-6 && f.gain >= s.min_split_gain)
}

fn numeric(
    best: &mut Best<'_>,
    hist: &NodeHist<'_>,
    f: usize,
    ncuts: usize,
    width: usize,
    total: Sums,
) {
    let missing = hist.slot(f, width);
    let mut prefix = Sums::default();
    for t in 0..ncuts.min(width - 1) {
        prefix = prefix.add(hist.slot(f, t));
        let rule = || BinRule::Upto(t as u16);
        best.offer(f, rule, prefix, total.sub(prefix), false);
        let left = prefix.add(missing);
        best.offer(f, rule, left, total.sub(left), true);
    }
}

/// Categories (and the missing slot as one more) sorted by `G / (H + λ)`,
/// then every prefix of that order as the left side.
fn categorical(best: &mut Best<'_>, hist: &NodeHist<'_>, f: usize, width: usize, total: Sums) {
    let lambda = best.s.lambda;
    let mut items: Vec<(usize, Sums)> = (0..=width)
        .map(|b| (b, hist.slot(f, b)))
        .filter(|(_, s)| s.h != 0 || s.g != 0)
        .collect();
    let key = |s: &Sums| s.g as f64 / (s.h as f64 + lambda * GRAD_SCALE);
    items.sort_by(|a, b| key(&a.1).total_cmp(&key(&b.1)).then(a.0.cmp(&b.0)));
    let mut prefix = Sums::default();
    for i in 0..items.len().saturating_sub(1) {
        prefix = prefix.add(items[i].1);
        let default_left = items[..=i].iter().any(|(b, _)| *b == width);
        let rule = || {
            let mut set: Vec<u16> = items[..=i]
                .iter()
                .filter(|(b, _)| *b != width)
                .map(|(b, _)| *b as u16)
                .collect();
            set.sort_unstable();
            BinRule::Set(set)
        };
        best.offer(f, rule, prefix, total.sub(prefix), default_left);
    }
}
