//! The preprocessing part of the graph: one input per raw column, each
//! encoded as FedHE's [`Encoder`] does, then concatenated and standardized.
//!
//! - A number (`tensor(double)`, `[N, 1]`, NaN where missing) is imputed
//!   with the training mean (`IsNaN` + `Where`), followed by `Cast(IsNaN)`
//!   when the model has a missing-indicator column.
//! - A category (`tensor(string)`, `[N, 1]`) becomes its slot with
//!   `ai.onnx.ml.LabelEncoder` (the missing tokens and the empty string to
//!   the "(missing)" slot or the most frequent category; unlisted values to
//!   "(other)", or to no slot), then `ai.onnx.ml.OneHotEncoder` and `Cast`.
//! - `Concat`, then `Sub` the means and `Div` by the deviations.
//!
//! Everything numeric is double, as FedHE computes, so the runtime's
//! outputs equal FedHE's to rounding.

use super::ExportError;
use super::graph::{Dim, Graph, cast_to, int, ints, strings};
use super::proto::tensor_proto::DataType;
use crate::data::{CategoricalMissing, EncodedColumn, Encoder, Standardizer};

/// What a graph input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `tensor(double)`, NaN for a missing cell.
    Number,
    /// `tensor(string)`, the cell's text (an empty string or a missing
    /// token for a missing cell).
    Category,
}

/// One input of the exported graph: a raw CSV column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxInput {
    pub name: String,
    pub kind: InputKind,
}

/// Declares one input per raw column of `encoder` and returns them, with
/// the name of the standardized `[N, features]` double tensor.
pub(super) fn inputs(
    g: &mut Graph,
    encoder: &Encoder,
    scaler: &Standardizer,
) -> Result<(Vec<OnnxInput>, String), ExportError> {
    let mut declared = Vec::with_capacity(encoder.columns.len());
    let mut parts = Vec::new();
    for c in &encoder.columns {
        match c {
            EncodedColumn::Numeric {
                name,
                fill,
                indicator,
            } => {
                declared.push(declare(g, name, InputKind::Number)?);
                parts.extend(numeric(g, name, *fill, *indicator));
            }
            EncodedColumn::Categorical {
                name,
                categories,
                other,
                missing,
                fill,
            } => {
                declared.push(declare(g, name, InputKind::Category)?);
                let col = Categorical {
                    name,
                    categories,
                    other: *other,
                    missing: *missing,
                    fill: *fill,
                };
                parts.push(categorical(g, &col, &encoder.missing_tokens));
            }
        }
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let encoded = g.op("Concat", &refs, "encoded", vec![int("axis", 1)]);
    let d = scaler.len() as i64;
    let mean = g.doubles("feature_mean", &[d], &scaler.mean);
    let std = g.doubles("feature_std", &[d], &scaler.std);
    let centred = g.op("Sub", &[&encoded, &mean], "centred", vec![]);
    let standardized = g.op("Div", &[&centred, &std], "standardized", vec![]);
    Ok((declared, standardized))
}

/// Claims and declares the graph input of raw column `name`: `[N, 1]`
/// doubles or strings.
pub(super) fn declare(
    g: &mut Graph,
    name: &str,
    kind: InputKind,
) -> Result<OnnxInput, ExportError> {
    g.claim(name, "an input column")?;
    let elem = match kind {
        InputKind::Number => DataType::Double,
        InputKind::Category => DataType::String,
    };
    g.input(name, elem, &[Dim::Rows, Dim::Fixed(1)]);
    Ok(OnnxInput {
        name: name.to_string(),
        kind,
    })
}

/// The imputed column, and its missing indicator when the model has one.
fn numeric(g: &mut Graph, name: &str, fill: f64, indicator: bool) -> Vec<String> {
    let nan = g.op("IsNaN", &[name], &format!("{name}/missing"), vec![]);
    let fill = g.doubles(&format!("{name}/fill"), &[], &[fill]);
    let imputed = g.op(
        "Where",
        &[&nan, &fill, name],
        &format!("{name}/imputed"),
        vec![],
    );
    let mut out = vec![imputed];
    if indicator {
        out.push(g.op(
            "Cast",
            &[&nan],
            &format!("{name}/indicator"),
            vec![cast_to(DataType::Double)],
        ));
    }
    out
}

/// A categorical column's fitted encoding.
struct Categorical<'a> {
    name: &'a str,
    categories: &'a [String],
    other: bool,
    missing: CategoricalMissing,
    fill: usize,
}

/// The LabelEncoder table of a categorical column: the empty cell and the
/// missing tokens to `missing_slot`, each category to its index. FedHE
/// reads a cell as missing before it looks the category up, so a token
/// that is also a category stays missing.
pub(super) fn slots(
    categories: &[String],
    tokens: &[String],
    missing_slot: usize,
) -> (Vec<String>, Vec<i64>) {
    let mut keys: Vec<String> = Vec::new();
    let mut values: Vec<i64> = Vec::new();
    for t in std::iter::once("").chain(tokens.iter().map(String::as_str)) {
        if !keys.iter().any(|k| k == t) {
            keys.push(t.to_string());
            values.push(missing_slot as i64);
        }
    }
    for (i, c) in categories.iter().enumerate() {
        if !keys.contains(c) {
            keys.push(c.clone());
            values.push(i as i64);
        }
    }
    (keys, values)
}

/// The one-hot columns of a categorical column, as doubles.
fn categorical(g: &mut Graph, c: &Categorical<'_>, tokens: &[String]) -> String {
    let Categorical {
        name,
        categories,
        other,
        missing,
        fill,
    } = *c;
    let k = categories.len();
    let width = k + usize::from(other) + usize::from(missing == CategoricalMissing::Category);
    let missing_slot = match missing {
        CategoricalMissing::Category => width - 1,
        CategoricalMissing::MostFrequent => fill,
    };
    let (keys, values) = slots(categories, tokens, missing_slot);
    // Out of the slots: OneHotEncoder (zeros = 1) makes an all-zero row.
    let unknown = if other { k as i64 } else { -1 };
    let slot = g.ml_op(
        "LabelEncoder",
        &[name],
        &format!("{name}/slot"),
        vec![
            strings("keys_strings", &keys),
            ints("values_int64s", values),
            int("default_int64", unknown),
        ],
    );
    let onehot = g.ml_op(
        "OneHotEncoder",
        &[&slot],
        &format!("{name}/onehot"),
        vec![
            ints("cats_int64s", (0..width as i64).collect()),
            int("zeros", 1),
        ],
    );
    let flat = g.op(
        "Flatten",
        &[&onehot],
        &format!("{name}/onehot_2d"),
        vec![int("axis", 1)],
    );
    g.op(
        "Cast",
        &[&flat],
        &format!("{name}/encoded"),
        vec![cast_to(DataType::Double)],
    )
}
