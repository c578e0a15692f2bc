//! [`Exchange`]: how the client loop meets the other sites — one vector per
//! round in, the round's sum out. [`HeExchange`](super::HeExchange)
//! encrypts through an aggregator; the simulation's plaintext baseline adds
//! in memory; the loop does the same arithmetic over either.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::protocol::RoundInfo;

use super::error::LoopError;
use super::limbs::LIMB_BITS;

/// What one exchange cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExchangeCost {
    pub encrypt_ms: f64,
    pub decrypt_ms: f64,
    pub wait_ms: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// The sum of a round: every contributor's vector added up.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSum {
    pub values: Vec<f64>,
    pub contributors: u32,
    /// False if this client could not contribute (joined after the round
    /// closed, or resumed after it).
    pub contributed: bool,
    /// Ids of the clients whose updates the sum holds (empty in plaintext).
    pub counted: Vec<String>,
    pub cost: ExchangeCost,
    /// Whether this client's update was masked (pairwise masks).
    pub masked: bool,
}

/// A weighted mean of a round (see [`HeExchange::exchange`](super::HeExchange::exchange)):
/// for callers that weight at the encryption (the masking tests, tools);
/// the client loop reads sums ([`RoundSum`]) and divides once.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundMean {
    pub values: Vec<f64>,
    pub total_weight: f64,
    pub contributors: u32,
    /// False if this client could not contribute (joined after the round
    /// closed, or resumed after it).
    pub contributed: bool,
    /// Ids of the clients whose updates the sum holds.
    pub counted: Vec<String>,
    pub cost: ExchangeCost,
    /// Whether this client's update was masked (pairwise masks).
    pub masked: bool,
}

/// One contribution per round; blocks until the round's sum is known.
pub trait Exchange {
    /// Limb size for the standardization vector (see
    /// [`limb_bits_for`](super::limb_bits_for)).
    fn limb_bits(&self) -> i32 {
        LIMB_BITS
    }

    /// The largest magnitude a contributed value may have (the key's
    /// fixed-point range), or `None` without a bound (plaintext).
    fn value_bound(&self) -> Option<f64> {
        None
    }

    /// Contributes `values` to `round` and returns the round's sum.
    fn contribute(
        &mut self,
        round: u64,
        values: &[f64],
        cancel: &AtomicBool,
    ) -> Result<RoundSum, LoopError>;

    /// The sum of `round` if it was already published (a client resuming
    /// after a restart, or joining late): the loop then skips its local
    /// work for that round. `len` is the vector length.
    fn published(&mut self, _round: u64, _len: usize) -> Result<Option<RoundSum>, LoopError> {
        Ok(None)
    }

    /// This site cannot go on at `round` (`why`): the others should
    /// proceed without it, as with a dropout. Best effort (an exchange
    /// that cannot say so leaves it to the round's deadline).
    fn leave(&mut self, _round: u64, _why: &str) {}
}

/// Called while a client waits for a round to close, whenever who has
/// submitted changes.
pub type WaitNotifier = Arc<dyn Fn(&RoundInfo) + Send + Sync>;

/// Told a note in words (which identities a client masks with).
pub type NoteNotifier = Arc<dyn Fn(&str) + Send + Sync>;
