//! The `burn-qat` command: argument parsing and printing only; the work is in the library.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::data::{Dataset, default_mnist_dir, load_mnist};
use burn_qat::models;
use burn_qat::qconfig::{QConfig, QConfigBuilder, QuantBackend, get_default_qat_qconfig};
use burn_qat::report::{Curves, plot_curves};
use burn_qat::state_dict::{SaveStateDict, StateDict, save_safetensors};
use burn_qat::train::{BatchProgress, EpochReport, TrainHooks, TrainOptions, accuracy, calibrate, predictions, train_classifier_with};
use burn_qat::workflow::{FloatModel, Int8Model, QConfigMap, convert, prepare_qat};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Parser)]
#[command(name = "burn-qat", version, about = "Quantization-aware training on burn, numerically identical to PyTorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a float model, fine-tune it with quantization-aware training, convert it to int8,
    /// and compare them on the test set with post-training quantization (PTQ) of the float model.
    Train(TrainArgs),
    /// Test accuracy of a saved int8 model (int8.safetensors from `train`).
    Eval(EvalArgs),
    /// Export a saved int8 model (int8.safetensors from `train`) as QDQ ONNX (opset 13): float
    /// pixels in [0, 1] as `input` [N, C, H, W], logits out; runs in any ONNX runtime.
    Export(ExportArgs),
    /// Time one benchmark case (or `all`) and print one JSON line per case: case, median_ms,
    /// min_ms, max_ms, iters, threads. bench/torch_reference.py times the same work in PyTorch.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelKind {
    Lenet,
    ResnetTiny,
}

impl ModelKind {
    fn name(self) -> &'static str {
        match self {
            Self::Lenet => "LeNet",
            Self::ResnetTiny => "tiny ResNet",
        }
    }
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
    /// Backend whose quantization ranges to simulate: fbgemm, x86, qnnpack or onednn (the preset
    /// used unless a bit width or granularity flag asks for a custom qconfig).
    #[arg(long, default_value = "fbgemm")]
    qconfig: String,
    /// Use PyTorch's get_default_qat_qconfig(backend, version) exactly (0 or 1). Without it, our
    /// preset: one qparam formula for training and convert, int8 equal to the QAT eval bit for bit.
    #[arg(long, conflicts_with_all = ["weight_bits", "act_bits", "per_tensor", "per_channel"])]
    qconfig_version: Option<u32>,
    /// Weight bits, 2 to 8 (signed, symmetric) [default: 8]. Other than 8, or with --act-bits other
    /// than 8, --per-tensor or --per-channel: a custom qconfig (QConfigBuilder) with exactly these
    /// bits and full ranges instead of the backend preset.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=8))]
    weight_bits: Option<u32>,
    /// Activation bits, 2 to 8 (unsigned, affine) [default: 8]; see --weight-bits.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=8))]
    act_bits: Option<u32>,
    /// Quantize weights with one scale per tensor (custom qconfig).
    #[arg(long, conflicts_with = "per_channel")]
    per_tensor: bool,
    /// Quantize weights with one scale per output channel (custom qconfig; the default there).
    #[arg(long)]
    per_channel: bool,
    /// Training batches to calibrate the post-training-quantized (PTQ) comparison model on.
    #[arg(long, default_value_t = 20)]
    ptq_batches: usize,
    /// Freeze BN statistics from this QAT epoch on (0-based: 1 is the second QAT epoch, shown as 2).
    #[arg(long, default_value_t = 1)]
    freeze_bn_epoch: usize,
    /// Disable observers from this QAT epoch on (0-based: 1 is the second QAT epoch, shown as 2).
    #[arg(long, default_value_t = 1)]
    disable_observer_epoch: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write metrics.json, curves.png, qat.safetensors, int8.safetensors,
    /// ptq-int8.safetensors, and checkpoint.safetensors: the model's state dict after every epoch
    /// (float, then QAT keys), with phase, epoch (1-based) and epochs in its metadata.
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

#[derive(clap::Args)]
struct ExportArgs {
    /// An int8 model file written by `train` (int8.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where to write the ONNX file.
    #[arg(long, default_value = "model.onnx")]
    out: PathBuf,
    /// Input channels, height and width (the batch dimension stays symbolic).
    #[arg(long, num_args = 3, value_names = ["C", "H", "W"], default_values_t = [1, 28, 28])]
    input: Vec<usize>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// convbnrelu2d, dwconvbnrelu2d, linearrelu, qat-step-lenet, float-step-lenet,
    /// qat-step-resnet-tiny, float-step-resnet-tiny, int8-infer-lenet-b1, f32-infer-lenet-b1,
    /// int8-infer-lenet-b32, f32-infer-lenet-b32, or all.
    case: String,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Worker threads: the size of rayon's global pool (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> QatError {
    QatError::File { path: path.display().to_string(), reason: e.to_string() }
}

