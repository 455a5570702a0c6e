//! The `burn-qat` command: argument parsing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::Device;
use burn_qat::data::{default_mnist_dir, load_mnist};
use burn_qat::models::QatLeNet;
use burn_qat::qconfig::{QConfig, get_default_qat_qconfig};
use burn_qat::state_dict::{SaveStateDict, save_safetensors};
use burn_qat::train::{TrainOptions, train_classifier};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "burn-qat", version, about = "Quantization-aware training on burn, numerically identical to PyTorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a quantization-aware LeNet on MNIST and report its fake-quantized test accuracy.
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Folder with MNIST IDX files (train-images-idx3-ubyte[.gz], ...). Default: the 10,000-digit
    /// subset shipped in data/mnist-10k.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training epochs.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// SGD learning rate (momentum 0.9).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Backend whose quantization ranges to simulate: fbgemm, x86, qnnpack or onednn.
    #[arg(long, default_value = "fbgemm")]
    qconfig: String,
    /// Use PyTorch's get_default_qat_qconfig(backend, version) exactly (0 or 1). Without it, our
    /// preset: one qparam formula for training and convert.
    #[arg(long)]
    qconfig_version: Option<u32>,
    /// Freeze BN statistics from this epoch on (0-based).
    #[arg(long, default_value_t = 2)]
    freeze_bn_epoch: usize,
    /// Disable observers from this epoch on (0-based).
    #[arg(long, default_value_t = 2)]
    disable_observer_epoch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write qat.safetensors.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
}

fn train(args: TrainArgs) -> burn_qat::Result<()> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| burn_qat::QatError::config(e.to_string()))?;
    }
    let qconfig = match args.qconfig_version {
        Some(version) => get_default_qat_qconfig(&args.qconfig, version)?,
        None => QConfig::consistent(&args.qconfig)?,
    };
    let dir = args.data.unwrap_or_else(default_mnist_dir);
    let (train_set, test_set) = load_mnist(&dir)?;
    println!("data: {} training and {} test digits from {}", train_set.len(), test_set.len(), dir.display());

    let device = Device::flex().autodiff();
    device.seed(args.seed);
    let model = QatLeNet::new(&qconfig, &device)?;
    let options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        freeze_bn_from_epoch: Some(args.freeze_bn_epoch),
        disable_observer_from_epoch: Some(args.disable_observer_epoch),
        ..TrainOptions::default()
    };
    println!("{:>5} {:>9} {:>10} {:>10} {:>10}", "epoch", "loss", "train acc", "test acc", "samples/s");
    let (model, reports) = train_classifier(model, &train_set, &test_set, &options, &device, |r| {
        println!(
            "{:>5} {:>9.4} {:>9.2}% {:>9.2}% {:>10.0}",
            r.epoch,
            r.loss,
            100.0 * r.train_accuracy,
            100.0 * r.test_accuracy,
            r.samples_per_second
        );
    })?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| burn_qat::QatError::File { path: args.out.display().to_string(), reason: e.to_string() })?;
    let path = args.out.join("qat.safetensors");
    save_safetensors(&path, &model.state_dict(), &Default::default())?;
    if let Some(last) = reports.last() {
        println!("fake-quantized test accuracy {:.2}%; QAT state dict (PyTorch layout) in {}", 100.0 * last.test_accuracy, path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
