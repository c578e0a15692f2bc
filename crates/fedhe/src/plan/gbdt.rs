//! The `gbdt` model kind in a plan: its settings, their checks, and the
//! vector length of each of its rounds (the bins round and one round per
//! tree level), which the aggregator checks uploads against.

use crate::model::gbdt::{FINE_BUCKETS, GbdtSettings, Grower, MAX_BINS, MAX_DEPTH, MAX_TREES};

use super::layout::RoundPhase;
use super::{ModelKind, Plan};

/// Limbs per integer of the bins and tree rounds: a site's integer sums
/// (row counts, quantized gradient and hessian sums) travel as this many
/// base-2^b digits, `b` the key's limb size (`client::limb_bits_for`:
/// 15 bits for Standard64 up to 64 clients, 11 for Compact32), so they add
/// without overflow under every key and recombine exactly.
pub const GBDT_LIMBS: usize = 4;

impl Plan {
    /// The trees' settings, when the plan's model is `gbdt` (the defaults
    /// where `[model.gbdt]` is left out).
    pub fn gbdt(&self) -> Option<GbdtSettings> {
        (self.model.kind == ModelKind::Gbdt).then(|| self.model.gbdt.unwrap_or_default())
    }

    /// Slots per feature of one node's histogram (as
    /// `model::gbdt::BinPlan::slot_widths` gives them once the statistics
    /// are known): per numeric column its `bins` and a missing slot, per
    /// categorical column its categories, "(other)" and a missing slot.
    pub fn gbdt_widths(&self) -> Vec<usize> {
        let bins = self.gbdt().map_or(0, |g| g.bins);
        let numeric = self.columns.numeric.iter().map(|_| bins + 1);
        let categorical = self
            .columns
            .categorical
            .iter()
            .map(|c| c.categories.len() + 2);
        numeric.chain(categorical).collect()
    }

    /// Values (limbs included, the sum tag not) of a gbdt round: the bins
    /// round's; `None` for the tree rounds, whose length the bins round
    /// fixes (a numeric column's histogram carries as many bins as the
    /// federation's cuts make, up to `bins`: the same at every site, known
    /// only once the bins are; the aggregator takes the first upload's, as
    /// for discovered categories), and for other phases or kinds.
    pub(super) fn gbdt_len(&self, phase: RoundPhase) -> Option<usize> {
        self.gbdt()?;
        match phase {
            // A fine histogram per numeric column, and two overflow buckets.
            RoundPhase::Bins => Some(self.columns.numeric.len() * (FINE_BUCKETS + 2) * GBDT_LIMBS),
            _ => None,
        }
    }

    /// The longest a tree level's round can be (limbs included): every
    /// numeric column with all its `bins`, at the deepest level.
    pub fn gbdt_level_max(&self, level: u32) -> usize {
        Grower::level_len(self.head(), &self.gbdt_widths(), level as usize) * GBDT_LIMBS
    }

    /// The longest gbdt round (limbs included).
    pub(super) fn gbdt_max_len(&self) -> usize {
        let Some(g) = self.gbdt() else { return 0 };
        let deepest = g.depth.saturating_sub(1) as u32;
        self.gbdt_level_max(deepest)
            .max(self.gbdt_len(RoundPhase::Bins).unwrap_or(0))
    }
}

/// `[model.gbdt]`: only with `kind = "gbdt"`, every setting in range, and
/// none of what the trees do not use (early stopping, DP-SGD, hidden layers).
pub(super) fn check(plan: &Plan) -> Result<(), (&'static str, String)> {
    let Some(g) = plan.gbdt() else {
        if plan.model.gbdt.is_some() {
            return Err((
                "model.gbdt",
                "tree settings belong to kind = \"gbdt\"".into(),
            ));
        }
        return Ok(());
    };
    if !plan.model.hidden.is_empty() {
        return Err((
            "model.hidden",
            "hidden layers belong to kind = \"mlp\"".into(),
        ));
    }
    settings(&g)?;
    // `[evaluation]` for trees is one round after the last tree (pooled
    // validation and test figures of the trees); no per-tree validation, so
    // nothing to stop early on.
    if plan.evaluation.is_some_and(|e| e.early_stopping.is_some()) {
        return Err((
            "evaluation.early_stopping",
            "early stopping is not implemented for kind = \"gbdt\": the trees are evaluated \
             once, after the last tree; remove early_stopping"
                .into(),
        ));
    }
    if plan.privacy.dp.is_some() {
        return Err((
            "privacy.dp",
            "DP-SGD has no meaning for trees (no gradient steps on a flat vector); remove \
             [privacy.dp] for kind = \"gbdt\""
                .into(),
        ));
    }
    Ok(())
}

