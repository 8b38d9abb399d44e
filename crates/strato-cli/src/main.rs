//! The `strato` binary: configuration, `serve`, and admin commands that work directly on the data directory.

#![allow(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod commands;
mod config;

use clap::Parser;

use crate::config::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    config::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Training threads may still be running after a shutdown; they are abandoned (their jobs' leases lapse and
    // they are re-run after restart), so don't wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
