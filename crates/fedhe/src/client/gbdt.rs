//! Gradient-boosted trees over the exchange: after the statistics round,
//! the bins round ([`BinsRound`]: per numeric column a fine histogram of
//! row counts, from which every site derives the same cuts) and one round
//! per tree level ([`TreeRounds`]: the open nodes' gradient and hessian
//! histograms, only the slots the cuts can fill: [`Compact`]), each an
//! integer vector sent as limbs (see
//! [`encode_int_limbs`]) so that the sum is exact under the key, masked and
//! encrypted as every update is. Every site runs the same
//! [`Grower`](crate::model::gbdt::Grower) on the same global sums, so every
//! site ends with the same trees, which are those of the pooled rows.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Encoder, RawStats, Standardizer};
use crate::model::gbdt::{
    BinPlan, Cuts, Ensemble, FeatureCuts, GbdtSettings, Grower, SiteRows, cuts, fine_histogram,
    fine_len,
};
use crate::model::{Head, TargetScaling};
use crate::plan::GBDT_LIMBS;

use super::error::{LoopError, SiteError, SumError};
use super::exchange::{ExchangeCost, RoundSum};
use super::limbs::{decode_int_limbs, encode_int_limbs};
use super::report::{ClientEvent, TreeRecord};
use super::round_loop::{Next, RoundCtx, RoundKind};

/// What the trees' rounds take from the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtLoop {
    pub settings: GbdtSettings,
    pub head: Head,
    /// Integers of the bins round, as the plan fixes them.
    pub bins_len: usize,
    /// The plan's level rounds after the bins round: `depth` per
    /// iteration.
    pub level_rounds: u64,
}

impl GbdtLoop {
    /// The rounds of `plan`, when its model is `gbdt`.
    pub fn of(plan: &crate::plan::Plan) -> Option<GbdtLoop> {
        let settings = plan.gbdt()?;
        let ints = |phase| plan.kind_len(phase).map_or(0, |n| n / GBDT_LIMBS);
        let level_rounds = plan.layout().trees.map_or(0, |t| t.rounds() - 1);
        Some(GbdtLoop {
            settings,
            head: plan.head(),
            bins_len: ints(crate::plan::RoundPhase::Bins),
            level_rounds,
        })
    }
}

/// What a gradient-boosted trees run leaves at a site.
#[derive(Debug, Clone)]
pub struct GbdtOutcome {
    /// The trees: splits, default directions and leaf values only.
    pub ensemble: Ensemble,
    /// The preprocessing fitted on the federation's statistics (the trees
    /// read raw columns; the encoder names them and their categories).
    pub encoder: Encoder,
    pub scaler: Standardizer,
    /// A regression target's federated scaling (the trees fit the
    /// standardized target).
    pub target_scaling: Option<TargetScaling>,
    /// Training rows of the whole federation.
    pub global_rows: f64,
    /// The bins round (iteration 0), then every boosting iteration.
    pub trees: Vec<TreeRecord>,
    /// With `[evaluation]`: the trees' pooled validation and test figures
    /// (the same at every site).
    pub federated: Option<crate::model::FederatedFigures>,
}

/// Summary of a run's iterations (for benches and reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeTotals {
    pub iterations: u64,
    pub rounds: u64,
    pub values: usize,
    pub ms: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl TreeTotals {
    /// The boosting iterations of `records` (the bins round left out).
    pub fn of(records: &[TreeRecord]) -> TreeTotals {
        let mut t = TreeTotals::default();
        for r in records.iter().filter(|r| r.iteration > 0) {
            t.iterations += 1;
            t.rounds += r.rounds;
            t.values += r.values;
            t.ms += r.ms;
            t.bytes_up += r.cost.bytes_up;
            t.bytes_down += r.cost.bytes_down;
        }
        t
    }
}

fn add_cost(a: &mut ExchangeCost, b: &ExchangeCost) {
    a.encrypt_ms += b.encrypt_ms;
    a.decrypt_ms += b.decrypt_ms;
    a.wait_ms += b.wait_ms;
    a.bytes_up += b.bytes_up;
    a.bytes_down += b.bytes_down;
}

