//! Every subcommand's arguments, with the help a newcomer reads.

use std::path::PathBuf;

use burn_qat::data::DataSource;
use burn_qat::device::Accelerator;
use burn_qat::qconfig::Quantizer;
use burn_qat::run::{ModelKind, ObserverChoice, QConfigFlags};
use burn_qat::train::{Distillation, TrainOptions};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "burn-qat",
    version,
    about = "Quantization-aware training on burn, numerically identical to PyTorch",
    long_about = "Quantization-aware training (QAT) on burn, numerically identical to PyTorch.\n\n\
        Start with `burn-qat train`: it trains a small CNN on the bundled MNIST digits, fine-tunes it \
        with fake quantization, converts it to int8 and writes everything to runs/latest. Then try \
        `inspect`, `eval`, `convert` and `export` on the files it wrote."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a float model, fine-tune it with quantization-aware training, convert it to int8,
    /// and compare them on the test set with post-training quantization (PTQ) of the float model.
    Train(TrainArgs),
    /// Test accuracy of a saved model: int8.safetensors, qat.safetensors or a checkpoint.
    Eval(EvalArgs),
    /// Convert a QAT model (qat.safetensors, or a checkpoint from the QAT phase) to int8.
    Convert(ConvertArgs),
    /// Per layer: qparams, weight range, and the quantization SNR of weights and activations.
    Inspect(InspectArgs),
    /// Export a model (int8.safetensors, or a QAT model, converted first) as QDQ ONNX (opset 13):
    /// float pixels in [0, 1] as `input` [N, C, H, W], logits out; runs in any ONNX runtime.
    Export(ExportArgs),
    /// Time one benchmark case (or `all`) and print one JSON line per case: case, median_ms,
    /// min_ms, max_ms, iters, threads. bench/torch_reference.py times the same work in PyTorch.
    Bench(BenchArgs),
}

