//! The one long-poll loop of the client: ask the aggregator, with a short
//! wait so that cancellation stays responsive, until the answer is the one
//! awaited, the user cancels, or the wait runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::api::ClientError;

/// Longest single long-poll: cancellation is noticed within this.
const POLL: Duration = Duration::from_millis(500);

/// Calls `poll` with the wait it may ask the aggregator for (the time left,
/// at most [`POLL`]) until it returns `Some`. Fails with
/// [`ClientError::Cancelled`] once `cancel` is set, and with
/// [`ClientError::Timeout`] (saying `timed_out()`) after `timeout`.
pub(crate) fn wait_round<T, E: From<ClientError>>(
    timeout: Duration,
    cancel: Option<&AtomicBool>,
    timed_out: impl FnOnce() -> String,
    mut poll: impl FnMut(Duration) -> Result<Option<T>, E>,
) -> Result<T, E> {
    let start = Instant::now();
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(ClientError::Cancelled.into());
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(ClientError::Timeout(timed_out()).into());
        }
        if let Some(done) = poll(left.min(POLL))? {
            return Ok(done);
        }
    }
}

/// Remembers what a waiting notice last said, so that it is told again only
/// when it changes.
pub(crate) struct LastSeen<K>(Option<K>);

impl<K: PartialEq> LastSeen<K> {
    pub(crate) fn new() -> Self {
        LastSeen(None)
    }

    /// Whether `now` differs from the last call's (and remembers it).
    pub(crate) fn changed(&mut self, now: K) -> bool {
        if self.0.as_ref() == Some(&now) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}
