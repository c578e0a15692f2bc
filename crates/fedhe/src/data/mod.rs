//! Tabular data: CSV loading with a schema (label, ignored columns, positive
//! class), standardization, and train/test and per-client splits.

mod blocks;
mod columns;
mod csv_load;
mod encoder;
pub mod profile;
mod scaler;
pub mod split;
mod stats;
mod target;

pub use columns::{
    CategoricalSpec, DEFAULT_MISSING_TOKENS, MAX_CATEGORIES, RawColumn, default_missing_tokens,
    is_missing,
};
pub use csv_load::{CsvOptions, FeatureSelection, LoadedCsv, load_csv, load_csv_reader};
pub use encoder::{CategoricalMissing, EncodedColumn, Encoder, MissingPolicy};
pub use scaler::Standardizer;
pub use stats::{ColumnStats, RawStats};
pub use target::{
    AUTO_MAX_CLASSES, MAX_CLASSES, Target, TargetSpec, TaskKind, propose_task, sort_classes,
};

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Largest magnitude a feature value may have: its square, summed over many
/// rows, must stay finite in the standardization statistics (1e150² = 1e300
/// leaves room for 10^8 rows below f64's 1.8e308).
pub const MAX_ABS_VALUE: f64 = 1e150;

/// Longest label value (in bytes): a class name, not a document; a longer
/// one would be stored verbatim in the plan, the model and every report.
pub const MAX_LABEL_BYTES: usize = 256;

/// Column names tried, in order, when no label column is given.
pub const DEFAULT_LABEL_NAMES: [&str; 5] = ["diagnosis", "label", "target", "class", "y"];

/// How the two label values map to the positive (1) and negative (0) class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMapping {
    /// Name of the label column.
    pub column: String,
    /// The value that means class 1.
    pub positive: String,
    /// The value that means class 0.
    pub negative: String,
}

/// A numeric design matrix with its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Rows × features, in `feature_names` order.
    pub x: Array2<f64>,
    /// Binary: 1.0 for the positive class, 0.0 for the negative one;
    /// multi-class: the class index; regression: the value.
    pub y: Array1<f64>,
    /// Names of `x`'s columns.
    pub feature_names: Vec<String>,
    /// What each column of `x` holds: a number (NaN when missing), or a
    /// category's index.
    pub columns: Vec<RawColumn>,
    pub label: Target,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.x.nrows()
    }

    /// Number of positive rows.
    pub fn positives(&self) -> usize {
        self.y.iter().filter(|&&v| v == 1.0).count()
    }

    /// A new dataset holding the given rows, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(ndarray::Axis(0), rows),
            y: self.y.select(ndarray::Axis(0), rows),
            feature_names: self.feature_names.clone(),
            columns: self.columns.clone(),
            label: self.label.clone(),
        }
    }
}

/// `value` cut to about `max` characters, with its full length when cut, so
/// that an error about a huge cell does not print the cell.
pub fn shorten(value: &str, max: usize) -> String {
    let count = value.chars().count();
    if count <= max {
        return value.to_string();
    }
    let head: String = value.chars().take(max).collect();
    format!("{head}… ({count} characters)")
}

/// Where in a file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// 1-based column number and the column's name, when known.
    pub column: Option<(usize, String)>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some((n, name)) = &self.column {
            write!(f, ", column {n} ({name:?})")?;
        }
        Ok(())
    }
}

