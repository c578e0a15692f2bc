//! A first look at a CSV: per column, how many cells are missing, whether
//! the rest are numbers (integers?), and its distinct values while they are
//! few — enough to propose each column's kind with a note saying why; and
//! a preview of its first rows as text ([`preview_csv`]).

use std::path::Path;

use super::{
    CategoricalSpec, CsvOptions, DEFAULT_MISSING_TOKENS, DataError, Location, TargetSpec, TaskKind,
    is_missing, propose_task, sort_classes,
};

/// Distinct values kept per column; a column with more is numeric, an
/// identifier or free text, never categorical.
const MAX_DISTINCT: usize = 200;

/// Most distinct text values a column may have to be proposed as categorical.
pub const MAX_PROPOSED_CATEGORIES: usize = 50;

/// Longest category name proposed; a column with a longer value is free text.
pub const MAX_CATEGORY_CHARS: usize = 100;

/// Most distinct integers a numeric column may have to be proposed as
/// categorical (with at least 3: a two-valued column stays a 0/1-like number).
pub const MAX_INTEGER_CATEGORIES: usize = 10;

/// Fewest rows each of an integer column's values must be on for the column
/// to be proposed as categorical. A value seen on a row or two says the file
/// samples a wider range (a pixel's intensity 0..16, an age): another file
/// holds values this one lacks, so the column stays a number.
pub const MIN_INTEGER_CATEGORY_ROWS: usize = 5;

/// What the model does with a missing number, for the notes on columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingNumbers {
    /// The model is not chosen yet (`fedhe split`, the Client tab).
    #[default]
    Unknown,
    /// Linear and MLP models: the federation's mean of the present cells.
    Mean,
    /// Gradient-boosted trees: each split's learned default branch.
    DefaultBranch,
}

impl MissingNumbers {
    /// For a model that is gradient-boosted trees, or not.
    pub fn for_model(gbdt: bool) -> MissingNumbers {
        if gbdt {
            MissingNumbers::DefaultBranch
        } else {
            MissingNumbers::Mean
        }
    }

    /// What happens to a missing number, in a note's parentheses.
    pub fn words(self) -> &'static str {
        match self {
            MissingNumbers::Unknown => {
                "linear and MLP models impute the federation's mean; gradient-boosted trees \
                 send a missing cell down each split's learned default branch"
            }
            MissingNumbers::Mean => "imputed with the federation's mean",
            MissingNumbers::DefaultBranch => {
                "left missing: the trees send it down each split's learned default branch"
            }
        }
    }
}

/// What one column holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnProfile {
    pub name: String,
    /// Cells read as missing.
    pub missing: usize,
    /// Every present cell is a finite number.
    pub numeric: bool,
    /// Every present cell is an integer.
    pub integer: bool,
    /// Distinct present values with their counts, while at most
    /// `MAX_DISTINCT`; `None` beyond.
    pub distinct: Option<Vec<(String, usize)>>,
    /// A present cell that is not a number, and its line (for notes).
    pub first_text: Option<(u64, String)>,
    /// Present cells that are finite numbers.
    pub numbers: usize,
    /// Per missing-value token met in the column (not the empty cell): the
    /// token, its cells and the first one's line.
    pub tokens: Vec<(String, usize, u64)>,
}

/// A table's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct TableProfile {
    pub rows: usize,
    pub columns: Vec<ColumnProfile>,
    /// The first row whose field count differs from the header's: its line
    /// and field count.
    pub ragged: Option<(u64, usize)>,
}

/// The kind proposed for a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposedKind {
    Numeric,
    /// Categories, sorted.
    Categorical(Vec<String>),
    /// Left out: an identifier, free text, a constant or an empty column.
    Ignored,
}

/// The first rows of a CSV as text, for people to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvPreview {
    /// The header row.
    pub header: Vec<String>,
    /// The first records; a row may be shorter or longer than the header.
    pub rows: Vec<Vec<String>>,
    /// Records in the file (the header row not counted).
    pub total_rows: usize,
}

