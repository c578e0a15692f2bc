//! The waiting line: while federated training runs, the aggregator's open
//! round as it stands now — who has arrived, who it waits for, and a
//! countdown to its deadline that ticks — read from `/api/v1/status` once
//! a second by a job of its own, so that a site joining shows at once.

use std::time::Duration;

use egui::Ui;

use crate::app::jobs::{Job, poll_slot};
use fedhe::client::{AggregatorClient, RetryPolicy};
use fedhe::protocol::{MaskPhase, StatusResponse};

/// How often the aggregator is asked.
const EVERY: Duration = Duration::from_secs(1);

/// The watch: its job and the aggregator's last answer.
#[derive(Default)]
pub struct RoundWatch {
    job: Option<Job<StatusResponse>>,
    last: Option<StatusResponse>,
}

impl RoundWatch {
    /// Starts watching the aggregator through `api` (the joined site's
    /// client: `/status` is for members only), one attempt per second, no
    /// retries of its own: the training job rides out outages.
    pub fn start(&mut self, ctx: &egui::Context, api: AggregatorClient) {
        self.stop();
        // A cancel flag of its own: the joined client's may be the Join
        // job's, set once that job ended.
        let api = api.with_cancel(Default::default()).with_retry(RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        });
        let job = Job::spawn("round-watch", ctx, move |p| {
            while !p.cancelled() {
                if let Ok(st) = api.status() {
                    p.send(st);
                }
                std::thread::sleep(EVERY);
            }
        });
        self.job = job.ok();
    }

    pub fn stop(&mut self) {
        if let Some(j) = self.job.take() {
            j.cancel();
        }
        self.last = None;
    }

    /// Takes the newest answer. Called every frame.
    pub fn poll(&mut self) {
        let (msgs, _) = poll_slot(&mut self.job);
        if let Some(st) = msgs.into_iter().last() {
            self.last = Some(st);
        }
    }

    /// The line as it reads now, while there is an open round to wait for.
    pub fn line(&self) -> Option<String> {
        let st = self.last.as_ref()?;
        if self.job.is_none() || st.complete.is_some() {
            return None;
        }
        Some(waiting_line(st, fedhe::protocol::now_ms() / 1000))
    }

    /// The line, while there is an open round to wait for; asks for a
    /// repaint in a second so that the countdown ticks.
    pub fn ui(&self, ui: &mut Ui) {
        if let Some(line) = self.line() {
            ui.label(line);
            ui.ctx().request_repaint_after(EVERY);
        }
    }
}

/// "Aggregator, round 2: in: client-a (1 of 2 registered); waiting for
/// client-b; closes in 87 s".
pub fn waiting_line(st: &StatusResponse, now_unix: u64) -> String {
    let did = match st.mask_phase {
        Some(MaskPhase::Keys) => "mask keys announced by",
        Some(MaskPhase::Consistency) => "survivor set signed by",
        Some(MaskPhase::Unmask) => "mask shares revealed by",
        _ => "in",
    };
    let arrived = if st.submitted.is_empty() {
        "nobody yet".to_string()
    } else {
        st.submitted.join(", ")
    };
    let mut s = format!(
        "Aggregator, round {}: {did}: {arrived} ({} of {} registered)",
        st.round,
        st.submitted.len(),
        st.registered
    );
    if !st.missing.is_empty() {
        s.push_str(&format!("; waiting for {}", st.missing.join(", ")));
    }
    match st.deadline_unix {
        Some(d) if d > now_unix => s.push_str(&format!("; deadline in {} s", d - now_unix)),
        Some(_) => s.push_str("; its deadline has passed"),
        None => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_who_is_in_who_is_awaited_and_counts_down() {
        let mut st: StatusResponse = serde_json::from_value(serde_json::json!({
            "api_version": 1, "session": null, "round": 2, "round_state": "open",
            "submitted": ["client-a"], "registered": 2, "min_clients": 2,
            "auto_aggregate": true, "last_closed": 1,
            "roster": ["client-a", "client-b"], "missing": ["client-b"],
            "deadline_unix": 1000
        }))
        .unwrap();
        assert_eq!(
            waiting_line(&st, 913),
            "Aggregator, round 2: in: client-a (1 of 2 registered); waiting for client-b; \
             deadline in 87 s"
        );
        assert!(waiting_line(&st, 914).ends_with("deadline in 86 s"));
        st.deadline_unix = None;
        st.submitted.clear();
        assert!(waiting_line(&st, 0).contains("in: nobody yet (0 of 2 registered)"));
    }
}
