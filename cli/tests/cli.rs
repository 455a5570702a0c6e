//! The `burn-qat` command end to end: a short `train` run on the bundled data writes every
//! artifact, low-bit flags reach metrics.json, a wrong data folder fails with a useful message,
//! and `eval` reads the int8 model back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn burn_qat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burn-qat")).args(args).output().expect("the burn-qat binary runs")
}

/// A fresh folder under the target directory, removed first if an earlier run left it.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn read_metrics(out: &Path) -> serde_json::Value {
    let json = std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json written");
    serde_json::from_str(&json).expect("metrics.json is JSON")
}

fn accuracy(metrics: &serde_json::Value, key: &str) -> f64 {
    let a = metrics[key].as_f64().unwrap_or_else(|| panic!("{key} is a number in {metrics}"));
    assert!((0.0..=1.0).contains(&a), "{key} = {a} is not a fraction");
    a
}

/// One float and one QAT epoch, then every artifact, every metric, and `eval` on the int8 model.
#[test]
fn train_writes_every_artifact_and_eval_reads_the_int8_model() {
    let out = out_dir("default");
    let output = burn_qat(&["train", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()]);
    check_success(&output, "train");
    let stdout = text(&output.stdout);
    // Not a terminal: one plain line per epoch, no progress bar drawing.
    assert!(!stdout.contains('\r') && !stdout.contains('\u{1b}'), "progress bars drawn into a pipe:\n{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.trim_start().starts_with("float ")).count(),
        2,
        "one float row in the epoch table and one in the final table:\n{stdout}"
    );
    assert!(stdout.contains("PTQ int8"), "the final table has a PTQ row:\n{stdout}");

    let metrics = read_metrics(&out);
    for key in [
        "float_accuracy",
        "qat_fake_quant_accuracy",
        "qat_integer_accuracy",
        "int8_accuracy",
        "int8_agreement",
        "float_model_bytes",
        "int8_model_bytes",
        "epochs",
        "qat_epochs",
        "qconfig",
        "weight_bits",
        "act_bits",
        "train_seconds",
        "ptq_int8_accuracy",
    ] {
        assert!(metrics.get(key).is_some_and(|v| !v.is_null()), "metrics.json lacks {key}: {metrics}");
    }
    assert_eq!((metrics["epochs"].as_u64(), metrics["qat_epochs"].as_u64()), (Some(1), Some(1)));
    assert_eq!((metrics["weight_bits"].as_u64(), metrics["act_bits"].as_u64()), (Some(8), Some(8)));
    assert_eq!(metrics["qconfig"], "fbgemm (consistent)");
    // Sizes are the files' sizes, float and int8 alike.
    for (key, file) in [("float_model_bytes", "float.safetensors"), ("int8_model_bytes", "int8.safetensors")] {
        assert_eq!(metrics[key].as_u64(), Some(std::fs::metadata(out.join(file)).unwrap().len()), "{key}");
    }
    // One epoch of LeNet already classifies MNIST well (measured: float 96.55%, int8 96.85%, PTQ
    // 96.55%); int8 equals the integer-exact QAT eval bit for bit, and the float fake-quant
    // forward on nearly every logit.
    assert!(accuracy(&metrics, "float_accuracy") > 0.95, "{metrics}");
    assert!(accuracy(&metrics, "int8_accuracy") > 0.95, "{metrics}");
    assert!(accuracy(&metrics, "ptq_int8_accuracy") > 0.95, "{metrics}");
    assert_eq!(metrics["qat_integer_accuracy"], metrics["int8_accuracy"], "{metrics}");
    let with_integer = &metrics["int8_agreement"]["with_qat_integer"];
    for key in ["argmax", "logits_equal", "logits_within_one_step"] {
        assert_eq!(with_integer[key].as_f64(), Some(1.0), "int8 vs the integer-exact QAT eval, {key}: {metrics}");
    }
    assert_eq!(with_integer["max_steps"].as_f64(), Some(0.0), "{metrics}");
    let with_fake_quant = &metrics["int8_agreement"]["with_qat_fake_quant"];
    assert!(with_fake_quant["argmax"].as_f64().is_some_and(|a| a >= 0.99), "{metrics}");
    assert!(with_fake_quant["logits_within_one_step"].as_f64().is_some_and(|a| a >= 0.99), "{metrics}");
    assert!(accuracy(&metrics, "qat_fake_quant_accuracy") > 0.95, "{metrics}");

    for file in ["qat.safetensors", "int8.safetensors", "checkpoint.safetensors", "model.onnx"] {
        let bytes = std::fs::read(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(bytes.len() > 1000, "{file} is only {} bytes", bytes.len());
    }
    // The last checkpoint is the QAT model's, after its only epoch.
    let (state, metadata) = burn_qat::state_dict::load_safetensors(out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(metadata.get("stage").map(String::as_str), Some("qat"), "{metadata:?}");
    assert_eq!(metadata.get("epoch").map(String::as_str), Some("1"), "{metadata:?}");
    assert!(state.keys().any(|k| k.contains("weight_fake_quant")), "a QAT state dict: {:?}", state.keys().collect::<Vec<_>>());
    let png = std::fs::read(out.join("curves.png")).expect("curves.png written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "curves.png is not a PNG");
    assert!(png.len() > 10_000, "curves.png is only {} bytes", png.len());

    let int8 = out.join("int8.safetensors");
    let csv = out.join("predictions.csv");
    let output = burn_qat(&["eval", "--checkpoint", int8.to_str().unwrap(), "--predictions", csv.to_str().unwrap()]);
    check_success(&output, "eval");
    let stdout = text(&output.stdout);
    let expected = format!("{:.2}%", 100.0 * accuracy(&metrics, "int8_accuracy"));
    assert!(stdout.contains("int8 test accuracy") && stdout.contains(&expected), "eval should print {expected}:\n{stdout}");
    assert!(stdout.contains("per class: 0 ") && stdout.contains(", 9 "), "{stdout}");
    // The predictions file: one row per test image, its accuracy the printed one, and each
    // predicted class the argmax of its logits.
    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("index,label,predicted,logit_0,logit_1,logit_2,logit_3,logit_4,logit_5,logit_6,logit_7,logit_8,logit_9"));
    let rows: Vec<Vec<f64>> = rows.map(|r| r.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 2000);
    let right = rows.iter().filter(|r| r[1] == r[2]).count() as f64 / 2000.0;
    assert_eq!(right, accuracy(&metrics, "int8_accuracy"));
    for r in &rows {
        let best = r[3..].iter().enumerate().fold(0, |b, (i, &v)| if v > r[3 + b] { i } else { b });
        assert_eq!(best as f64, r[2], "row {r:?}");
    }

    // `export` on the saved int8 model writes the same ONNX file the training run wrote.
    let exported = out.join("exported.onnx");
    let output = burn_qat(&["export", "--checkpoint", int8.to_str().unwrap(), "--out", exported.to_str().unwrap()]);
    check_success(&output, "export");
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(out.join("model.onnx")).unwrap(),
        "export of int8.safetensors == model.onnx"
    );
    check_saved_model_commands(&out, &metrics);
}

/// `eval`, `convert`, `inspect` and `export` on the QAT and float files of a finished run.
fn check_saved_model_commands(out: &Path, metrics: &serde_json::Value) {
    let path = |name: &str| out.join(name).to_str().unwrap().to_string();
    let output = burn_qat(&["eval", "--checkpoint", &path("qat.safetensors")]);
    check_success(&output, "eval qat.safetensors");
    let expected = format!("integer-exact eval) test accuracy {:.2}%", 100.0 * accuracy(metrics, "qat_integer_accuracy"));
    assert!(text(&output.stdout).contains(&expected), "eval of the QAT model should print {expected}:\n{}", text(&output.stdout));
    let output = burn_qat(&["eval", "--checkpoint", &path("float.safetensors")]);
    check_success(&output, "eval float.safetensors");
    let expected = format!("float test accuracy {:.2}%", 100.0 * accuracy(metrics, "float_accuracy"));
    assert!(text(&output.stdout).contains(&expected), "{expected}:\n{}", text(&output.stdout));

    // convert reproduces the run's int8 model, tensor for tensor.
    let converted = path("converted.safetensors");
    check_success(&burn_qat(&["convert", "--checkpoint", &path("qat.safetensors"), "--out", &converted]), "convert");
    let load = |p: &str| burn_qat::state_dict::load_safetensors(p).unwrap();
    let ((a, ma), (b, mb)) = (load(&converted), load(&path("int8.safetensors")));
    assert!(a == b && ma == mb, "convert of qat.safetensors differs from the run's int8.safetensors");

    // export of the QAT model: convert, then the same QDQ graph.
    let exported = path("from-qat.onnx");
    check_success(&burn_qat(&["export", "--checkpoint", &path("qat.safetensors"), "--out", &exported]), "export qat");
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(out.join("model.onnx")).unwrap(),
        "export of qat.safetensors == model.onnx"
    );

    let output = burn_qat(&["inspect", "--checkpoint", &path("qat.safetensors"), "--samples", "64"]);
    check_success(&output, "inspect");
    let stdout = text(&output.stdout);
    for layer in ["quant ", "conv1 ", "conv2 ", "fc1 ", "fc2 "] {
        let row = stdout.lines().find(|l| l.starts_with(layer)).unwrap_or_else(|| panic!("no row for {layer}:\n{stdout}"));
        assert!(row.contains("dB"), "{layer} has no SNR:\n{row}");
    }

    // convert and export never write over the file they read, nor over an existing file
    // unless told to; the refusal comes first and leaves the file as it was.
    let qat_bytes = std::fs::read(path("qat.safetensors")).unwrap();
    for command in ["convert", "export"] {
        let output = burn_qat(&[command, "--checkpoint", &path("qat.safetensors"), "--out", &path("qat.safetensors")]);
        assert!(
            !output.status.success() && text(&output.stderr).contains("is the --checkpoint this command reads"),
            "{command}: {}",
            text(&output.stderr)
        );
        let output = burn_qat(&[command, "--checkpoint", &path("qat.safetensors"), "--out", &converted]);
        assert!(
            !output.status.success() && text(&output.stderr).contains("exists; pass --overwrite"),
            "{command}: {}",
            text(&output.stderr)
        );
    }
    assert!(std::fs::read(path("qat.safetensors")).unwrap() == qat_bytes, "qat.safetensors was changed");
    check_success(
        &burn_qat(&["convert", "--checkpoint", &path("qat.safetensors"), "--out", &converted, "--overwrite"]),
        "convert --overwrite",
    );

    // The wrong kind of file says what it holds and what to pass instead.
    let output = burn_qat(&["convert", "--checkpoint", &path("float.safetensors"), "--out", &path("x.safetensors")]);
    assert!(!output.status.success() && text(&output.stderr).contains("holds a float model"), "{}", text(&output.stderr));
    let output = burn_qat(&["inspect", "--checkpoint", &path("int8.safetensors")]);
    assert!(!output.status.success() && text(&output.stderr).contains("holds an int8 model"), "{}", text(&output.stderr));
    for (file, holds) in [("curves.png", "a PNG image"), ("model.onnx", "an ONNX model"), ("metrics.json", "JSON text")] {
        let output = burn_qat(&["eval", "--checkpoint", &path(file)]);
        let stderr = text(&output.stderr);
        assert!(
            output.status.code() == Some(1) && stderr.contains(file) && stderr.contains(holds) && stderr.contains("pass a model file"),
            "{stderr}"
        );
    }
}