/// Everything that can be wrong with a data file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot open {file}: {source}")]
    Open {
        file: String,
        source: std::io::Error,
    },
    #[error("cannot write {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error("{0}: the file is empty (a header row is required)")]
    Empty(String),
    #[error("{0}: the file has a header row but no data rows")]
    HeaderOnly(String),
    #[error("{at}: read error: {message}")]
    Read { at: Box<Location>, message: String },
    #[error(
        "{file}: the label column {column:?} is missing (empty or a missing-value token) on all {rows} data rows; give the label column with --label, or fill it in"
    )]
    NoLabels {
        file: String,
        column: String,
        rows: usize,
    },
    #[error(
        "{at}: {token:?} is a class of label column {column:?} ({rows} rows) and a missing-value token: every row of that class would be skipped as unlabelled; remove {token:?} from --missing (an unlabelled row's label is empty, NA, NaN, null or ?)"
    )]
    MissingTokenIsClass {
        at: Box<Location>,
        token: String,
        column: String,
        rows: usize,
    },
    #[error(
        "{at}: a label value of {bytes} bytes; a class name may have at most {max} bytes (is this the label column?)",
        max = MAX_LABEL_BYTES
    )]
    LabelTooLong { at: Box<Location>, bytes: usize },
    #[error(
        "{file}: only one data row; a column's kind (numbers, categories, constant) cannot be told from one row, and training needs at least two"
    )]
    OneRow { file: String },
    #[error(
        "{at}: {value:?} is not a number, but {numbers} of the column's {present} values are; fix the cell, list {value:?} as a missing value (--missing, or a plan's preprocessing.missing), or leave the column out (--ignore)"
    )]
    StrayCell {
        at: Box<Location>,
        value: String,
        numbers: usize,
        present: usize,
    },
    #[error(
        "{at}: invalid UTF-8 in this cell (a file in Latin-1 or another legacy encoding: save it as UTF-8)"
    )]
    InvalidUtf8 { at: Box<Location> },
    #[error("{file}: duplicate column name {name:?} (columns {first} and {second})")]
    DuplicateColumn {
        file: String,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("{file}:{line}: row has {found} fields but the header has {expected}")]
    RaggedRow {
        file: String,
        line: u64,
        found: usize,
        expected: usize,
    },
    #[error("{at}: missing value")]
    MissingCell { at: Box<Location> },
    #[error(
        "{at}: {value:?} is not a finite number; fix the cell, or list it as a missing value (a plan's preprocessing.missing, or --missing)"
    )]
    NotNumeric { at: Box<Location>, value: String },
    #[error(
        "{at}: {value:e} is out of range: feature values must lie within ±1e150 (larger ones overflow the sums of squares of the standardization)"
    )]
    OutOfRange { at: Box<Location>, value: f64 },
    #[error(
        "{at}: third label value {value:?}; a binary label column holds exactly two values (seen so far: {first:?}, {second:?}); for more classes use --task multiclass (or auto), for a numeric target --task regression"
    )]
    ThirdLabel {
        at: Box<Location>,
        value: String,
        first: String,
        second: String,
    },
    #[error("{at}: {value:?} is not one of the plan's classes ({classes})")]
    UnknownClass {
        at: Box<Location>,
        value: String,
        classes: String,
    },
    #[error(
        "{at}: the label column has more than {max} distinct values; a numeric target is a regression task (--task regression)"
    )]
    TooManyClasses { at: Box<Location>, max: usize },
    #[error(
        "{at}: {value:?} is not one of the column's categories ({categories}); add it to the plan's categories, or allow an \"other\" category (preprocessing.unknown_categories = \"other\")"
    )]
    UnknownCategory {
        at: Box<Location>,
        value: String,
        categories: String,
    },
    #[error(
        "{at}: {value:?} is not one of the categories the model was trained on ({categories}), and the model has no \"(other)\" input for new values; fix or remove the row, or retrain with this fedhe (a model trained without a plan, or under a plan with preprocessing.unknown_categories = \"other\", reads a new value as \"(other)\")"
    )]
    UnseenCategory {
        at: Box<Location>,
        value: String,
        categories: String,
    },
    #[error(
        "{at}: the column has more than {max} distinct values; a column with this many is an identifier or free text: list it under `ignored`"
    )]
    TooManyCategories { at: Box<Location>, max: usize },
    #[error("{file}: no label column given and none of {tried:?} exists; columns are: {columns}")]
    NoLabelColumn {
        file: String,
        tried: Vec<&'static str>,
        columns: String,
    },
    #[error("{file}: no column named {name:?} ({role}); columns are: {columns}")]
    UnknownColumn {
        file: String,
        name: String,
        role: &'static str,
        columns: String,
    },
    #[error("{file}: the model needs feature column {name:?}, which the file does not have")]
    MissingFeature { file: String, name: String },
    #[error(
        "{file}: --positive {value:?} is not a value of label column {column:?} (values: {values})"
    )]
    UnknownPositive {
        file: String,
        column: String,
        value: String,
        values: String,
    },
    #[error(
        "{file}: label column {column:?} has only the value {value:?}; training needs two classes"
    )]
    SingleClass {
        file: String,
        column: String,
        value: String,
    },
    #[error(
        "{at}: label value {value:?} is neither of the model's classes {positive:?} / {negative:?}"
    )]
    LabelNotInModel {
        at: Box<Location>,
        value: String,
        positive: String,
        negative: String,
    },
    #[error("{file}: no feature columns left after dropping the label and ignored columns")]
    NoFeatures { file: String },
    #[error("{0}")]
    Invalid(String),
}

/// Gives multi-class data sets loaded separately (sites that may lack some
/// classes) one class list: the union, sorted as [`sort_classes`] does, with
/// every `y` renumbered. Other tasks are left as they are.
pub fn harmonize_classes(sets: &mut [Dataset]) {
    let mut union: Vec<String> = Vec::new();
    for ds in sets.iter() {
        match &ds.label {
            Target::Multiclass { classes, .. } => {
                for c in classes {
                    if !union.contains(c) {
                        union.push(c.clone());
                    }
                }
            }
            _ => return,
        }
    }
    sort_classes(&mut union);
    for ds in sets.iter_mut() {
        if let Target::Multiclass { column, classes } = &ds.label {
            let map: Vec<f64> = classes
                .iter()
                .map(|c| union.iter().position(|u| u == c).unwrap_or(0) as f64)
                .collect();
            ds.y.mapv_inplace(|v| map.get(v as usize).copied().unwrap_or(0.0));
            ds.label = Target::Multiclass {
                column: column.clone(),
                classes: union.clone(),
            };
        }
    }
}

/// Gives data sets read separately (sites that hold different categories)
/// one category list per categorical column: the union, sorted as
/// [`sort_classes`] does, with the codes in `x` renumbered. The sets must
/// have the same columns.
pub fn harmonize_columns(sets: &mut [Dataset]) {
    let Some(first) = sets.first() else { return };
    let width = first.columns.len();
    for j in 0..width {
        let mut union: Vec<String> = Vec::new();
        for ds in sets.iter() {
            if let Some(RawColumn::Categorical { categories, .. }) = ds.columns.get(j) {
                for c in categories {
                    if !union.contains(c) {
                        union.push(c.clone());
                    }
                }
            }
        }
        if union.is_empty() {
            continue;
        }
        sort_classes(&mut union);
        for ds in sets.iter_mut() {
            if let Some(RawColumn::Categorical {
                categories, other, ..
            }) = ds.columns.get_mut(j)
            {
                let old = categories.len();
                let map: Vec<f64> = categories
                    .iter()
                    .map(|c| union.iter().position(|u| u == c).unwrap_or(0) as f64)
                    .collect();
                let new_other = union.len() as f64;
                let other = *other;
                *categories = union.clone();
                ds.x.column_mut(j).mapv_inplace(|v| {
                    if v.is_nan() {
                        v
                    } else if (v as usize) < old {
                        map[v as usize]
                    } else if other {
                        new_other
                    } else {
                        f64::NAN
                    }
                });
            }
        }
    }
}
