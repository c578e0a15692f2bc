//! Plan validation: one validator per plan section, each naming the field
//! it refuses. `Plan::validate` runs them in the file's order.

use std::collections::{HashMap, HashSet};

use super::{Columns, ModelKind, Plan, PlanError, Preprocessing, Quorum, Task, Training};

/// A refusal: the field and why.
type Refusal = (&'static str, String);

impl Plan {
    /// Checks every field; errors name the field.
    pub fn validate(&self, file: &str) -> Result<(), PlanError> {
        self.sections()
            .map_err(|(field, message)| PlanError::Invalid {
                file: file.to_string(),
                field: field.to_string(),
                message,
            })
    }

    /// The plan under a key whose sums hold at most `max_clients`
    /// contributors (`fedhe serve`, and `fedhe plan check --public-key`):
    /// a quorum or a roster beyond it could never close a round.
    pub fn validate_for_key(&self, file: &str, max_clients: u32) -> Result<(), PlanError> {
        let q = &self.quorum;
        within_key(file, "quorum.min_clients", q.min_clients, max_clients)?;
        within_key(file, "quorum.roster (members)", q.roster.len(), max_clients)
    }
}

/// `count` contributors (a quorum, a roster) within the `max_clients` one
/// sum under the key may hold; `field` names the setting (a plan field or
/// `--min-clients`).
pub fn within_key(
    file: &str,
    field: &str,
    count: usize,
    max_clients: u32,
) -> Result<(), PlanError> {
    if count <= max_clients as usize {
        return Ok(());
    }
    Err(PlanError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        message: format!(
            "{count} is more than the {max_clients} contributors one sum under this key may \
             hold: no round could ever close; lower it, or make a key for more clients \
             (fedhe keygen --max-clients)"
        ),
    })
}

impl Plan {
    /// The first refusal, section by section in the file's order.
    fn sections(&self) -> Result<(), Refusal> {
        columns(&self.columns, &self.preprocessing)?;
        task(&self.task)?;
        class_tokens(self)?;
        model(self)?;
        super::gbdt::check(self)?;
        training(&self.training)?;
        if let Some(dp) = &self.privacy.dp {
            dp.validate().map_err(|e| ("privacy.dp", e))?;
            if self.training.sgd.optimizer.prox_mu > 0.0 {
                return Err((
                    "training.prox_mu",
                    "FedProx does not apply to DP-SGD's steps: set it to 0 with privacy.dp".into(),
                ));
            }
            reachable_epsilon(self, dp)?;
        }
        quorum(&self.quorum)?;
        if let Some(e) = &self.evaluation {
            e.check()?;
        }
        masked_quorum(self)?;
        pinned_identities(self)
    }
}

/// `[columns]` and what `[preprocessing]` says of them.
fn columns(c: &Columns, pre: &Preprocessing) -> Result<(), Refusal> {
    if c.label.trim().is_empty() {
        return Err(("columns.label", "must name the label column".into()));
    }
    if c.numeric.is_empty() && c.categorical.is_empty() {
        return Err(("columns.numeric", "the plan has no feature columns".into()));
    }
    vocabulary(pre)?;
    categories(c, pre)?;
    unique_names(c)
}

