//! The self-describing model file (JSON).

use std::path::Path;

use ndarray::Array1;
use serde::{Deserialize, Serialize};

use super::{LogisticRegression, ModelError, TrainConfig};
use crate::data::{CsvOptions, FeatureSelection, LabelMapping, Standardizer};

/// Value of the `format` field.
pub const FORMAT_NAME: &str = "fedhe-model";
/// Current `version`; older readers refuse newer files.
pub const FORMAT_VERSION: u32 = 1;

/// Where a model came from. Written the same way by every path that makes
/// a model (local training, a federation, a simulation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// "centralized", "federated" or "federated (simulated)".
    pub kind: String,
    /// Training data file(s), as given.
    pub data: Vec<String>,
    /// Training rows (summed over clients for a federation).
    pub rows: usize,
    /// Local training settings (per round in a federation).
    #[serde(default)]
    pub train: Option<TrainConfig>,
    /// Training rounds of a federation.
    #[serde(default)]
    pub rounds: Option<u64>,
    /// Fingerprint of the federation plan.
    #[serde(default)]
    pub plan: Option<String>,
    /// The aggregator's address.
    #[serde(default)]
    pub server: Option<String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// `fedhe <version>`.
    pub tool: String,
    /// Free-form settings, as files from before typed provenance have them.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub settings: serde_json::Value,
}

/// Kind of a model trained on one machine.
pub const CENTRALIZED: &str = "centralized";
/// Kind of a model trained by a federation.
pub const FEDERATED: &str = "federated";
/// Kind of a model trained by `fedhe simulate` or the demo.
pub const SIMULATED: &str = "federated (simulated)";

impl Provenance {
    /// A model trained on one machine, now.
    pub fn centralized(data: Vec<String>, rows: usize, train: TrainConfig) -> Self {
        Self {
            kind: CENTRALIZED.to_string(),
            data,
            rows,
            train: Some(train),
            rounds: None,
            plan: None,
            server: None,
            created: rfc3339_now(),
            tool: format!("fedhe {}", env!("CARGO_PKG_VERSION")),
            settings: serde_json::Value::Null,
        }
    }

    /// A model trained by a federation under plan `plan` (fingerprint), now.
    pub fn federated(
        kind: &str,
        data: Vec<String>,
        rows: usize,
        train: TrainConfig,
        rounds: u64,
        plan: String,
        server: Option<String>,
    ) -> Self {
        Self {
            kind: kind.to_string(),
            rounds: Some(rounds),
            plan: Some(plan),
            server,
            ..Self::centralized(data, rows, train)
        }
    }
}

/// Everything needed to score new data: features by name, the scaler fitted on
/// the training data, the label mapping, weights and bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    pub feature_names: Vec<String>,
    pub standardization: Standardizer,
    pub label: LabelMapping,
    pub weights: Vec<f64>,
    pub bias: f64,
    pub provenance: Provenance,
}

impl ModelFile {
    pub fn new(
        feature_names: Vec<String>,
        standardization: Standardizer,
        label: LabelMapping,
        model: &LogisticRegression,
        provenance: Provenance,
    ) -> Self {
        Self {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            feature_names,
            standardization,
            label,
            weights: model.weights.to_vec(),
            bias: model.bias,
            provenance,
        }
    }

    /// The model itself.
    pub fn model(&self) -> LogisticRegression {
        LogisticRegression {
            weights: Array1::from(self.weights.clone()),
            bias: self.bias,
        }
    }

    /// CSV options that read a file the way this model needs it: its
    /// features by name, its label column (optional) and label mapping.
    pub fn csv_options(&self) -> CsvOptions {
        CsvOptions {
            features: FeatureSelection::Named(self.feature_names.clone()),
            mapping: Some(self.label.clone()),
            label_optional: true,
            ..CsvOptions::default()
        }
    }

    /// The model as pretty JSON.
    pub fn to_json(&self) -> Result<String, ModelError> {
        serde_json::to_string_pretty(self).map_err(|e| ModelError::Format {
            file: "<model>".into(),
            reason: format!("cannot serialize: {e}"),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        std::fs::write(path, self.to_json()? + "\n").map_err(|source| ModelError::Write {
            file: path.display().to_string(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_json(&text, &file)
    }

    /// Parses and checks a model file; `file` names it in errors.
    pub fn from_json(text: &str, file: &str) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::Format {
            file: file.to_string(),
            reason,
        };
        let probe: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        if probe.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(bad(format!("missing \"format\": \"{FORMAT_NAME}\"")));
        }
        match probe.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(bad(format!(
                    "format version {v}; this fedhe reads version {FORMAT_VERSION}"
                )));
            }
            None => return Err(bad("missing \"version\"".into())),
        }
        let m: ModelFile = serde_json::from_value(probe).map_err(|e| bad(e.to_string()))?;
        let d = m.feature_names.len();
        if m.weights.len() != d
            || m.standardization.mean.len() != d
            || m.standardization.std.len() != d
        {
            return Err(bad(format!(
                "{d} feature names but {} weights, {} means, {} deviations",
                m.weights.len(),
                m.standardization.mean.len(),
                m.standardization.std.len()
            )));
        }
        let finite = m
            .weights
            .iter()
            .chain(&m.standardization.mean)
            .all(|v| v.is_finite())
            && m.standardization
                .std
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
            && m.bias.is_finite();
        if !finite {
            return Err(bad(
                "weights or standardization are not finite positive numbers".into(),
            ));
        }
        Ok(m)
    }
}

fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
