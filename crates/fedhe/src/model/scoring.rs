//! Scoring a CSV with a saved model, and writing predictions.

use std::path::Path;

use ndarray::Array2;

use super::{Evaluation, ModelError, ModelFile};
use crate::data::{DataError, Target, load_csv};

/// A scored file.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Per row: the probability of class 1 (binary), the class
    /// probabilities (multi-class), or the predicted value (regression).
    pub predictions: Array2<f64>,
    /// Labels when the file has the label column: class indices, or values
    /// (NaN where a row's label is missing).
    pub labels: Option<Vec<f64>>,
    /// Metrics over the labelled rows, when the file has labels.
    pub evaluation: Option<Evaluation>,
    /// What the loader decided (extra columns ignored, ...).
    pub notices: Vec<String>,
}

impl Scored {
    /// The predicted `y` of row `i`: 0/1, the class index, or the value.
    pub fn predicted(&self, i: usize, target: &Target) -> f64 {
        let row = self.predictions.row(i);
        match target {
            Target::Binary(_) => f64::from(u8::from(row[0] >= 0.5)),
            Target::Multiclass { .. } => row.as_slice().map_or(0.0, |r| super::argmax(r) as f64),
            Target::Regression { .. } => row[0],
        }
    }

    pub fn rows(&self) -> usize {
        self.predictions.nrows()
    }
}

/// Reads `path` with the model's schema (features matched by name) and scores it.
///
/// A value outside the categories of a model without an "(other)" input is
/// an error naming the file, line, column and value, and the model.
pub fn score_csv(model: &ModelFile, path: &Path) -> Result<Scored, ModelError> {
    let loaded = load_csv(path, &model.csv_options()).map_err(|e| match e {
        DataError::UnknownCategory {
            at,
            value,
            categories,
        } => DataError::UnseenCategory {
            at,
            value,
            categories,
        },
        other => other,
    })?;
    let predictions = model.predict(&loaded.dataset.x)?;
    let (labels, evaluation) = if loaded.has_labels {
        let y = loaded.dataset.y.to_vec();
        // Metrics over the rows that have a label (all are predicted).
        let labelled: Vec<usize> = (0..y.len()).filter(|&i| !y[i].is_nan()).collect();
        let e = (!labelled.is_empty()).then(|| {
            let yl: Vec<f64> = labelled.iter().map(|&i| y[i]).collect();
            let pl = predictions.select(ndarray::Axis(0), &labelled);
            Evaluation::compute(model.head(), &yl, &pl)
        });
        (Some(y), e)
    } else {
        (None, None)
    };
    Ok(Scored {
        predictions,
        labels,
        evaluation,
        notices: loaded.notices,
    })
}

/// Writes one row per prediction, labels in the model's terms:
/// binary `row,probability,predicted[,actual]`; multi-class
/// `row,predicted,p_<class>…[,actual]`; regression `row,predicted[,actual]`.
pub fn write_predictions(
    model: &ModelFile,
    scored: &Scored,
    path: &Path,
) -> Result<(), ModelError> {
    let err = |e: std::io::Error| ModelError::Write {
        file: path.display().to_string(),
        source: e,
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| err(e.into()))?;
    let target = &model.target;
    let mut header: Vec<String> = vec!["row".into()];
    match target {
        Target::Binary(_) => header.extend(["probability".into(), "predicted".into()]),
        Target::Multiclass { classes, .. } => {
            header.push("predicted".into());
            header.extend(classes.iter().map(|c| format!("p_{c}")));
        }
        Target::Regression { .. } => header.push("predicted".into()),
    }
    if scored.labels.is_some() {
        header.push("actual".into());
    }
    w.write_record(&header).map_err(|e| err(e.into()))?;
    let mut rec: Vec<String> = Vec::with_capacity(header.len());
    for i in 0..scored.rows() {
        rec.clear();
        rec.push((i + 1).to_string());
        let predicted = scored.predicted(i, target);
        match target {
            Target::Binary(_) => {
                rec.push(format!("{:.6}", scored.predictions[[i, 0]]));
                rec.push(target.value_name(predicted));
            }
            Target::Multiclass { .. } => {
                rec.push(target.value_name(predicted));
                rec.extend(scored.predictions.row(i).iter().map(|p| format!("{p:.6}")));
            }
            Target::Regression { .. } => rec.push(format!("{predicted}")),
        }
        if let Some(y) = &scored.labels {
            rec.push(if y[i].is_nan() {
                String::new()
            } else {
                target.value_name(y[i])
            });
        }
        w.write_record(&rec).map_err(|e| err(e.into()))?;
    }
    w.flush().map_err(err)
}