#[derive(clap::Args, Clone)]
pub struct TrainArgs {
    /// Where the data is: `mnist:DIR` (IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte,
    /// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz: MNIST or
    /// Fashion-MNIST), `cifar10:DIR` (the binary batches data_batch_1..5.bin, test_batch.bin), or
    /// a bare DIR (MNIST). Default: the 10,000-digit MNIST subset in data/mnist-10k.
    #[arg(long, value_parser = DataSource::parse)]
    pub data: Option<DataSource>,
    #[arg(long, default_value = "lenet", value_parser = model_parser())]
    pub model: ModelKind,
    /// Float training epochs before QAT, at least 1.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub epochs: usize,
    /// Quantization-aware fine-tuning epochs, at least 1 (convert needs observers that saw data).
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub qat_epochs: usize,
    /// Images per SGD step, at least 2 (training batch norm needs two values per channel).
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..))]
    pub batch_size: usize,
    /// SGD learning rate for float training (momentum 0.9, cosine decay), in (0, 10]; QAT uses
    /// a tenth of it unless --qat-lr says otherwise.
    #[arg(long, default_value_t = 0.05, value_parser = parse_learning_rate, allow_negative_numbers = true)]
    pub lr: f64,
    /// SGD learning rate for QAT (weights and learned qparams alike; cosine decay), in (0, 10]
    /// [default: --lr / 10].
    #[arg(long, value_parser = parse_learning_rate, allow_negative_numbers = true)]
    pub qat_lr: Option<f64>,
    /// Backend whose quantization ranges to simulate: fbgemm, x86, qnnpack or onednn (the preset
    /// used unless a bit width or granularity flag asks for a custom qconfig).
    #[arg(long, default_value = "fbgemm")]
    pub qconfig: String,
    /// Use PyTorch's get_default_qat_qconfig(backend, version) exactly (0 or 1). Without it, our
    /// preset: one qparam formula for training and convert, int8 equal to the QAT eval bit for bit.
    #[arg(long, conflicts_with_all = ["weight_bits", "act_bits", "per_tensor", "per_channel", "quantizer"])]
    pub qconfig_version: Option<u32>,
    /// Weight bits, 2 to 8 (signed, symmetric) [default: 8]. Other than 8, or with --act-bits other
    /// than 8, --per-tensor or --per-channel: a custom qconfig (QConfigBuilder) with exactly these
    /// bits and full ranges instead of the backend preset. In int8.safetensors weights below 8 bits are stored packed at their width.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=8))]
    pub weight_bits: Option<u32>,
    /// Activation bits, 2 to 8 (unsigned, affine) [default: 8]; see --weight-bits.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=8))]
    pub act_bits: Option<u32>,
    /// Where scales and zero points come from: fixed (observers), lsq (learned scales), lsq+
    /// (learned scales and zero points) or pact (learned activation clip levels; weights stay
    /// fixed unless --weight-quantizer says otherwise); learned ones start from the first
    /// batch's observer estimate. Other than fixed: a custom qconfig, as --weight-bits.
    #[arg(long, default_value = "fixed", value_parser = parse_quantizer)]
    pub quantizer: Quantizer,
    /// The weights' quantizer when it differs from --quantizer's: fixed, lsq or lsq+ (e.g.
    /// --quantizer pact --weight-quantizer lsq).
    #[arg(long, value_parser = parse_quantizer)]
    pub weight_quantizer: Option<Quantizer>,
    /// Instead of one run: train the float model once, then at each of these bit widths
    /// (weights and activations, e.g. 8,4,3,2) compare PTQ, QAT with fixed quantizers and QAT
    /// with learned ones (--quantizer, lsq if fixed) in int8; writes sweep.md and sweep.json.
    #[arg(long, value_delimiter = ',', value_name = "BITS", value_parser = clap::value_parser!(u32).range(2..=8),
          conflicts_with_all = ["weight_bits", "act_bits", "qconfig_version", "resume"])]
    pub sweep_bits: Option<Vec<u32>>,
    /// QAT learns from the float model's predictions as well as the labels: the loss adds
    /// T^2 * KL(softmax(float / T) || softmax(QAT / T)) to the cross entropy.
    #[arg(long)]
    pub distill: bool,
    /// The distillation temperature T, finite and positive.
    #[arg(long, default_value_t = DEFAULT_DISTILL_TEMPERATURE, value_name = "T", value_parser = parse_temperature)]
    pub distill_temperature: f64,
    /// How observers measure ranges: minmax (PyTorch's), histogram (PyTorch's HistogramObserver
    /// for activations, searching for the activation range's own levels; weights min/max),
    /// percentile (clip at the 0.01th and 99.99th percentiles) or mse (the clipping with the
    /// smallest quantization error).
    #[arg(long, default_value = "minmax", value_parser = parse_observer_flag)]
    pub observer: ObserverChoice,
    /// Mixed precision: bits per layer, for its weights and output activations, as LAYER=BITS
    /// or LAYER=WEIGHT_BITS/ACT_BITS entries (layer paths as `inspect` lists them; `*` for every
    /// other layer), e.g. conv1=8,fc2=4/8,*=4. A custom qconfig, as --weight-bits.
    #[arg(long, value_name = "SPEC", conflicts_with = "qconfig_version")]
    pub layer_bits: Option<String>,
    /// Mixed precision: the input quantization and the first and last layers with weights at 8
    /// bits, the rest at --weight-bits/--act-bits.
    #[arg(long, conflicts_with = "qconfig_version")]
    pub keep_first_last_8bit: bool,
    /// Quantize weights with one scale per tensor (custom qconfig).
    #[arg(long, conflicts_with = "per_channel")]
    pub per_tensor: bool,
    /// Quantize weights with one scale per output channel (custom qconfig; the default there).
    #[arg(long)]
    pub per_channel: bool,
    /// Training batches to calibrate the post-training-quantized (PTQ) comparison model on.
    #[arg(long, default_value_t = 20)]
    pub ptq_batches: usize,
    /// Freeze BN statistics from this QAT epoch on (0-based: 1 is the second QAT epoch, shown as
    /// 2) [default: 1; with --qat-epochs 1, never].
    #[arg(long)]
    pub freeze_bn_epoch: Option<usize>,
    /// Disable observers from this QAT epoch on (0-based: 1 is the second QAT epoch, shown as 2)
    /// [default: 1; with --qat-epochs 1, never].
    #[arg(long)]
    pub disable_observer_epoch: Option<usize>,
    /// Seed of the weight initialization and the data order: the same seed and flags give the
    /// same bits (README, Determinism).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: all cores). Results are bit-identical for the same seed and
    /// flags, whatever the thread count (README, Determinism).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to train: cpu (burn's Flex backend), or a GPU through wgpu, cuda or rocm, each
    /// available when built with the cargo feature of that name (`--features wgpu`). PTQ
    /// calibration runs there too; conversion, the int8 model and its evaluation run on the CPU.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Accelerator,
    /// Train on this many devices of --device's kind at once (data parallel): each batch is
    /// shared among them, every observer's range and every batch norm's statistics are taken
    /// over the whole batch, gradients are summed. Same result as one device, to float
    /// summation order.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub devices: usize,
    /// Where to write metrics.json, curves.png, float.safetensors, qat.safetensors,
    /// int8.safetensors, ptq-int8.safetensors, model.onnx and checkpoint.safetensors (the model,
    /// optimizer and progress after every epoch, written atomically).
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Continue an interrupted run from OUT/checkpoint.safetensors: the same flags as the run
    /// that wrote it (checked), and the result is bit for bit that of an uninterrupted run.
    #[arg(long)]
    pub resume: bool,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A model written by `train` or `convert`: int8.safetensors, qat.safetensors,
    /// float.safetensors or checkpoint.safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The test data (see `train --data`). Default: the data the model was trained on, where the
    /// file records it (every file `train` and `convert` write does), else data/mnist-10k.
    #[arg(long, value_parser = DataSource::parse)]
    pub data: Option<DataSource>,
    /// Also write every test image's prediction to this CSV file: index, label, predicted, and
    /// the model's logits (for comparing with another runtime on the same data).
    #[arg(long, value_name = "FILE.csv")]
    pub predictions: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// A QAT model: qat.safetensors, or checkpoint.safetensors written during the QAT phase.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where to write the int8 model (never over the --checkpoint it reads).
    #[arg(long, default_value = "int8.safetensors")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Clamp activations at the full u8 range as PyTorch's converted fbgemm/x86 models do
    /// (they train at 0..127 but run at 0..255), instead of where training clamped.
    #[arg(long)]
    pub pytorch_saturation: bool,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// A QAT model: qat.safetensors, or checkpoint.safetensors written during the QAT phase.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Test data to measure activation SNR on (see `train --data`). Default: the data the model
    /// was trained on.
    #[arg(long, value_parser = DataSource::parse)]
    pub data: Option<DataSource>,
    /// Test images to measure activation SNR on.
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    /// Instead of the table: rank the layers by the int8 accuracy lost when that layer alone
    /// goes to N bits (PTQ of the run's float model, the rest at 8), on --samples test images.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=8))]
    pub sensitivity: Option<u32>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// int8.safetensors, or a QAT model (qat.safetensors or a QAT-phase checkpoint), which is
    /// converted first: the QDQ graph of a QAT model is that of its int8 model.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where to write the ONNX file (never over the --checkpoint it reads).
    #[arg(long, default_value = "model.onnx")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Input channels, height and width (the batch dimension stays symbolic). Default: the
    /// input the model was trained on where the file says, else 1 28 28.
    #[arg(long, num_args = 3, value_names = ["C", "H", "W"])]
    pub input: Option<Vec<usize>>,
    /// The ONNX operator set: 13 (int8 weights, sub-8-bit ones within their narrow range) or
    /// 21 (weights that fit 4 bits as INT4 initializers).
    #[arg(long, default_value = "13", value_parser = parse_opset)]
    pub opset: burn_qat::export::OnnxOpset,
}

