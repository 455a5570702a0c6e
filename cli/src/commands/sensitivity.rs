//! `inspect --sensitivity N`: which layers can go to N bits. For each layer with weights, the
//! float model is quantized after training (PTQ, min/max observers) with that layer alone at N
//! bits and every other at 8; the table ranks the layers by the int8 test accuracy lost against
//! all of them at 8, so a user can choose `--layer-bits`.

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::data::Dataset;
use burn_qat::train::{accuracy, calibrate, int8_logits};
use burn_qat::workflow::{FloatModel, convert};

use super::args::InspectArgs;
use burn_qat::run::{QConfigFlags, RunSpec};
use burn_qat::run::{SavedModel, check_data_fits, trained_data};

/// Training batches of 64 the PTQ observers see.
const CALIBRATION_BATCHES: usize = 20;

pub fn sensitivity(args: &InspectArgs, bits: u32) -> burn_qat::Result<()> {
    let device = Device::flex();
    // The float model: the file itself, or the float.safetensors its run wrote beside it.
    let float_path = match SavedModel::load(&args.checkpoint, &device)? {
        SavedModel::Float(..) => args.checkpoint.clone(),
        _ => args.checkpoint.with_file_name("float.safetensors"),
    };
    let SavedModel::Float(float, spec) = SavedModel::load(&float_path, &device)? else {
        return Err(QatError::File {
            path: float_path.display().to_string(),
            reason: "--sensitivity needs the float model: pass float.safetensors, or a file of a run that wrote one beside it".into(),
        });
    };
    let source = args.data.clone().or_else(|| trained_data(&float_path)).unwrap_or_default();
    let (train, test) = source.load()?;
    check_data_fits(&spec, &test, &float_path, &source)?;
    let test = test.slice(0..args.samples);
    if test.is_empty() {
        return Err(QatError::invalid("--samples", "--sensitivity needs at least one test image (--samples 1 or more)"));
    }
    // Every layer at 8 bits (a custom qconfig, full ranges), then one layer at `bits`.
    let at = |layer_bits: Option<String>| RunSpec {
        qconfig: QConfigFlags {
            weight_bits: Some(8),
            act_bits: Some(8),
            per_channel: !spec.qconfig.per_tensor,
            layer_bits,
            keep_first_last_8bit: false,
            quantizer: burn_qat::qconfig::Quantizer::Fixed,
            weight_quantizer: None,
            observer: burn_qat::run::ObserverChoice::MIN_MAX,
            ..spec.qconfig.clone()
        },
        ..spec.clone()
    };
    let baseline = ptq_accuracy(&at(None), &float, &train, &test, &device)?;
    let mut rows = Vec::new();
    for layer in float.clone().fuse()?.weight_layer_paths() {
        let acc = ptq_accuracy(&at(Some(format!("{layer}={bits}"))), &float, &train, &test, &device)?;
        rows.push((layer, acc));
    }
    rows.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    println!(
        "{}: each layer alone at {bits} bits, the rest at 8 (PTQ, min/max, {} calibration batches); int8 accuracy on {} test images from {source}",
        spec.model.name(),
        CALIBRATION_BATCHES,
        test.len()
    );
    println!("all layers at 8 bits: {:.2}%", 100.0 * baseline);
    println!("{:<24} {:>9} {:>8}", "layer", "accuracy", "lost");
    for (layer, acc) in &rows {
        println!("{layer:<24} {:>8.2}% {:>8.2}", 100.0 * acc, 100.0 * (baseline - acc));
    }
    println!("most sensitive first: keep those at 8 bits (--layer-bits NAME=8,*={bits}).");
    Ok(())
}

fn ptq_accuracy(spec: &RunSpec, float: &FloatModel, train: &Dataset, test: &Dataset, device: &Device) -> burn_qat::Result<f64> {
    let mut model = spec.prepare(float.clone())?;
    calibrate(&mut model, train, CALIBRATION_BATCHES, 64, device)?;
    let int8 = convert(&model)?;
    Ok(accuracy(&int8_logits(&int8, test)?.argmax(), test))
}
