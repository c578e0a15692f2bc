//! Streaming CSV loader: one reusable byte record, every error located by
//! file, line, column and value.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use csv::ByteRecord;
use ndarray::{Array1, Array2};

use super::{DEFAULT_LABEL_NAMES, DataError, Dataset, LabelMapping, Location};

/// Which columns become features.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FeatureSelection {
    /// Every column except the label, ignored and identifier columns.
    #[default]
    All,
    /// Exactly these columns, in this order (scoring with a saved model).
    Named(Vec<String>),
}

/// How to read a CSV file into a [`Dataset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Label column; `None` tries [`DEFAULT_LABEL_NAMES`].
    pub label: Option<String>,
    /// Columns never used as features.
    pub ignore: Vec<String>,
    /// Columns never auto-ignored as identifiers.
    pub keep: Vec<String>,
    /// The label value that means class 1.
    pub positive: Option<String>,
    /// Leave out a column named `id` or holding a distinct integer on every row.
    pub auto_ignore_ids: bool,
    pub features: FeatureSelection,
    /// A saved model's label mapping: labels must be one of its two values.
    pub mapping: Option<LabelMapping>,
    /// Accept a file without the label column (predictions without metrics).
    pub label_optional: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            label: None,
            ignore: Vec::new(),
            keep: Vec::new(),
            positive: None,
            auto_ignore_ids: true,
            features: FeatureSelection::All,
            mapping: None,
            label_optional: false,
        }
    }
}

/// A loaded file: the data plus what the loader decided on the user's behalf.
#[derive(Debug, Clone)]
pub struct LoadedCsv {
    pub dataset: Dataset,
    /// Human-readable notes (dropped columns, chosen positive class, ...).
    pub notices: Vec<String>,
    /// False when the label column was optional and absent (`y` is all zero).
    pub has_labels: bool,
}

/// Loads a CSV file. Never panics on any input.
pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<LoadedCsv, DataError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| DataError::Open {
        file: name.clone(),
        source,
    })?;
    load_csv_reader(
        std::io::BufReader::with_capacity(1 << 16, file),
        &name,
        opts,
    )
}

/// Loads CSV text from any reader; `name` is used in messages.
pub fn load_csv_reader<R: Read>(
    input: R,
    name: &str,
    opts: &CsvOptions,
) -> Result<LoadedCsv, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut rec = ByteRecord::new();
    if !next_record(&mut reader, &mut rec, name)? {
        return Err(DataError::Empty(name.to_string()));
    }
    let header = parse_header(&rec, name)?;
    let plan = Plan::new(&header, name, opts)?;
    let mut notices = plan.notices.clone();

    let nfeat = plan.features.len();
    let mut values: Vec<f64> = Vec::new();
    let mut first_missing: Vec<Option<u64>> = vec![None; nfeat];
    let mut present: Vec<usize> = vec![0; nfeat];
    let mut label_idx: Vec<u8> = Vec::new();
    let mut label_values: Vec<String> = Vec::new();
    let mut rows = 0usize;

    while next_record(&mut reader, &mut rec, name)? {
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != header.len() {
            return Err(DataError::RaggedRow {
                file: name.to_string(),
                line,
                found: rec.len(),
                expected: header.len(),
            });
        }
        for (j, &c) in plan.features.iter().enumerate() {
            let cell = &rec[c];
            if cell.is_empty() {
                values.push(f64::NAN);
                first_missing[j].get_or_insert(line);
                continue;
            }
            let at = || location(name, line, c, &header);
            let text =
                std::str::from_utf8(cell).map_err(|_| DataError::InvalidUtf8 { at: at() })?;
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => values.push(v),
                _ => {
                    return Err(DataError::NotNumeric {
                        at: at(),
                        value: text.to_string(),
                    });
                }
            }
            present[j] += 1;
        }
        if let Some(c) = plan.label {
            let at = || location(name, line, c, &header);
            let text =
                std::str::from_utf8(&rec[c]).map_err(|_| DataError::InvalidUtf8 { at: at() })?;
            if text.is_empty() {
                return Err(DataError::MissingCell { at: at() });
            }
            let idx = match label_values.iter().position(|v| v == text) {
                Some(i) => i,
                None => {
                    if let Some(m) = &opts.mapping
                        && text != m.positive
                        && text != m.negative
                    {
                        return Err(DataError::LabelNotInModel {
                            at: at(),
                            value: text.to_string(),
                            positive: m.positive.clone(),
                            negative: m.negative.clone(),
                        });
                    }
                    if label_values.len() == 2 {
                        return Err(DataError::ThirdLabel {
                            at: at(),
                            value: text.to_string(),
                            first: label_values[0].clone(),
                            second: label_values[1].clone(),
                        });
                    }
                    label_values.push(text.to_string());
                    label_values.len() - 1
                }
            };
            // At most two label values exist, so the index fits in a u8.
            label_idx.push(idx as u8);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(DataError::HeaderOnly(name.to_string()));
    }

    // Decide which feature columns survive: entirely empty ones are dropped
    // (trailing commas), partly empty ones are an error, identifiers go.
    let named = matches!(opts.features, FeatureSelection::Named(_));
    let mut keep: Vec<usize> = Vec::with_capacity(nfeat);
    for (j, &c) in plan.features.iter().enumerate() {
        let col_name = &header[c];
        if present[j] == 0 && !named {
            notices.push(format!(
                "dropped column {} ({}) because it is empty on every row",
                c + 1,
                display_name(col_name, c)
            ));
            continue;
        }
        if let Some(line) = first_missing[j] {
            return Err(DataError::MissingCell {
                at: location(name, line, c, &header),
            });
        }
        if !named
            && opts.auto_ignore_ids
            && !plan.keep.contains(&c)
            && rows >= 3
            && is_identifier(&values, nfeat, j)
        {
            notices.push(format!(
                "ignored column {col_name:?}: it holds a distinct integer on every row, like an id \
                 (use --keep {col_name} to use it as a feature)"
            ));
            continue;
        }
        keep.push(j);
    }
    if keep.is_empty() {
        return Err(DataError::NoFeatures {
            file: name.to_string(),
        });
    }
    let x = if keep.len() == nfeat {
        Array2::from_shape_vec((rows, nfeat), values)
    } else {
        let mut out = Vec::with_capacity(rows * keep.len());
        for row in values.chunks_exact(nfeat) {
            out.extend(keep.iter().map(|&j| row[j]));
        }
        Array2::from_shape_vec((rows, keep.len()), out)
    }
    .map_err(|e| DataError::Invalid(format!("{name}: internal shape error: {e}")))?;
    let feature_names: Vec<String> = keep
        .iter()
        .map(|&j| header[plan.features[j]].clone())
        .collect();

    let (label, y, has_labels) = match plan.label {
        Some(c) => {
            let column = header[c].clone();
            let mapping = choose_mapping(name, &column, &label_values, opts, &mut notices)?;
            let pos_idx = label_values.iter().position(|v| *v == mapping.positive);
            let y: Array1<f64> = label_idx
                .iter()
                .map(|&i| f64::from(u8::from(Some(usize::from(i)) == pos_idx)))
                .collect();
            (mapping, y, true)
        }
        None => {
            let mapping = opts.mapping.clone().unwrap_or(LabelMapping {
                column: String::new(),
                positive: "1".into(),
                negative: "0".into(),
            });
            (mapping, Array1::zeros(rows), false)
        }
    };
    Ok(LoadedCsv {
        dataset: Dataset {
            x,
            y,
            feature_names,
            label,
        },
        notices,
        has_labels,
    })
}

