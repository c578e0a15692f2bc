//! The round layout a plan implies: which server round does what (the
//! vocabulary rounds, the statistics round, training rounds) and how long
//! each round's vector is. Client and aggregator both read it from here.

use serde::{Deserialize, Serialize};

use super::{Plan, UnknownCategories};
use crate::crypto::KeyLayout;

/// Limbs per number in the standardization vector.
pub const STAT_LIMBS: usize = 5;

/// Bytes of a category name in the names round; a longer value is never
/// uploaded (it goes to "other").
pub const NAME_BYTES: usize = 64;

/// The most slots of the sum tag region, over every key: every update's
/// vector (every phase) ends with the key's
/// [`KeyLayout::tag_slots`](crate::crypto::KeyLayout::tag_slots) of them,
/// after the values of the round's kind (see `crypto::sum_tag`; the
/// client's exchange appends it and strips it from the sum).
pub const MAX_SUM_TAG_SLOTS: usize = crate::crypto::MAX_SUM_TAG_SLOTS;

/// Number of server rounds used by federated standardization before training.
pub const STANDARDIZATION_ROUNDS: u64 = 1;

/// What a FedHE client does in a given server round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoundPhase {
    /// Per categorical column to discover: counts of hashed buckets.
    Vocabulary,
    /// The names of the buckets counted often enough.
    VocabularyNames,
    /// The statistics the preprocessing is fitted on.
    Standardize,
    /// Training round `k` (1-based).
    Train(u64),
    /// After the last training round (with `[evaluation]`): the last
    /// global model's validation sums, and with `evaluation.test` the test
    /// sums.
    Evaluate,
    /// Gradient-boosted trees, after the statistics round: per numeric
    /// column a fine histogram of row counts, from which every site derives
    /// the same bin cuts.
    Bins,
    /// Gradient-boosted trees: level `level` (0-based: the root is 0) of
    /// boosting iteration `iteration` (1-based; a multi-class plan grows
    /// one tree per class in the same rounds): per open node the gradient
    /// and hessian histograms. As planned: a tree closed early (the sites
    /// summed changed mid-tree) shifts the later ones to earlier rounds,
    /// and the rounds left at the end run empty.
    Tree { iteration: u64, level: u32 },
}

/// The rounds of a gradient-boosted trees plan after its statistics round:
/// one bins round, then `depth` rounds per boosting iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRounds {
    pub iterations: u64,
    pub depth: u32,
}

/// Which rounds a federation runs before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoundLayout {
    /// Two vocabulary rounds come first.
    pub vocabulary: bool,
    /// With `[evaluation]`: the plan's training rounds (a gradient-boosted
    /// trees plan's rounds after the statistics round: [`TreeRounds::rounds`]),
    /// after which one evaluation round comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_after: Option<u64>,
    /// Gradient-boosted trees: a bins round and the trees' level rounds
    /// instead of training rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<TreeRounds>,
}

impl RoundLayout {
    /// The statistics round.
    pub fn statistics_round(self) -> u64 {
        if self.vocabulary {
            3
        } else {
            STANDARDIZATION_ROUNDS
        }
    }

    /// Phase of server round `round` (1-based). Round 0 does not exist.
    pub fn phase(self, round: u64) -> Option<RoundPhase> {
        let s = self.statistics_round();
        match round {
            0 => None,
            1 if self.vocabulary => Some(RoundPhase::Vocabulary),
            2 if self.vocabulary => Some(RoundPhase::VocabularyNames),
            r if r == s => Some(RoundPhase::Standardize),
            r if r < s => None,
            r if self.evaluate_after.is_some_and(|n| r - s == n + 1) => Some(RoundPhase::Evaluate),
            r if self.trees.is_some() => self.trees.map(|t| t.phase(r - s)),
            r => Some(RoundPhase::Train(r - s)),
        }
    }

    /// The evaluation round (with `[evaluation]`): the one after the last
    /// training round, or after a gradient-boosted trees plan's last tree
    /// round.
    pub fn evaluation_round(self) -> Option<u64> {
        self.evaluate_after.map(|n| self.statistics_round() + n + 1)
    }

    /// Server round of training round `k` (1-based).
    pub fn training_round(self, k: u64) -> u64 {
        k + self.statistics_round()
    }