/// The settings' ranges.
fn settings(g: &GbdtSettings) -> Result<(), (&'static str, String)> {
    let within = |field, v: usize, lo, hi| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err((field, format!("{v} is outside {lo}..={hi}")))
        }
    };
    within("model.gbdt.trees", g.trees, 1, MAX_TREES)?;
    within("model.gbdt.depth", g.depth, 1, MAX_DEPTH)?;
    within("model.gbdt.bins", g.bins, 2, MAX_BINS)?;
    let positive = |field, v: f64, hi: f64| {
        if v.is_finite() && v > 0.0 && v <= hi {
            Ok(())
        } else {
            Err((field, format!("{v} is not in (0, {hi}]")))
        }
    };
    positive("model.gbdt.learning_rate", g.learning_rate, 1.0)?;
    positive("model.gbdt.subsample", g.subsample, 1.0)?;
    positive("model.gbdt.colsample", g.colsample, 1.0)?;
    let non_negative = |field, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err((field, format!("{v} is not zero or positive")))
        }
    };
    non_negative("model.gbdt.lambda", g.lambda)?;
    non_negative("model.gbdt.min_child_weight", g.min_child_weight)?;
    non_negative("model.gbdt.min_split_gain", g.min_split_gain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::LabelMapping;
    use crate::plan::{CategoricalColumn, MAX_SUM_TAG_SLOTS};

    fn linear() -> Plan {
        let mut p = Plan::binary(
            LabelMapping {
                column: "y".into(),
                positive: "1".into(),
                negative: "0".into(),
            },
            vec!["a".into(), "b".into()],
            Vec::new(),
        );
        p.columns.categorical.push(CategoricalColumn {
            name: "c".into(),
            categories: vec!["u".into(), "v".into(), "w".into()],
        });
        p
    }

    fn trees(text: &str) -> Result<Plan, crate::plan::PlanError> {
        let base = linear().to_toml();
        assert!(base.contains("[model]\nkind = \"linear\"\n"), "{base}");
        let text = base.replace("[model]\nkind = \"linear\"\n", text);
        Plan::from_toml(&text, "g.toml")
    }

    #[test]
    fn a_gbdt_plan_reads_its_settings_and_others_keep_their_canonical_form() {
        let p = trees("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\ntrees = 3\ndepth = 4\n").unwrap();
        let g = p.gbdt().unwrap();
        assert_eq!((g.trees, g.depth, g.bins), (3, 4, 256));
        assert_eq!(g.learning_rate, 0.1);
        let back = Plan::from_toml(&p.to_toml(), "back.toml").unwrap();
        assert_eq!(back, p);
        assert_eq!(back.fingerprint(), p.fingerprint());
        // Without [model.gbdt]: the defaults.
        let d = trees("[model]\nkind = \"gbdt\"\n").unwrap();
        assert_eq!(d.gbdt().unwrap(), GbdtSettings::default());
        assert_ne!(d.fingerprint(), p.fingerprint());
        // Other kinds: nothing of the trees in the canonical form.
        let l = linear();
        assert!(l.gbdt().is_none());
        let canonical = String::from_utf8(l.canonical()).unwrap();
        assert!(!canonical.contains("gbdt"), "{canonical}");
        assert!(l.layout().trees.is_none());
    }

    #[test]
    fn gbdt_settings_are_refused_with_their_field() {
        let e = |text: &str| trees(text).unwrap_err().to_string();
        let m = e("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\ndepth = 0\n");
        assert!(
            m.contains("`model.gbdt.depth`") && m.contains("g.toml"),
            "{m}"
        );
        let m = e("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\nbins = 300\n");
        assert!(m.contains("`model.gbdt.bins`") && m.contains("300"), "{m}");
        let m = e("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\nsubsample = 0\n");
        assert!(m.contains("`model.gbdt.subsample`"), "{m}");
        let m = e("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\nlambda = -1\n");
        assert!(m.contains("`model.gbdt.lambda`"), "{m}");
        let m = e("[model]\nkind = \"linear\"\n\n[model.gbdt]\ntrees = 3\n");
        assert!(
            m.contains("`model.gbdt`") && m.contains("kind = \"gbdt\""),
            "{m}"
        );
        let m = e("[model]\nkind = \"gbdt\"\nhidden = [8]\n");
        assert!(m.contains("`model.hidden`"), "{m}");
        let m = e("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\ntrees = 3\nleaves = 8\n");
        assert!(m.contains("leaves"), "{m}");
    }

    #[test]
    fn gbdt_rounds_follow_the_statistics_round_with_a_length_each() {
        let p =
            trees("[model]\nkind = \"gbdt\"\n\n[model.gbdt]\ntrees = 2\ndepth = 3\nbins = 16\n")
                .unwrap();
        let layout = p.layout();
        assert_eq!(layout.phase(1), Some(RoundPhase::Standardize));
        assert_eq!(layout.phase(2), Some(RoundPhase::Bins));
        let tree = |iteration, level| Some(RoundPhase::Tree { iteration, level });
        assert_eq!(layout.phase(3), tree(1, 0));
        assert_eq!(layout.phase(5), tree(1, 2));
        assert_eq!(layout.phase(6), tree(2, 0));
        assert_eq!(layout.phase(8), tree(2, 2));
        assert_eq!(layout.bins_round(), 2);
        assert_eq!(layout.tree_round(3, 2, 1), 7);
        // Statistics, bins, 2 iterations × 3 levels.
        assert_eq!(p.last_round(), 8);
        // Two numeric columns: 4,096 buckets and two overflow ones each.
        let limbs = GBDT_LIMBS;
        assert_eq!(p.kind_len(RoundPhase::Bins), Some(2 * 4098 * limbs));
        // A tree round's length comes with the bins: not the plan's.
        let level = |level| RoundPhase::Tree {
            iteration: 2,
            level,
        };
        assert_eq!(p.kind_len(level(0)), None);
        assert_eq!(p.kind_len(RoundPhase::Train(1)), None);
        // At most: a node of 2 × (2 numeric × (16 bins + missing) + (3
        // categories + other + missing)) integers; level l sends 1, 1, 2.
        let node = 2 * (2 * 17 + 5);
        for (l, nodes) in [(0, 1), (1, 1), (2, 2)] {
            assert_eq!(p.gbdt_level_max(l), nodes * node * limbs, "level {l}");
        }
        assert_eq!(
            p.max_update_len(),
            p.kind_len(RoundPhase::Bins).unwrap().max(2 * node * limbs) + MAX_SUM_TAG_SLOTS
        );
        // Multi-class: one tree per class in the same rounds.
        let mut m = p.clone();
        m.task = crate::plan::Task::Multiclass {
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(m.gbdt_level_max(2), 3 * 2 * node * limbs);
        assert_eq!(m.last_round(), 8);
        assert_eq!((m.work_rounds(), linear().work_rounds()), (7, 20));
    }

    #[test]
    fn a_gbdt_plans_evaluation_is_one_round_after_the_last_tree() {
        let text = "[model]\nkind = \"gbdt\"\n\n[model.gbdt]\ntrees = 2\ndepth = 3\nbins = 16\n";
        let plain = trees(text).unwrap();
        let mut p = plain.clone();
        p.evaluation = Some(crate::plan::FedEvaluation {
            test: true,
            ..Default::default()
        });
        p.validate("g.toml").unwrap();
        let layout = p.layout();
        // Statistics, bins, 2 × 3 levels, then the evaluation round.
        assert_eq!(
            layout.phase(8),
            Some(RoundPhase::Tree {
                iteration: 2,
                level: 2
            })
        );
        assert_eq!(layout.evaluation_round(), Some(p.last_round()));
        assert_eq!(p.last_round(), plain.last_round() + 1);
        assert_eq!(layout.phase(p.last_round()), Some(RoundPhase::Evaluate));
        assert_eq!(p.work_rounds(), plain.work_rounds());
        // The trees' validation sums and their test sums: binary, 1024 bins.
        let block = 4 + crate::plan::STAT_LIMBS + 2 * crate::plan::DEFAULT_AUC_BINS;
        assert_eq!(p.kind_len(RoundPhase::Evaluate), Some(2 * block));
        assert!(p.max_update_len() >= 2 * block + MAX_SUM_TAG_SLOTS);
        assert_eq!(plain.layout().evaluation_round(), None);
        // Early stopping needs per-tree validation: refused, by name.
        let mut e = p.clone();
        e.evaluation = Some(crate::plan::FedEvaluation {
            early_stopping: Some(crate::plan::EarlyStopping { patience: 2 }),
            ..Default::default()
        });
        let m = e.validate("g.toml").unwrap_err().to_string();
        assert!(
            m.contains("`evaluation.early_stopping`") && m.contains("gbdt"),
            "{m}"
        );
    }
}