fn next_record<R: Read>(
    reader: &mut csv::Reader<R>,
    rec: &mut ByteRecord,
    name: &str,
) -> Result<bool, DataError> {
    reader.read_byte_record(rec).map_err(|e| {
        let line = e.position().map_or(0, |p| p.line());
        let message = match e.kind() {
            csv::ErrorKind::Io(io) => io.to_string(),
            other => format!("{other:?}"),
        };
        DataError::Read {
            at: Box::new(Location {
                file: name.to_string(),
                line,
                column: None,
            }),
            message,
        }
    })
}

fn parse_header(rec: &ByteRecord, name: &str) -> Result<Vec<String>, DataError> {
    let line = rec.position().map_or(1, |p| p.line());
    let mut header = Vec::with_capacity(rec.len());
    for (i, cell) in rec.iter().enumerate() {
        // A UTF-8 byte-order mark would otherwise become part of the first name.
        let cell = if i == 0 {
            cell.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(cell)
        } else {
            cell
        };
        let text = std::str::from_utf8(cell).map_err(|_| DataError::InvalidUtf8 {
            at: Box::new(Location {
                file: name.to_string(),
                line,
                column: Some((i + 1, "<header>".to_string())),
            }),
        })?;
        header.push(text.trim().to_string());
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        if let Some(&first) = seen.get(h.as_str()) {
            return Err(DataError::DuplicateColumn {
                file: name.to_string(),
                name: h.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
        seen.insert(h, i);
    }
    Ok(header)
}

/// Column roles decided from the header alone.
struct Plan {
    label: Option<usize>,
    features: Vec<usize>,
    keep: Vec<usize>,
    notices: Vec<String>,
}

impl Plan {
    fn new(header: &[String], name: &str, opts: &CsvOptions) -> Result<Plan, DataError> {
        let columns = || header.join(", ");
        let find = |wanted: &str| {
            header
                .iter()
                .position(|h| h == wanted)
                .or_else(|| header.iter().position(|h| h.eq_ignore_ascii_case(wanted)))
        };
        let require = |wanted: &str, role: &'static str| {
            find(wanted).ok_or_else(|| DataError::UnknownColumn {
                file: name.to_string(),
                name: wanted.to_string(),
                role,
                columns: columns(),
            })
        };
        let mut notices = Vec::new();

        let wanted_label = opts
            .label
            .clone()
            .or_else(|| opts.mapping.as_ref().map(|m| m.column.clone()))
            .filter(|l| !l.is_empty());
        let label = match wanted_label {
            Some(l) if opts.label_optional => find(&l),
            Some(l) => Some(require(&l, "label")?),
            None => {
                let found = DEFAULT_LABEL_NAMES.iter().find_map(|n| find(n));
                match found {
                    Some(c) => {
                        notices.push(format!("using column {:?} as the label", header[c]));
                        Some(c)
                    }
                    None if opts.label_optional => None,
                    None => {
                        return Err(DataError::NoLabelColumn {
                            file: name.to_string(),
                            tried: DEFAULT_LABEL_NAMES.to_vec(),
                            columns: columns(),
                        });
                    }
                }
            }
        };

        let mut ignored = Vec::new();
        for col in &opts.ignore {
            ignored.push(require(col, "--ignore")?);
        }

        let mut keep = Vec::new();
        for col in &opts.keep {
            keep.push(require(col, "--keep")?);
        }

        let features = match &opts.features {
            FeatureSelection::Named(names) => {
                let mut cols = Vec::with_capacity(names.len());
                for n in names {
                    let c = header.iter().position(|h| h == n).ok_or_else(|| {
                        DataError::MissingFeature {
                            file: name.to_string(),
                            name: n.clone(),
                        }
                    })?;
                    cols.push(c);
                }
                let extra: Vec<&str> = (0..header.len())
                    .filter(|c| !cols.contains(c) && Some(*c) != label && !header[*c].is_empty())
                    .map(|c| header[c].as_str())
                    .collect();
                if !extra.is_empty() {
                    notices.push(format!(
                        "ignoring {} column(s) the model does not use: {}",
                        extra.len(),
                        extra.join(", ")
                    ));
                }
                cols
            }
            FeatureSelection::All => {
                let mut cols = Vec::new();
                for (c, h) in header.iter().enumerate() {
                    if Some(c) == label || ignored.contains(&c) {
                        continue;
                    }
                    if opts.auto_ignore_ids && !keep.contains(&c) && h.eq_ignore_ascii_case("id") {
                        notices.push(format!(
                            "ignored column {h:?}: an identifier is not a feature"
                        ));
                        continue;
                    }
                    cols.push(c);
                }
                cols
            }
        };
        Ok(Plan {
            label,
            features,
            keep,
            notices,
        })
    }
}

/// True when feature `j` holds a distinct integer on every row.
fn is_identifier(values: &[f64], nfeat: usize, j: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    values
        .iter()
        .skip(j)
        .step_by(nfeat)
        .all(|&v| v.fract() == 0.0 && v.abs() < 9.0e15 && seen.insert(v as i64))
}

fn choose_mapping(
    file: &str,
    column: &str,
    values: &[String],
    opts: &CsvOptions,
    notices: &mut Vec<String>,
) -> Result<LabelMapping, DataError> {
    if let Some(m) = &opts.mapping {
        return Ok(LabelMapping {
            column: column.to_string(),
            ..m.clone()
        });
    }
    let mapping = |positive: &str, negative: &str| LabelMapping {
        column: column.to_string(),
        positive: positive.to_string(),
        negative: negative.to_string(),
    };
    let [a, b] = values else {
        let value = values.first().cloned().unwrap_or_default();
        return Err(DataError::SingleClass {
            file: file.to_string(),
            column: column.to_string(),
            value,
        });
    };
    if let Some(p) = &opts.positive {
        return if p == a {
            Ok(mapping(a, b))
        } else if p == b {
            Ok(mapping(b, a))
        } else {
            Err(DataError::UnknownPositive {
                file: file.to_string(),
                column: column.to_string(),
                value: p.clone(),
                values: format!("{a}, {b}"),
            })
        };
    }
    let is_one = |v: &str| v.parse::<f64>() == Ok(1.0) || v.eq_ignore_ascii_case("true");
    let is_zero = |v: &str| v.parse::<f64>() == Ok(0.0) || v.eq_ignore_ascii_case("false");
    if is_one(a) && is_zero(b) {
        return Ok(mapping(a, b));
    }
    if is_one(b) && is_zero(a) {
        return Ok(mapping(b, a));
    }
    // Two arbitrary strings: a fixed rule, so every client of a federation
    // picks the same class whatever its row order.
    let (pos, neg) = if a > b { (a, b) } else { (b, a) };
    notices.push(format!(
        "label column {column:?}: positive class {pos:?}, negative {neg:?} (choose with --positive)"
    ));
    Ok(mapping(pos, neg))
}

fn display_name(name: &str, c: usize) -> String {
    if name.is_empty() {
        format!("unnamed column {}", c + 1)
    } else {
        format!("{name:?}")
    }
}

fn location(file: &str, line: u64, c: usize, header: &[String]) -> Box<Location> {
    Box::new(Location {
        file: file.to_string(),
        line,
        column: Some((c + 1, header.get(c).cloned().unwrap_or_default())),
    })
}