/// A CSV reader's error, located at its line of `file`.
fn read_error(file: &str, e: csv::Error) -> DataError {
    DataError::Read {
        at: Box::new(Location {
            file: file.to_string(),
            line: e.position().map_or(1, |p| p.line()),
            column: None,
        }),
        message: e.to_string(),
    }
}

/// Opens `path`; its display name for messages, and the file.
fn open(path: &Path) -> Result<(String, std::fs::File), DataError> {
    let file = path.display().to_string();
    match std::fs::File::open(path) {
        Ok(f) => Ok((file, f)),
        Err(source) => Err(DataError::Open { file, source }),
    }
}

/// The header and the first `rows` records of the comma-separated file at
/// `path`, every cell trimmed, and its count of records. Rows of any
/// length are kept, so a file the loader refuses can still be looked at.
pub fn preview_csv(path: &Path, rows: usize) -> Result<CsvPreview, DataError> {
    let (file, f) = open(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(f);
    let read_err = |e: csv::Error| read_error(&file, e);
    let header = reader
        .headers()
        .map_err(read_err)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut shown = Vec::new();
    let mut total_rows = 0;
    for rec in reader.records() {
        let rec = rec.map_err(read_err)?;
        if shown.len() < rows {
            shown.push(rec.iter().map(str::to_string).collect());
        }
        total_rows += 1;
    }
    Ok(CsvPreview {
        header,
        rows: shown,
        total_rows,
    })
}

/// Profiles `path` (header row first), counting the cells equal to one of
/// `tokens` (after trimming) as missing.
pub fn profile_csv(
    path: &Path,
    delimiter: Option<u8>,
    tokens: &[String],
) -> Result<TableProfile, DataError> {
    let (file, f) = open(path)?;
    let delimiter = match delimiter {
        Some(d) => d,
        None => {
            let mut head = vec![0u8; 1 << 16];
            let n = std::io::Read::read(&mut std::io::BufReader::new(&f), &mut head).unwrap_or(0);
            super::csv_load::sniff_delimiter(&head[..n]).0
        }
    };
    let (_, f) = open(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, f));
    let read_err = |e: csv::Error| read_error(&file, e);
    let header: Vec<String> = reader
        .headers()
        .map_err(read_err)?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            };
            h.trim().to_string()
        })
        .collect();
    let mut columns: Vec<ColumnProfile> = header
        .iter()
        .map(|name| ColumnProfile {
            name: name.clone(),
            missing: 0,
            numeric: true,
            integer: true,
            distinct: Some(Vec::new()),
            first_text: None,
            numbers: 0,
            tokens: Vec::new(),
        })
        .collect();
    let mut index: Vec<std::collections::HashMap<String, usize>> =
        vec![std::collections::HashMap::new(); columns.len()];
    let mut rows = 0;
    let mut rec = csv::ByteRecord::new();
    let mut ragged = None;
    while reader.read_byte_record(&mut rec).map_err(read_err)? {
        rows += 1;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != columns.len() && ragged.is_none() {
            ragged = Some((line, rec.len()));
        }
        for (c, col) in columns.iter_mut().enumerate() {
            let cell = rec.get(c).unwrap_or(b"").trim_ascii();
            // Strict: two Latin-1 names differing in one byte must not
            // collapse into one replacement character.
            let text = std::str::from_utf8(cell).map_err(|_| DataError::InvalidUtf8 {
                at: Box::new(Location {
                    file: file.clone(),
                    line,
                    column: Some((c + 1, col.name.clone())),
                }),
            })?;
            if cell.is_empty() || is_missing(cell, tokens) {
                col.count_missing(text, line);
                continue;
            }
            match fast_float2::parse::<f64, _>(cell) {
                // Huge values are never ids: the loader reports them as out of range.
                Ok(v) if v.is_finite() => {
                    col.numbers += 1;
                    col.integer &= v.fract() == 0.0 && v.abs() < 9.0e15;
                }
                _ => {
                    if col.numeric {
                        col.first_text = Some((line, super::shorten(text, 40)));
                    }
                    col.numeric = false;
                    col.integer = false;
                }
            }
            if let Some(d) = &mut col.distinct {
                // An index beside the list: a lookup per cell, not a scan.
                let seen = &mut index[c];
                match seen.get(text) {
                    Some(&i) => d[i].1 += 1,
                    None if d.len() < MAX_DISTINCT => {
                        seen.insert(text.to_string(), d.len());
                        d.push((text.to_string(), 1));
                    }
                    None => {
                        col.distinct = None;
                        seen.clear();
                    }
                }
            }
        }
    }
    Ok(TableProfile {
        rows,
        columns,
        ragged,
    })
}

