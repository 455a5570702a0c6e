//! The `burn-qat` command line: the argument types in `args`, one file per subcommand, and the
//! pieces they share (how a run is described in its files, progress display).

mod args;
mod bench;
mod convert;
mod eval;
mod export;
mod inspect;
pub mod malloc_policy;
mod progress;
mod run_spec;
mod saved_model;
mod train;

use burn_qat::QatError;
use clap::Parser;

use args::{Cli, Command};

/// Parses the command line and runs the subcommand.
pub fn run() -> burn_qat::Result<()> {
    match Cli::parse().command {
        Command::Train(args) => train::train(args),
        Command::Eval(args) => eval::eval(args),
        Command::Convert(args) => convert::convert(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Export(args) => export::export(args),
        Command::Bench(args) => bench::bench(args),
    }
}

/// An I/O error on `path`, as the crate's error type.
fn io_error(path: &std::path::Path, e: std::io::Error) -> QatError {
    QatError::File { path: path.display().to_string(), reason: e.to_string() }
}

/// Sizes rayon's global pool; `None` leaves it at one thread per core.
fn set_threads(threads: Option<usize>) -> burn_qat::Result<()> {
    if let Some(threads) = threads {
        if threads == 0 {
            return Err(QatError::config("--threads must be at least 1"));
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| QatError::config(e.to_string()))?;
    }
    Ok(())
}
