//! The desktop app of FedHE (eframe/egui), a thin adapter over the `fedhe`
//! library: every piece of real work is a call into it. Built with the
//! `gui` feature (the default); the CLI lives in the binary (`src/cli`).

#[cfg(feature = "gui")]
pub mod app;
