//! The self-describing model file (JSON). Version 2 holds the task and its
//! classes, the model kind and shape, the flat parameters and a regression
//! target's scaling; version 1 files (binary logistic regression: weights
//! and bias) still load and score.

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::network::param_count;
use super::{Architecture, Evaluation, Head, Model, ModelError, TrainConfig};
use crate::data::{
    CategoricalSpec, CsvOptions, EncodedColumn, Encoder, FeatureSelection, LabelMapping,
    Standardizer, Target, TargetSpec,
};

/// Value of the `format` field.
pub const FORMAT_NAME: &str = "fedhe-model";
/// Current `version`; older readers refuse newer files.
pub const FORMAT_VERSION: u32 = 2;

/// The most a model file may have (a million parameters take about 25 MB):
/// a file read whole must not be `/dev/zero`.
pub const MAX_MODEL_BYTES: u64 = 1 << 28;

/// How a regression target was standardized for training: predictions are
/// `mean + std · output`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScaling {
    pub mean: f64,
    pub std: f64,
}

impl TargetScaling {
    /// From a row count and the target's sum and sum of squares.
    pub fn from_moments(count: f64, sum: f64, sum_sq: f64) -> TargetScaling {
        let s = Standardizer::from_moments(count, &[sum], &[sum_sq]);
        TargetScaling {
            mean: s.mean[0],
            std: s.std[0],
        }
    }

    /// Fitted on these values.
    pub fn fit(y: &[f64]) -> TargetScaling {
        let sum: f64 = y.iter().sum();
        let sum_sq: f64 = y.iter().map(|v| v * v).sum();
        TargetScaling::from_moments(y.len() as f64, sum, sum_sq)
    }

    pub fn scale(&self, y: f64) -> f64 {
        (y - self.mean) / self.std
    }

    pub fn unscale(&self, z: f64) -> f64 {
        self.mean + self.std * z
    }
}

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
    /// DP-SGD's spending on the training rows (a site's, in a federation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<crate::privacy::PrivacyRecord>,
    /// Encrypted federated evaluation: the pooled validation figures per
    /// round, the round kept (the best validation loss), early stopping and
    /// the federated test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<super::FederatedFigures>,
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
            privacy: None,
            federated: None,
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

/// Everything needed to score new data: features by name, the scaler fitted
/// on the training data, the task and its classes, the model's kind, shape
/// and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    /// Names of the model's inputs (the encoded features).
    pub feature_names: Vec<String>,
    /// How raw CSV columns become the inputs: missing cells, categories
    /// (absent in files from before preprocessing: numeric columns named
    /// as the inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Encoder>,
    /// Standardization of the inputs.
    pub standardization: Standardizer,
    pub target: Target,
    /// Regression only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scaling: Option<TargetScaling>,
    pub architecture: Architecture,
    /// The flat parameter vector (per layer: weights row-major, then biases).
    /// Empty for gradient-boosted trees.
    pub params: Vec<f64>,
    /// Gradient-boosted trees: splits, default directions and leaf values
    /// over the raw columns (`feature_names`; the standardization is the
    /// identity). No per-node hessian sums or counts (docs/privacy.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<super::Ensemble>,
    pub provenance: Provenance,
}

/// The version 1 layout: binary logistic regression.
#[derive(Deserialize)]
struct ModelFileV1 {
    feature_names: Vec<String>,
    standardization: Standardizer,
    label: LabelMapping,
    weights: Vec<f64>,
    bias: f64,
    provenance: Provenance,
}

impl ModelFile {
    pub fn new(
        encoder: Encoder,
        standardization: Standardizer,
        target: Target,
        target_scaling: Option<TargetScaling>,
        model: &dyn Model,
        provenance: Provenance,
    ) -> Self {
        Self {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            feature_names: encoder.output_names(),
            preprocessing: Some(encoder),
            standardization,
            target,
            target_scaling,
            architecture: model.architecture(),
            params: model.params().to_vec(),
            ensemble: None,
            provenance,
        }
    }