fn print_header() {
    println!("{:>6} {:>5} {:>9} {:>10} {:>10} {:>10} {:>7}", "phase", "epoch", "loss", "train acc", "test acc", "samples/s", "time");
}

fn epoch_line(phase: &str, r: &EpochReport, seconds: f64) -> String {
    format!(
        "{phase:>6} {:>5} {:>9.4} {:>9.2}% {:>9.2}% {:>10.0} {:>6.1}s",
        r.epoch + 1,
        r.loss,
        100.0 * r.train_accuracy,
        100.0 * r.test_accuracy,
        r.samples_per_second,
        seconds
    )
}

/// The qconfig the flags ask for, and how to describe it.
struct QChoice {
    qconfig: QConfig,
    description: String,
    weight_bits: u32,
    act_bits: u32,
    per_channel: bool,
}

fn choose_qconfig(args: &TrainArgs) -> burn_qat::Result<QChoice> {
    let (weight_bits, act_bits) = (args.weight_bits.unwrap_or(8), args.act_bits.unwrap_or(8));
    let custom = weight_bits != 8 || act_bits != 8 || args.per_tensor || args.per_channel;
    let backend = QuantBackend::parse(&args.qconfig)?;
    if !custom {
        let (qconfig, description) = match args.qconfig_version {
            Some(version) => (get_default_qat_qconfig(&args.qconfig, version)?, format!("{} v{version} (PyTorch)", args.qconfig)),
            None => (QConfig::consistent(&args.qconfig)?, format!("{} (consistent)", args.qconfig)),
        };
        return Ok(QChoice { qconfig, description, weight_bits, act_bits, per_channel: backend != QuantBackend::Qnnpack });
    }
    let per_channel = !args.per_tensor;
    let builder = QConfigBuilder::new().weight_bits(weight_bits).activation_bits(act_bits);
    let builder = if per_channel { builder.per_channel_weights() } else { builder.per_tensor_weights() };
    let granularity = if per_channel { "per-channel" } else { "per-tensor" };
    Ok(QChoice {
        qconfig: builder.build()?,
        description: format!("custom: w{weight_bits} {granularity} symmetric, a{act_bits} affine (consistent)"),
        weight_bits,
        act_bits,
        per_channel,
    })
}

/// A float model's state dict in PyTorch's layout: the model "prepared" with no qconfig anywhere
/// keeps every layer in float, and writes exactly the float keys.
fn float_state(model: &FloatModel) -> burn_qat::Result<StateDict> {
    Ok(prepare_qat(model.clone(), QConfigMap::new(None))?.state_dict())
}

fn qat_state(model: &burn_qat::workflow::QatModel) -> burn_qat::Result<StateDict> {
    Ok(model.state_dict())
}

/// Progress of one training phase: a bar per epoch on a terminal, else one line per epoch; and
/// the checkpoint after every epoch.
struct PhaseHooks<'a, M> {
    phase: &'static str,
    epochs: usize,
    terminal: bool,
    bar: Option<ProgressBar>,
    epoch_started: Instant,
    checkpoint: &'a Path,
    metadata: HashMap<String, String>,
    state: fn(&M) -> burn_qat::Result<StateDict>,
}

impl<'a, M> PhaseHooks<'a, M> {
    fn new(
        phase: &'static str,
        epochs: usize,
        checkpoint: &'a Path,
        metadata: &HashMap<String, String>,
        state: fn(&M) -> burn_qat::Result<StateDict>,
    ) -> Self {
        let terminal = std::io::stdout().is_terminal();
        Self { phase, epochs, terminal, bar: None, epoch_started: Instant::now(), checkpoint, metadata: metadata.clone(), state }
    }

    fn message(p: &BatchProgress) -> String {
        format!("loss {:.4}  acc {:6.2}%  {:5.0} samples/s", p.loss, 100.0 * p.accuracy, p.samples_per_second)
    }
}

