//! `fedhe plan init`: propose a plan from one CSV, with a note on every choice.

use std::path::Path;

use super::{Plan, PlanError, Quorum, Training};
use crate::data::{CsvOptions, DataError, load_csv};

/// What the operator fixed; everything else is proposed.
#[derive(Debug, Clone, Default)]
pub struct ProposeOptions {
    /// Label column; default: the first of `data::DEFAULT_LABEL_NAMES`.
    pub label: Option<String>,
    pub positive: Option<String>,
    /// Columns to leave out.
    pub ignore: Vec<String>,
    /// Columns never left out as identifiers.
    pub keep: Vec<String>,
    /// Field separator (`None`: comma, or what the header shows).
    pub delimiter: Option<u8>,
    pub training: Training,
    pub quorum: Quorum,
    pub name: String,
}

/// Proposes a plan from `path`: its label and classes, numeric feature
/// columns by name, identifier and text columns ignored. Returns the plan
/// and one note per decision.
pub fn propose(path: &Path, opts: &ProposeOptions) -> Result<(Plan, Vec<String>), PlanError> {
    let mut ignore = opts.ignore.clone();
    let mut text_notes = Vec::new();
    // A text column stops the numeric loader at its first cell: leave it out
    // and read again (at most once per column).
    let loaded = loop {
        let csv = CsvOptions {
            label: opts.label.clone(),
            positive: opts.positive.clone(),
            ignore: ignore.clone(),
            keep: opts.keep.clone(),
            delimiter: opts.delimiter,
            ..CsvOptions::default()
        };
        match load_csv(path, &csv) {
            Ok(l) => break l,
            Err(DataError::NotNumeric { at, value })
                if at
                    .column
                    .as_ref()
                    .is_some_and(|(_, n)| !n.is_empty() && !ignore.contains(n)) =>
            {
                let Some((_, name)) = at.column.clone() else {
                    return Err(DataError::NotNumeric { at, value }.into());
                };
                text_notes.push(format!(
                    "column {name:?} ignored: it holds text (e.g. {:?} at line {}); categorical \
                     columns are not supported yet",
                    crate::data::shorten(&value, 40),
                    at.line
                ));
                ignore.push(name);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let ds = &loaded.dataset;
    let ignored: Vec<String> = loaded
        .header
        .iter()
        .filter(|h| {
            !h.is_empty() && **h != ds.label.column && !ds.feature_names.iter().any(|f| f == *h)
        })
        .cloned()
        .collect();
    let mut plan = Plan::binary(ds.label.clone(), ds.feature_names.clone(), ignored);
    plan.training = opts.training;
    plan.quorum = opts.quorum.clone();
    plan.name = opts.name.clone();
    let mut notes: Vec<String> = loaded.notices.clone();
    notes.extend(text_notes);
    notes.push(format!(
        "task binary: label {:?}, positive class {:?}, negative {:?} ({} of {} rows positive)",
        ds.label.column,
        ds.label.positive,
        ds.label.negative,
        ds.positives(),
        ds.rows()
    ));
    notes.push(format!(
        "{} numeric feature columns, matched by name at every site (any order; extra columns \
         are ignored)",
        ds.feature_names.len()
    ));
    notes.push("standardization: federated (encrypted sums, first round)".into());
    notes.push("model: logistic regression".into());
    let t = &plan.training;
    notes.push(format!(
        "training: {} rounds × {} local epochs, lr {}, batch {}, L2 {}, seed {}, {}% of each \
         site's rows held out for validation",
        t.rounds,
        t.epochs,
        t.lr,
        t.batch_size,
        t.l2,
        t.seed,
        t.validation_share * 100.0
    ));
    let q = &plan.quorum;
    notes.push(format!(
        "quorum: {}; a round closes when all have submitted, or after {} s with at least {}; \
         the standardization round waits for everyone",
        if q.roster.is_empty() {
            "every registered client".to_string()
        } else {
            format!("roster {}", q.roster.join(", "))
        },
        q.round_deadline_secs,
        q.min_clients
    ));
    plan.validate(&path.display().to_string())?;
    Ok((plan, notes))
}
