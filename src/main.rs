//! `fedhe`: thin binary over the library. No subcommand opens the desktop app.

mod cli;

use clap::Parser;

/// The error and its causes, each said once: many errors already include
/// their cause's text, which `{:#}` would repeat.
fn error_chain(err: &anyhow::Error) -> String {
    let mut msg = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

#[allow(clippy::print_stderr)] // the binary's edge reports the error
fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
