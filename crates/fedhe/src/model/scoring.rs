//! Scoring a CSV with a saved model, and writing predictions.

use std::path::Path;

use super::{Metrics, ModelError, ModelFile};
use crate::data::load_csv;

/// A scored file.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Positive-class probability per row.
    pub probs: Vec<f64>,
    /// 0/1 labels, when the file has the label column.
    pub labels: Option<Vec<f64>>,
    /// Metrics, when the file has labels.
    pub metrics: Option<Metrics>,
    /// What the loader decided (extra columns ignored, ...).
    pub notices: Vec<String>,
}

/// Reads `path` with the model's schema (features matched by name) and scores it.
pub fn score_csv(model: &ModelFile, path: &Path) -> Result<Scored, ModelError> {
    let loaded = load_csv(path, &model.csv_options())?;
    let x = model.standardization.transformed(&loaded.dataset.x);
    let probs = model.model().predict_proba(&x).to_vec();
    let (labels, metrics) = if loaded.has_labels {
        let y = loaded.dataset.y.to_vec();
        let m = Metrics::compute(&y, &probs);
        (Some(y), Some(m))
    } else {
        (None, None)
    };
    Ok(Scored {
        probs,
        labels,
        metrics,
        notices: loaded.notices,
    })
}

/// Writes `row,probability,predicted[,actual]` with labels in the model's terms.
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
    let name = |v: f64| {
        if v == 1.0 {
            model.label.positive.as_str()
        } else {
            model.label.negative.as_str()
        }
    };
    let mut header = vec!["row", "probability", "predicted"];
    if scored.labels.is_some() {
        header.push("actual");
    }
    w.write_record(&header).map_err(|e| err(e.into()))?;
    for (i, p) in scored.probs.iter().enumerate() {
        let mut rec = vec![
            (i + 1).to_string(),
            format!("{p:.6}"),
            name(f64::from(u8::from(*p >= 0.5))).to_string(),
        ];
        if let Some(y) = &scored.labels {
            rec.push(name(y[i]).to_string());
        }
        w.write_record(&rec).map_err(|e| err(e.into()))?;
    }
    w.flush().map_err(err)
}