fn parse_opset(text: &str) -> Result<burn_qat::export::OnnxOpset, String> {
    burn_qat::export::OnnxOpset::parse(text).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A case (bench/README.md says what each times), or all.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(std::iter::once("all").chain(burn_qat_cli::bench::CASES.iter().copied())))]
    pub case: String,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Worker threads: the size of rayon's global pool (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the training cases run: cpu, or wgpu / cuda / rocm in a build with that feature
    /// (each timed run waits for the device to finish). The int8 inference cases are CPU only.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Accelerator,
}

/// A device name, checked against what this build was compiled with.
fn parse_device(text: &str) -> Result<Accelerator, String> {
    let device: Accelerator = text.parse().map_err(|e: burn_qat::QatError| e.to_string())?;
    device.device(0).map_err(|e| e.to_string())?;
    Ok(device)
}

/// The default --distill-temperature.
pub const DEFAULT_DISTILL_TEMPERATURE: f64 = 4.0;

fn parse_temperature(text: &str) -> Result<f64, String> {
    let t: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if t.is_finite() && t > 0.0 { Ok(t) } else { Err(format!("the temperature must be finite and positive, got {t}")) }
}

/// `--model`: the library's [`ModelKind`]s by their flags, each with its help.
fn model_parser() -> impl TypedValueParser<Value = ModelKind> {
    let values = ModelKind::ALL.map(|kind| {
        PossibleValue::new(kind.flag()).help(match kind {
            ModelKind::Lenet => "Two Conv-BN-ReLU blocks with max pooling, Linear-ReLU, a linear head",
            ModelKind::ResnetTiny => "A Conv-BN-ReLU stem and basic residual blocks (adds), Linear-ReLU, a linear head",
            ModelKind::Mobilenetv2Tiny => "Depthwise-separable inverted residual blocks with adds, global average pooling",
        })
    });
    PossibleValuesParser::new(values).map(|flag| ModelKind::from_flag(&flag).expect("clap offers only ModelKind flags"))
}

