//! The `strato` binary: configuration, `serve`, and admin commands that work directly on the data directory.

#![allow(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod commands;
mod config;
mod env;

use clap::Parser;

use crate::config::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _log = config::init_logging(&cli);
    // With SENTRY_DSN set, 5xx responses and panics are reported; the guard flushes pending reports at exit.
    let _sentry = match std::env::var(env::EnvVars::SENTRY_DSN).ok().filter(|d| !d.trim().is_empty()) {
        None => None,
        Some(dsn) => match dsn.trim().parse::<sentry::types::Dsn>() {
            Ok(dsn) => {
                tracing::info!(host = dsn.host(), "reporting errors to Sentry");
                let mut opts = sentry::ClientOptions::new();
                opts.dsn = Some(dsn);
                opts.release = sentry::release_name!();
                opts.attach_stacktrace = true;
                Some(sentry::init(opts))
            }
            Err(e) => {
                eprintln!("error: SENTRY_DSN is not a valid DSN: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
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