    /// A gradient-boosted ensemble over the encoder's raw columns (its fills
    /// are not used: missing cells take the trees' default directions).
    pub fn gbdt(
        encoder: Encoder,
        target: Target,
        target_scaling: Option<TargetScaling>,
        ensemble: super::Ensemble,
        provenance: Provenance,
    ) -> Self {
        let feature_names: Vec<String> = encoder
            .columns
            .iter()
            .map(|c| match c {
                EncodedColumn::Numeric { name, .. } | EncodedColumn::Categorical { name, .. } => {
                    name.clone()
                }
            })
            .collect();
        let d = feature_names.len();
        Self {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            feature_names,
            preprocessing: Some(encoder),
            standardization: Standardizer {
                mean: vec![0.0; d],
                std: vec![1.0; d],
            },
            target,
            target_scaling,
            architecture: Architecture::Gbdt,
            params: Vec::new(),
            ensemble: Some(ensemble),
            provenance,
        }
    }

    pub fn head(&self) -> Head {
        Head::for_target(&self.target)
    }

    /// The model itself.
    pub fn model(&self) -> Result<Box<dyn Model>, ModelError> {
        let mut m = super::build(&self.architecture, self.feature_names.len(), self.head(), 0)?;
        m.set_params(&self.params)?;
        Ok(m)
    }

    /// The preprocessing (a numeric pass-through for older files).
    pub fn encoder(&self) -> Encoder {
        self.preprocessing
            .clone()
            .unwrap_or_else(|| Encoder::numeric(&self.feature_names))
    }

    /// Model inputs of raw rows (as loaded with [`csv_options`](Self::csv_options)):
    /// encoded and standardized.
    pub fn inputs(&self, x: &Array2<f64>) -> Array2<f64> {
        match &self.preprocessing {
            Some(e) => self.standardization.transformed(&e.transform(x)),
            None => self.standardization.transformed(x),
        }
    }

    /// Predictions for raw rows: the probability of class 1, the class
    /// probabilities, or the value in the target's unit.
    pub fn predict(&self, x: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        if let Some(e) = &self.ensemble {
            return Ok(e.predictions(self.head(), self.target_scaling.as_ref(), x.view()));
        }
        let mut p = super::predictions(&*self.model()?, &self.inputs(x));
        if let Some(t) = &self.target_scaling {
            p.mapv_inplace(|z| t.unscale(z));
        }
        Ok(p)
    }

    /// Metrics on raw rows with labels `y` (class indices or values).
    pub fn evaluate(&self, x: &Array2<f64>, y: &[f64]) -> Result<Evaluation, ModelError> {
        Ok(Evaluation::compute(self.head(), y, &self.predict(x)?))
    }

