//! FedHE: federated logistic regression with TFHE-rs encrypted model updates.
//!
//! The library is UI-free; the desktop app (`app`, feature `gui`) and the CLI
//! only call into it.

pub mod client;
pub mod crypto;
pub mod data;
pub mod federation;
pub mod fsutil;
pub mod model;
pub mod plan;
pub mod protocol;
pub mod server;
pub mod session;

#[cfg(feature = "gui")]
pub mod app;