/// `[preprocessing.vocabulary]`.
fn vocabulary(pre: &Preprocessing) -> Result<(), Refusal> {
    let Some(v) = pre.vocabulary else {
        return Ok(());
    };
    if !(v.buckets.is_power_of_two() && (16..=65_536).contains(&v.buckets)) {
        return Err((
            "preprocessing.vocabulary.buckets",
            format!("{} is not a power of two from 16 to 65536", v.buckets),
        ));
    }
    if v.min_count == 0 {
        return Err((
            "preprocessing.vocabulary.min_count",
            "must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Each categorical column's list: its size, no repeats, no missing token.
fn categories(c: &Columns, pre: &Preprocessing) -> Result<(), Refusal> {
    for cat in &c.categorical {
        if cat.categories.is_empty() && pre.vocabulary.is_some() {
            continue;
        }
        if !(1..=crate::data::MAX_CATEGORIES).contains(&cat.categories.len()) {
            return Err((
                "columns.categorical",
                format!(
                    "column {:?} has {} categories; give 1 to {} (or none, with \
                     preprocessing.vocabulary, to discover them)",
                    cat.name,
                    cat.categories.len(),
                    crate::data::MAX_CATEGORIES
                ),
            ));
        }
        let mut seen = HashSet::new();
        for k in &cat.categories {
            if !seen.insert(k.as_str()) {
                return Err((
                    "columns.categorical",
                    format!("column {:?} lists category {k:?} twice", cat.name),
                ));
            }
            if pre.missing.iter().any(|m| m == k) {
                return Err((
                    "columns.categorical",
                    format!(
                        "column {:?}: category {k:?} is also a missing-value token \
                         (preprocessing.missing)",
                        cat.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every column is named once, in one list.
fn unique_names(c: &Columns) -> Result<(), Refusal> {
    let mut seen = HashMap::new();
    seen.insert(c.label.as_str(), "columns.label");
    let categorical_names: Vec<String> = c.categorical.iter().map(|k| k.name.clone()).collect();
    for (list, field) in [
        (&c.numeric, "columns.numeric"),
        (&categorical_names, "columns.categorical"),
        (&c.ignored, "columns.ignored"),
    ] {
        for name in list {
            if name.trim().is_empty() {
                return Err((field, "a column name is empty".into()));
            }
            if let Some(prev) = seen.insert(name.as_str(), field) {
                return Err((field, format!("column {name:?} is also in {prev}")));
            }
        }
    }
    Ok(())
}

/// `[task]`: two distinct binary values, or 2 to MAX_CLASSES distinct classes.
fn task(task: &Task) -> Result<(), Refusal> {
    match task {
        Task::Binary { positive, negative } => {
            if positive.is_empty() || negative.is_empty() {
                return Err(("task", "positive and negative must be label values".into()));
            }
            if positive == negative {
                return Err((
                    "task.negative",
                    format!("equals the positive class {positive:?}"),
                ));
            }
        }
        Task::Multiclass { classes } => {
            if !(2..=crate::data::MAX_CLASSES).contains(&classes.len()) {
                return Err((
                    "task.classes",
                    format!(
                        "{} classes; a multi-class task has 2 to {}",
                        classes.len(),
                        crate::data::MAX_CLASSES
                    ),
                ));
            }
            let mut seen = HashSet::new();
            for c in classes {
                if c.trim().is_empty() {
                    return Err(("task.classes", "a class name is empty".into()));
                }
                if !seen.insert(c.as_str()) {
                    return Err(("task.classes", format!("class {c:?} is listed twice")));
                }
            }
        }
        Task::Regression => {}
    }
    Ok(())
}

/// No class value is also a missing-value token: every row of that class
/// would be skipped as unlabelled, and the model would learn one class.
fn class_tokens(plan: &Plan) -> Result<(), Refusal> {
    let classes: Vec<&String> = match &plan.task {
        Task::Binary { positive, negative } => vec![positive, negative],
        Task::Multiclass { classes } => classes.iter().collect(),
        Task::Regression => Vec::new(),
    };
    let missing = &plan.preprocessing.missing;
    match classes
        .iter()
        .find(|c| missing.iter().any(|m| m.trim() == c.trim()))
    {
        Some(c) => Err((
            "preprocessing.missing",
            format!(
                "{c:?} is a class of label column {:?} (task) and a missing-value token: \
                 every row of that class would be skipped as unlabelled; remove {c:?} from \
                 preprocessing.missing",
                plan.columns.label
            ),
        )),
        None => Ok(()),
    }
}

/// Training rows of the largest site a plan's `target_epsilon` is checked
/// against: below its floor there, no site can reach it.
pub const LARGEST_SITE_ROWS: usize = 1_000_000_000;

/// A `target_epsilon` some site can reach: not below what even a site of
/// [`LARGEST_SITE_ROWS`] rows spends at the largest noise multiplier.
fn reachable_epsilon(plan: &Plan, dp: &crate::privacy::DpSettings) -> Result<(), Refusal> {
    let Some(target) = dp.target_epsilon else {
        return Ok(());
    };
    let t = &plan.training;
    let epochs = t.rounds.saturating_mul(t.sgd.epochs as u64);
    let floor = dp
        .epsilon_floor(LARGEST_SITE_ROWS, t.sgd.batch_size, epochs)
        .map_err(|e| ("privacy.dp", e.to_string()))?;
    if target < floor {
        return Err((
            "privacy.dp.target_epsilon",
            format!(
                "{target} cannot be reached: even a site of {LARGEST_SITE_ROWS} training rows \
                 at the largest noise multiplier ({}) spends ε = {floor:.4} over {} rounds × {} \
                 epochs; choose a target_epsilon of at least {floor:.4}",
                crate::privacy::MAX_NOISE_MULTIPLIER,
                t.rounds,
                t.sgd.epochs
            ),
        ));
    }
    Ok(())
}

/// `[model]`: hidden layers only for an MLP, and sizes it accepts.
fn model(plan: &Plan) -> Result<(), Refusal> {
    match plan.model.kind {
        ModelKind::Linear if !plan.model.hidden.is_empty() => Err((
            "model.hidden",
            "hidden layers belong to kind = \"mlp\"".into(),
        )),
        ModelKind::Mlp => {
            crate::model::mlp::check_hidden(&plan.model.hidden).map_err(|e| ("model.hidden", e))
        }
        ModelKind::Linear => Ok(()),
        // `plan::gbdt::check`.
        ModelKind::Gbdt => Ok(()),
    }
}

/// `[training]`: every setting within its range.
fn training(t: &Training) -> Result<(), Refusal> {
    if !(1..=100_000).contains(&t.rounds) {
        return Err((
            "training.rounds",
            format!("{} is outside 1..=100000", t.rounds),
        ));
    }
    if !(1..=100_000).contains(&t.sgd.epochs) {
        return Err((
            "training.epochs",
            format!("{} is outside 1..=100000", t.sgd.epochs),
        ));
    }
    if !(t.sgd.lr.is_finite() && t.sgd.lr > 0.0 && t.sgd.lr <= 100.0) {
        return Err(("training.lr", format!("{} is not in (0, 100]", t.sgd.lr)));
    }
    if t.sgd.batch_size == 0 {
        return Err(("training.batch_size", "must be at least 1".into()));
    }
    if !(t.sgd.l2.is_finite() && t.sgd.l2 >= 0.0) {
        return Err((
            "training.l2",
            format!("{} is not zero or positive", t.sgd.l2),
        ));
    }
    if !(t.sgd.momentum.is_finite() && (0.0..1.0).contains(&t.sgd.momentum)) {
        return Err((
            "training.momentum",
            format!("{} is outside [0, 1)", t.sgd.momentum),
        ));
    }
    let o = &t.sgd.optimizer;
    if !(o.prox_mu.is_finite() && o.prox_mu >= 0.0) {
        return Err((
            "training.prox_mu",
            format!("{} is not zero or positive", o.prox_mu),
        ));
    }
    if let Err(crate::model::ModelError::Setting(m)) = o.server.validate() {
        return Err(("training.server_optimizer", m));
    }
    if let Err(e) = t.sgd.optimizer.validate(t.sgd.momentum) {
        let why = match e {
            crate::model::ModelError::Setting(m) => m,
            e => e.to_string(),
        };
        return Err(("training.optimizer", why));
    }
    if !(t.validation_share.is_finite() && (0.0..0.9).contains(&t.validation_share)) {
        return Err((
            "training.validation_share",
            format!("{} is outside [0, 0.9)", t.validation_share),
        ));
    }
    Ok(())
}

/// `[identities]`: fingerprints (8 groups of 4 hex digits) of ids on the
/// named roster.
fn pinned_identities(plan: &Plan) -> Result<(), Refusal> {
    for (id, fp) in &plan.identities {
        if !plan.quorum.roster.contains(id) {
            return Err((
                "identities",
                format!("{id:?} is not on quorum.roster: only a named roster's ids can be pinned"),
            ));
        }
        let groups: Vec<&str> = fp.split(':').collect();
        let well_formed = groups.len() == 8
            && groups
                .iter()
                .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err((
                "identities",
                format!(
                    "{id} = {fp:?} is not an identity fingerprint (8 groups of 4 hex digits, as \
                     `fedhe client` prints it)"
                ),
            ));
        }
    }
    Ok(())
}

/// `[quorum]`: a reachable minimum, a deadline, a roster of valid ids.
fn quorum(q: &Quorum) -> Result<(), Refusal> {
    if q.min_clients == 0 {
        return Err(("quorum.min_clients", "must be at least 1".into()));
    }
    if q.min_clients == 1 && !q.allow_single_contributor {
        return Err((
            "quorum.min_clients",
            "1 would publish a single client's update to every key holder; set \
             quorum.allow_single_contributor = true to allow it"
                .into(),
        ));
    }
    if !(1..=7 * 86_400).contains(&q.round_deadline_secs) {
        return Err((
            "quorum.round_deadline_secs",
            format!("{} is outside 1..=604800 (one week)", q.round_deadline_secs),
        ));
    }
    let mut ids = HashSet::new();
    for id in &q.roster {
        if !crate::ids::valid_client_id(id) {
            return Err((
                "quorum.roster",
                format!("{id:?} is not a client id (1-64 of A-Z a-z 0-9 _ . -)"),
            ));
        }
        if !ids.insert(id) {
            return Err(("quorum.roster", format!("{id:?} is listed twice")));
        }
    }
    if !q.roster.is_empty() && q.roster.len() < q.min_clients {
        return Err((
            "quorum.roster",
            format!(
                "{} members cannot reach min_clients = {}",
                q.roster.len(),
                q.min_clients
            ),
        ));
    }
    Ok(())
}

/// `[quorum]` under `[privacy]` masks: a masked round needs three members
/// (with two, each update is the sum minus the other's), unless the plan
/// says `allow_unmasked_pairs = true` (or `allow_single_contributor`) in
/// words.
fn masked_quorum(plan: &Plan) -> Result<(), Refusal> {
    let q = &plan.quorum;
    if q.min_clients < plan.min_round_members() {
        return Err((
            "quorum.min_clients",
            format!(
                "{} with pairwise masks lets the aggregator run a round of {} members, which \
                 masks nothing (each member's update is the sum minus the other's); use at \
                 least {}, or set privacy.allow_unmasked_pairs = true (or privacy.masks = false) \
                 to allow it",
                q.min_clients,
                q.min_clients,
                super::MIN_MASKED_MEMBERS
            ),
        ));
    }
    Ok(())
}
