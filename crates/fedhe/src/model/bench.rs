//! Foundation benchmark: CSV parse throughput and one SGD epoch on a large
//! synthetic data set. Run in release via `fedhe bench data`.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Architecture, Head, Model, ModelError, TrainConfig, build, train};
use crate::data::{CsvOptions, Dataset, load_csv};

/// Medians of a data benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct DataBench {
    pub rows: usize,
    pub features: usize,
    pub file_bytes: u64,
    pub parse_ms_median: f64,
    pub parse_mb_per_s: f64,
    /// Logistic regression: one epoch with its whole-set evaluation.
    pub epoch_ms_median: f64,
    /// Softmax regression over 10 classes: one SGD pass over every row.
    pub softmax10_epoch_ms_median: f64,
    /// MLP with one hidden layer of 64 (binary): one SGD pass over every row.
    pub mlp64_epoch_ms_median: f64,
    /// MLP with one hidden layer of 64: scoring every row once.
    pub mlp64_predict_ms_median: f64,
    pub batch_size: usize,
    pub repeats: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Writes a `rows × features` CSV to a temporary file, parses it `repeats`
/// times, then times `repeats` training epochs on the parsed data.
pub fn run_data_bench(
    rows: usize,
    features: usize,
    repeats: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<DataBench, ModelError> {
    let repeats = repeats.max(1);
    // Scratch data of a benchmark, not a user's file: the temp folder is right.
    #[allow(clippy::disallowed_methods)]
    let path = std::env::temp_dir().join(format!("fedhe-bench-{}.csv", std::process::id()));
    progress(&format!(
        "writing {rows} × {features} synthetic CSV to {}",
        path.display()
    ));
    let written = write_synthetic_csv(&path, rows, features);
    let parsed = written.and_then(|bytes| Ok((bytes, time_parse(&path, repeats, progress)?)));
    let _ = std::fs::remove_file(&path);
    let (file_bytes, (parse_ms, ds)) = parsed?;
    let (x, y): (Array2<f64>, Array1<f64>) = (ds.x, ds.y);
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let epoch_ms = time_logistic(&x, &y, &cfg, repeats, progress)?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let y10 = ten_classes(&x, &mut rng);
    let ys = y.to_vec();
    let mut order: Vec<usize> = (0..rows.min(x.nrows())).collect();
    order.shuffle(&mut rng);
    let mut timed = |name: &str, model: &mut dyn Model, labels: &[f64]| {
        let mut ms = Vec::new();
        for i in 0..repeats {
            let t = Instant::now();
            model.fit_epoch(&x, labels, None, &order, &cfg);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            progress(&format!(
                "{name} epoch {}/{repeats}: {:.0} ms",
                i + 1,
                ms[i]
            ));
        }
        median(ms)
    };
    let mut softmax = build(
        &Architecture::Linear,
        features,
        Head::Softmax { classes: 10 },
        0,
    )?;
    let softmax10 = timed("softmax (10 classes)", &mut *softmax, &y10);
    let mlp_arch = Architecture::Mlp { hidden: vec![64] };
    let mut mlp = build(&mlp_arch, features, Head::Logistic, 1)?;
    let mlp64 = timed("MLP (hidden 64)", &mut *mlp, &ys);
    let predict_ms = time_scoring(&*mlp, &x, repeats, progress);
    let parse_ms_median = median(parse_ms);
    Ok(DataBench {
        rows,
        features,
        file_bytes,
        parse_ms_median,
        parse_mb_per_s: file_bytes as f64 / 1e6 / (parse_ms_median / 1e3),
        epoch_ms_median: median(epoch_ms),
        softmax10_epoch_ms_median: softmax10,
        mlp64_epoch_ms_median: mlp64,
        mlp64_predict_ms_median: median(predict_ms),
        batch_size: cfg.batch_size,
        repeats,
    })
}

/// Writes `rows` rows of a logistic model's labels over `features` uniform
/// columns; returns the file's size.
fn write_synthetic_csv(path: &Path, rows: usize, features: usize) -> Result<u64, ModelError> {
    let io_err = |source: std::io::Error| ModelError::Write {
        file: path.display().to_string(),
        source,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let truth: Vec<f64> = (0..features).map(|_| rng.random_range(-1.0..1.0)).collect();
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut line = String::from("label");
    for j in 0..features {
        line.push_str(&format!(",f{j}"));
    }
    writeln!(w, "{line}").map_err(io_err)?;
    let mut row = vec![0.0f64; features];
    for _ in 0..rows {
        line.clear();
        let mut z = 0.0;
        for (v, t) in row.iter_mut().zip(&truth) {
            *v = rng.random_range(-3.0..3.0);
            z += *v * t;
        }
        let y = u8::from(rng.random::<f64>() < super::sigmoid(z));
        line.push_str(if y == 1 { "1" } else { "0" });
        for v in &row {
            line.push_str(&format!(",{v:.5}"));
        }
        writeln!(w, "{line}").map_err(io_err)?;
    }
    w.flush().map_err(io_err)?;
    Ok(std::fs::metadata(path).map_err(io_err)?.len())
}

/// Parses `path` `repeats` times; the times and the last parse.
fn time_parse(
    path: &Path,
    repeats: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<f64>, Dataset), ModelError> {
    let opts = CsvOptions {
        label: Some("label".into()),
        auto_ignore_ids: false,
        ..CsvOptions::default()
    };
    let mut parse_ms = Vec::new();
    let mut data = None;
    for i in 0..repeats {
        let t = Instant::now();
        let loaded = load_csv(path, &opts);
        parse_ms.push(t.elapsed().as_secs_f64() * 1e3);
        progress(&format!("parse {}/{repeats}: {:.0} ms", i + 1, parse_ms[i]));
        data = Some(loaded?);
    }
    match data {
        Some(d) => Ok((parse_ms, d.dataset)),
        None => Err(ModelError::Setting("no benchmark run".into())),
    }
}

/// `repeats` logistic epochs through `train` (with its evaluation).
fn time_logistic(
    x: &Array2<f64>,
    y: &Array1<f64>,
    cfg: &TrainConfig,
    repeats: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<f64>, ModelError> {
    let mut epoch_ms = Vec::new();
    for i in 0..repeats {
        let mut model = build(&Architecture::Linear, x.ncols(), Head::Logistic, 0)?;
        let t = Instant::now();
        train(&mut *model, x, y, cfg, &mut |_| ControlFlow::Continue(()))?;
        epoch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        progress(&format!(
            "logistic epoch {}/{repeats}: {:.0} ms",
            i + 1,
            epoch_ms[i]
        ));
    }
    Ok(epoch_ms)
}

/// Ten classes: the largest of ten fixed random projections of the row.
fn ten_classes(x: &Array2<f64>, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let features = x.ncols();
    let proj: Vec<f64> = (0..features * 10)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    x.rows()
        .into_iter()
        .map(|r| {
            let scores: Vec<f64> = (0..10)
                .map(|c| {
                    r.iter()
                        .enumerate()
                        .map(|(j, v)| v * proj[j * 10 + c])
                        .sum()
                })
                .collect();
            super::argmax(&scores) as f64
        })
        .collect()
}

/// Scores every row `repeats` times.
fn time_scoring(
    model: &dyn Model,
    x: &Array2<f64>,
    repeats: usize,
    progress: &mut dyn FnMut(&str),
) -> Vec<f64> {
    let mut predict_ms = Vec::new();
    for i in 0..repeats {
        let t = Instant::now();
        let out = model.outputs(x);
        predict_ms.push(t.elapsed().as_secs_f64() * 1e3);
        progress(&format!(
            "MLP scoring {}/{repeats}: {:.0} ms ({} rows)",
            i + 1,
            predict_ms[i],
            out.nrows()
        ));
    }
    predict_ms
}