    /// CSV options that read a file the way this model needs it: its
    /// features by name, its label column (optional) and label mapping.
    /// A value outside a categorical column's categories is read as
    /// "(other)" when the model has that input, and always for trees (a
    /// split sends every code past the categories the "(other)" way);
    /// otherwise it is an error.
    pub fn csv_options(&self) -> CsvOptions {
        let (target, mapping) = match &self.target {
            Target::Binary(m) => (TargetSpec::Binary, Some(m.clone())),
            Target::Multiclass { classes, .. } => {
                (TargetSpec::Classes(Some(classes.clone())), None)
            }
            Target::Regression { .. } => (TargetSpec::Numeric, None),
        };
        let encoder = self.encoder();
        let mut numeric = Vec::new();
        let mut categorical = Vec::new();
        for c in &encoder.columns {
            match c {
                EncodedColumn::Numeric { name, .. } => numeric.push(name.clone()),
                EncodedColumn::Categorical {
                    name,
                    categories,
                    other,
                    ..
                } => categorical.push(CategoricalSpec {
                    name: name.clone(),
                    categories: Some(categories.clone()),
                    other: *other || self.ensemble.is_some(),
                }),
            }
        }
        CsvOptions {
            label: Some(self.target.column().to_string()),
            features: FeatureSelection::Named(numeric),
            categorical,
            missing_tokens: encoder.missing_tokens.clone(),
            target,
            mapping,
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
        let text = crate::fsutil::read_capped_text(path, MAX_MODEL_BYTES, "model file").map_err(
            |source| ModelError::Read {
                file: file.clone(),
                source,
            },
        )?;
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
        let m = match probe.get("version").and_then(|v| v.as_u64()) {
            Some(2) => {
                serde_json::from_value::<ModelFile>(probe).map_err(|e| bad(e.to_string()))?
            }
            Some(1) => {
                let v1: ModelFileV1 =
                    serde_json::from_value(probe).map_err(|e| bad(e.to_string()))?;
                let mut params = v1.weights;
                params.push(v1.bias);
                ModelFile {
                    format: FORMAT_NAME.to_string(),
                    version: FORMAT_VERSION,
                    feature_names: v1.feature_names,
                    preprocessing: None,
                    standardization: v1.standardization,
                    target: Target::Binary(v1.label),
                    target_scaling: None,
                    architecture: Architecture::Linear,
                    params,
                    ensemble: None,
                    provenance: v1.provenance,
                }
            }
            Some(v) => {
                return Err(bad(format!(
                    "format version {v}; this fedhe reads versions 1 and {FORMAT_VERSION}"
                )));
            }
            None => return Err(bad("missing \"version\"".into())),
        };
        m.check().map_err(bad)?;
        Ok(m)
    }

    /// Shapes agree and every number is finite.
    fn check(&self) -> Result<(), String> {
        let d = self.feature_names.len();
        if d == 0 {
            return Err("no feature names".into());
        }
        if self.architecture == Architecture::Gbdt {
            return self.check_gbdt();
        }
        if self.ensemble.is_some() {
            return Err(format!("a {} model holds no trees", self.architecture));
        }
        if let Some(e) = &self.preprocessing
            && e.output_len() != d
        {
            return Err(format!(
                "the preprocessing makes {} inputs, the file names {d}",
                e.output_len()
            ));
        }
        if self.standardization.mean.len() != d || self.standardization.std.len() != d {
            return Err(format!(
                "{d} feature names but {} means, {} deviations",
                self.standardization.mean.len(),
                self.standardization.std.len()
            ));
        }
        let head = self.head();
        if let Target::Multiclass { classes, .. } = &self.target
            && !(2..=crate::data::MAX_CLASSES).contains(&classes.len())
        {
            return Err(format!(
                "{} classes; a multi-class model has 2 to {}",
                classes.len(),
                crate::data::MAX_CLASSES
            ));
        }
        let mut sizes = vec![d];
        if let Architecture::Mlp { hidden } = &self.architecture {
            super::mlp::check_hidden(hidden)?;
            sizes.extend_from_slice(hidden);
        }
        sizes.push(head.outputs());
        let expected = param_count(&sizes);
        if self.params.len() != expected {
            return Err(format!(
                "{} parameters, but a {} over {d} features has {expected}",
                self.params.len(),
                self.architecture
            ));
        }
        let finite = self
            .params
            .iter()
            .chain(&self.standardization.mean)
            .all(|v| v.is_finite())
            && self
                .standardization
                .std
                .iter()
                .all(|v| v.is_finite() && *v > 0.0);
        if !finite {
            return Err("parameters or standardization are not finite positive numbers".into());
        }
        self.check_target_scaling()
    }
}

impl ModelFile {
    /// A gradient-boosted model: trees over the raw columns, no parameters.
    fn check_gbdt(&self) -> Result<(), String> {
        let d = self.feature_names.len();
        let Some(e) = &self.ensemble else {
            return Err("a gbdt model without its trees (\"ensemble\")".into());
        };
        if let Some(p) = &self.preprocessing
            && p.columns.len() != d
        {
            return Err(format!(
                "the preprocessing reads {} columns, the file names {d}",
                p.columns.len()
            ));
        }
        if !self.params.is_empty() {
            return Err("a gbdt model has no parameter vector".into());
        }
        e.check(d, self.head().outputs())?;
        self.check_target_scaling()
    }

    fn check_target_scaling(&self) -> Result<(), String> {
        match (&self.target, &self.target_scaling) {
            (Target::Regression { .. }, Some(t))
                if t.mean.is_finite() && t.std.is_finite() && t.std > 0.0 =>
            {
                Ok(())
            }
            (Target::Regression { .. }, _) => {
                Err("a regression model needs a finite target_scaling with std > 0".into())
            }
            (_, Some(_)) => Err("target_scaling belongs to regression models only".into()),
            _ => Ok(()),
        }
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