    /// Gradient-boosted trees: the bins round (after the statistics round).
    pub fn bins_round(self) -> u64 {
        self.statistics_round() + 1
    }

    /// Gradient-boosted trees: the server round of `level` (0-based) of
    /// boosting iteration `iteration` (1-based), for trees `depth` deep.
    pub fn tree_round(self, depth: u32, iteration: u64, level: u32) -> u64 {
        self.bins_round() + (iteration.saturating_sub(1)) * u64::from(depth) + u64::from(level) + 1
    }

    /// The sum tag region of a round's uploaded vector of `len` values
    /// (the tag included) under `key`: its last `key.tag_slots()` slots.
    pub fn sum_tag(self, len: usize, key: &KeyLayout) -> std::ops::Range<usize> {
        len.saturating_sub(key.tag_slots())..len
    }
}

impl TreeRounds {
    /// Phase of the `k`-th round after the statistics round (1-based).
    fn phase(self, k: u64) -> RoundPhase {
        let depth = u64::from(self.depth.max(1));
        match k {
            0 | 1 => RoundPhase::Bins,
            k => RoundPhase::Tree {
                iteration: (k - 2) / depth + 1,
                level: ((k - 2) % depth) as u32,
            },
        }
    }

    /// Rounds after the statistics round: the bins round and every level.
    pub fn rounds(self) -> u64 {
        1 + self.iterations * u64::from(self.depth)
    }
}

impl RoundPhase {
    /// Phase of server round `round` without vocabulary rounds.
    pub fn of(round: u64) -> Option<RoundPhase> {
        RoundLayout::default().phase(round)
    }

    /// Server round of training round `k` without vocabulary rounds.
    pub fn server_round_of_training(k: u64) -> u64 {
        RoundLayout::default().training_round(k)
    }

    /// "vocabulary", "statistics", "training round 3".
    pub fn describe(self) -> String {
        match self {
            RoundPhase::Vocabulary => "vocabulary".into(),
            RoundPhase::VocabularyNames => "vocabulary names".into(),
            RoundPhase::Standardize => "statistics".into(),
            RoundPhase::Train(k) => format!("training round {k}"),
            RoundPhase::Evaluate => "final evaluation".into(),
            RoundPhase::Bins => "bins".into(),
            RoundPhase::Tree { iteration, level } => format!("tree {iteration}, level {level}"),
        }
    }
}

impl Plan {
    /// The rounds before training.
    pub fn layout(&self) -> RoundLayout {
        let trees = self.gbdt().map(|g| TreeRounds {
            iterations: g.trees as u64,
            depth: g.depth as u32,
        });
        RoundLayout {
            vocabulary: !self.discovered_columns().is_empty(),
            evaluate_after: self.evaluation.map(|_| match trees {
                Some(t) => t.rounds(),
                None => self.training.rounds,
            }),
            trees,
        }
    }

    /// The plan's last server round: its last training round, or the
    /// evaluation round after it. When it closes, the federation is
    /// complete.
    pub fn last_round(&self) -> u64 {
        let layout = self.layout();
        if let Some(r) = layout.evaluation_round() {
            return r;
        }
        match layout.trees {
            Some(t) => layout.statistics_round() + t.rounds(),
            None => layout.training_round(self.training.rounds),
        }
    }

    /// The rounds the plan runs after the statistics round: its training
    /// rounds, or a gbdt plan's bins round and tree rounds (the evaluation
    /// round not counted).
    pub fn work_rounds(&self) -> u64 {
        match self.layout().trees {
            Some(t) => t.rounds(),
            None => self.training.rounds,
        }
    }

    /// Slots a training round's update carries after the parameters and the
    /// share: the validation sums, with `[evaluation]`.
    pub fn validation_slots(&self) -> usize {
        self.evaluation.map_or(0, |e| e.block_len(self.head()))
    }

    /// Values of the first vocabulary round: per discovered column and
    /// bucket, a count, a presence and three fingerprint slots.
    pub fn vocabulary_len(&self) -> usize {
        let buckets = self.preprocessing.vocabulary.map_or(0, |v| v.buckets);
        // Count, presence and a 3-slot fingerprint per bucket.
        5 * buckets * self.discovered_columns().len()
    }