impl ColumnProfile {
    /// Counts a missing cell, and the token it is (not the empty cell).
    fn count_missing(&mut self, text: &str, line: u64) {
        self.missing += 1;
        if text.is_empty() {
            return;
        }
        match self.tokens.iter_mut().find(|t| t.0 == text) {
            Some(t) => t.1 += 1,
            None => self.tokens.push((text.to_string(), 1, line)),
        }
    }

    /// A numeric column with a few stray cells (`inf`, `0x1`, a quoted
    /// newline): at most one in twenty present cells is not a number. Such
    /// a column is an error naming the first stray cell, never dropped as
    /// text.
    pub fn stray_cell(&self, rows: usize) -> Option<(u64, String)> {
        let present = rows - self.missing.min(rows);
        let stray = present - self.numbers.min(present);
        (stray > 0 && self.numbers > 0 && stray * 20 <= present)
            .then(|| self.first_text.clone())
            .flatten()
    }

    /// The kind `fedhe plan init` (and training without a plan) proposes,
    /// with a note when the choice is not plain numeric; `missing` says
    /// what the model does with a missing number.
    pub fn propose(&self, rows: usize, missing: MissingNumbers) -> (ProposedKind, Option<String>) {
        let name = &self.name;
        let present = rows - self.missing.min(rows);
        let distinct = self.distinct.as_ref().map(Vec::len);
        if present == 0 {
            return (
                ProposedKind::Ignored,
                Some(format!("column {name:?} ignored: it is empty on every row")),
            );
        }
        if distinct == Some(1) && self.missing > 0 {
            // One value and empty cells: whether a cell is filled is the
            // information (a flag column), kept as a category and "missing".
            let v = self
                .distinct
                .as_ref()
                .and_then(|d| d.first())
                .map(|(v, _)| v.clone());
            let cats: Vec<String> = v.into_iter().collect();
            let note = format!(
                "column {name:?} categorical: one value ({}) and {} missing cells, a flag",
                cats.join(""),
                self.missing
            );
            return (ProposedKind::Categorical(cats), Some(note));
        }
        if distinct == Some(1) {
            return (
                ProposedKind::Ignored,
                Some(format!(
                    "column {name:?} ignored: it holds one value on every row (a constant)"
                )),
            );
        }
        // Larger integer columns are checked by the loader, which sees every value.
        let id_like = name.eq_ignore_ascii_case("id")
            || (self.integer && present >= 3 && distinct == Some(present) && self.missing == 0);
        if id_like {
            return (
                ProposedKind::Ignored,
                Some(format!(
                    "column {name:?} ignored: it holds a distinct integer on every row, like an id"
                )),
            );
        }
        let missing_note = if self.missing > 0 {
            format!(", {} missing", self.missing)
        } else {
            String::new()
        };
        if !self.numeric {
            return match &self.distinct {
                Some(d)
                    if d.len() <= MAX_PROPOSED_CATEGORIES
                        && d.iter()
                            .all(|(v, _)| v.chars().count() <= MAX_CATEGORY_CHARS) =>
                {
                    let mut cats: Vec<String> = d.iter().map(|(v, _)| v.clone()).collect();
                    sort_classes(&mut cats);
                    let note = format!(
                        "column {name:?} categorical: text with {} categories ({}){missing_note}",
                        cats.len(),
                        super::shorten(&cats.join(", "), 80)
                    );
                    (ProposedKind::Categorical(cats), Some(note))
                }
                _ => (
                    ProposedKind::Ignored,
                    Some(format!(
                        "column {name:?} ignored: text with more than {MAX_PROPOSED_CATEGORIES} distinct values, \
                         or longer than {MAX_CATEGORY_CHARS} characters (free text or an identifier{})",
                        self.first_text
                            .as_ref()
                            .map(|(l, v)| format!(", e.g. {v:?} at line {l}"))
                            .unwrap_or_default()
                    )),
                ),
            };
        }
        if self.integer
            && let Some(d) = &self.distinct
            && (3..=MAX_INTEGER_CATEGORIES).contains(&d.len())
            && d.iter().all(|(_, n)| *n >= MIN_INTEGER_CATEGORY_ROWS)
        {
            let mut cats: Vec<String> = d.iter().map(|(v, _)| v.clone()).collect();
            sort_classes(&mut cats);
            let note = format!(
                "column {name:?} categorical: integers with only {} distinct values ({}){missing_note}; \
                 list it under `numeric` to keep it a number",
                cats.len(),
                cats.join(", ")
            );
            return (ProposedKind::Categorical(cats), Some(note));
        }
        let note = (self.missing > 0).then(|| {
            format!(
                "column {name:?} numeric{missing_note} ({})",
                missing.words()
            )
        });
        (ProposedKind::Numeric, note)
    }
}

