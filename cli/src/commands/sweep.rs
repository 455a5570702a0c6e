//! `train --sweep-bits 8,4,3,2`: one float model, then at each bit width (weights and
//! activations alike) PTQ, QAT with fixed quantizers and QAT with learned ones, converted and
//! evaluated in int8. Writes `sweep.json` and `sweep.md` (a table) to `--out`.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::data::Dataset;
use burn_qat::models::InputShape;
use burn_qat::qconfig::Quantizer;
use burn_qat::train::{Distillation, EpochReport, OnEpoch, TrainRun, accuracy, int8_logits};
use burn_qat::workflow::{QatModel, convert};
use burn_qat_cli::report::{SweepPlot, plot_sweep};
use serde_json::json;

use super::args::TrainArgs;
use super::ptq::best_ptq;
use super::{io_error, prepare_output_folder, set_threads};
use burn_qat::run::{QConfigFlags, RunSpec};

/// One bit width's results (int8 test accuracies).
struct Row {
    bits: u32,
    ptq: f64,
    fixed: f64,
    learned: f64,
}

pub fn sweep(args: &TrainArgs, bits: &[u32]) -> burn_qat::Result<()> {
    let started = Instant::now();
    set_threads(args.threads)?;
    if bits.is_empty() {
        return Err(QatError::invalid("--sweep-bits", "--sweep-bits needs at least one bit width"));
    }
    let learned = match args.quantizer {
        Quantizer::Fixed => Quantizer::Lsq,
        other => other,
    };
    let devices: Vec<Device> = args.device.devices(args.devices)?.into_iter().map(|d| d.autodiff()).collect();
    let device = devices[0].clone();
    let source = args.data.clone().unwrap_or_default();
    let (train, test) = source.load()?;
    println!("data: {} training and {} test images from {source}", train.len(), test.len());
    let input = InputShape { channels: train.channels, height: train.rows, width: train.cols, classes: train.classes };
    let spec_with = |bits: u32, quantizer: Quantizer| RunSpec {
        model: args.model,
        input,
        qconfig: QConfigFlags {
            weight_bits: Some(bits),
            act_bits: Some(bits),
            quantizer,
            // The fixed column is fixed throughout; the learned one takes --weight-quantizer.
            weight_quantizer: if quantizer == Quantizer::Fixed { None } else { args.weight_quantizer },
            ..args.qconfig_flags()
        },
    };
    prepare_output_folder(&args.out)?;

    device.seed(args.seed);
    let float_options = args.float_options();
    let float = spec_with(8, Quantizer::Fixed).float_model(&device)?;
    let report =
        |phase: String| move |r: &EpochReport| println!("{phase} epoch {}: test accuracy {:.2}%", r.epoch + 1, 100.0 * r.test_accuracy);
    let float_run = TrainRun::new(&train, &test, &float_options, &device).on_devices(&devices);
    let (float, float_reports) = float_run.fit(float, &mut OnEpoch(report("float".into())))?;
    let float_accuracy = float_reports.last().map_or(0.0, |r| r.test_accuracy);
    let distillation = match args.distill {
        true => Some(Distillation::from_teacher(&float, &train, args.distill_temperature, &device)?),
        false => None,
    };
    let qat_options = args.qat_options(distillation);

    let mut rows = Vec::new();
    for &b in bits {
        let qat = |quantizer: Quantizer| -> burn_qat::Result<f64> {
            let model = spec_with(b, quantizer).prepare(float.clone())?;
            let phase = format!("w{b}/a{b} QAT {}", quantizer.name());
            let qat_run = TrainRun::new(&train, &test, &qat_options, &device).on_devices(&devices);
            let (model, _) = qat_run.fit(model, &mut OnEpoch(report(phase)))?;
            int8_accuracy(&model, &test)
        };
        let ptq = best_ptq(&spec_with(b, Quantizer::Fixed), &float.valid(), &train, args.ptq_batches, args.batch_size, &device)?;
        let ptq = accuracy(&int8_logits(&ptq.model, &test)?.argmax(), &test);
        let row = Row { bits: b, ptq, fixed: qat(Quantizer::Fixed)?, learned: qat(learned)? };
        println!(
            "w{b}/a{b}: PTQ {:.2}%, QAT fixed {:.2}%, QAT {} {:.2}%",
            100.0 * row.ptq,
            100.0 * row.fixed,
            learned.name(),
            100.0 * row.learned
        );
        rows.push(row);
    }
    write_results(args, &rows, float_accuracy, learned, &train, started)
}

fn int8_accuracy(model: &QatModel, test: &Dataset) -> burn_qat::Result<f64> {
    let int8 = convert(model)?;
    Ok(accuracy(&int8_logits(&int8, test)?.argmax(), test))
}

fn write_results(
    args: &TrainArgs,
    rows: &[Row],
    float: f64,
    learned: Quantizer,
    train: &Dataset,
    started: Instant,
) -> burn_qat::Result<()> {
    let pct = |v: f64| format!("{:.2}%", 100.0 * v);
    let mut table = format!("| bits (w/a) | float | PTQ (best observer) | QAT fixed | QAT {} |\n|---|---|---|---|---|\n", learned.name());
    for r in rows {
        table += &format!("| {0}/{0} | {1} | {2} | {3} | {4} |\n", r.bits, pct(float), pct(r.ptq), pct(r.fixed), pct(r.learned));
    }
    let flags = format!(
        "{} training images; {} float and {} QAT epochs, batch {}, lr {}{}",
        train.len(),
        args.epochs,
        args.qat_epochs,
        args.batch_size,
        args.lr,
        if args.distill { format!(", distilled at T = {}", args.distill_temperature) } else { String::new() }
    );
    println!("\n{table}\n{flags}; {:.1} s", started.elapsed().as_secs_f64());
    let md = args.out.join("sweep.md");
    std::fs::write(&md, format!("{table}\n{flags}\n")).map_err(|e| io_error(&md, e))?;
    let json = json!({
        "float_accuracy": float,
        "learned_quantizer": learned.name(),
        "distill_temperature": args.distill.then_some(args.distill_temperature),
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "rows": rows.iter().map(|r| json!({"bits": r.bits, "ptq": r.ptq, "qat_fixed": r.fixed, "qat_learned": r.learned})).collect::<Vec<_>>(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    let path = args.out.join("sweep.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).map_err(|e| io_error(&path, e))?;
    let plot = SweepPlot {
        title: format!("{}: int8 test accuracy by bit width", args.model.flag()),
        bits: rows.iter().map(|r| r.bits).collect(),
        float,
        ptq: rows.iter().map(|r| r.ptq).collect(),
        qat_fixed: rows.iter().map(|r| r.fixed).collect(),
        qat_learned: (learned.name().to_string(), rows.iter().map(|r| r.learned).collect()),
    };
    plot_sweep(args.out.join("sweep.png"), &plot)
}
