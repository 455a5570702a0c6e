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
mod ptq;
mod sensitivity;
mod sweep;
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

/// Checks, before any work, that a command may write its output file `out`: not a folder, not
/// the `input` it reads, and not an existing file unless `overwrite`.
fn check_output_file(out: &std::path::Path, input: &std::path::Path, overwrite: bool) -> burn_qat::Result<()> {
    let refuse = |reason: &str| Err(QatError::File { path: out.display().to_string(), reason: reason.to_string() });
    if out.is_dir() {
        return refuse("is a folder; --out names the file to write");
    }
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same(out, input) {
        return refuse("is the --checkpoint this command reads; write the output elsewhere");
    }
    if out.exists() && !overwrite {
        return refuse("exists; pass --overwrite to replace it");
    }
    Ok(())
}

/// Creates the run folder `out` and checks that files can be written there, so that a run
/// that could not save its results fails before training, not after an epoch.
fn prepare_output_folder(out: &std::path::Path) -> burn_qat::Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(QatError::File {
            path: out.display().to_string(),
            reason: "is a file; --out names a folder for the run's files".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    let probe = out.join(".burn-qat-write-test");
    std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe)).map_err(|e| QatError::File {
        path: out.display().to_string(),
        reason: format!("cannot write files here ({e}); choose another --out"),
    })
}

/// Every file `train` writes into its run folder.
pub(crate) const RUN_FILES: [&str; 8] = [
    "metrics.json",
    "curves.png",
    "float.safetensors",
    "qat.safetensors",
    "int8.safetensors",
    "ptq-int8.safetensors",
    "model.onnx",
    "checkpoint.safetensors",
];

/// Moves the files of an earlier run in `out` into `out/previous-run-N` (the first free N), so
/// that a new run's folder never mixes its files with an old run's, and nothing is lost.
/// Returns where they went, if anywhere.
fn move_previous_run(out: &std::path::Path) -> burn_qat::Result<Option<std::path::PathBuf>> {
    let present: Vec<&str> = RUN_FILES.iter().copied().filter(|name| out.join(name).exists()).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let target = (1..).map(|n| out.join(format!("previous-run-{n}"))).find(|p| !p.exists()).expect("a free name");
    std::fs::create_dir(&target).map_err(|e| io_error(&target, e))?;
    for name in present {
        std::fs::rename(out.join(name), target.join(name)).map_err(|e| io_error(&out.join(name), e))?;
    }
    Ok(Some(target))
}

/// Sizes rayon's global pool; `None` leaves it at one thread per core.
fn set_threads(threads: Option<usize>) -> burn_qat::Result<()> {
    if let Some(threads) = threads {
        if threads == 0 {
            return Err(QatError::invalid("--threads", "--threads must be at least 1"));
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| QatError::lifecycle("--threads", e.to_string()))?;
    }
    Ok(())
}
