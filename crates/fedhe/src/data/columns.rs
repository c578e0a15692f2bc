//! Column kinds of a table: numeric, or categorical with its category list,
//! and the cell texts that mean "missing".

use serde::{Deserialize, Serialize};

/// Cell texts read as a missing value by default (after trimming spaces).
pub const DEFAULT_MISSING_TOKENS: [&str; 5] = ["", "NA", "NaN", "null", "?"];

/// The default missing tokens, owned.
pub fn default_missing_tokens() -> Vec<String> {
    DEFAULT_MISSING_TOKENS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Most categories one column may have.
pub const MAX_CATEGORIES: usize = 1000;

/// A categorical column the loader should read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoricalSpec {
    pub name: String,
    /// The categories in order (a value outside them is an error, or
    /// "other" with `other`), or `None` to take the values found (sorted).
    pub categories: Option<Vec<String>>,
    /// Values outside `categories` go to an "other" category.
    pub other: bool,
}

/// One column of a loaded data set's raw matrix `x`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RawColumn {
    /// The number; NaN where the cell was missing.
    Numeric { name: String },
    /// The index of the category; `categories.len()` is "other"; NaN where
    /// the cell was missing.
    Categorical {
        name: String,
        categories: Vec<String>,
        #[serde(default)]
        other: bool,
    },
}

impl RawColumn {
    pub fn name(&self) -> &str {
        match self {
            RawColumn::Numeric { name } | RawColumn::Categorical { name, .. } => name,
        }
    }

    pub fn numeric(name: &str) -> RawColumn {
        RawColumn::Numeric {
            name: name.to_string(),
        }
    }
}

/// True when `cell` (trimmed) is one of `tokens`.
#[inline]
pub fn is_missing(cell: &[u8], tokens: &[String]) -> bool {
    tokens.iter().any(|t| t.as_bytes() == cell)
}
