//! Reproducible train/test splits and per-client partitions.

use std::path::Path;
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use super::{DataError, Dataset, TaskKind};

/// How rows are dealt to clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partition {
    /// Every client gets the same class balance (stratified round-robin).
    Iid,
    /// Label skew: each class is shared out by Dirichlet(alpha) proportions;
    /// small alpha means very uneven clients.
    Dirichlet(f64),
}

impl FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("iid") {
            return Ok(Partition::Iid);
        }
        if let Some(rest) = s.strip_prefix("dirichlet:") {
            return match rest.parse::<f64>() {
                Ok(a) if a.is_finite() && a > 0.0 => Ok(Partition::Dirichlet(a)),
                _ => Err(format!(
                    "dirichlet alpha must be a positive number, got {rest:?}"
                )),
            };
        }
        Err(format!("unknown split {s:?}: use iid or dirichlet:ALPHA"))
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Dirichlet(a) => write!(f, "dirichlet:{a}"),
        }
    }
}

/// Row indices of each class in class order (one group for a regression
/// target), shuffled by `rng`.
fn shuffled_classes(ds: &Dataset, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let groups = match ds.label.kind() {
        TaskKind::Regression => 1,
        _ => ds.label.classes().len().max(2),
    };
    let mut classes: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for (i, &y) in ds.y.iter().enumerate() {
        let g = if groups == 1 {
            0
        } else {
            (y as usize).min(groups - 1)
        };
        classes[g].push(i);
    }
    for c in &mut classes {
        c.shuffle(rng);
    }
    classes
}

/// The split's settings, checked before the file is read: a test fraction
/// strictly between 0 and 1, at least one client.
pub fn check_split(test_fraction: f64, clients: usize) -> Result<(), DataError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::Invalid(format!(
            "--test-fraction must be strictly between 0 and 1, got {test_fraction}"
        )));
    }
    if clients == 0 {
        return Err(DataError::Invalid("--clients must be at least 1".into()));
    }
    Ok(())
}

/// Stratified split (by class; a regression target is one group): each class contributes `round(n_class * test_fraction)`
/// rows to the test set. Rows keep their file order within each part.
pub fn stratified_split(
    ds: &Dataset,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::Invalid(format!(
            "test fraction must be strictly between 0 and 1, got {test_fraction}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for class in shuffled_classes(ds, &mut rng) {
        let k = (class.len() as f64 * test_fraction).round() as usize;
        test.extend_from_slice(&class[..k]);
        train.extend_from_slice(&class[k..]);
    }
    if train.is_empty() || test.is_empty() {
        return Err(DataError::Invalid(format!(
            "a test fraction of {test_fraction} leaves one side of the split empty ({} rows)",
            ds.rows()
        )));
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((ds.select_rows(&train), ds.select_rows(&test)))
}

/// Deals the rows of `ds` to `clients` parts. Every client gets at least two rows.
pub fn partition(
    ds: &Dataset,
    clients: usize,
    how: Partition,
    seed: u64,
) -> Result<Vec<Dataset>, DataError> {
    if clients == 0 || clients * 2 > ds.rows() {
        return Err(DataError::Invalid(format!(
            "cannot deal {} rows to {clients} clients (each needs at least 2 rows)",
            ds.rows()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = shuffled_classes(ds, &mut rng);
    let mut parts: Vec<Vec<usize>> = vec![Vec::new(); clients];
    match how {
        Partition::Iid => {
            // Round-robin over the class-ordered rows keeps every client's class
            // balance within one row of the whole set's.
            for (i, row) in classes.iter().flatten().enumerate() {
                parts[i % clients].push(*row);
            }
        }
        Partition::Dirichlet(alpha) => {
            let gamma = Gamma::new(alpha, 1.0)
                .map_err(|e| DataError::Invalid(format!("dirichlet alpha {alpha}: {e}")))?;
            // Redraw until every client has two rows; bounded so a hopeless
            // alpha/client combination reports instead of spinning.
            let mut ok = false;
            for _ in 0..1000 {
                parts.iter_mut().for_each(Vec::clear);
                for class in &classes {
                    let draws: Vec<f64> = (0..clients).map(|_| gamma.sample(&mut rng)).collect();
                    let total: f64 = draws.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                    let mut start = 0usize;
                    let mut acc = 0.0;
                    for (k, d) in draws.iter().enumerate() {
                        acc += d / total;
                        let end = if k + 1 == clients {
                            class.len()
                        } else {
                            ((acc * class.len() as f64).round() as usize).min(class.len())
                        };
                        let end = end.max(start);
                        parts[k].extend_from_slice(&class[start..end]);
                        start = end;
                    }
                }
                if parts.iter().all(|p| p.len() >= 2) {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return Err(DataError::Invalid(format!(
                    "dirichlet:{alpha} left a client with fewer than 2 rows in 1000 draws; \
                     use a larger alpha or fewer clients"
                )));
            }
        }
    }
    Ok(parts
        .into_iter()
        .map(|mut p| {
            p.sort_unstable();
            ds.select_rows(&p)
        })
        .collect())
}

/// Writes `ds` as CSV: the label column (original values) then the columns
/// (categories by name, missing cells empty).
pub fn write_csv(ds: &Dataset, path: &Path) -> Result<(), DataError> {
    let err = |e: std::io::Error| DataError::Write {
        file: path.display().to_string(),
        source: e,
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| err(e.into()))?;
    let mut header = vec![ds.label.column()];
    header.extend(ds.feature_names.iter().map(String::as_str));
    w.write_record(&header).map_err(|e| err(e.into()))?;
    let mut rec: Vec<String> = Vec::with_capacity(header.len());
    for (row, y) in ds.x.rows().into_iter().zip(ds.y.iter()) {
        rec.clear();
        rec.push(ds.label.value_name(*y));
        for (v, col) in row.iter().zip(&ds.columns) {
            // Missing cells are written empty; categories by name.
            rec.push(match col {
                _ if v.is_nan() => String::new(),
                super::RawColumn::Numeric { .. } => v.to_string(),
                super::RawColumn::Categorical { categories, .. } => categories
                    .get(*v as usize)
                    .cloned()
                    .unwrap_or_else(|| "(other)".to_string()),
            });
        }
        w.write_record(&rec).map_err(|e| err(e.into()))?;
    }
    w.flush().map_err(err)
}
