//! FedHE's integration tests, in one test binary (`autotests = false`):
//! each module used to be its own binary that linked TFHE-rs, the HTTP stack
//! and the GUI again. Real parts throughout: real keys, a real aggregator on
//! a loopback socket, the real `fedhe` binary, the whole app headless.

// All of this binary is test code: helpers may unwrap (a panic is the
// failure report) and spawn unnamed threads.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

#[cfg(feature = "gui")]
mod app_ui;
mod audit;
mod cli_data;
mod crypto;
mod crypto_cli;
mod crypto_proptest;
mod data_loading;
mod data_predict;
mod double_masking;
mod dropout;
mod federation;
mod fedeval;
mod fedopt;
mod gbdt;
mod gbdt_federation;
mod hardening;
mod inputs;
mod membership;
mod model;
mod model_families;
mod onnx;
mod plan;
mod privacy;
mod privacy_attacks;
mod secagg;
mod secagg_http;
mod server_cli;
mod server_http;
mod state_folder;
mod sum_tags;
mod tabular;