impl<M> TrainHooks<M> for PhaseHooks<'_, M> {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        self.epoch_started = Instant::now();
        if !self.terminal {
            return;
        }
        let style = ProgressStyle::with_template("{prefix:>11} [{bar:30.cyan/blue}] {pos:>4}/{len} {msg}  ETA {eta}")
            .expect("a valid progress template")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stdout()).with_style(style);
        bar.set_prefix(format!("{} {}/{}", self.phase, epoch + 1, self.epochs));
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, p: &BatchProgress) {
        if let Some(bar) = &self.bar {
            bar.set_message(Self::message(p));
            bar.set_position(p.batch as u64);
        }
    }

    fn evaluating(&mut self, _epoch: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}  testing...", bar.message()));
        }
    }

    fn epoch_done(&mut self, report: &EpochReport, model: &M) -> burn_qat::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{}", epoch_line(self.phase, report, self.epoch_started.elapsed().as_secs_f64()));
        let mut metadata = self.metadata.clone();
        metadata.insert("phase".into(), self.phase.to_lowercase());
        metadata.insert("epoch".into(), (report.epoch + 1).to_string());
        metadata.insert("epochs".into(), self.epochs.to_string());
        metadata.insert("test_accuracy".into(), report.test_accuracy.to_string());
        save_safetensors(self.checkpoint, &(self.state)(model)?, &metadata)
    }
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
    let run_started = Instant::now();
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| QatError::config(e.to_string()))?;
    }
    // Convert needs observers that have seen data: at least one QAT epoch, one PTQ batch.
    if args.qat_epochs == 0 || args.ptq_batches == 0 {
        return Err(QatError::config("--qat-epochs and --ptq-batches must be at least 1 (convert needs observers that have seen data)"));
    }
    let choice = choose_qconfig(&args)?;
    let dir = args.data.clone().unwrap_or_else(default_mnist_dir);
    let (train_set, test_set) = load_mnist(&dir)?;
    println!("data: {} training and {} test digits from {}", train_set.len(), test_set.len(), dir.display());
    println!("qconfig: {}", choice.description);
    std::fs::create_dir_all(&args.out).map_err(|e| io_error(&args.out, e))?;
    let checkpoint = args.out.join("checkpoint.safetensors");
    let metadata = HashMap::from([
        ("format".to_string(), "burn-qat checkpoint".to_string()),
        ("model".to_string(), args.model.name().to_string()),
        ("qconfig".to_string(), choice.description.clone()),
        ("weight_bits".to_string(), choice.weight_bits.to_string()),
        ("act_bits".to_string(), choice.act_bits.to_string()),
    ]);
    let started = Instant::now();

    let device = Device::flex().autodiff();
    device.seed(args.seed);
    let float_model = match args.model {
        ModelKind::Lenet => models::lenet(&device)?,
        ModelKind::ResnetTiny => models::resnet_tiny(&device)?,
    };
    print_header();
    let float_options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        freeze_bn_from_epoch: None,
        disable_observer_from_epoch: None,
        ..TrainOptions::default()
    };
    let mut hooks = PhaseHooks::new("float", args.epochs, &checkpoint, &metadata, float_state);
    let (float_model, float_reports) = train_classifier_with(float_model, &train_set, &test_set, &float_options, &device, &mut hooks)?;
    let float_accuracy = float_reports.last().map_or(0.0, |r| r.test_accuracy);
    let float_model_bytes = float_bytes(&float_model);
    let float_for_ptq = float_model.valid();

    let qat = prepare_qat(float_model.fuse()?, choice.qconfig.clone())?;
    let qat_options = TrainOptions {
        epochs: args.qat_epochs,
        lr: args.lr / 10.0,
        seed: args.seed.wrapping_add(1000),
        freeze_bn_from_epoch: Some(args.freeze_bn_epoch),
        disable_observer_from_epoch: Some(args.disable_observer_epoch),
        ..float_options
    };
    let mut hooks = PhaseHooks::new("QAT", args.qat_epochs, &checkpoint, &metadata, qat_state);
    let (qat, qat_reports) = train_classifier_with(qat, &train_set, &test_set, &qat_options, &device, &mut hooks)?;
    let train_seconds = started.elapsed().as_secs_f64();

    // Post-training quantization of the same float model, for comparison: no QAT epochs, only
    // observers calibrated on a few training batches.
    let ptq_started = Instant::now();
    let mut ptq = prepare_qat(float_for_ptq.fuse()?, choice.qconfig.clone())?;
    let calibration_samples = calibrate(&mut ptq, &train_set, args.ptq_batches, args.batch_size, &device)?;
    let ptq_int8 = convert(&ptq)?;
    let ptq_pred = int8_predictions(&ptq_int8, &test_set)?;
    let ptq_int8_accuracy = accuracy(&ptq_pred, &test_set);
    println!(
        "PTQ: calibrated on {calibration_samples} training digits ({} batches) in {:.1} s",
        calibration_samples.div_ceil(args.batch_size.max(1)),
        ptq_started.elapsed().as_secs_f64()
    );

    let int8 = convert(&qat)?;
    let qat_pred = predictions(&qat, &test_set, 500, &device)?;
    let int8_pred = int8_predictions(&int8, &test_set)?;
    let (qat_accuracy, int8_accuracy) = (accuracy(&qat_pred, &test_set), accuracy(&int8_pred, &test_set));
    let agreement = qat_pred.iter().zip(&int8_pred).filter(|(a, b)| a == b).count() as f64 / test_set.len() as f64;

    save_safetensors(args.out.join("qat.safetensors"), &qat.state_dict(), &Default::default())?;
    let int8_path = args.out.join("int8.safetensors");
    int8.save(&int8_path)?;
    burn_qat::export::export_onnx(&int8, [1, 1, train_set.rows, train_set.cols], &args.out.join("model.onnx"))?;
    let int8_model_bytes = std::fs::metadata(&int8_path).map_err(|e| io_error(&int8_path, e))?.len();
    let ptq_path = args.out.join("ptq-int8.safetensors");
    ptq_int8.save(&ptq_path)?;
    let ptq_model_bytes = std::fs::metadata(&ptq_path).map_err(|e| io_error(&ptq_path, e))?.len();
    let metrics = serde_json::json!({
        "float_accuracy": float_accuracy,
        "qat_accuracy": qat_accuracy,
        "int8_accuracy": int8_accuracy,
        "int8_agreement": agreement,
        "ptq_int8_accuracy": ptq_int8_accuracy,
        "ptq_calibration_samples": calibration_samples,
        "float_model_bytes": float_model_bytes,
        "int8_model_bytes": int8_model_bytes,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "qconfig": choice.description,
        "weight_bits": choice.weight_bits,
        "act_bits": choice.act_bits,
        "weight_granularity": if choice.per_channel { "per-channel" } else { "per-tensor" },
        "train_seconds": train_seconds,
    });
    let metrics_path = args.out.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics).expect("json")).map_err(|e| io_error(&metrics_path, e))?;
    // The integer models hold int8 tensors; below 8 bits, name the ranges they use.
    let quantized = if (choice.weight_bits, choice.act_bits) == (8, 8) {
        "int8".to_string()
    } else {
        format!("w{}/a{}", choice.weight_bits, choice.act_bits)
    };
    let data_name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    let curves = Curves {
        title: format!("{} on {data_name}: float training, then QAT \u{2014} qconfig {}", args.model.name(), choice.description),
        float: &float_reports,
        qat: &qat_reports,
        int8_accuracy: Some(int8_accuracy),
        ptq_int8_accuracy: Some(ptq_int8_accuracy),
        quantized: quantized.clone(),
    };
    plot_curves(args.out.join("curves.png"), &curves)?;

    println!();
    let rows = [
        ("float".to_string(), float_accuracy, Some(float_model_bytes as u64)),
        (format!("PTQ {quantized} (no QAT)"), ptq_int8_accuracy, Some(ptq_model_bytes)),
        ("QAT (fake quant)".to_string(), qat_accuracy, None),
        (format!("{quantized} (from QAT)"), int8_accuracy, Some(int8_model_bytes)),
    ];
    println!("{:<24} {:>9} {:>12}", "model", "test acc", "size");
    for (name, acc, bytes) in rows {
        let size = bytes.map_or(String::new(), |b| format!("{b} B"));
        println!("{name:<24} {:>8.2}% {size:>12}", 100.0 * acc);
    }
    println!(
        "QAT over PTQ: {:+.2} points of {quantized} test accuracy ({} weights)",
        100.0 * (int8_accuracy - ptq_int8_accuracy),
        if choice.per_channel { "per-channel" } else { "per-tensor" },
    );
    println!("int8 argmax equals the QAT model's on {:.2}% of test digits; training took {train_seconds:.1} s", 100.0 * agreement);
    println!("wrote {} (metrics.json, curves.png, models) in {:.1} s", args.out.display(), run_started.elapsed().as_secs_f64());
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

fn export(args: ExportArgs) -> burn_qat::Result<()> {
    let model = Int8Model::load(&args.checkpoint)?;
    let [c, h, w] = args.input[..] else { return Err(QatError::config("--input takes three numbers: C H W")) };
    burn_qat::export::export_onnx(&model, [1, c, h, w], &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn bench(args: BenchArgs) -> burn_qat::Result<()> {
    use std::io::Write;
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|e| QatError::config(e.to_string()))?;
    }
    let options = burn_qat::bench::BenchOptions { iters: args.iters, warmup: args.warmup };
    for case in burn_qat::bench::select(&args.case)? {
        let result = burn_qat::bench::run_case(case, options)?;
        println!("{}", result.json());
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Export(args) => export(args),
        Command::Bench(args) => bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
