//! Exports as CSV, written by the csv crate's serializer (quoting, one
//! header row): the Server tab's round history.

use std::path::Path;

use serde::Serialize;

use super::error::AppError;
use fedhe::protocol::RoundInfo;

/// One closed round, as a CSV row.
#[derive(Serialize)]
struct HistoryRow<'a> {
    round: u64,
    phase: &'a str,
    contributors: u32,
    /// The contributors' ids, separated by spaces.
    submitted: String,
    values: Option<usize>,
    bytes_received: u64,
    aggregation_ms: f64,
}

/// Writes the closed rounds to `path`, each with its `phase(round)`.
pub fn write_history(
    path: &Path,
    history: &[RoundInfo],
    phase: &dyn Fn(u64) -> String,
) -> Result<(), AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::File {
        action: "write the round history to",
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    for r in history {
        let phase = phase(r.round);
        w.serialize(HistoryRow {
            round: r.round,
            phase: &phase,
            contributors: r.contributors,
            submitted: r.submitted.join(" "),
            values: r.len,
            bytes_received: r.bytes_accepted,
            aggregation_ms: r.aggregate_ms,
        })
        .map_err(|e| fail(&e))?;
    }
    w.flush().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedhe::protocol::RoundState;

    #[test]
    fn the_history_is_a_csv_with_one_row_per_round() {
        let round = |r: u64, who: &[&str]| RoundInfo {
            round: r,
            state: RoundState::Closed,
            len: Some(32),
            contributors: who.len() as u32,
            submitted: who.iter().map(|s| s.to_string()).collect(),
            aggregate_ms: 1.5,
            bytes_accepted: 1000,
            roster: Vec::new(),
            missing: Vec::new(),
            min_contributors: 0,
            deadline_unix: None,
            attempt: 0,
            mask_phase: None,
            masked: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.csv");
        let history = [round(1, &["a", "b"]), round(2, &["a"])];
        let phase = |r: u64| format!("phase, {r}");
        write_history(&path, &history, &phase).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "round,phase,contributors,submitted,values,bytes_received,aggregation_ms\n\
             1,\"phase, 1\",2,a b,32,1000,1.5\n\
             2,\"phase, 2\",1,a,32,1000,1.5\n"
        );
    }
}
