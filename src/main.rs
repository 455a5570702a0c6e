//! The `burn-qat` command: argument parsing and printing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::data::{Dataset, default_mnist_dir, load_mnist};
use burn_qat::models;
use burn_qat::qconfig::{QConfig, get_default_qat_qconfig};
use burn_qat::state_dict::{SaveStateDict, save_safetensors};
use burn_qat::train::{EpochReport, TrainOptions, accuracy, predictions, train_classifier};
use burn_qat::workflow::{FloatModel, Int8Model, convert, prepare_qat};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "burn-qat", version, about = "Quantization-aware training on burn, numerically identical to PyTorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a float model, fine-tune it with quantization-aware training, convert it to int8,
    /// and compare the three on the test set.
    Train(TrainArgs),
    /// Test accuracy of a saved int8 model (int8.safetensors from `train`).
    Eval(EvalArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelKind {
    Lenet,
    ResnetTiny,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Folder with MNIST-format IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
    /// t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]). Default: the 10,000-digit subset in data/mnist-10k.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "lenet")]
    model: ModelKind,
    /// Float training epochs before QAT.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Quantization-aware fine-tuning epochs.
    #[arg(long, default_value_t = 2)]
    qat_epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// SGD learning rate for float training (momentum 0.9); QAT uses a tenth of it.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Backend whose quantization ranges to simulate: fbgemm, x86, qnnpack or onednn.
    #[arg(long, default_value = "fbgemm")]
    qconfig: String,
    /// Use PyTorch's get_default_qat_qconfig(backend, version) exactly (0 or 1). Without it, our
    /// preset: one qparam formula for training and convert, int8 equal to the QAT eval bit for bit.
    #[arg(long)]
    qconfig_version: Option<u32>,
    /// Freeze BN statistics from this QAT epoch on (0-based).
    #[arg(long, default_value_t = 1)]
    freeze_bn_epoch: usize,
    /// Disable observers from this QAT epoch on (0-based).
    #[arg(long, default_value_t = 1)]
    disable_observer_epoch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write metrics.json, qat.safetensors and int8.safetensors.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// An int8 model file written by `train` (int8.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// MNIST-format data folder (default: data/mnist-10k).
    #[arg(long)]
    data: Option<PathBuf>,
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> QatError {
    QatError::File { path: path.display().to_string(), reason: e.to_string() }
}

fn print_epoch(phase: &str, r: &EpochReport) {
    println!(
        "{phase:>6} {:>5} {:>9.4} {:>9.2}% {:>9.2}% {:>10.0}",
        r.epoch,
        r.loss,
        100.0 * r.train_accuracy,
        100.0 * r.test_accuracy,
        r.samples_per_second
    );
}

fn int8_predictions(model: &Int8Model, data: &Dataset) -> burn_qat::Result<Vec<usize>> {
    let device = Device::flex();
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for batch in indices.chunks(500) {
        out.extend(model.predict(data.batch(batch, &device).0)?);
    }
    Ok(out)
}

fn float_bytes(model: &FloatModel) -> usize {
    model.num_params() * 4
}

fn train(args: TrainArgs) -> burn_qat::Result<()> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| QatError::config(e.to_string()))?;
    }
    let qconfig = match args.qconfig_version {
        Some(version) => get_default_qat_qconfig(&args.qconfig, version)?,
        None => QConfig::consistent(&args.qconfig)?,
    };
    let dir = args.data.clone().unwrap_or_else(default_mnist_dir);
    let (train_set, test_set) = load_mnist(&dir)?;
    println!("data: {} training and {} test digits from {}", train_set.len(), test_set.len(), dir.display());
    let started = Instant::now();

    let device = Device::flex().autodiff();
    device.seed(args.seed);
    let float_model = match args.model {
        ModelKind::Lenet => models::lenet(&device)?,
        ModelKind::ResnetTiny => models::resnet_tiny(&device)?,
    };
    println!("{:>6} {:>5} {:>9} {:>10} {:>10} {:>10}", "phase", "epoch", "loss", "train acc", "test acc", "samples/s");
    let float_options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        freeze_bn_from_epoch: None,
        disable_observer_from_epoch: None,
        ..TrainOptions::default()
    };
    let (float_model, float_reports) =
        train_classifier(float_model, &train_set, &test_set, &float_options, &device, |r| print_epoch("float", r))?;
    let float_accuracy = float_reports.last().map_or(0.0, |r| r.test_accuracy);
    let float_model_bytes = float_bytes(&float_model);

    let qat = prepare_qat(float_model.fuse()?, qconfig)?;
    let qat_options = TrainOptions {
        epochs: args.qat_epochs,
        lr: args.lr / 10.0,
        seed: args.seed.wrapping_add(1000),
        freeze_bn_from_epoch: Some(args.freeze_bn_epoch),
        disable_observer_from_epoch: Some(args.disable_observer_epoch),
        ..float_options
    };
    let (qat, _) = train_classifier(qat, &train_set, &test_set, &qat_options, &device, |r| print_epoch("QAT", r))?;
    let train_seconds = started.elapsed().as_secs_f64();

    let int8 = convert(&qat)?;
    let qat_pred = predictions(&qat, &test_set, 500, &device)?;
    let int8_pred = int8_predictions(&int8, &test_set)?;
    let (qat_accuracy, int8_accuracy) = (accuracy(&qat_pred, &test_set), accuracy(&int8_pred, &test_set));
    let agreement = qat_pred.iter().zip(&int8_pred).filter(|(a, b)| a == b).count() as f64 / test_set.len() as f64;

    std::fs::create_dir_all(&args.out).map_err(|e| io_error(&args.out, e))?;
    save_safetensors(args.out.join("qat.safetensors"), &qat.state_dict(), &Default::default())?;
    let int8_path = args.out.join("int8.safetensors");
    int8.save(&int8_path)?;
    let int8_model_bytes = std::fs::metadata(&int8_path).map_err(|e| io_error(&int8_path, e))?.len();
    let metrics = serde_json::json!({
        "float_accuracy": float_accuracy,
        "qat_accuracy": qat_accuracy,
        "int8_accuracy": int8_accuracy,
        "int8_agreement": agreement,
        "float_model_bytes": float_model_bytes,
        "int8_model_bytes": int8_model_bytes,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "qconfig": match args.qconfig_version { Some(v) => format!("{} v{v} (PyTorch)", args.qconfig), None => format!("{} (consistent)", args.qconfig) },
        "weight_bits": 8,
        "act_bits": 8,
        "train_seconds": train_seconds,
    });
    let metrics_path = args.out.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics).expect("json")).map_err(|e| io_error(&metrics_path, e))?;

    println!();
    println!("{:<22} {:>9} {:>12}", "model", "test acc", "size");
    println!("{:<22} {:>8.2}% {:>10} B", "float", 100.0 * float_accuracy, float_model_bytes);
    println!("{:<22} {:>8.2}% {:>12}", "QAT (fake quant)", 100.0 * qat_accuracy, "");
    println!("{:<22} {:>8.2}% {:>10} B", "int8", 100.0 * int8_accuracy, int8_model_bytes);
    println!("int8 argmax equals the QAT model's on {:.2}% of test digits; training took {train_seconds:.1} s", 100.0 * agreement);
    println!("wrote {}", args.out.display());
    Ok(())
}

fn eval(args: EvalArgs) -> burn_qat::Result<()> {
    let model = Int8Model::load(&args.checkpoint)?;
    let dir = args.data.unwrap_or_else(default_mnist_dir);
    let (_, test_set) = load_mnist(&dir)?;
    let pred = int8_predictions(&model, &test_set)?;
    println!("int8 test accuracy {:.2}% on {} digits", 100.0 * accuracy(&pred, &test_set), test_set.len());
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
