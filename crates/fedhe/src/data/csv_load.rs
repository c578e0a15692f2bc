//! Streaming CSV loader: one reusable byte record, every error located by
//! file, line, column and value.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use csv::ByteRecord;
use ndarray::{Array1, Array2};
use rayon::prelude::*;

use super::blocks::{Block, BlockReader};

use super::columns::{CategoricalSpec, MAX_CATEGORIES, RawColumn, is_missing};
use super::target::{MAX_CLASSES, propose_task, sort_classes};
use super::{
    DEFAULT_LABEL_NAMES, DataError, Dataset, LabelMapping, Location, Target, TargetSpec, TaskKind,
};

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
    /// What the label column holds (binary by default).
    pub target: TargetSpec,
    /// The label value that means class 1 (binary).
    pub positive: Option<String>,
    /// Leave out a column named `id` or holding a distinct integer on every row.
    pub auto_ignore_ids: bool,
    pub features: FeatureSelection,
    /// A saved binary model's label mapping: labels must be one of its two values.
    pub mapping: Option<LabelMapping>,
    /// Accept a file without the label column (predictions without metrics).
    pub label_optional: bool,
    /// Field separator; `None` reads commas, unless the header has no comma
    /// but semicolons or tabs (then those, with a note).
    pub delimiter: Option<u8>,
    /// Columns read as categories (by name), after the numeric features.
    pub categorical: Vec<CategoricalSpec>,
    /// Cell texts read as missing. Empty: a missing cell is an error (an
    /// empty column is dropped). A row whose label is missing is skipped,
    /// with a note.
    pub missing_tokens: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            label: None,
            ignore: Vec::new(),
            keep: Vec::new(),
            target: TargetSpec::Binary,
            positive: None,
            auto_ignore_ids: true,
            features: FeatureSelection::All,
            mapping: None,
            label_optional: false,
            delimiter: None,
            categorical: Vec::new(),
            missing_tokens: Vec::new(),
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
    /// Every column name of the header, in file order.
    pub header: Vec<String>,
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
///
/// The input is streamed in blocks of whole records; the blocks of a batch
/// are parsed in parallel and merged in file order, so errors and results
/// are the same as a sequential read.
pub fn load_csv_reader<R: Read>(
    input: R,
    name: &str,
    opts: &CsvOptions,
) -> Result<LoadedCsv, DataError> {
    read_csv(input, name, opts, None)
}

/// `size`, when known, lets the value buffer be allocated once instead of
/// growing (and being copied) as blocks arrive.
///
/// The steps: sniff the delimiter and read the header, parse every block,
/// order discovered categories, choose the surviving columns, and build the
/// target.
fn read_csv<R: Read>(
    input: R,
    name: &str,
    opts: &CsvOptions,
    size: Option<u64>,
) -> Result<LoadedCsv, DataError> {
    let mut blocks = BlockReader::new(input);
    let head = read_header(&mut blocks, name, opts)?;
    let plan = Plan::new(&head.header, name, opts)?;
    let mut notices: Vec<String> = head.delim_note.into_iter().collect();
    notices.extend(plan.notices.iter().cloned());
    let ctx = BlockContext {
        name,
        header: &head.header,
        plan: &plan,
        opts,
        delim: head.delim,
    };
    let mut acc = parse_blocks(&mut blocks, head.rest, &ctx, size)?;
    row_notes(&acc, &mut notices);
    let found = order_discovered(&mut acc, &plan, opts);
    if acc.rows == 0 && acc.skipped > 0 {
        return Err(DataError::NoLabels {
            file: name.to_string(),
            column: head
                .header
                .get(plan.label.unwrap_or(usize::MAX))
                .cloned()
                .unwrap_or_default(),
            rows: acc.skipped,
        });
    }
    if acc.rows == 0 {
        return Err(DataError::HeaderOnly(name.to_string()));
    }
    let keep = surviving_features(&acc, &ctx, &mut notices)?;
    let (x, feature_names, columns) = feature_matrix(&mut acc, &ctx, &keep, &found)?;
    let (label, y, has_labels) = read_target(&mut acc, &ctx, &mut notices)?;
    Ok(LoadedCsv {
        dataset: Dataset {
            x,
            y,
            feature_names,
            columns,
            label,
        },
        notices,
        has_labels,
        header: head.header,
    })
}

/// The header and what follows it in its block.
struct Head {
    header: Vec<String>,
    delim: u8,
    delim_note: Option<String>,
    /// The rest of the header's block.
    rest: Block,
}

