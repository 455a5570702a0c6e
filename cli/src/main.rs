//! The `burn-qat` command. Argument parsing and printing live in `commands/`, one file per
//! subcommand; the work is in the library.

mod commands;

use std::process::ExitCode;

/// Counts heap bytes so that `bench` can report a training step's peak memory: two relaxed
/// atomic updates per allocation, small next to the allocation itself.
#[global_allocator]
static ALLOC: burn_qat_cli::bench::memory::PeakAlloc = burn_qat_cli::bench::memory::PeakAlloc::new();

fn main() -> ExitCode {
    commands::malloc_policy::keep_freed_memory();
    match commands::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