/// Column kinds for reading a file without a plan.
#[derive(Debug, Clone)]
pub struct AutoSchema {
    /// The caller's options with categorical columns, ignored columns and
    /// missing tokens added.
    pub options: CsvOptions,
    /// One note per decision that is not plain numeric.
    pub notes: Vec<String>,
    pub profile: TableProfile,
}

/// Column kinds for reading `path` without a plan: categorical columns (by
/// the profile), missing tokens, and notes. Columns already ignored in
/// `opts` and the label are left alone. The notes on missing numbers name
/// no model ([`auto_schema_for`] does).
pub fn auto_schema(
    path: &Path,
    opts: &CsvOptions,
    label: Option<&str>,
) -> Result<AutoSchema, DataError> {
    auto_schema_for(path, opts, label, MissingNumbers::Unknown)
}

/// [`auto_schema`] for a model that does `missing` with a missing number.
///
/// A proposed categorical column takes an "(other)" category: its list
/// comes from this one file, so a value another file holds (the test file
/// scored later) goes there instead of being refused.
pub fn auto_schema_for(
    path: &Path,
    opts: &CsvOptions,
    label: Option<&str>,
    missing: MissingNumbers,
) -> Result<AutoSchema, DataError> {
    let tokens = if opts.missing_tokens.is_empty() {
        super::default_missing_tokens()
    } else {
        opts.missing_tokens.clone()
    };
    let profile = profile_csv(path, opts.delimiter, &tokens)?;
    let label = label
        .map(str::to_string)
        .or_else(|| opts.label.clone())
        .or_else(|| {
            super::DEFAULT_LABEL_NAMES.iter().find_map(|n| {
                profile
                    .columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(n))
                    .map(|c| c.name.clone())
            })
        });
    let label = label.as_deref();
    first_problem(path, &profile, label, &opts.target)?;
    let mut out = opts.clone();
    out.missing_tokens = tokens;
    let mut notes = Vec::new();
    for col in &profile.columns {
        // Names as the loader finds them: exact, else ignoring case.
        let same = |a: &str| a.eq_ignore_ascii_case(&col.name);
        let skip = col.name.is_empty()
            || label.is_some_and(same)
            || opts.ignore.iter().any(|i| same(i))
            || opts.categorical.iter().any(|c| same(&c.name))
            || opts.keep.iter().any(|k| same(k));
        if skip {
            continue;
        }
        if let Some((line, value)) = col.stray_cell(profile.rows) {
            let c = profile.columns.iter().position(|p| p.name == col.name);
            return Err(DataError::StrayCell {
                at: Box::new(Location {
                    file: path.display().to_string(),
                    line,
                    column: c.map(|c| (c + 1, col.name.clone())),
                }),
                value,
                numbers: col.numbers,
                present: profile.rows - col.missing.min(profile.rows),
            });
        }
        let (kind, note) = col.propose(profile.rows, missing);
        match kind {
            ProposedKind::Categorical(cats) => out.categorical.push(CategoricalSpec {
                name: col.name.clone(),
                categories: Some(cats),
                other: true,
            }),
            ProposedKind::Ignored => out.ignore.push(col.name.clone()),
            ProposedKind::Numeric => {}
        }
        notes.extend(note);
    }
    Ok(AutoSchema {
        options: out,
        notes,
        profile,
    })
}