/// Reads blocks until the first record (the header), sniffing the
/// delimiter on the first block unless it is given.
fn read_header<R: Read>(
    blocks: &mut BlockReader<R>,
    name: &str,
    opts: &CsvOptions,
) -> Result<Head, DataError> {
    loop {
        let Some(block) = next_block(blocks, name)? else {
            return Err(DataError::Empty(name.to_string()));
        };
        let (delim, delim_note) = match opts.delimiter {
            Some(d) => (d, None),
            None => sniff_delimiter(&block.bytes),
        };
        let mut reader = record_reader(&block.bytes, delim);
        let mut rec = ByteRecord::new();
        if next_record(&mut reader, &mut rec, name, block.first_line)? {
            let mut lines = LineCounter::default();
            let line = block.first_line + lines.line_of_content(&block.bytes, 0);
            let header = parse_header(&rec, name, line)?;
            let end = offset(reader.position(), block.bytes.len());
            let rest = Block {
                first_line: block.first_line + lines.newlines_before(&block.bytes, end),
                bytes: block.bytes[end..].to_vec(),
            };
            return Ok(Head {
                header,
                delim,
                delim_note,
                rest,
            });
        }
    }
}

/// Parses every block after the header, a batch of blocks in parallel,
/// merged in file order (so errors and results equal a sequential read).
fn parse_blocks<R: Read>(
    blocks: &mut BlockReader<R>,
    first: Block,
    ctx: &BlockContext<'_>,
    size: Option<u64>,
) -> Result<Parsed, DataError> {
    let mut acc = Parsed::new(ctx.plan.features.len());
    let per_batch = 2 * rayon::current_num_threads().max(1);
    let mut batch = vec![first];
    loop {
        let mut last = false;
        while batch.len() < per_batch {
            match next_block(blocks, ctx.name)? {
                Some(b) => batch.push(b),
                None => {
                    last = true;
                    break;
                }
            }
        }
        let parsed: Vec<Result<Parsed, DataError>> = if batch.len() == 1 {
            vec![ctx.parse(&batch[0])]
        } else {
            batch.par_iter().map(|b| ctx.parse(b)).collect()
        };
        for p in parsed {
            let p = p?;
            if acc.rows == 0
                && let Some(size) = size
                && !p.values.is_empty()
            {
                // Estimate the file's value count from the first block's density.
                let bytes_per_value = batch[0].bytes.len() as f64 / p.values.len() as f64;
                let estimate = (size as f64 / bytes_per_value.max(1.0) * 1.02) as usize;
                acc.values.reserve(estimate.min(1 << 31));
            }
            acc.merge(p, ctx)?;
        }
        batch.clear();
        if last {
            return Ok(acc);
        }
    }
}

/// Notes on rows with an unknown label (scoring) or a missing one (skipped).
fn row_notes(acc: &Parsed, notices: &mut Vec<String>) {
    if let Some((line, value)) = &acc.first_unknown {
        notices.push(format!(
            "{} row(s) have a label the model does not know (the first: {value:?} \
             at line {line}): predicted, left out of the metrics",
            acc.unknown_labels
        ));
    }
    if acc.skipped > 0 {
        notices.push(format!(
            "skipped {} row(s) whose label is missing (the first at line {})",
            acc.skipped,
            acc.first_skipped.unwrap_or(0)
        ));
    }
}