/// `ints` as limbs, or the site error naming the first value beyond them.
fn encode(ints: &[i64], limb_bits: i32, what: &'static str) -> Result<Vec<f64>, SiteError> {
    encode_int_limbs(ints, limb_bits, GBDT_LIMBS).map_err(|value| SiteError::TreeRange {
        what,
        value,
        limit_log2: limb_bits * GBDT_LIMBS as i32,
    })
}

/// The round's sum as `want` integers.
fn decode(
    sum: &RoundSum,
    limb_bits: i32,
    what: &'static str,
    want: usize,
) -> Result<Vec<i64>, SumError> {
    let ints = decode_int_limbs(&sum.values, limb_bits, GBDT_LIMBS, what)?;
    if ints.len() != want {
        return Err(SumError::TreeLength {
            what,
            got: ints.len(),
            want,
        });
    }
    Ok(ints)
}

/// The bins round: this site's fine histograms in, the federation's cuts
/// out.
pub(crate) struct BinsRound {
    plan: BinPlan,
    local: Vec<i64>,
    bins: usize,
    limb_bits: i32,
    iterations: u64,
    started: Instant,
    cuts: Option<Cuts>,
}

impl BinsRound {
    /// The round for the site's raw rows, over the federation's
    /// statistics `global`.
    pub(crate) fn new(
        site: &Dataset,
        global: &RawStats,
        g: &GbdtLoop,
        limb_bits: i32,
    ) -> Result<Self, SiteError> {
        let plan = BinPlan::new(&site.columns, global);
        let n = fine_len(&plan);
        if n != g.bins_len {
            return Err(SiteError::TreeLayout {
                what: "bins",
                site: n,
                plan: g.bins_len,
            });
        }
        let local = fine_histogram(&plan, site.x.view());
        // Refused here, before anything is sent, rather than mid-round.
        encode(&local, limb_bits, "bins")?;
        Ok(BinsRound {
            plan,
            local,
            bins: g.settings.bins,
            limb_bits,
            iterations: g.settings.trees as u64,
            started: Instant::now(),
            cuts: None,
        })
    }
}

impl RoundKind for BinsRound {
    type Output = Cuts;

    fn next(mut self, _ctx: &RoundCtx<'_>) -> Next<Self> {
        match self.cuts.take() {
            Some(c) => Next::Done(c),
            None => Next::Round(self),
        }
    }

    fn len(&self) -> usize {
        self.local.len() * GBDT_LIMBS
    }

    fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        Ok(encode(&self.local, self.limb_bits, "bins")?)
    }

    fn take(&mut self, sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        let global = decode(&sum, self.limb_bits, "bins", self.local.len())?;
        self.cuts = Some(cuts(&self.plan, &global, self.bins));
        ctx.emit(&ClientEvent::Tree(TreeRecord {
            iteration: 0,
            rounds: 1,
            values: sum.values.len(),
            ms: self.started.elapsed().as_secs_f64() * 1e3,
            cost: sum.cost,
            masked: sum.masked,
            ..TreeRecord::first(self.iterations)
        }));
        Ok(())
    }
}

/// Which slots of a node's histogram can hold anything under the
/// federation's cuts: a numeric column's bins up to its last cut (a column
/// with few distinct values has few; the grower's layout reserves `bins`
/// for each) and its missing slot, every slot of a categorical column. The
/// same at every site (the cuts are); the level rounds carry only these.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compact {
    /// A node histogram's values in the grower's layout.
    node_len: usize,
    /// The values kept, as indices into a node histogram.
    keep: Vec<usize>,
}