/// Without a plan to name the classes: no missing-value token (other than
/// the default spellings of "no value", [`DEFAULT_MISSING_TOKENS`]) is a
/// value of a class label. Every row of that class would be skipped as
/// unlabelled and the model would learn the other classes only (one class:
/// accuracy 1, precision 0). A label is a class label unless the task is
/// regression, or automatic and the values, the token among them, make it
/// one. The plan path has the same check ([`Plan::validate`](crate::plan::Plan)).
fn class_token(
    file: &str,
    profile: &TableProfile,
    col: &ColumnProfile,
    target: &TargetSpec,
) -> Result<(), DataError> {
    let overflow = col.distinct.is_none();
    let values = col.distinct.iter().flatten().map(|(v, _)| v.clone());
    for (token, rows, line) in &col.tokens {
        if DEFAULT_MISSING_TOKENS.contains(&token.as_str()) {
            continue;
        }
        let classes = match target {
            TargetSpec::Numeric => false,
            TargetSpec::Auto => {
                let with: Vec<String> = values.clone().chain([token.clone()]).collect();
                propose_task(&with, overflow).0 != TaskKind::Regression
            }
            TargetSpec::Binary | TargetSpec::Classes(_) => true,
        };
        if classes {
            let c = profile.columns.iter().position(|p| p.name == col.name);
            return Err(DataError::MissingTokenIsClass {
                at: Box::new(Location {
                    file: file.to_string(),
                    line: *line,
                    column: c.map(|c| (c + 1, col.name.clone())),
                }),
                token: token.clone(),
                column: col.name.clone(),
                rows: *rows,
            });
        }
    }
    Ok(())
}

/// The one error that makes every note about the columns moot: a ragged
/// (malformed) row, no or one data row, or a label missing on every row.
fn first_problem(
    path: &Path,
    profile: &TableProfile,
    label: Option<&str>,
    target: &TargetSpec,
) -> Result<(), DataError> {
    let file = path.display().to_string();
    if let Some((line, found)) = profile.ragged {
        return Err(DataError::RaggedRow {
            file,
            line,
            found,
            expected: profile.columns.len(),
        });
    }
    match profile.rows {
        0 => return Err(DataError::HeaderOnly(file)),
        1 => return Err(DataError::OneRow { file }),
        _ => {}
    }
    let label_col = label.and_then(|l| {
        profile.columns.iter().find(|c| c.name == l).or_else(|| {
            profile
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(l))
        })
    });
    if let Some(c) = label_col {
        class_token(&file, profile, c, target)?;
    }
    if let Some(c) = label_col
        && c.missing >= profile.rows
    {
        return Err(DataError::NoLabels {
            file,
            column: c.name.clone(),
            rows: profile.rows,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_keeps_the_first_rows_and_counts_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, "a, b\n1,2\n 3 ,4,5\n6\n").unwrap();
        let p = preview_csv(&path, 2).unwrap();
        assert_eq!(p.header, ["a", "b"]);
        assert_eq!(p.rows, [vec!["1", "2"], vec!["3", "4", "5"]]);
        assert_eq!(p.total_rows, 3);
        let missing = preview_csv(&dir.path().join("none.csv"), 2);
        assert!(
            matches!(missing, Err(DataError::Open { .. })),
            "{missing:?}"
        );
    }
}
