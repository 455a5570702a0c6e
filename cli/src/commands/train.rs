//! `burn-qat train`: float training, QAT, convert, evaluation against PTQ, and every artifact;
//! with `--resume`, the same run continued from its last checkpoint.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::models::InputShape;
use burn_qat::run::file::{RUN_KEY, TRAINING_KEY};
use burn_qat::run::{Checkpoint, RunRecord, RunSpec, Stage, provenance_of};
use burn_qat::state_dict::{LoadStateDict, SaveStateDict, load_safetensors};
use burn_qat::train::{Agreement, Distillation, Logits, ResumePoint, TrainRun, accuracy, agreement, int8_logits, logits};
use burn_qat::workflow::{EvalArithmetic, convert};
use burn_qat_cli::report::{Curves, plot_curves};
use serde_json::json;

use super::args::{DEFAULT_DISTILL_TEMPERATURE, TrainArgs};
use super::progress::{PhaseHooks, print_header};
use super::ptq::best_ptq;
use super::{io_error, move_previous_run, prepare_output_folder, set_threads};

/// Every flag that shapes the numbers: a resumed run must match them all to continue bit for
/// bit. Not the thread count: it changes no bit (tests/resume.rs). The device does (a GPU sums
/// in another order).
fn training_flags(args: &TrainArgs, data: &str) -> serde_json::Value {
    json!({
        "data": data,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "qat_lr": args.qat_lr(),
        "seed": args.seed,
        "ptq_batches": args.ptq_batches,
        "freeze_bn_epoch": args.freeze_bn_epoch(),
        "disable_observer_epoch": args.disable_observer_epoch(),
        "device": args.device.name(),
        "devices": args.devices,
        "distill": args.distill,
        "distill_temperature": args.distill_temperature,
    })
}

/// The checkpoint of an interrupted run, read from `path` and checked to be written by a run
/// with the same flags as this one (`expected`: this run's metadata).
fn resume_from(path: &Path, expected: &HashMap<String, String>) -> burn_qat::Result<Checkpoint> {
    if !path.exists() {
        return Err(QatError::File {
            path: path.display().to_string(),
            reason: "no checkpoint to resume from; run without --resume to start, or pass the --out of the interrupted run".into(),
        });
    }
    let checkpoint = Checkpoint::load(path)?;
    let mut differences = Vec::new();
    for key in [RUN_KEY, TRAINING_KEY] {
        let then = checkpoint.metadata.get(key).and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok()).unwrap_or_default();
        let now: serde_json::Value = serde_json::from_str(&expected[key]).expect("our own JSON");
        differences.extend(flag_differences(&then, &now));
    }
    if !differences.is_empty() {
        return Err(QatError::File {
            path: path.display().to_string(),
            reason: format!(
                "the checkpoint was written by a run with other flags ({}); resume with the flags of that run, or start a new run without --resume",
                differences.join("; ")
            ),
        });
    }
    Ok(checkpoint)
}

/// On Ctrl-C, before the process ends: where the last complete epoch is and the command that
/// continues from it (the checkpoint is written atomically, so whatever the moment, it holds a
/// whole epoch, or none yet).
fn say_how_to_resume_on_ctrl_c(out: &Path) {
    let checkpoint = out.join("checkpoint.safetensors");
    let mut command: Vec<String> = std::env::args().collect();
    if !command.iter().any(|a| a == "--resume") {
        command.push("--resume".into());
    }
    let command = command.join(" ");
    // A second run in the same process (tests) finds the handler installed: keep the first.
    let _ = ctrlc::set_handler(move || {
        if checkpoint.exists() {
            eprintln!("\ninterrupted; the last complete epoch is in {}; continue with:\n  {command}", checkpoint.display());
        } else {
            eprintln!("\ninterrupted before the first epoch ended; nothing to resume (run the same command again)");
        }
        std::process::exit(130);
    });
}