impl Compact {
    pub(crate) fn of(cuts: &Cuts) -> Compact {
        let mut keep = Vec::new();
        let mut at = 0;
        for (f, feature) in cuts.features.iter().enumerate() {
            let width = cuts.width(f);
            let used = match feature {
                FeatureCuts::Numeric { cuts } => (cuts.len() + 1).min(width),
                FeatureCuts::Categorical { .. } => width,
            };
            for slot in (0..used).chain([width]) {
                keep.push(2 * (at + slot));
                keep.push(2 * (at + slot) + 1);
            }
            at += width + 1;
        }
        Compact {
            node_len: 2 * at,
            keep,
        }
    }

    /// The kept values of `nodes` node histograms laid out as the grower's.
    fn len(&self, full: usize) -> usize {
        full / self.node_len.max(1) * self.keep.len()
    }

    fn pack(&self, full: &[i64]) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.len(full.len()));
        for node in full.chunks(self.node_len.max(1)) {
            out.extend(self.keep.iter().map(|&i| node.get(i).copied().unwrap_or(0)));
        }
        out
    }

    fn unpack(&self, packed: &[i64], full: usize) -> Vec<i64> {
        let mut out = vec![0; full];
        let per = self.keep.len().max(1);
        for (n, node) in packed.chunks(per).enumerate() {
            for (&i, &v) in self.keep.iter().zip(node) {
                if let Some(slot) = out.get_mut(n * self.node_len + i) {
                    *slot = v;
                }
            }
        }
        out
    }
}

/// The trees' level rounds: this site's histograms of the open nodes in,
/// the splits (and after the last level, the leaves) out.
///
/// A tree's levels must all sum the same sites: when a level's sum holds
/// other sites than its root's (one dropped out, or one's update came too
/// late), every site sees the same list, leaves that sum unused and closes
/// the iteration at the levels before it ([`Grower::close_iteration`]);
/// the next iteration begins in the next round over the new sites. Not
/// grown again from its roots: the same root histograms asked again of
/// fewer sites would give away the one that left by difference. Rounds a
/// closed iteration leaves over run empty at the end (one zero), so the
/// aggregator's last round is the plan's.
pub(crate) struct TreeRounds {
    grower: Grower,
    rows: SiteRows,
    compact: Compact,
    limb_bits: i32,
    /// Level rounds of the plan not yet taken.
    rounds_left: u64,
    /// The sites summed in the iteration's root round.
    roots: Vec<String>,
    /// The iteration under way.
    record: TreeRecord,
    started: Instant,
}

impl TreeRounds {
    /// The rounds over the site's raw rows `site` (labels: 0/1, the class,
    /// or the value, standardized by `target_scaling`).
    pub(crate) fn new(
        site: &Dataset,
        cuts: Cuts,
        g: &GbdtLoop,
        target_scaling: Option<&TargetScaling>,
        limb_bits: i32,
    ) -> Result<Self, LoopError> {
        let compact = Compact::of(&cuts);
        let grower = Grower::new(g.settings, g.head, cuts)?;
        let y: Vec<f64> = match target_scaling {
            Some(t) => site.y.iter().map(|v| t.scale(*v)).collect(),
            None => site.y.to_vec(),
        };
        let rows = SiteRows::new(&grower, site.x.view(), &y)?;
        Ok(TreeRounds {
            grower,
            rows,
            compact,
            limb_bits,
            rounds_left: g.level_rounds,
            roots: Vec::new(),
            record: TreeRecord::first(g.settings.trees as u64),
            started: Instant::now(),
        })
    }

    /// Whether the next round grows trees (else it runs empty).
    fn growing(&self) -> bool {
        self.grower.round_len().is_some()
    }

    /// Integers of the next round: the open nodes' kept slots (one zero
    /// for an empty round).
    fn ints(&self) -> usize {
        if self.growing() {
            self.compact.len(self.grower.round_len().unwrap_or(0))
        } else {
            1
        }
    }