/// 4-bit weights and activations: a custom qconfig, recorded in metrics.json.
#[test]
fn train_with_four_bit_weights_and_activations() {
    let out = out_dir("w4a4");
    let output =
        burn_qat(&["train", "--epochs", "1", "--qat-epochs", "1", "--weight-bits", "4", "--act-bits", "4", "--out", out.to_str().unwrap()]);
    check_success(&output, "train --weight-bits 4 --act-bits 4");
    let metrics = read_metrics(&out);
    assert_eq!((metrics["weight_bits"].as_u64(), metrics["act_bits"].as_u64()), (Some(4), Some(4)), "{metrics}");
    assert!(metrics["qconfig"].as_str().is_some_and(|q| q.contains("w4") && q.contains("a4")), "{metrics}");
    // Measured: 95.6% after one float and one QAT epoch at 4 bits.
    assert!(accuracy(&metrics, "int8_accuracy") > 0.9, "{metrics}");
    accuracy(&metrics, "ptq_int8_accuracy");
    // PTQ tries every observer and keeps the best on training images.
    let tried = metrics["ptq_observer_selection_accuracy"].as_object().unwrap();
    assert_eq!(tried.keys().map(String::as_str).collect::<Vec<_>>(), ["histogram", "minmax", "mse", "percentile"], "{metrics}");
    assert!(tried.contains_key(metrics["ptq_observer"].as_str().unwrap()), "{metrics}");
    assert!(out.join("curves.png").is_file() && out.join("int8.safetensors").is_file());
}