fn parse_observer_flag(text: &str) -> Result<ObserverChoice, String> {
    ObserverChoice::parse(text).map_err(|e| e.to_string())
}

fn parse_quantizer(text: &str) -> Result<Quantizer, String> {
    Quantizer::parse(text).map_err(|e| e.to_string())
}

/// A learning rate SGD can use: finite and in (0, 10] (beyond that every model here diverges in
/// its first steps).
fn parse_learning_rate(text: &str) -> Result<f64, String> {
    let lr: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
        return Err(format!("{lr} is not a learning rate: use a finite value in (0, 10], such as the default 0.05"));
    }
    Ok(lr)
}

impl TrainArgs {
    /// The qconfig flags as the run records them.
    pub fn qconfig_flags(&self) -> QConfigFlags {
        QConfigFlags {
            backend: self.qconfig.clone(),
            version: self.qconfig_version,
            weight_bits: self.weight_bits,
            act_bits: self.act_bits,
            per_tensor: self.per_tensor,
            per_channel: self.per_channel,
            quantizer: self.quantizer,
            weight_quantizer: self.weight_quantizer,
            layer_bits: self.layer_bits.clone(),
            keep_first_last_8bit: self.keep_first_last_8bit,
            observer: self.observer,
        }
    }

    /// The QAT epoch that freezes BN (0-based); the default 1 is never reached with one QAT epoch.
    pub fn freeze_bn_epoch(&self) -> usize {
        self.freeze_bn_epoch.unwrap_or(1)
    }

    /// The QAT epoch that disables observers (0-based), defaulting as [`Self::freeze_bn_epoch`].
    pub fn disable_observer_epoch(&self) -> usize {
        self.disable_observer_epoch.unwrap_or(1)
    }

    /// The float phase's schedule: these flags, no BN freezing or observers to switch.
    pub fn float_options(&self) -> TrainOptions {
        TrainOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            freeze_bn_from_epoch: None,
            disable_observer_from_epoch: None,
            ..TrainOptions::default()
        }
    }

    /// QAT's learning rate: `--qat-lr`, or a tenth of `--lr`.
    pub fn qat_lr(&self) -> f64 {
        self.qat_lr.unwrap_or(self.lr / 10.0)
    }

    /// The QAT phase's schedule: its learning rate, its own shuffling seed, BN frozen
    /// and observers off from their epochs, distillation if asked for.
    pub fn qat_options(&self, distillation: Option<Distillation>) -> TrainOptions {
        TrainOptions {
            epochs: self.qat_epochs,
            lr: self.qat_lr(),
            seed: self.seed.wrapping_add(1000),
            freeze_bn_from_epoch: Some(self.freeze_bn_epoch()),
            disable_observer_from_epoch: Some(self.disable_observer_epoch()),
            distillation,
            ..self.float_options()
        }
    }
}
