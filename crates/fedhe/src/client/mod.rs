//! Client side of the federation: [`AggregatorClient`] (HTTP, ureq) and the
//! per-round client loop.

mod api;

pub use api::{AggregatorClient, ClientError, RetryNotifier, RetryPolicy};
pub mod masking;
mod run;
pub mod vocabulary;

pub use run::{
    ClientEvent, ClientOutcome, ClientRound, EpochPoint, Exchange, ExchangeCost, HeExchange,
    LIMB_BITS, LoopConfig, LoopError, MAX_SHARE, RoundFigures, RoundMean, STAT_LIMBS, WaitNotifier,
    decode_limbs, encode_limbs, evaluate_raw, from_limbs, limb_bits_for, round_seed,
    run_client_loop, site_share, to_limbs, weight_unit,
};
pub use vocabulary::NAME_BYTES;
