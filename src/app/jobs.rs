//! Background jobs: slow work (key generation, CSV loading, training,
//! encryption, HTTP) runs on a named thread; the UI thread polls a channel of
//! messages once per frame and never blocks.
//!
//! One job = one thread + one `mpsc` channel of messages + one cancel flag.
//! The worker gets a [`Progress`] handle: `send` delivers a message and asks
//! egui for a repaint, `cancelled` tells it to stop at the next safe point.
//! Local training, federated training and the demo all report through the
//! same [`TrainMsg`] so the same plots and logs show any of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The worker's side of a job.
pub struct Progress<M> {
    tx: Sender<M>,
    cancel: Arc<AtomicBool>,
    ctx: egui::Context,
}

impl<M> Progress<M> {
    /// Delivers `msg` to the UI and wakes it up. A closed window is not an
    /// error: the message is simply dropped.
    pub fn send(&self, msg: M) {
        let _ = self.tx.send(msg);
        self.ctx.request_repaint();
    }

    /// True once the user asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The flag itself, for library loops that take `&AtomicBool`.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }
}

/// Where a job stands after a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// The thread ended normally; every message it sent has been returned.
    Finished,
    /// The thread panicked (a bug): the message explains it in words.
    Failed(String),
}

/// The UI's side of a job.
pub struct Job<M> {
    name: String,
    rx: Receiver<M>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    started: Instant,
}

impl<M: Send + 'static> Job<M> {
    /// Starts `work` on a thread named `fedhe-<name>`.
    pub fn spawn<F>(
        name: &str,
        ctx: &egui::Context,
        work: F,
    ) -> Result<Job<M>, super::error::AppError>
    where
        F: FnOnce(Progress<M>) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Progress {
            tx,
            cancel: cancel.clone(),
            ctx: ctx.clone(),
        };
        let repaint = ctx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("fedhe-{name}"))
            .spawn(move || {
                work(progress);
                repaint.request_repaint();
            })
            .map_err(|source| super::error::AppError::Thread {
                job: name.to_string(),
                source,
            })?;
        Ok(Job {
            name: name.to_string(),
            rx,
            cancel,
            handle: Some(handle),
            started: Instant::now(),
        })
    }
}

impl<M> Job<M> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the worker to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelling(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every message sent since the last poll, and whether the thread ended.
    /// The end is checked before draining, so once `Finished` is returned
    /// no message can be left behind.
    pub fn poll(&mut self) -> (Vec<M>, JobState) {
        let ended = self.handle.as_ref().is_none_or(JoinHandle::is_finished);
        let msgs: Vec<M> = self.rx.try_iter().collect();
        if !ended {
            return (msgs, JobState::Running);
        }
        let state = match self.handle.take().map(JoinHandle::join) {
            Some(Err(payload)) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown error".into());
                JobState::Failed(format!(
                    "the background task \"{}\" stopped unexpectedly ({what}); this is a bug in FedHE",
                    self.name
                ))
            }
            _ => JobState::Finished,
        };
        (msgs, state)
    }
}

impl<M> Drop for Job<M> {
    /// A dropped job is told to stop; its thread is not joined (it may be
    /// waiting on the network), it ends on its own at the next check.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Polls an optional job slot: returns the new messages, and clears the slot
/// once the job ended. A panicked worker becomes an error message.
pub fn poll_slot<M>(slot: &mut Option<Job<M>>) -> (Vec<M>, Option<String>) {
    let Some(job) = slot.as_mut() else {
        return (Vec::new(), None);
    };
    let (msgs, state) = job.poll();
    match state {
        JobState::Running => (msgs, None),
        JobState::Finished => {
            *slot = None;
            (msgs, None)
        }
        JobState::Failed(e) => {
            *slot = None;
            (msgs, Some(e))
        }
    }
}

pub use fedhe::client::EpochPoint;

/// Messages of every training job.
#[derive(Debug)]
pub enum TrainMsg {
    /// A line for the status bar / log.
    Status(String),
    /// 0..=1.
    Progress(f32),
    Epoch(EpochPoint),
    Round(fedhe::client::ClientRound),
    /// The run ended: the trained model, or what went wrong (in words).
    Done(Result<Box<fedhe::model::ModelFile>, super::error::AppError>),
}

/// Formats a duration in milliseconds for people (µs below 1 ms).
pub fn human_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Formats a byte count for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_delivers_messages_and_finishes() {
        let ctx = egui::Context::default();
        let mut job = Job::spawn("test", &ctx, |p: Progress<u32>| {
            for i in 0..5 {
                p.send(i);
            }
        })
        .unwrap();
        let mut got = Vec::new();
        let mut slot = Some(job);
        for _ in 0..200 {
            let (msgs, err) = poll_slot(&mut slot);
            assert!(err.is_none());
            got.extend(msgs);
            if slot.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(slot.is_none());
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        job = Job::spawn("cancel", &ctx, |p: Progress<u32>| {
            while !p.cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            p.send(7);
        })
        .unwrap();
        job.cancel();
        let mut slot = Some(job);
        let mut got = Vec::new();
        for _ in 0..500 {
            got.extend(poll_slot(&mut slot).0);
            if slot.is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, vec![7]);
    }

    #[test]
    fn panicking_job_reports_in_words() {
        let ctx = egui::Context::default();
        let job = Job::spawn("boom", &ctx, |_p: Progress<u32>| panic!("kaboom")).unwrap();
        let mut slot = Some(job);
        for _ in 0..500 {
            let (_, err) = poll_slot(&mut slot);
            if let Some(e) = err {
                assert!(e.contains("kaboom"), "{e}");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no failure reported");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(16_400), "16.4 KB");
        assert_eq!(human_bytes(8_000_000), "8.0 MB");
        assert_eq!(human_ms(0.0031), "3 µs");
        assert_eq!(human_ms(2.25), "2.2 ms");
        assert_eq!(human_ms(268.4), "268 ms");
    }
}