    /// Longest vector a site uploads: the vocabulary, the statistics, or
    /// the parameters and the site's FedAvg share (with discovered columns,
    /// for as many categories as buckets), with the widest sum tag of any
    /// key ([`MAX_SUM_TAG_SLOTS`]).
    pub fn max_update_len(&self) -> usize {
        let mut widest = self.clone();
        if let Some(v) = self.preprocessing.vocabulary {
            // Discovered columns get an "other" input too.
            widest.preprocessing.unknown_categories = UnknownCategories::Other;
            for c in &mut widest.columns.categorical {
                if c.categories.is_empty() {
                    c.categories = (0..v.buckets).map(|i| format!("#{i}")).collect();
                }
            }
        }
        let names = self.discovered_columns().len()
            * self.preprocessing.vocabulary.map_or(0, |v| v.buckets)
            * NAME_BYTES;
        let last = widest.evaluation.map_or(0, |e| e.final_len(widest.head()));
        if self.gbdt().is_some() {
            let last = widest
                .evaluation
                .map_or(0, |e| e.tree_final_len(widest.head()));
            return (widest.statistics_values() * STAT_LIMBS)
                .max(widest.gbdt_max_len())
                .max(last)
                .max(self.vocabulary_len())
                .max(names)
                + MAX_SUM_TAG_SLOTS;
        }
        (widest.statistics_values() * STAT_LIMBS)
            .max(widest.param_count() + 1 + widest.validation_slots())
            .max(last)
            .max(self.vocabulary_len())
            .max(names)
            + MAX_SUM_TAG_SLOTS
    }

    /// The vector length (without the weight slot) a site uploads in a
    /// round of `phase`: the vocabulary's bucket counts, the limb-encoded
    /// statistics, or the parameters and the site's FedAvg share, each
    /// followed by the sum tag's slots under `key`
    /// ([`KeyLayout::tag_slots`]). `None` where it depends on categories
    /// the sites discover (the names round, and every round after it with
    /// discovered columns).
    pub fn update_len(&self, phase: RoundPhase, key: &KeyLayout) -> Option<usize> {
        self.kind_len(phase).map(|n| n + key.tag_slots())
    }

    /// [`update_len`](Self::update_len) without the sum tag: the vector
    /// of the round's kind.
    pub fn kind_len(&self, phase: RoundPhase) -> Option<usize> {
        let discovered = self.layout().vocabulary;
        match phase {
            RoundPhase::Vocabulary => Some(self.vocabulary_len()),
            RoundPhase::VocabularyNames => None,
            _ if discovered => None,
            RoundPhase::Standardize => Some(self.statistics_values() * STAT_LIMBS),
            RoundPhase::Bins | RoundPhase::Tree { .. } => self.gbdt_len(phase),
            // The trees' validation (and test) sums.
            RoundPhase::Evaluate if self.gbdt().is_some() => {
                self.evaluation.map(|e| e.tree_final_len(self.head()))
            }
            _ if self.gbdt().is_some() => None,
            // The parameters times the site's share, and the share (then
            // the validation sums, with `[evaluation]`).
            RoundPhase::Train(_) => Some(self.param_count() + 1 + self.validation_slots()),
            RoundPhase::Evaluate => self.evaluation.map(|e| e.final_len(self.head())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases() {
        assert_eq!(RoundPhase::of(0), None);
        assert_eq!(RoundPhase::of(1), Some(RoundPhase::Standardize));
        assert_eq!(RoundPhase::of(2), Some(RoundPhase::Train(1)));
        assert_eq!(RoundPhase::server_round_of_training(1), 2);
        let v = RoundLayout {
            vocabulary: true,
            evaluate_after: None,
            trees: None,
        };
        assert_eq!(v.phase(1), Some(RoundPhase::Vocabulary));
        assert_eq!(v.phase(2), Some(RoundPhase::VocabularyNames));
        assert_eq!(v.phase(3), Some(RoundPhase::Standardize));
        assert_eq!(v.phase(4), Some(RoundPhase::Train(1)));
        assert_eq!(v.training_round(2), 5);
        let e = RoundLayout {
            vocabulary: false,
            evaluate_after: Some(3),
            trees: None,
        };
        assert_eq!(e.phase(4), Some(RoundPhase::Train(3)));
        assert_eq!(e.phase(5), Some(RoundPhase::Evaluate));
    }
}
