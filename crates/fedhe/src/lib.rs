//! FedHE: federated learning with TFHE-rs encrypted model updates.
//!
//! This crate is the whole of FedHE's work — data, models, encryption, the
//! wire protocol, the aggregator, the client workflow — and knows nothing of
//! any user interface: the `fedhe` binary (CLI and desktop app, crate
//! `fedhe-app`) only calls into it. See ARCHITECTURE.md.

pub mod client;
pub mod crypto;
pub mod data;
pub mod export;
pub mod federation;
pub mod fsutil;
pub mod hex;
pub mod ids;
pub mod model;
pub mod plan;
pub mod privacy;
pub mod protocol;
pub mod server;
pub mod session;
