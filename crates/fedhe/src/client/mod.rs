//! Client side of the federation: [`AggregatorClient`] (HTTP, ureq) and the
//! client loop.
//!
//! The loop ([`run_client_loop`]) drives a sequence of round kinds (the
//! vocabulary, statistics and training rounds) over an [`Exchange`];
//! [`HeExchange`] is the encrypted one through an aggregator, with pairwise
//! [`masking`].

mod api;
mod budget;
mod checkpoint;
mod error;
mod exchange;
mod fedeval;
mod final_round;
mod gbdt;
mod gbdt_eval;
mod he_exchange;
pub mod ledger;
mod ledger_file;
mod limbs;
pub mod masking;
pub mod pins;
mod report;
mod round_loop;
pub mod secagg;
mod shares;
mod statistics;
mod training;
pub mod vocabulary;
mod wait;

pub use crate::model::FederatedFigures;
pub use api::{AggregatorClient, ClientError, RetryNotifier, RetryPolicy};
pub use checkpoint::{SaveServerState, ServerCheckpoint};
pub use error::{LoopError, RelayError, SiteError, SumError};
pub use exchange::{Exchange, ExchangeCost, NoteNotifier, RoundMean, RoundSum, WaitNotifier};
pub use final_round::federated_test_line;
pub use gbdt::{GbdtLoop, GbdtOutcome, TreeTotals};
pub use he_exchange::{HeExchange, SUM_TRIES};
pub use ledger::{LedgerError, MaskLedger};
pub use limbs::{
    LIMB_BITS, STAT_LIMBS, decode_limbs, encode_limbs, from_limbs, limb_bits_for, to_limbs,
};
pub use report::TreeRecord;
pub use report::{ClientEvent, ClientOutcome, ClientRound, EpochPoint, RoundFigures};
pub use round_loop::{LoopConfig, run_client_loop, run_gbdt_loop};
pub use shares::{MAX_SHARE, site_share, weight_unit};
pub use statistics::check_statistics;
pub use training::{evaluate_raw, round_seed};
pub use vocabulary::NAME_BYTES;
