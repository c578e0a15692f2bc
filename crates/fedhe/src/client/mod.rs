//! Client side of the federation: [`AggregatorClient`] (HTTP, ureq) and the
//! per-round client loop.

mod api;

pub use api::{AggregatorClient, ClientError, RetryNotifier, RetryPolicy};
mod run;

pub use run::{
    ClientEvent, ClientOutcome, ClientRound, EpochPoint, Exchange, ExchangeCost, HeExchange,
    LIMB_BITS, LoopConfig, LoopError, Moments, RoundFigures, RoundMean, STAT_LIMBS, WaitNotifier,
    evaluate_raw, from_limbs, limb_bits_for, max_len_for, round_seed, run_client_loop, site_weight,
    standardization_len, to_limbs, weight_unit,
};
