//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

/// A file of the bundled sample data.
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
}

/// A copy of `src` with its columns in reverse order and an extra column.
pub fn reordered(src: &Path, dst: &Path) {
    let mut r = csv::Reader::from_path(src).unwrap();
    let mut w = csv::Writer::from_path(dst).unwrap();
    let mut header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    header.reverse();
    header.push("site_note".into());
    w.write_record(&header).unwrap();
    for rec in r.records() {
        let mut row: Vec<String> = rec.unwrap().iter().map(String::from).collect();
        row.reverse();
        row.push("x".into());
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
}
