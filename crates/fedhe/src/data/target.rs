//! What a label column means: the task, its classes, and how a cell maps to
//! the number `y` a model learns.

use serde::{Deserialize, Serialize};

use super::LabelMapping;

/// Most classes a multi-class label column may have.
pub const MAX_CLASSES: usize = 1000;

/// Most distinct values `fedhe plan init` and `--task auto` take for
/// classes; a numeric column with more is a regression target.
pub const AUTO_MAX_CLASSES: usize = 20;

/// The three kinds of prediction task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    #[default]
    Binary,
    Multiclass,
    Regression,
}

impl TaskKind {
    /// Name of the figure every progress display shows for this task.
    pub fn score_name(self) -> &'static str {
        match self {
            TaskKind::Binary | TaskKind::Multiclass => "accuracy",
            TaskKind::Regression => "R²",
        }
    }

    /// Name of the training loss.
    pub fn loss_name(self) -> &'static str {
        match self {
            TaskKind::Binary | TaskKind::Multiclass => "log-loss",
            TaskKind::Regression => "half MSE (standardized)",
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskKind::Binary => "binary",
            TaskKind::Multiclass => "multiclass",
            TaskKind::Regression => "regression",
        })
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "binary" => Ok(TaskKind::Binary),
            "multiclass" | "multi-class" => Ok(TaskKind::Multiclass),
            "regression" => Ok(TaskKind::Regression),
            other => Err(format!(
                "unknown task {other:?}: use binary, multiclass or regression"
            )),
        }
    }
}

/// A loaded label column: its task and the meaning of `y`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Target {
    /// `y` is 1 for `positive`, 0 for `negative`.
    Binary(LabelMapping),
    /// `y` is the index of the value in `classes`.
    Multiclass {
        column: String,
        classes: Vec<String>,
    },
    /// `y` is the number in the cell.
    Regression { column: String },
}

impl Target {
    pub fn column(&self) -> &str {
        match self {
            Target::Binary(m) => &m.column,
            Target::Multiclass { column, .. } | Target::Regression { column } => column,
        }
    }

    pub fn kind(&self) -> TaskKind {
        match self {
            Target::Binary(_) => TaskKind::Binary,
            Target::Multiclass { .. } => TaskKind::Multiclass,
            Target::Regression { .. } => TaskKind::Regression,
        }
    }

    /// The binary label mapping, for a binary task.
    pub fn binary(&self) -> Option<&LabelMapping> {
        match self {
            Target::Binary(m) => Some(m),
            _ => None,
        }
    }

    /// Class names in `y` order (binary: negative, positive); empty for
    /// regression.
    pub fn classes(&self) -> Vec<String> {
        match self {
            Target::Binary(m) => vec![m.negative.clone(), m.positive.clone()],
            Target::Multiclass { classes, .. } => classes.clone(),
            Target::Regression { .. } => Vec::new(),
        }
    }

    /// The label cell a `y` value stands for.
    pub fn value_name(&self, y: f64) -> String {
        match self {
            Target::Binary(m) => {
                if y == 1.0 {
                    m.positive.clone()
                } else {
                    m.negative.clone()
                }
            }
            Target::Multiclass { classes, .. } => {
                let i = y as usize;
                classes.get(i).cloned().unwrap_or_else(|| y.to_string())
            }
            Target::Regression { .. } => y.to_string(),
        }
    }

    /// A one-line description: "binary: M (1) vs B (0)".
    pub fn describe(&self) -> String {
        match self {
            Target::Binary(m) => format!(
                "binary on {:?}: {:?} (1) vs {:?} (0)",
                m.column, m.positive, m.negative
            ),
            Target::Multiclass { column, classes } => {
                format!(
                    "multiclass on {column:?}: {} classes ({})",
                    classes.len(),
                    super::shorten(&classes.join(", "), 120)
                )
            }
            Target::Regression { column } => format!("regression on {column:?}"),
        }
    }
}

/// How the loader reads the label column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TargetSpec {
    /// Exactly two values (the `positive` / saved-mapping options choose
    /// class 1).
    #[default]
    Binary,
    /// Classes: this ordered list (a value outside it is a located error),
    /// or, with `None`, the values found (numerically sorted when all are
    /// numbers, else in text order), at most [`MAX_CLASSES`].
    Classes(Option<Vec<String>>),
    /// A number in every label cell.
    Numeric,
    /// Decide from the values: two → binary; numbers with more than
    /// [`AUTO_MAX_CLASSES`] distinct values, or any fraction → regression;
    /// else multi-class. The loader notes its choice.
    Auto,
}

/// Orders class names numerically when every one is a number, else as text,
/// so that every site sorts the same classes the same way.
pub fn sort_classes(classes: &mut [String]) {
    let numbers: Option<Vec<f64>> = classes.iter().map(|c| c.parse::<f64>().ok()).collect();
    if numbers.is_some() {
        classes.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y).then_with(|| a.cmp(b))
        });
    } else {
        classes.sort();
    }
}

/// What `--task auto` and `plan init` choose for these distinct label values
/// (`overflow`: more than [`MAX_CLASSES`] were seen), with the reason.
pub fn propose_task(values: &[String], overflow: bool) -> (TaskKind, String) {
    let numbers: Option<Vec<f64>> = values.iter().map(|c| c.parse::<f64>().ok()).collect();
    let n = values.len();
    if n == 2 && !overflow {
        return (TaskKind::Binary, "the label column has two values".into());
    }
    match numbers {
        Some(nums) if overflow || n > AUTO_MAX_CLASSES || nums.iter().any(|v| v.fract() != 0.0) => {
            let why = if nums.iter().any(|v| v.fract() != 0.0) {
                "the label column holds numbers with fractions".to_string()
            } else {
                format!(
                    "the label column holds numbers with more than {AUTO_MAX_CLASSES} distinct values"
                )
            };
            (TaskKind::Regression, why)
        }
        Some(_) => (
            TaskKind::Multiclass,
            format!(
                "the label column holds {n} distinct integers (at most {AUTO_MAX_CLASSES}: \
                 classes; use task regression for a numeric target)"
            ),
        ),
        None => (
            TaskKind::Multiclass,
            format!("the label column holds {n} distinct text values"),
        ),
    }
}
