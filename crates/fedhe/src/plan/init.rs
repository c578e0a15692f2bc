//! `fedhe plan init`: propose a plan from one CSV, with a note on every choice.

use std::path::Path;

use super::{CategoricalColumn, ModelSpec, Plan, PlanError, Privacy, Quorum, Training};
use crate::data::{CsvOptions, RawColumn, Target, TargetSpec, TaskKind, load_csv};

/// What the operator fixed; everything else is proposed.
#[derive(Debug, Clone, Default)]
pub struct ProposeOptions {
    /// Label column; default: the first of `data::DEFAULT_LABEL_NAMES`.
    pub label: Option<String>,
    pub positive: Option<String>,
    /// The task; `None` proposes one from the label column's values.
    pub task: Option<TaskKind>,
    /// The model (default: linear).
    pub model: ModelSpec,
    /// Columns to leave out.
    pub ignore: Vec<String>,
    /// Columns never left out as identifiers.
    pub keep: Vec<String>,
    /// Field separator (`None`: comma, or what the header shows).
    pub delimiter: Option<u8>,
    /// Cell texts read as missing (empty: the defaults).
    pub missing: Vec<String>,
    /// Leave the categories out of the plan: the sites discover them in
    /// the encrypted vocabulary rounds.
    pub vocabulary: Option<super::Vocabulary>,
    pub training: Training,
    pub quorum: Quorum,
    /// Masks and DP (the quorum is checked against them).
    pub privacy: Privacy,
    pub name: String,
}

/// Proposes a plan from `path`: its label and classes, numeric feature
/// columns by name, identifier and text columns ignored. Returns the plan
/// and one note per decision.
pub fn propose(path: &Path, opts: &ProposeOptions) -> Result<(Plan, Vec<String>), PlanError> {
    let csv = CsvOptions {
        label: opts.label.clone(),
        positive: opts.positive.clone(),
        target: match opts.task {
            None => TargetSpec::Auto,
            Some(TaskKind::Binary) => TargetSpec::Binary,
            Some(TaskKind::Multiclass) => TargetSpec::Classes(None),
            Some(TaskKind::Regression) => TargetSpec::Numeric,
        },
        ignore: opts.ignore.clone(),
        keep: opts.keep.clone(),
        delimiter: opts.delimiter,
        missing_tokens: opts.missing.clone(),
        ..CsvOptions::default()
    };
    // Each column's kind from a first look at its values, with a note.
    let gbdt = opts.model.kind == super::ModelKind::Gbdt;
    let missing = crate::data::profile::MissingNumbers::for_model(gbdt);
    let schema = crate::data::profile::auto_schema_for(path, &csv, opts.label.as_deref(), missing)?;
    let (csv, column_notes) = (schema.options, schema.notes);
    let loaded = load_csv(path, &csv)?;
    let ds = &loaded.dataset;
    let ignored: Vec<String> = loaded
        .header
        .iter()
        .filter(|h| {
            !h.is_empty()
                && h.as_str() != ds.label.column()
                && !ds.feature_names.iter().any(|f| f == *h)
        })
        .cloned()
        .collect();
    let numeric: Vec<String> = ds
        .columns
        .iter()
        .filter(|c| matches!(c, RawColumn::Numeric { .. }))
        .map(|c| c.name().to_string())
        .collect();
    let categorical: Vec<CategoricalColumn> = ds
        .columns
        .iter()
        .filter_map(|c| match c {
            RawColumn::Categorical {
                name, categories, ..
            } => Some(CategoricalColumn {
                name: name.clone(),
                categories: categories.clone(),
            }),
            RawColumn::Numeric { .. } => None,
        })
        .collect();
    let text_notes = column_notes;
    let mut plan = Plan::for_target(&ds.label, numeric, ignored);
    plan.columns.categorical = categorical;
    if let Some(v) = opts.vocabulary {
        for c in &mut plan.columns.categorical {
            c.categories.clear();
        }
        plan.preprocessing.vocabulary = Some(v);
    }
    if !opts.missing.is_empty() {
        plan.preprocessing.missing = opts.missing.clone();
    }
    plan.model = opts.model.clone();
    plan.training = opts.training;
    plan.quorum = opts.quorum.clone();
    plan.privacy = opts.privacy;
    plan.name = opts.name.clone();
    let mut notes: Vec<String> = loaded.notices.clone();
    notes.extend(text_notes);
    notes.push(match &ds.label {
        Target::Binary(m) => format!(
            "task binary: label {:?}, positive class {:?}, negative {:?} ({} of {} rows positive)",
            m.column,
            m.positive,
            m.negative,
            ds.positives(),
            ds.rows()
        ),
        Target::Multiclass { column, classes } => format!(
            "task multiclass: label {column:?}, {} classes in this order: {} (a site may lack some; a value outside the list is an error)",
            classes.len(),
            crate::data::shorten(&classes.join(", "), 200)
        ),
        Target::Regression { column } => format!(
            "task regression: label {column:?}, standardized federatedly like the features; predictions are in its original unit"
        ),
    });
    notes.push(format!(
        "{} numeric and {} categorical feature columns, matched by name at every site (any \
         order; extra columns are ignored)",
        plan.columns.numeric.len(),
        plan.columns.categorical.len()
    ));
    notes.push(format!(
        "missing cells: {} ({}); a row whose label is missing is skipped",
        plan.preprocessing
            .missing
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        if gbdt {
            "the trees send a missing number or category down each split's learned default branch"
        } else {
            "numbers get the federation's mean, categories a \"missing\" category"
        }
    ));
    if let Some(v) = opts.vocabulary
        && !plan.columns.categorical.is_empty()
    {
        notes.push(format!(
            "categories: discovered by the sites in two encrypted rounds (a value becomes a \
             category when the federation holds it at least {} times; rarer values go to \
             \"other\"; {} hashed buckets per column)",
            v.min_count, v.buckets
        ));
    }
    notes.push(if gbdt {
        "statistics: federated (encrypted sums and counts, one round), for the trees' bins; \
         trees read the raw values, nothing is standardized"
            .into()
    } else {
        "statistics and standardization: federated (encrypted sums and counts, one round)".into()
    });
    notes.push(format!(
        "model: {}",
        plan.model
            .architecture()
            .describe(crate::model::Head::for_target(&ds.label))
    ));
    notes.push(training_note(&plan));
    notes.extend(quorum_notes(&plan));
    plan.validate(&path.display().to_string())?;
    Ok((plan, notes))
}