/// Learned scales (LSQ) at 4 bits: recorded, converted with int8 == the QAT eval on every
/// test digit, and the saved QAT model evaluates again from its file.
#[test]
fn train_with_a_learned_quantizer() {
    let out = out_dir("lsq");
    let args =
        ["train", "--epochs", "1", "--qat-epochs", "1", "--weight-bits", "4", "--act-bits", "4", "--quantizer", "lsq", "--qat-lr", "0.01"];
    let output = burn_qat(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    check_success(&output, "train --quantizer lsq");
    let (_, metadata) = burn_qat::state_dict::load_safetensors(out.join("checkpoint.safetensors")).unwrap();
    let flags: serde_json::Value = serde_json::from_str(&metadata["training"]).unwrap();
    assert_eq!(flags["qat_lr"].as_f64(), Some(0.01), "{flags}");
    let metrics = read_metrics(&out);
    assert!(metrics["qconfig"].as_str().is_some_and(|q| q.contains("lsq")), "{metrics}");
    let agreement = &metrics["int8_agreement"]["with_qat_integer"];
    assert_eq!((agreement["argmax"].as_f64(), agreement["logits_equal"].as_f64()), (Some(1.0), Some(1.0)), "{metrics}");
    assert!(accuracy(&metrics, "int8_accuracy") > 0.9, "{metrics}");
    let eval = burn_qat(&["eval", "--checkpoint", out.join("qat.safetensors").to_str().unwrap()]);
    check_success(&eval, "eval of an LSQ-trained qat.safetensors");
    // Its 4-bit weights as INT4 in an opset-21 file, at about half the opset-13 file's size.
    let int8 = out.join("int8.safetensors");
    let m21 = out.join("model21.onnx");
    check_success(
        &burn_qat(&["export", "--checkpoint", int8.to_str().unwrap(), "--out", m21.to_str().unwrap(), "--opset", "21"]),
        "export --opset 21",
    );
    let (size13, size21) = (std::fs::metadata(out.join("model.onnx")).unwrap().len(), std::fs::metadata(&m21).unwrap().len());
    assert!(size21 * 10 < size13 * 6, "opset 21 {size21} B vs opset 13 {size13} B");
    // The scales learned (the first batch estimated them, learning took over after it).
    let (state, _) = burn_qat::state_dict::load_safetensors(out.join("qat.safetensors")).unwrap();
    for fq in ["conv1.weight_fake_quant", "fc2.activation_post_process"] {
        assert_eq!(state[&format!("{fq}.learning_enabled")].to_f64_vec(), [1.0], "{fq}");
        assert_eq!(state[&format!("{fq}.static_enabled")].to_f64_vec(), [0.0], "{fq}");
    }
}

/// PACT activations with LSQ weights, observed by histograms: the choice is recorded, each side
/// learns what it should, and the int8 model equals the integer-exact QAT eval.
#[test]
fn train_with_pact_activations_lsq_weights_and_histogram_observers() {
    let out = out_dir("pact");
    let flags = "--epochs 1 --qat-epochs 1 --weight-bits 4 --act-bits 4 --quantizer pact --weight-quantizer lsq --observer histogram";
    let output = burn_qat(&[vec!["train"], flags.split(' ').collect(), vec!["--out", out.to_str().unwrap()]].concat());
    check_success(&output, "train --quantizer pact --weight-quantizer lsq --observer histogram");
    let metrics = read_metrics(&out);
    let qconfig = metrics["qconfig"].as_str().unwrap_or_default();
    assert!(qconfig.contains("symmetric lsq") && qconfig.contains("affine pact") && qconfig.contains("histogram"), "{qconfig}");
    let agreement = &metrics["int8_agreement"]["with_qat_integer"];
    assert_eq!((agreement["argmax"].as_f64(), agreement["logits_equal"].as_f64()), (Some(1.0), Some(1.0)), "{metrics}");
    let (state, _) = burn_qat::state_dict::load_safetensors(out.join("qat.safetensors")).unwrap();
    for fq in ["conv1.weight_fake_quant", "fc2.activation_post_process"] {
        assert_eq!(state[&format!("{fq}.learning_enabled")].to_f64_vec(), [1.0], "{fq} learns");
    }
    let histogram = &state["fc2.activation_post_process.activation_post_process.histogram"];
    assert_eq!(histogram.shape, vec![2048], "the activation observer is a 2048-bin histogram");
    assert!(!state.contains_key("conv1.weight_fake_quant.activation_post_process.histogram"), "weights keep min/max observers");
}

/// `--distill`: recorded with its temperature; a temperature that is not positive is refused.
#[test]
fn train_with_distillation() {
    let out = out_dir("distill");
    let output = burn_qat(&[
        "train",
        "--epochs",
        "1",
        "--qat-epochs",
        "1",
        "--distill",
        "--distill-temperature",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    check_success(&output, "train --distill");
    let metrics = read_metrics(&out);
    assert_eq!(metrics["distill_temperature"].as_f64(), Some(2.0), "{metrics}");
    assert!(accuracy(&metrics, "int8_accuracy") > 0.9, "{metrics}");
    let output = burn_qat(&["train", "--distill", "--distill-temperature", "0", "--out", out_dir("bad-distill").to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("finite and positive"), "{}", text(&output.stderr));
}

/// `--sweep-bits`: one float model, then PTQ, QAT fixed and QAT learned at each width.
#[test]
fn a_bit_width_sweep_writes_its_table() {
    let out = out_dir("sweep");
    let output = burn_qat(&["train", "--sweep-bits", "8,2", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()]);
    check_success(&output, "train --sweep-bits 8,2");
    let sweep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let rows = sweep["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["bits"].as_u64().unwrap()).collect::<Vec<_>>(), [8, 2], "{sweep}");
    for row in rows {
        for key in ["ptq", "qat_fixed", "qat_learned"] {
            assert!(row[key].as_f64().is_some_and(|a| a > 0.5 && a <= 1.0), "{key} in {row}");
        }
    }
    // Measured after one epoch each: at 2 bits PTQ 70.35%, QAT 88.15% (fixed), 90.45% (lsq).
    assert!(rows[1]["qat_fixed"].as_f64() > rows[1]["ptq"].as_f64(), "{sweep}");
    let table = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(table.contains("| 2/2 |") && table.contains("QAT lsq"), "{table}");
    // sweep.png: a PNG of 900 x 560 pixels (the IHDR chunk's width and height).
    let png = std::fs::read(out.join("sweep.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!((u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap())), (900, 560));
    let output = burn_qat(&["train", "--sweep-bits", "4", "--weight-bits", "4", "--out", out_dir("bad-sweep").to_str().unwrap()]);
    assert!(!output.status.success(), "--sweep-bits with --weight-bits accepted");
}

/// Mixed precision: 8-bit first and last layers around 2-bit ones, and per-layer bits; the int8
/// model equals the integer-exact QAT eval on every digit. Unknown layer names fail before any
/// training, naming the model's layers.
#[test]
fn mixed_precision_keeps_int8_equal_to_the_qat_eval() {
    for (name, flags) in [
        ("keep-first-last", &["--weight-bits", "2", "--act-bits", "2", "--keep-first-last-8bit"][..]),
        ("layer-bits", &["--layer-bits", "conv1=8,fc2=6/8,*=3"][..]),
    ] {
        let out = out_dir(name);
        let args = [&["train", "--epochs", "1", "--qat-epochs", "1"][..], flags, &["--out", out.to_str().unwrap()]].concat();
        let output = burn_qat(&args);
        check_success(&output, name);
        let metrics = read_metrics(&out);
        let agreement = &metrics["int8_agreement"]["with_qat_integer"];
        assert_eq!((agreement["argmax"].as_f64(), agreement["logits_equal"].as_f64()), (Some(1.0), Some(1.0)), "{metrics}");
        let qconfig = metrics["qconfig"].as_str().unwrap();
        assert!(qconfig.contains("first and last layers 8-bit") || qconfig.contains("layers conv1=8,fc2=6/8"), "{qconfig}");
    }
    let started = std::time::Instant::now();
    let output = burn_qat(&["train", "--layer-bits", "conv9=4", "--out", out_dir("bad-layer").to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("conv9") && stderr.contains("conv1, conv2, fc1, fc2"), "{stderr}");
    assert!(started.elapsed().as_secs() < 20, "refused only after training");
    for bad in ["conv1", "conv1=9", "conv1=4,conv1=8", "conv1=4/9", "conv1=4/"] {
        let output = burn_qat(&["train", "--layer-bits", bad, "--out", out_dir("bad-layer").to_str().unwrap()]);
        assert!(text(&output.stderr).contains("LAYER=BITS"), "{bad}: {}", text(&output.stderr));
    }
}

/// `inspect --sensitivity N` ranks every layer with weights by the accuracy lost at N bits.
#[test]
fn inspect_ranks_the_layers_by_sensitivity() {
    let out = out_dir("sensitivity");
    check_success(&burn_qat(&["train", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()]), "train");
    let output =
        burn_qat(&["inspect", "--checkpoint", out.join("qat.safetensors").to_str().unwrap(), "--sensitivity", "2", "--samples", "500"]);
    check_success(&output, "inspect --sensitivity 2");
    let stdout = text(&output.stdout);
    let rows: Vec<(String, f64)> = stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[1].ends_with('%')).then(|| (w[0].to_string(), w[1].trim_end_matches('%').parse().unwrap()))
        })
        .collect();
    let mut layers: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
    layers.sort();
    assert_eq!(layers, ["conv1", "conv2", "fc1", "fc2"], "{stdout}");
    assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1), "most sensitive first:\n{stdout}");
    assert!(stdout.contains("all layers at 8 bits"), "{stdout}");
    let output = burn_qat(&["inspect", "--checkpoint", out.join("qat.safetensors").to_str().unwrap(), "--sensitivity", "9"]);
    assert!(!output.status.success(), "--sensitivity 9 accepted");
}

#[test]
fn unknown_quantizers_and_learned_ones_with_pytorch_presets_are_refused() {
    let output = burn_qat(&["train", "--observer", "kl", "--out", out_dir("bad-observer").to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("expected minmax, histogram, percentile or mse"), "{}", text(&output.stderr));
    let output = burn_qat(&["train", "--quantizer", "dorefa", "--out", out_dir("bad-quantizer").to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("expected fixed, lsq, lsq+ or pact"), "{}", text(&output.stderr));
    let output = burn_qat(&["train", "--weight-quantizer", "pact", "--out", out_dir("bad-quantizer").to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("PACT learns an activation clip level"), "{}", text(&output.stderr));
    let output = burn_qat(&["train", "--quantizer", "lsq", "--qconfig-version", "1", "--out", out_dir("bad-quantizer").to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("cannot be used with"), "{}", text(&output.stderr));
}

#[test]
fn bit_widths_outside_two_to_eight_are_refused() {
    for bits in ["1", "9"] {
        let output = burn_qat(&["train", "--weight-bits", bits, "--out", out_dir("bad-bits").to_str().unwrap()]);
        assert!(!output.status.success(), "--weight-bits {bits} accepted");
        assert!(text(&output.stderr).contains("2..=8") || text(&output.stderr).contains("2..9"), "{}", text(&output.stderr));
    }
}

#[test]
fn a_missing_data_folder_names_the_expected_files() {
    let out = out_dir("no-data");
    let output = burn_qat(&["train", "--data", "/nonexistent", "--out", out.to_str().unwrap()]);
    assert!(!output.status.success(), "train on /nonexistent succeeded");
    let stderr = text(&output.stderr);
    for name in ["/nonexistent", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        assert!(stderr.contains(name), "the error should name {name}:\n{stderr}");
    }
    assert!(!out.join("metrics.json").exists());
}

/// curves.png from made-up histories, including a 2-bit run whose PTQ line falls far below the
/// curves: the plot is drawn with the built-in font and is a PNG (left in the target folder, to
/// look at).
#[test]
fn curves_plot_any_history() {
    use burn_qat::train::EpochReport;
    use burn_qat_cli::report::{Curves, plot_curves};
    let report = |epoch: usize, loss: f64, test_accuracy: f64| EpochReport {
        epoch,
        loss,
        train_accuracy: test_accuracy,
        test_accuracy,
        samples_per_second: 1000.0,
    };
    let float = [report(0, 0.4, 0.947), report(1, 0.1, 0.9735), report(2, 0.038, 0.982), report(3, 0.021, 0.9825)];
    let qat = [report(0, 0.4, 0.917), report(1, 0.35, 0.9315)];
    let cases = [
        ("w8a8", &float[..], &float[..2], Some(0.9835), Some(0.9815)),
        ("w2a2", &float[..2], &qat[..], Some(0.9315), Some(0.7835)),
        ("float-only", &float[..], &[][..], None, None),
        ("empty", &[][..], &[][..], None, None),
    ];
    for (name, float, qat, int8_accuracy, ptq_int8_accuracy) in cases {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("curves-{name}.png"));
        let curves =
            Curves { title: format!("made-up history: {name}"), float, qat, int8_accuracy, ptq_int8_accuracy, quantized: String::new() };
        plot_curves(&path, &curves).unwrap_or_else(|e| panic!("{name}: {e}"));
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
    }
}

/// Two identical runs write the same bytes to every file: `sha256sum` can check a run.
/// metrics.json differs only in the wall-clock `train_seconds`.
#[test]
fn two_identical_runs_write_identical_bytes() {
    let (a, b) = (out_dir("bytes-a"), out_dir("bytes-b"));
    for out in [&a, &b] {
        check_success(&burn_qat(&["train", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()]), "train");
    }
    let mut names: Vec<String> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        if name == "metrics.json" {
            let without_time = |bytes: &[u8]| {
                let mut m: serde_json::Value = serde_json::from_slice(bytes).unwrap();
                m.as_object_mut().unwrap().remove("train_seconds");
                m
            };
            assert_eq!(without_time(&x), without_time(&y), "metrics.json");
        } else {
            assert!(x == y, "{name} differs between two identical runs");
        }
    }
}

/// Flags a run cannot use are refused when given, naming the flag, before any data is read.
#[test]
fn unusable_flags_are_refused_before_training() {
    let out = out_dir("bad-flags");
    for (args, expected) in [
        (vec!["--lr", "NaN"], "--lr"),
        (vec!["--lr=-1"], "--lr"),
        (vec!["--lr", "-1"], "--lr"),
        (vec!["--lr", "1e6"], "--lr"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--qat-epochs", "0"], "--qat-epochs"),
        (vec!["--batch-size", "1"], "--batch-size"),
        (vec!["--qat-epochs", "2", "--freeze-bn-epoch", "2"], "--freeze-bn-epoch 2 is not below --qat-epochs 2"),
        (vec!["--qat-epochs", "3", "--disable-observer-epoch", "7"], "--disable-observer-epoch 7"),
        (vec!["--device", "tpu"], "expected one of cpu, wgpu, cuda, rocm"),
        (vec!["--devices", "0"], "--devices"),
        (vec!["--devices", "2"], "this machine has 1 cpu device"),
        (vec!["--devices", "3", "--batch-size", "2"], "--batch-size 2 is below --devices 3"),
        #[cfg(not(feature = "cuda"))]
        (vec!["--device", "cuda"], "rebuild with `--features cuda`"),
    ] {
        let mut command = vec!["train", "--out", out.to_str().unwrap()];
        command.extend(&args);
        let output = burn_qat(&command);
        let stderr = text(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{args:?}: expected an error naming {expected}:\n{stderr}");
        assert!(!text(&output.stdout).contains("epoch"), "{args:?}: training started:\n{}", text(&output.stdout));
        assert!(!out.exists(), "{args:?}: the refused run created {}", out.display());
    }
}

/// An --out that cannot hold the run's files fails before any training.
#[test]
fn an_unusable_run_folder_fails_before_training() {
    let file = out_dir("out-is-a-file");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"not a folder").unwrap();
    // /proc exists but takes no new files, even for root.
    for (out, expected) in [(file.to_str().unwrap(), "is a file; --out names a folder"), ("/proc", "cannot write files here")] {
        let output = burn_qat(&["train", "--out", out]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success() && stderr.contains(out) && stderr.contains(expected), "{out}: {stderr}");
        assert!(!text(&output.stdout).contains("epoch"), "{out}: training started:\n{}", text(&output.stdout));
    }
}

/// MNIST-format IDX files of `n` images of `rows x cols` in `dir`, train and test alike.
fn write_idx(dir: &Path, n: usize, rows: usize, cols: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let header = |magic: u32, dims: &[usize]| -> Vec<u8> {
        let mut h = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|&d| h.extend((d as u32).to_be_bytes()));
        h
    };
    let images: Vec<u8> = header(0x803, &[n, rows, cols]).into_iter().chain((0..n * rows * cols).map(|i| (i * 37 % 256) as u8)).collect();
    let labels: Vec<u8> = header(0x801, &[n]).into_iter().chain((0..n).map(|i| (i % 10) as u8)).collect();
    for prefix in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), &labels).unwrap();
    }
}

/// CIFAR-10 binary batches (3x32x32) of `n` records each in `dir`.
fn write_cifar(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let batch: Vec<u8> =
        (0..n).flat_map(|i| std::iter::once((i % 10) as u8).chain((0..3072).map(move |p| ((p + i) % 256) as u8))).collect();
    for name in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"] {
        std::fs::write(dir.join(name), &batch).unwrap();
    }
}

/// Every model file of a run, through every command that reads data, with data of another
/// image size and of another channel count: a typed error that names both shapes, never a
/// panic. `export` takes the input the file records.
#[test]
fn data_of_the_wrong_shape_is_refused_by_every_command_on_every_model_file() {
    let out = out_dir("wrong-shape");
    check_success(&burn_qat(&["train", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()]), "train");
    let (small, cifar) = (out.join("digits-8x8"), out.join("cifar"));
    write_idx(&small, 20, 8, 8);
    write_cifar(&cifar, 10);
    let data = [(format!("mnist:{}", small.display()), "1x8x8"), (format!("cifar10:{}", cifar.display()), "3x32x32")];
    let file = |name: &str| out.join(name).to_str().unwrap().to_string();
    for name in ["float.safetensors", "qat.safetensors", "int8.safetensors", "ptq-int8.safetensors", "checkpoint.safetensors"] {
        for (data, shape) in &data {
            let output = burn_qat(&["eval", "--checkpoint", &file(name), "--data", data]);
            let stderr = text(&output.stderr);
            assert!(output.status.code() == Some(1), "eval {name} on {data}: {:?}\n{stderr}", output.status);
            assert!(stderr.contains("1x28x28") && stderr.contains(shape), "eval {name} on {data}:\n{stderr}");
            if matches!(name, "qat.safetensors" | "checkpoint.safetensors") {
                let output = burn_qat(&["inspect", "--checkpoint", &file(name), "--data", data]);
                let stderr = text(&output.stderr);
                assert!(
                    output.status.code() == Some(1) && stderr.contains("1x28x28") && stderr.contains(shape),
                    "inspect {name}:\n{stderr}"
                );
            }
        }
    }
    // The int8 file records its input: export needs no --input, and a wrong one is refused.
    let onnx = file("exported.onnx");
    check_success(&burn_qat(&["export", "--checkpoint", &file("int8.safetensors"), "--out", &onnx]), "export");
    let output = burn_qat(&["export", "--checkpoint", &file("int8.safetensors"), "--out", &onnx, "--overwrite", "--input", "1", "8", "8"]);
    let stderr = text(&output.stderr);
    assert!(
        output.status.code() == Some(1) && stderr.contains("trained on 1x28x28"),
        "export --input 1 8 8: {:?}\n{stderr}",
        output.status
    );
}

/// A new run into a folder that holds an earlier run moves the earlier files aside first: the
/// folder never mixes two runs, and nothing is lost.
#[test]
fn a_new_run_moves_the_earlier_runs_files_aside() {
    let out = out_dir("two-runs");
    std::fs::create_dir_all(&out).unwrap();
    for name in ["metrics.json", "model.onnx", "notes.txt"] {
        std::fs::write(out.join(name), format!("earlier {name}")).unwrap();
    }
    let output = burn_qat(&["train", "--epochs", "1", "--qat-epochs", "1", "--out", out.to_str().unwrap()]);
    check_success(&output, "train");
    assert!(text(&output.stdout).contains("previous-run-1"), "{}", text(&output.stdout));
    let earlier = out.join("previous-run-1");
    for name in ["metrics.json", "model.onnx"] {
        assert_eq!(std::fs::read_to_string(earlier.join(name)).unwrap(), format!("earlier {name}"));
        assert_ne!(std::fs::read(out.join(name)).unwrap(), format!("earlier {name}").into_bytes(), "{name} is the new run's");
    }
    // Files that are not a run's stay where they are.
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "earlier notes.txt");
    assert!(!earlier.join("float.safetensors").exists());
}