/// The flags in which two runs' recorded settings differ, as `--flag was X, now Y`.
fn flag_differences(then: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (mut a, b) = (then.as_object().unwrap_or(&empty).clone(), now.as_object().unwrap_or(&empty));
    // Checkpoints from before --device and --devices were trained on one CPU.
    // And from before --distill, without distillation.
    for (key, old) in [
        ("device", json!("cpu")),
        ("devices", json!(1)),
        ("distill", json!(false)),
        ("distill_temperature", json!(DEFAULT_DISTILL_TEMPERATURE)),
    ] {
        if b.contains_key(key) {
            a.entry(key).or_insert(old);
        }
    }
    // And from before --qat-lr, with a tenth of --lr.
    if let (true, Some(lr)) = (b.contains_key("qat_lr"), a.get("lr").and_then(|v| v.as_f64())) {
        a.entry("qat_lr").or_insert(json!(lr / 10.0));
    }
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("not recorded".to_string(), |v| v.to_string());
            // The input shape and classes come from the data, not from flags of their own.
            let flag = match k.as_str() {
                "input" | "classes" => format!("the data's {k}"),
                "qconfig" => "--qconfig".to_string(),
                other => format!("--{}", other.replace('_', "-")),
            };
            format!("{flag} was {}, now {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

fn in_file(path: &Path) -> impl Fn(QatError) -> QatError + '_ {
    move |e| QatError::File { path: path.display().to_string(), reason: e.to_string() }
}

pub fn train(args: TrainArgs) -> burn_qat::Result<()> {
    if let Some(bits) = &args.sweep_bits {
        return super::sweep::sweep(&args, bits);
    }
    let run_started = Instant::now();
    set_threads(args.threads)?;
    // Convert needs observers that have seen data: at least one QAT epoch, one PTQ batch.
    if args.qat_epochs == 0 || args.ptq_batches == 0 {
        let flag = if args.qat_epochs == 0 { "--qat-epochs" } else { "--ptq-batches" };
        return Err(QatError::invalid(
            flag,
            "--qat-epochs and --ptq-batches must be at least 1 (convert needs observers that have seen data)",
        ));
    }
    // Given explicitly, an epoch that never comes is a mistake; the defaults simply never fire
    // in a single QAT epoch.
    for (flag, epoch) in [("--freeze-bn-epoch", args.freeze_bn_epoch), ("--disable-observer-epoch", args.disable_observer_epoch)] {
        if let Some(epoch) = epoch.filter(|&e| e >= args.qat_epochs) {
            return Err(QatError::invalid(
                flag,
                format!(
                    "{flag} {epoch} is not below --qat-epochs {}: that QAT epoch never comes (epochs count from 0 here; use at most {})",
                    args.qat_epochs,
                    args.qat_epochs - 1
                ),
            ));
        }
    }
    if args.batch_size < args.devices {
        return Err(QatError::invalid(
            "--batch-size",
            format!("--batch-size {} is below --devices {}: every device needs a share of each batch", args.batch_size, args.devices),
        ));
    }
    let devices: Vec<Device> = args.device.devices(args.devices)?.into_iter().map(|d| d.autodiff()).collect();
    let flags = args.qconfig_flags();
    let choice = flags.choose()?;
    let source = args.data.clone().unwrap_or_default();
    let (train_set, test_set) = source.load()?;
    println!("data: {} training and {} test images from {source}", train_set.len(), test_set.len());
    println!("qconfig: {}", choice.description);
    let input = InputShape { channels: train_set.channels, height: train_set.rows, width: train_set.cols, classes: train_set.classes };
    let spec = RunSpec { model: args.model, input, qconfig: flags };
    prepare_output_folder(&args.out)?;
    let checkpoint = args.out.join("checkpoint.safetensors");
    let record =
        RunRecord { spec: spec.clone(), training: training_flags(&args, &source.to_string()), qconfig: choice.description.clone() };
    let metadata = record.metadata();
    let resumed = if args.resume { Some(resume_from(&checkpoint, &metadata)?) } else { None };
    // A new run starts in a folder of its own: an earlier run's files move aside, so that an
    // interrupted new run cannot leave its files beside the old run's results.
    if resumed.is_none()
        && let Some(moved) = move_previous_run(&args.out)?
    {
        println!("moved the files of the earlier run in {} to {}", args.out.display(), moved.display());
    }
    if let Some(r) = &resumed {
        let finished = r.stage == Stage::Qat && r.point.epochs_done == args.qat_epochs;
        if finished && args.out.join("metrics.json").is_file() && args.out.join("curves.png").is_file() {
            println!(
                "the run in {} finished (its checkpoint is after QAT epoch {} of {}); nothing to resume, nothing rewritten",
                args.out.display(),
                r.point.epochs_done,
                args.qat_epochs
            );
            return Ok(());
        }
        println!("resuming from {} after {} epoch {}", checkpoint.display(), r.stage.name(), r.point.epochs_done);
    }
    let started = Instant::now();
    say_how_to_resume_on_ctrl_c(&args.out);

    let device = devices[0].clone();
    device.seed(args.seed);
    // Built in every case, so that the seeded generator is where an uninterrupted run has it.
    let mut float_model = spec.float_model(&device)?;
    // Per-layer bits name layers: check them now, not after the float epochs.
    spec.qconfig.qconfig_map(&float_model.clone().fuse()?)?;
    print_header();
    let float_options = args.float_options();
    let float_path = args.out.join("float.safetensors");
    let (float_model, float_reports) = match &resumed {
        Some(r) if r.stage == Stage::Qat => {
            let (state, _) = load_safetensors(&float_path)?;
            float_model.load_state_dict(&state).map_err(in_file(&float_path))?;
            (float_model, r.float_reports.clone())
        }
        _ => {
            let point = match &resumed {
                Some(r) => {
                    float_model.load_state_dict(&r.state).map_err(in_file(&checkpoint))?;
                    r.point.clone()
                }
                None => ResumePoint::default(),
            };
            let mut hooks = PhaseHooks::new("float", Stage::Float, args.epochs, &checkpoint, &metadata);
            let run = TrainRun::new(&train_set, &test_set, &float_options, &device).on_devices(&devices).resumed_from(point);
            let (model, reports) = run.fit(float_model, &mut hooks)?;
            record.save_model(&float_path, &model.state_dict(), Stage::Float)?;
            (model, reports)
        }
    };
    let float_accuracy = float_reports.last().map_or(0.0, |r| r.test_accuracy);
    // Sizes are file sizes, for every model alike.
    let float_model_bytes = file_size(&float_path)?;
    let float_for_ptq = float_model.valid();

    let distillation = match args.distill {
        true => Some(Distillation::from_teacher(&float_model, &train_set, args.distill_temperature, &device)?),
        false => None,
    };
    let mut qat = spec.prepare(float_model)?;
    let point = match &resumed {
        Some(r) if r.stage == Stage::Qat => {
            qat.load_state_dict(&r.state).map_err(in_file(&checkpoint))?;
            r.point.clone()
        }
        _ => ResumePoint::default(),
    };
    let qat_options = args.qat_options(distillation);
    let mut hooks = PhaseHooks::new("QAT", Stage::Qat, args.qat_epochs, &checkpoint, &metadata).with_float_reports(&float_reports);
    let run = TrainRun::new(&train_set, &test_set, &qat_options, &device).on_devices(&devices).resumed_from(point);
    let (qat, qat_reports) = run.fit(qat, &mut hooks)?;
    let train_seconds = started.elapsed().as_secs_f64();

    // Post-training quantization of the same float model, for comparison: no QAT epochs, only
    // observers calibrated on a few training batches, with each observer; the comparison takes
    // the one most accurate on the last 1,000 training images (never on the test set).
    let ptq_started = Instant::now();
    let ptq = best_ptq(&spec, &float_for_ptq, &train_set, args.ptq_batches, args.batch_size, &device)?;
    let (ptq_int8, ptq_observer, calibration_samples) = (&ptq.model, ptq.observer, ptq.calibration_samples);
    let ptq_int8_accuracy = accuracy(&int8_logits(ptq_int8, &test_set)?.argmax(), &test_set);
    println!(
        "PTQ: calibrated on {calibration_samples} training images ({} batches) with each observer ({}) in {:.1} s; the best on 1,000 training images: {}",
        calibration_samples.div_ceil(args.batch_size.max(1)),
        ptq.scores_text(),
        ptq_started.elapsed().as_secs_f64(),
        ptq_observer.name()
    );

    // Three computations of the trained model, compared: the float fake-quant forward (what
    // PyTorch's QAT eval computes), the integer-exact QAT eval (the deployment arithmetic from
    // the QAT modules, without convert), and the converted int8 engine.
    let int8 = convert(&qat)?;
    let fake_quant_logits = logits(&qat.with_eval_arithmetic(EvalArithmetic::Float), &test_set, 500, &device)?;
    let integer_logits = logits(&qat.with_eval_arithmetic(EvalArithmetic::Deployment), &test_set, 500, &device)?;
    let int8_logits = int8_logits(&int8, &test_set)?;
    let step = int8.output_qparams().map_or(1.0, |q| q.scale);
    let int8_vs_integer = agreement(&int8_logits, &integer_logits, step)?;
    let int8_vs_fake_quant = agreement(&int8_logits, &fake_quant_logits, step)?;
    let accuracy_of = |l: &Logits| accuracy(&l.argmax(), &test_set);
    let (fake_quant_accuracy, integer_accuracy, int8_accuracy) =
        (accuracy_of(&fake_quant_logits), accuracy_of(&integer_logits), accuracy_of(&int8_logits));

    record.save_model(&args.out.join("qat.safetensors"), &qat.state_dict(), Stage::Qat)?;
    let int8_path = args.out.join("int8.safetensors");
    // The int8 files say what they are for, as the float and QAT files do: the run (model,
    // input shape, normalization, qconfig) and the training flags with the data.
    let int8_metadata = provenance_of(&metadata);
    int8.save_with_metadata(&int8_path, &int8_metadata)?;
    burn_qat::export::export_onnx(&int8, [1, input.channels, input.height, input.width], &args.out.join("model.onnx"))?;
    let int8_model_bytes = file_size(&int8_path)?;
    let ptq_path = args.out.join("ptq-int8.safetensors");
    ptq_int8.save_with_metadata(&ptq_path, &int8_metadata)?;
    let ptq_model_bytes = file_size(&ptq_path)?;
    let metrics = json!({
        "float_accuracy": float_accuracy,
        "qat_fake_quant_accuracy": fake_quant_accuracy,
        "qat_integer_accuracy": integer_accuracy,
        "int8_accuracy": int8_accuracy,
        "int8_agreement": {
            "with_qat_integer": agreement_json(&int8_vs_integer),
            "with_qat_fake_quant": agreement_json(&int8_vs_fake_quant),
        },
        "ptq_int8_accuracy": ptq_int8_accuracy,
        "ptq_calibration_samples": calibration_samples,
        "ptq_observer": ptq_observer.name(),
        "ptq_observer_selection_accuracy": ptq.scores.iter().map(|(n, a)| (n.to_string(), json!(a))).collect::<serde_json::Map<_, _>>(),
        "float_model_bytes": float_model_bytes,
        "int8_model_bytes": int8_model_bytes,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "model": spec.model.name(),
        "data": source.to_string(),
        "qconfig": choice.description,
        "weight_bits": choice.weight_bits,
        "act_bits": choice.act_bits,
        "weight_granularity": if choice.per_channel { "per-channel" } else { "per-tensor" },
        "train_seconds": train_seconds,
        "resumed": resumed.is_some(),
        "threads": rayon::current_num_threads(),
        "device": args.device.name(),
        "devices": args.devices,
        "distill_temperature": args.distill.then_some(args.distill_temperature),
    });
    let metrics_path = args.out.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics).expect("json")).map_err(|e| io_error(&metrics_path, e))?;
    // The integer models hold int8 tensors; below 8 bits, name the ranges they use.
    let quantized = if (choice.weight_bits, choice.act_bits) == (8, 8) {
        "int8".to_string()
    } else {
        format!("w{}/a{}", choice.weight_bits, choice.act_bits)
    };
    let curves = Curves {
        title: format!("{} on {}: float training, then QAT \u{2014} qconfig {}", spec.model.name(), source.title(), choice.description),
        float: &float_reports,
        qat: &qat_reports,
        int8_accuracy: Some(int8_accuracy),
        ptq_int8_accuracy: Some(ptq_int8_accuracy),
        quantized: quantized.clone(),
    };
    plot_curves(args.out.join("curves.png"), &curves)?;

    println!();
    let rows = [
        ("float".to_string(), float_accuracy, Some(float_model_bytes)),
        (format!("PTQ {quantized} (no QAT)"), ptq_int8_accuracy, Some(ptq_model_bytes)),
        ("QAT, float fake quant".to_string(), fake_quant_accuracy, None),
        ("QAT, integer-exact eval".to_string(), integer_accuracy, None),
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
    for (what, a) in [("the integer-exact QAT eval", &int8_vs_integer), ("the float fake-quant forward", &int8_vs_fake_quant)] {
        println!(
            "{quantized} vs {what}: argmax {:.2}% equal; logits {:.2}% equal, {:.2}% within one output step",
            100.0 * a.argmax,
            100.0 * a.logits_equal,
            100.0 * a.logits_within_one_step
        );
    }
    println!("training took {train_seconds:.1} s");
    println!("wrote {} (metrics.json, curves.png, models) in {:.1} s", args.out.display(), run_started.elapsed().as_secs_f64());
    Ok(())
}

fn agreement_json(a: &Agreement) -> serde_json::Value {
    json!({
        "argmax": a.argmax,
        "logits_equal": a.logits_equal,
        "logits_within_one_step": a.logits_within_one_step,
        "max_steps": a.max_steps,
    })
}

fn file_size(path: &Path) -> burn_qat::Result<u64> {
    Ok(std::fs::metadata(path).map_err(|e| io_error(path, e))?.len())
}