/// The note on the training settings: FedAvg's rounds, or the trees'.
fn training_note(plan: &Plan) -> String {
    let t = &plan.training;
    if let Some(g) = plan.gbdt() {
        return format!(
            "training: {} boosting iterations of depth {} ({} rounds after the statistics and \
             bins rounds), {} bins, learning rate {}, λ {}, seed {}, {}% of each site's rows \
             held out for validation",
            g.trees,
            g.depth,
            g.trees * g.depth,
            g.bins,
            g.learning_rate,
            g.lambda,
            g.seed,
            t.validation_share * 100.0
        );
    }
    format!(
        "training: {} rounds × {} local epochs, {} at lr {} ({} schedule), batch {}, L2 {}, \
         seed {}, {}% of each site's rows held out for validation",
        t.rounds,
        t.sgd.epochs,
        t.sgd.optimizer.kind.name(),
        t.sgd.lr,
        t.sgd.optimizer.schedule.name(),
        t.sgd.batch_size,
        t.sgd.l2,
        t.sgd.seed,
        t.validation_share * 100.0
    )
}

/// The notes on the quorum (and on rounds of two allowed to go unmasked).
fn quorum_notes(plan: &Plan) -> Vec<String> {
    let q = &plan.quorum;
    let mut out = Vec::new();
    out.push(format!(
        "quorum: {}; a round closes when all have submitted, or after {} s with at least {}; \
         the standardization round waits for everyone (with pairwise masks and no named \
         roster, only until its deadline)",
        if q.roster.is_empty() {
            "every registered client".to_string()
        } else {
            format!("roster {}", q.roster.join(", "))
        },
        q.round_deadline_secs,
        q.min_clients
    ));
    if plan.privacy.masks && plan.privacy.allow_unmasked_pairs {
        out.push(
            "privacy: allow_unmasked_pairs = true: a round of two members goes unmasked, and \
             each of the two can read the other's update from the sum"
                .into(),
        );
    }
    out
}