    /// Whether this level's sum holds other sites than the iteration's
    /// roots did; if so the iteration is closed at the levels before it.
    /// Plaintext sums list no sites (and never lose one).
    fn closed(&mut self, sum: &RoundSum) -> bool {
        let mut counted = sum.counted.clone();
        counted.sort();
        if self.grower.at_roots() {
            self.roots = counted;
            return false;
        }
        if counted == self.roots {
            return false;
        }
        let r = &mut self.record;
        r.closed_at = Some(self.grower.level() as u32);
        r.left = self
            .roots
            .iter()
            .filter(|s| !counted.contains(s))
            .cloned()
            .collect();
        r.joined = counted
            .iter()
            .filter(|s| !self.roots.contains(s))
            .cloned()
            .collect();
        self.grower.close_iteration(&mut self.rows);
        true
    }

    fn what(&self) -> &'static str {
        "tree level"
    }

    /// One round's sum taken: the grower advanced; an iteration finished is
    /// reported.
    fn advance(&mut self, sum: &RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        self.rounds_left = self.rounds_left.saturating_sub(1);
        let packed = decode(sum, self.limb_bits, self.what(), self.ints())?;
        if !self.growing() {
            return Ok(());
        }
        let r = &mut self.record;
        r.rounds += 1;
        r.values += sum.values.len();
        r.masked |= sum.masked;
        add_cost(&mut r.cost, &sum.cost);
        let done = self.grower.iterations_done();
        if !self.closed(sum) {
            let full = self.grower.round_len().unwrap_or(0);
            let global = self.compact.unpack(&packed, full);
            self.grower.take(&global, &mut self.rows)?;
        }
        let r = &mut self.record;
        if self.grower.iterations_done() > done {
            r.ms = self.started.elapsed().as_secs_f64() * 1e3;
            ctx.emit(&ClientEvent::Tree(r.clone()));
            *r = TreeRecord {
                iteration: r.iteration + 1,
                ..TreeRecord::first(r.iterations)
            };
            self.started = Instant::now();
        }
        Ok(())
    }
}

impl RoundKind for TreeRounds {
    type Output = Ensemble;

    fn next(self, _ctx: &RoundCtx<'_>) -> Next<Self> {
        if self.rounds_left == 0 {
            return Next::Done(self.grower.finish());
        }
        Next::Round(self)
    }

    fn len(&self) -> usize {
        self.ints() * GBDT_LIMBS
    }

    fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        if !self.growing() {
            return Ok(encode(&[0], self.limb_bits, self.what())?);
        }
        // Every node the level may have (fewer may be open: zeros).
        let local = self.compact.pack(&self.grower.local(&self.rows));
        Ok(encode(&local, self.limb_bits, self.what())?)
    }

    fn take(&mut self, sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        self.advance(&sum, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_rounds_carry_only_the_slots_the_cuts_can_fill() {
        let cuts = Cuts {
            bins: 8,
            features: vec![
                // A 0/1 column: one cut, two bins of the eight.
                FeatureCuts::Numeric { cuts: vec![0.5] },
                FeatureCuts::Categorical { categories: 2 },
                FeatureCuts::Numeric {
                    cuts: (1..8).map(f64::from).collect(),
                },
            ],
        };
        let c = Compact::of(&cuts);
        // Slots: 8 + 1, 3 + 1, 8 + 1; two values each.
        assert_eq!(c.node_len, 2 * (9 + 4 + 9));
        // Kept: 2 bins + missing, 3 + missing, 8 + missing.
        assert_eq!(c.keep.len(), 2 * (3 + 4 + 9));
        // Two nodes, numbered in the grower's layout; the slots no row can
        // reach are zero in every site's histogram.
        let mut full = vec![0i64; 2 * c.node_len];
        for n in 0..2 {
            for &i in &c.keep {
                full[n * c.node_len + i] = (n * 1000 + i) as i64 + 1;
            }
        }
        let packed = c.pack(&full);
        assert_eq!(packed.len(), c.len(full.len()));
        assert_eq!(packed.len(), 2 * c.keep.len());
        assert_eq!(c.unpack(&packed, full.len()), full);
        // The missing slot of the 0/1 column is slot 8 (values 16, 17).
        assert!(c.keep.contains(&16) && c.keep.contains(&17));
        assert!(!c.keep.contains(&4));
    }
}