/// Discovered categories are sorted (numbers numerically), so every site
/// orders them the same; the codes in `acc.values` are renumbered to
/// follow. Returns, per `CsvOptions::categorical` spec, the sorted values
/// (empty for a spec that lists its categories).
fn order_discovered(acc: &mut Parsed, plan: &Plan, opts: &CsvOptions) -> Vec<Vec<String>> {
    let nfeat = plan.features.len();
    let mut found: Vec<Vec<String>> = vec![Vec::new(); opts.categorical.len()];
    for (j, k) in plan.categorical.iter().enumerate() {
        let Some(k) = *k else { continue };
        if opts.categorical[k].categories.is_some() {
            continue;
        }
        let seen: Vec<String> = acc
            .vocab
            .get(k)
            .map(|v| v.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default();
        let mut sorted = seen.clone();
        super::sort_classes(&mut sorted);
        let rank: Vec<f64> = seen
            .iter()
            .map(|v| sorted.iter().position(|x| x == v).unwrap_or(0) as f64)
            .collect();
        for v in acc.values.iter_mut().skip(j).step_by(nfeat.max(1)) {
            if !v.is_nan() {
                *v = rank.get(*v as usize).copied().unwrap_or(f64::NAN);
            }
        }
        found[k] = sorted;
    }
    found
}

/// Decides which feature columns survive: entirely empty ones are dropped
/// (trailing commas), partly empty ones are an error, identifiers go.
/// Returns the surviving features' indices.
fn surviving_features(
    acc: &Parsed,
    ctx: &BlockContext<'_>,
    notices: &mut Vec<String>,
) -> Result<Vec<usize>, DataError> {
    let (plan, opts, header, name) = (ctx.plan, ctx.opts, ctx.header, ctx.name);
    let nfeat = plan.features.len();
    let lenient = !opts.missing_tokens.is_empty();
    let named = matches!(opts.features, FeatureSelection::Named(_));
    let mut keep: Vec<usize> = Vec::with_capacity(nfeat);
    for (j, &c) in plan.features.iter().enumerate() {
        let col_name = &header[c];
        if acc.present[j] == 0 && !named {
            notices.push(format!(
                "dropped column {} ({}) because it is empty on every row",
                c + 1,
                display_name(col_name, c)
            ));
            continue;
        }
        if let Some(line) = acc.first_missing[j]
            && !lenient
            && plan.categorical[j].is_none()
        {
            return Err(DataError::MissingCell {
                at: location(name, line, c, header),
            });
        }
        if !named
            && plan.categorical[j].is_none()
            && opts.auto_ignore_ids
            && !plan.keep.contains(&c)
            && acc.rows >= 3
            && is_identifier(&acc.values, nfeat, j)
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
    Ok(keep)
}

/// The feature matrix, the features' names and their raw columns.
type Features = (Array2<f64>, Vec<String>, Vec<RawColumn>);

/// The feature matrix of the surviving columns (`acc.values` is moved
/// out), their names and their raw columns.
fn feature_matrix(
    acc: &mut Parsed,
    ctx: &BlockContext<'_>,
    keep: &[usize],
    found: &[Vec<String>],
) -> Result<Features, DataError> {
    let (plan, opts, header) = (ctx.plan, ctx.opts, ctx.header);
    let nfeat = plan.features.len();
    let rows = acc.rows;
    let values = std::mem::take(&mut acc.values);
    let x = if keep.len() == nfeat {
        Array2::from_shape_vec((rows, nfeat), values)
    } else {
        let mut out = Vec::with_capacity(rows * keep.len());
        for row in values.chunks_exact(nfeat) {
            out.extend(keep.iter().map(|&j| row[j]));
        }
        Array2::from_shape_vec((rows, keep.len()), out)
    }
    .map_err(|e| DataError::Invalid(format!("{}: internal shape error: {e}", ctx.name)))?;
    let feature_names: Vec<String> = keep
        .iter()
        .map(|&j| header[plan.features[j]].clone())
        .collect();
    let columns: Vec<RawColumn> = keep
        .iter()
        .map(|&j| match plan.categorical[j] {
            None => RawColumn::numeric(&header[plan.features[j]]),
            Some(k) => {
                let spec = &opts.categorical[k];
                RawColumn::Categorical {
                    name: header[plan.features[j]].clone(),
                    categories: spec.categories.clone().unwrap_or_else(|| found[k].clone()),
                    other: spec.other,
                }
            }
        })
        .collect();
    Ok((x, feature_names, columns))
}

/// The target and `y` from the label column, or, for a file without one
/// (scoring), the target the options name and zeros.
fn read_target(
    acc: &mut Parsed,
    ctx: &BlockContext<'_>,
    notices: &mut Vec<String>,
) -> Result<(Target, Array1<f64>, bool), DataError> {
    let opts = ctx.opts;
    let Some(c) = ctx.plan.label else {
        let target = match &opts.target {
            TargetSpec::Classes(Some(classes)) => Target::Multiclass {
                column: String::new(),
                classes: classes.clone(),
            },
            TargetSpec::Numeric => Target::Regression {
                column: String::new(),
            },
            _ => Target::Binary(opts.mapping.clone().unwrap_or(LabelMapping {
                column: String::new(),
                positive: "1".into(),
                negative: "0".into(),
            })),
        };
        return Ok((target, Array1::zeros(acc.rows), false));
    };
    let column = ctx.header[c].clone();
    let labels = LabelColumn {
        file: ctx.name,
        column: &column,
        line_of_first: &acc.label_values,
        indices: &acc.labels,
        overflow: acc.overflow,
        targets: std::mem::take(&mut acc.targets),
        first_text: acc.first_text.take(),
        header: ctx.header,
        c,
    };
    let (target, y) = labels.target(opts, notices)?;
    Ok((target, y, true))
}

fn record_reader(bytes: &[u8], delim: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delim)
        .from_reader(bytes)
}

/// The separator of a file whose delimiter was not given: a comma, unless
/// its first line has none but has semicolons or tabs (a spreadsheet export
/// in a locale with decimal commas, or a TSV). Returns the note to show.
pub(crate) fn sniff_delimiter(bytes: &[u8]) -> (u8, Option<String>) {
    let line = bytes
        .split(|&b| b == b'\n')
        .find(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .unwrap_or(&[]);
    let count = |c: u8| line.iter().filter(|&&b| b == c).count();
    let (commas, semis, tabs) = (count(b','), count(b';'), count(b'\t'));
    if commas > 0 || (semis == 0 && tabs == 0) {
        return (b',', None);
    }
    let (d, what) = if semis >= tabs {
        (b';', "semicolon")
    } else {
        (b'\t', "tab")
    };
    let note = format!(
        "reading the file as {what}-separated: its header has {what}s and no commas \
         (--delimiter sets the separator)"
    );
    (d, Some(note))
}

fn next_block<R: Read>(
    blocks: &mut BlockReader<R>,
    name: &str,
) -> Result<Option<Block>, DataError> {
    let line = blocks.next_line();
    blocks.next_block().map_err(|e| DataError::Read {
        at: Box::new(Location {
            file: name.to_string(),
            line,
            column: None,
        }),
        message: e.to_string(),
    })
}

/// Label index of a row whose label is missing (scoring only).
const UNLABELLED: u32 = u32::MAX;

/// Reads one record; `first_line` is the block's first line in the file.
fn next_record(
    reader: &mut csv::Reader<&[u8]>,
    rec: &mut ByteRecord,
    name: &str,
    first_line: u64,
) -> Result<bool, DataError> {
    reader.read_byte_record(rec).map_err(|e| {
        let line = first_line + e.position().map_or(1, |p| p.line()) - 1;
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

/// A reader position as a byte offset into a buffer of `len` bytes.
fn offset(pos: &csv::Position, len: usize) -> usize {
    usize::try_from(pos.byte()).map_or(len, |b| b.min(len))
}

/// Counts newlines incrementally through one buffer.
#[derive(Default)]
struct LineCounter {
    counted_to: usize,
    newlines: u64,
}

impl LineCounter {
    /// Newlines in `bytes[..end]` (calls must not go backwards).
    fn newlines_before(&mut self, bytes: &[u8], end: usize) -> u64 {
        let end = end.max(self.counted_to);
        self.newlines += memchr::memchr_iter(b'\n', &bytes[self.counted_to..end]).count() as u64;
        self.counted_to = end;
        self.newlines
    }

    /// 0-based line of the first byte at or after `from` that is not part of
    /// a line terminator or a blank line.
    fn line_of_content(&mut self, bytes: &[u8], from: usize) -> u64 {
        let start = bytes[from..]
            .iter()
            .position(|&b| b != b'\n' && b != b'\r')
            .map_or(bytes.len(), |i| from + i);
        self.newlines_before(bytes, start)
    }
}

/// Everything a block parser needs, shared by all blocks.
struct BlockContext<'a> {
    name: &'a str,
    header: &'a [String],
    plan: &'a Plan,
    opts: &'a CsvOptions,
    /// Field separator.
    delim: u8,
}

/// Parsed rows of one block (or, after merging, of the whole file).
struct Parsed {
    /// Row-major feature values; NaN marks an empty cell.
    values: Vec<f64>,
    first_missing: Vec<Option<u64>>,
    present: Vec<usize>,
    /// Index into `label_values` (or the given class list) per row;
    /// `u32::MAX` once more than [`MAX_CLASSES`] values were seen.
    labels: Vec<u32>,
    /// Distinct label values and the line each first appears on.
    label_values: Vec<(String, u64)>,
    /// More distinct label values than [`MAX_CLASSES`] (automatic task).
    overflow: bool,
    /// The label as a number per row (numeric and automatic targets; NaN
    /// for a cell that is not a number).
    targets: Vec<f64>,
    /// First label cell that is not a number (automatic targets).
    first_text: Option<(u64, String)>,
    /// Per categorical feature whose categories are discovered: the values
    /// seen, with the line each first appears on (codes index this).
    vocab: Vec<Vec<(String, u64)>>,
    /// Rows skipped because their label is missing, and the first one's line.
    skipped: usize,
    first_skipped: Option<u64>,
    /// Scoring: rows whose label is not one of the model's classes, and the
    /// first one (line, value).
    unknown_labels: usize,
    first_unknown: Option<(u64, String)>,
    rows: usize,
}

impl Parsed {
    fn new(nfeat: usize) -> Self {
        Self {
            values: Vec::new(),
            first_missing: vec![None; nfeat],
            present: vec![0; nfeat],
            labels: Vec::new(),
            label_values: Vec::new(),
            overflow: false,
            targets: Vec::new(),
            first_text: None,
            vocab: Vec::new(),
            skipped: 0,
            first_skipped: None,
            unknown_labels: 0,
            first_unknown: None,
            rows: 0,
        }
    }

    /// Appends a later block, mapping its label values onto ours.
    fn merge(&mut self, other: Parsed, ctx: &BlockContext) -> Result<(), DataError> {
        let mut map = vec![u32::MAX; other.label_values.len()];
        for (k, (value, line)) in other.label_values.iter().enumerate() {
            let idx = match self.label_values.iter().position(|(v, _)| v == value) {
                Some(i) => i,
                None => {
                    let c = ctx.plan.label.unwrap_or(0);
                    let at = || location(ctx.name, *line, c, ctx.header);
                    match &ctx.opts.target {
                        TargetSpec::Binary if self.label_values.len() == 2 => {
                            return Err(DataError::ThirdLabel {
                                at: at(),
                                value: super::shorten(value, 80),
                                first: super::shorten(&self.label_values[0].0, 80),
                                second: super::shorten(&self.label_values[1].0, 80),
                            });
                        }
                        TargetSpec::Classes(None) if self.label_values.len() == MAX_CLASSES => {
                            return Err(DataError::TooManyClasses {
                                at: at(),
                                max: MAX_CLASSES,
                            });
                        }
                        _ if self.label_values.len() == MAX_CLASSES => {
                            self.overflow = true;
                            continue;
                        }
                        _ => {}
                    }
                    self.label_values.push((value.clone(), *line));
                    self.label_values.len() - 1
                }
            };
            // At most MAX_CLASSES label values exist, so indices fit in a u32.
            map[k] = idx as u32;
        }
        let fixed = matches!(ctx.opts.target, TargetSpec::Classes(Some(_)));
        self.overflow |= other.overflow;
        self.skipped += other.skipped;
        if self.first_skipped.is_none() {
            self.first_skipped = other.first_skipped;
        }
        self.unknown_labels += other.unknown_labels;
        if self.first_unknown.is_none() {
            self.first_unknown = other.first_unknown.clone();
        }
        let mut other = other;
        ctx.merge_vocab(&mut self.vocab, &mut other)?;
        if self.first_text.is_none() {
            self.first_text = other.first_text;
        }
        self.targets.extend_from_slice(&other.targets);
        if self.values.capacity() == 0 {
            self.values = other.values;
        } else {
            self.values.extend_from_slice(&other.values);
        }
        if fixed {
            self.labels.extend_from_slice(&other.labels);
        } else {
            self.labels.extend(
                other
                    .labels
                    .iter()
                    .map(|&i| map.get(i as usize).copied().unwrap_or(u32::MAX)),
            );
        }
        for (mine, theirs) in self.first_missing.iter_mut().zip(&other.first_missing) {
            if mine.is_none() {
                *mine = *theirs;
            }
        }
        for (mine, theirs) in self.present.iter_mut().zip(&other.present) {
            *mine += theirs;
        }
        self.rows += other.rows;
        Ok(())
    }
}

impl BlockContext<'_> {
    fn parse(&self, block: &Block) -> Result<Parsed, DataError> {
        let mut out = Parsed::new(self.plan.features.len());
        out.values.reserve(block.bytes.len() / 8);
        if memchr::memchr2(b'"', b'\r', &block.bytes).is_none() {
            self.parse_plain(block, &mut out)?;
        } else {
            self.parse_quoted(block, &mut out)?;
        }
        Ok(out)
    }

    /// Fast path for a block without quotes or carriage returns: a record is
    /// a non-empty line and a field is what lies between commas, exactly as
    /// the csv reader would split it.
    fn parse_plain(&self, block: &Block, out: &mut Parsed) -> Result<(), DataError> {
        let bytes = &block.bytes[..];
        let mut starts: Vec<usize> = Vec::with_capacity(self.header.len() + 1);
        let mut line = block.first_line;
        let mut start = 0;
        while start < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            let rec = &bytes[start..end];
            if !rec.is_empty() {
                starts.clear();
                starts.push(0);
                starts.extend(memchr::memchr_iter(self.delim, rec).map(|i| i + 1));
                let n = starts.len();
                self.row(out, line, n, |k| {
                    let end = if k + 1 < n {
                        starts[k + 1] - 1
                    } else {
                        rec.len()
                    };
                    &rec[starts[k]..end]
                })?;
            }
            line += 1;
            start = end + 1;
        }
        Ok(())
    }

    /// General path: the csv reader handles quoting and line endings.
    fn parse_quoted(&self, block: &Block, out: &mut Parsed) -> Result<(), DataError> {
        let bytes = &block.bytes[..];
        let mut reader = record_reader(bytes, self.delim);
        let mut rec = ByteRecord::new();
        let mut lines = LineCounter::default();
        let mut record_start = 0;
        while next_record(&mut reader, &mut rec, self.name, block.first_line)? {
            // The csv reader's own record position is taken before blank lines
            // and CR LF terminators are skipped, so count lines ourselves.
            let line = block.first_line + lines.line_of_content(bytes, record_start);
            self.row(out, line, rec.len(), |k| &rec[k])?;
            record_start = offset(reader.position(), bytes.len());
        }
        Ok(())
    }

    /// Parses one record of `fields` fields; `field(k)` is the k-th cell.
    fn row<'r>(
        &self,
        out: &mut Parsed,
        line: u64,
        fields: usize,
        field: impl Fn(usize) -> &'r [u8],
    ) -> Result<(), DataError> {
        let (name, header, plan) = (self.name, self.header, self.plan);
        if fields != header.len() {
            return Err(DataError::RaggedRow {
                file: name.to_string(),
                line,
                found: fields,
                expected: header.len(),
            });
        }
        let tokens = &self.opts.missing_tokens;
        if let Some(c) = plan.label
            && !tokens.is_empty()
            && !self.opts.label_optional
            && is_missing(field(c).trim_ascii(), tokens)
        {
            // Training: a row without a label teaches nothing.
            out.skipped += 1;
            out.first_skipped.get_or_insert(line);
            return Ok(());
        }
        for (j, &c) in plan.features.iter().enumerate() {
            // Cells are trimmed here rather than by the csv reader, whose
            // trimming rebuilds every record.
            let cell = field(c).trim_ascii();
            if let Some(k) = plan.categorical[j] {
                let code = self.category(out, k, cell, line, c)?;
                out.values.push(code);
                if code.is_nan() {
                    out.first_missing[j].get_or_insert(line);
                } else {
                    out.present[j] += 1;
                }
                continue;
            }
            if cell.is_empty() || (!tokens.is_empty() && is_missing(cell, tokens)) {
                out.values.push(f64::NAN);
                out.first_missing[j].get_or_insert(line);
                continue;
            }
            match fast_float2::parse::<f64, _>(cell) {
                Ok(v) if v.is_finite() && v.abs() <= super::MAX_ABS_VALUE => out.values.push(v),
                Ok(v) if v.is_finite() => {
                    return Err(DataError::OutOfRange {
                        at: location(name, line, c, header),
                        value: v,
                    });
                }
                _ => {
                    let at = location(name, line, c, header);
                    return Err(match std::str::from_utf8(cell) {
                        Ok(text) => DataError::NotNumeric {
                            at,
                            value: super::shorten(text, 80),
                        },
                        Err(_) => DataError::InvalidUtf8 { at },
                    });
                }
            }
            out.present[j] += 1;
        }
        if let Some(c) = plan.label {
            self.label_cell(out, field(c).trim_ascii(), line, c)?;
        }
        out.rows += 1;
        Ok(())
    }

    /// The code of a categorical cell: the index of its category, the
    /// "other" code (`categories.len()`), or NaN when missing.
    fn category(
        &self,
        out: &mut Parsed,
        k: usize,
        cell: &[u8],
        line: u64,
        c: usize,
    ) -> Result<f64, DataError> {
        let tokens = &self.opts.missing_tokens;
        if cell.is_empty() || is_missing(cell, tokens) {
            return Ok(f64::NAN);
        }
        let at = || location(self.name, line, c, self.header);
        let text = std::str::from_utf8(cell).map_err(|_| DataError::InvalidUtf8 { at: at() })?;
        let spec = &self.opts.categorical[k];
        match &spec.categories {
            Some(categories) => match categories.iter().position(|x| x == text) {
                // At most MAX_CATEGORIES categories, so the index is exact in f64.
                Some(i) => Ok(i as f64),
                None if spec.other => Ok(categories.len() as f64),
                None => Err(DataError::UnknownCategory {
                    at: at(),
                    value: super::shorten(text, 80),
                    categories: super::shorten(&categories.join(", "), 200),
                }),
            },
            None => {
                if out.vocab.len() <= k {
                    out.vocab.resize(self.opts.categorical.len(), Vec::new());
                }
                let seen = &mut out.vocab[k];
                if let Some(i) = seen.iter().position(|(v, _)| v == text) {
                    return Ok(i as f64);
                }
                if seen.len() == MAX_CATEGORIES {
                    return Err(DataError::TooManyCategories {
                        at: at(),
                        max: MAX_CATEGORIES,
                    });
                }
                seen.push((text.to_string(), line));
                Ok((seen.len() - 1) as f64)
            }
        }
    }

    /// Merges a later block's discovered categories into `mine`, renumbering
    /// its codes in `other.values`.
    fn merge_vocab(
        &self,
        mine: &mut Vec<Vec<(String, u64)>>,
        other: &mut Parsed,
    ) -> Result<(), DataError> {
        if other.vocab.is_empty() {
            return Ok(());
        }
        mine.resize(self.opts.categorical.len(), Vec::new());
        let nfeat = self.plan.features.len();
        for (j, k) in self.plan.categorical.iter().enumerate() {
            let Some(k) = *k else { continue };
            // Listed categories are codes already: nothing to renumber.
            if self.opts.categorical[k].categories.is_some() {
                continue;
            }
            let Some(theirs) = other.vocab.get(k) else {
                continue;
            };
            let mut map = Vec::with_capacity(theirs.len());
            for (value, line) in theirs {
                let idx = match mine[k].iter().position(|(v, _)| v == value) {
                    Some(i) => i,
                    None => {
                        if mine[k].len() == MAX_CATEGORIES {
                            let c = self.plan.features[j];
                            return Err(DataError::TooManyCategories {
                                at: location(self.name, *line, c, self.header),
                                max: MAX_CATEGORIES,
                            });
                        }
                        mine[k].push((value.clone(), *line));
                        mine[k].len() - 1
                    }
                };
                map.push(idx as f64);
            }
            for v in other.values.iter_mut().skip(j).step_by(nfeat.max(1)) {
                if !v.is_nan() {
                    *v = map.get(*v as usize).copied().unwrap_or(f64::NAN);
                }
            }
        }
        Ok(())
    }

    /// Reads one label cell the way the target spec asks.
    fn label_cell(
        &self,
        out: &mut Parsed,
        cell: &[u8],
        line: u64,
        c: usize,
    ) -> Result<(), DataError> {
        let at = || location(self.name, line, c, self.header);
        if cell.len() > super::MAX_LABEL_BYTES {
            return Err(DataError::LabelTooLong {
                at: at(),
                bytes: cell.len(),
            });
        }
        // Scoring: a row without a label is still predicted (NaN `y`).
        if self.opts.label_optional
            && (cell.is_empty() || is_missing(cell, &self.opts.missing_tokens))
        {
            out.labels.push(UNLABELLED);
            out.targets.push(f64::NAN);
            return Ok(());
        }
        match &self.opts.target {
            TargetSpec::Binary => {
                if self.opts.label_optional
                    && let Some(m) = &self.opts.mapping
                    && let Ok(text) = std::str::from_utf8(cell)
                    && text != m.positive
                    && text != m.negative
                {
                    // Scoring: still predicted, left out of the metrics.
                    out.unknown_labels += 1;
                    out.first_unknown
                        .get_or_insert((line, super::shorten(text, 40)));
                    out.labels.push(UNLABELLED);
                    return Ok(());
                }
                let idx = self.label_index(cell, &mut out.label_values, line, c)?;
                out.labels.push(idx);
            }
            TargetSpec::Classes(Some(classes)) => {
                let text = label_text(cell, &at)?;
                let Some(i) = classes.iter().position(|k| k == text) else {
                    // Scoring: still predicted, left out of the metrics.
                    if self.opts.label_optional {
                        out.unknown_labels += 1;
                        out.first_unknown
                            .get_or_insert((line, super::shorten(text, 40)));
                        out.labels.push(UNLABELLED);
                        return Ok(());
                    }
                    return Err(DataError::UnknownClass {
                        at: at(),
                        value: super::shorten(text, 80),
                        classes: super::shorten(&classes.join(", "), 200),
                    });
                };
                // At most MAX_CLASSES classes (plan validation), so i fits.
                out.labels.push(i as u32);
            }
            TargetSpec::Numeric => {
                let text = label_text(cell, &at)?;
                out.targets.push(parse_target(text, &at)?);
            }
            TargetSpec::Classes(None) | TargetSpec::Auto => {
                let text = label_text(cell, &at)?;
                let idx = match out.label_values.iter().position(|(v, _)| v == text) {
                    Some(i) => i as u32,
                    None if out.label_values.len() < MAX_CLASSES => {
                        out.label_values.push((text.to_string(), line));
                        out.label_values.len() as u32 - 1
                    }
                    None if matches!(self.opts.target, TargetSpec::Auto) => {
                        out.overflow = true;
                        u32::MAX
                    }
                    None => {
                        return Err(DataError::TooManyClasses {
                            at: at(),
                            max: MAX_CLASSES,
                        });
                    }
                };
                out.labels.push(idx);
                if matches!(self.opts.target, TargetSpec::Auto) {
                    match parse_target(text, &at) {
                        Ok(v) => out.targets.push(v),
                        Err(_) => {
                            out.targets.push(f64::NAN);
                            if out.first_text.is_none() {
                                out.first_text = Some((line, super::shorten(text, 80)));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn label_index(
        &self,
        cell: &[u8],
        seen: &mut Vec<(String, u64)>,
        line: u64,
        c: usize,
    ) -> Result<u32, DataError> {
        if let Some(i) = seen.iter().position(|(v, _)| v.as_bytes() == cell) {
            // At most two label values exist, so the index fits.
            return Ok(i as u32);
        }
        let at = || location(self.name, line, c, self.header);
        let text = std::str::from_utf8(cell).map_err(|_| DataError::InvalidUtf8 { at: at() })?;
        if text.is_empty() {
            return Err(DataError::MissingCell { at: at() });
        }
        if let Some(m) = &self.opts.mapping
            && text != m.positive
            && text != m.negative
        {
            return Err(DataError::LabelNotInModel {
                at: at(),
                value: super::shorten(text, 80),
                positive: m.positive.clone(),
                negative: m.negative.clone(),
            });
        }
        if seen.len() == 2 {
            return Err(DataError::ThirdLabel {
                at: at(),
                value: super::shorten(text, 80),
                first: super::shorten(&seen[0].0, 80),
                second: super::shorten(&seen[1].0, 80),
            });
        }
        seen.push((text.to_string(), line));
        Ok(seen.len() as u32 - 1)
    }
}

/// A label cell as text; empty is a missing value.
fn label_text<'c>(cell: &'c [u8], at: &dyn Fn() -> Box<Location>) -> Result<&'c str, DataError> {
    let text = std::str::from_utf8(cell).map_err(|_| DataError::InvalidUtf8 { at: at() })?;
    if text.is_empty() {
        return Err(DataError::MissingCell { at: at() });
    }
    Ok(text)
}

/// A numeric target cell, within the same bound as features.
fn parse_target(text: &str, at: &dyn Fn() -> Box<Location>) -> Result<f64, DataError> {
    match fast_float2::parse::<f64, _>(text) {
        Ok(v) if v.is_finite() && v.abs() <= super::MAX_ABS_VALUE => Ok(v),
        Ok(v) if v.is_finite() => Err(DataError::OutOfRange { at: at(), value: v }),
        _ => Err(DataError::NotNumeric {
            at: at(),
            value: super::shorten(text, 80),
        }),
    }
}

fn parse_header(rec: &ByteRecord, name: &str, line: u64) -> Result<Vec<String>, DataError> {
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
    /// Header index of each feature: the numeric ones, then the categorical.
    features: Vec<usize>,
    /// Per feature: the index of its `CsvOptions::categorical` spec.
    categorical: Vec<Option<usize>>,
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
        let mut categorical_cols = Vec::with_capacity(opts.categorical.len());
        for spec in &opts.categorical {
            let c = require(&spec.name, "categorical")?;
            // The label is never a feature, nor is an ignored column.
            if Some(c) == label || ignored.contains(&c) {
                return Err(DataError::Invalid(format!(
                    "{name}: column {:?} cannot be both a categorical feature and the label or \
                     ignored",
                    header[c]
                )));
            }
            categorical_cols.push(c);
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
                    .filter(|c| {
                        !cols.contains(c)
                            && !categorical_cols.contains(c)
                            && Some(*c) != label
                            && !header[*c].is_empty()
                    })
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
                    if Some(c) == label || ignored.contains(&c) || categorical_cols.contains(&c) {
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
        let mut features = features;
        let mut categorical = vec![None; features.len()];
        for (k, &c) in categorical_cols.iter().enumerate() {
            features.push(c);
            categorical.push(Some(k));
        }
        Ok(Plan {
            label,
            features,
            categorical,
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

/// The parsed label column, turned into a [`Target`] and `y` at the end.
struct LabelColumn<'a> {
    file: &'a str,
    column: &'a str,
    /// Distinct values with the line each first appears on.
    line_of_first: &'a [(String, u64)],
    indices: &'a [u32],
    overflow: bool,
    targets: Vec<f64>,
    first_text: Option<(u64, String)>,
    header: &'a [String],
    c: usize,
}

impl LabelColumn<'_> {
    fn target(
        self,
        opts: &CsvOptions,
        notices: &mut Vec<String>,
    ) -> Result<(Target, Array1<f64>), DataError> {
        let values: Vec<String> = self.line_of_first.iter().map(|(v, _)| v.clone()).collect();
        let kind = match &opts.target {
            TargetSpec::Binary => TaskKind::Binary,
            TargetSpec::Classes(_) => TaskKind::Multiclass,
            TargetSpec::Numeric => TaskKind::Regression,
            TargetSpec::Auto => {
                // Mostly numbers, too many for classes, and a cell that is
                // not one: a numeric target with a bad cell, not classes.
                let numbers = values.iter().filter(|v| v.parse::<f64>().is_ok()).count();
                if let Some((line, text)) = &self.first_text
                    && (self.overflow || numbers > super::AUTO_MAX_CLASSES)
                {
                    let at = location(self.file, *line, self.c, self.header);
                    return Err(match fast_float2::parse::<f64, _>(text.as_bytes()) {
                        Ok(v) if v.is_finite() => DataError::OutOfRange { at, value: v },
                        _ => DataError::NotNumeric {
                            at,
                            value: text.clone(),
                        },
                    });
                }
                if self.overflow && self.first_text.is_some() {
                    let (line, _) = self.first_text.clone().unwrap_or_default();
                    return Err(DataError::TooManyClasses {
                        at: location(self.file, line, self.c, self.header),
                        max: MAX_CLASSES,
                    });
                }
                let (kind, why) = if self.first_text.is_some() {
                    let (k, w) = propose_task(&values, false);
                    (
                        if k == TaskKind::Regression {
                            TaskKind::Multiclass
                        } else {
                            k
                        },
                        w,
                    )
                } else {
                    propose_task(&values, self.overflow)
                };
                notices.push(format!("task: {kind}, because {why} (choose with --task)"));
                kind
            }
        };
        match kind {
            TaskKind::Binary => {
                let mapping = choose_mapping(self.file, self.column, &values, opts, notices)?;
                let pos_idx = values.iter().position(|v| *v == mapping.positive);
                let y = self
                    .indices
                    .iter()
                    .map(|&i| match i {
                        UNLABELLED => f64::NAN,
                        i => f64::from(u8::from(Some(i as usize) == pos_idx)),
                    })
                    .collect();
                Ok((Target::Binary(mapping), y))
            }
            TaskKind::Multiclass => {
                if let TargetSpec::Classes(Some(classes)) = &opts.target {
                    let y = self
                        .indices
                        .iter()
                        .map(|&i| match i {
                            UNLABELLED => f64::NAN,
                            i => f64::from(i),
                        })
                        .collect();
                    return Ok((
                        Target::Multiclass {
                            column: self.column.to_string(),
                            classes: classes.clone(),
                        },
                        y,
                    ));
                }
                if values.len() < 2 {
                    return Err(DataError::SingleClass {
                        file: self.file.to_string(),
                        column: self.column.to_string(),
                        value: values.first().cloned().unwrap_or_default(),
                    });
                }
                let mut classes = values.clone();
                sort_classes(&mut classes);
                let rank: Vec<f64> = values
                    .iter()
                    .map(|v| classes.iter().position(|c| c == v).unwrap_or(0) as f64)
                    .collect();
                let y = self
                    .indices
                    .iter()
                    .map(|&i| rank.get(i as usize).copied().unwrap_or(f64::NAN))
                    .collect();
                Ok((
                    Target::Multiclass {
                        column: self.column.to_string(),
                        classes,
                    },
                    y,
                ))
            }
            TaskKind::Regression => Ok((
                Target::Regression {
                    column: self.column.to_string(),
                },
                Array1::from(self.targets),
            )),
        }
    }
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
