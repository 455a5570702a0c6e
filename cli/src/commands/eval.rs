//! `burn-qat eval`: test accuracy of any saved model.

use burn::tensor::Device;
use burn_qat::data::Dataset;
use burn_qat::train::{Logits, accuracy, int8_logits, logits};
use burn_qat::workflow::EvalArithmetic;

use std::path::Path;

use super::args::EvalArgs;
use super::io_error;
use burn_qat::run::{SavedModel, check_data_fits, trained_data};

pub fn eval(args: EvalArgs) -> burn_qat::Result<()> {
    let device = Device::flex();
    let model = SavedModel::load(&args.checkpoint, &device)?;
    let source = args.data.or_else(|| trained_data(&args.checkpoint)).unwrap_or_default();
    let (_, test) = source.load()?;
    if let Some(spec) = model.spec() {
        check_data_fits(spec, &test, &args.checkpoint, &source)?;
    }
    let (what, logits) = match &model {
        SavedModel::Int8(m, _) => ("int8", int8_logits(m, &test)?),
        SavedModel::Qat(m, _) => {
            let what = match m.eval_arithmetic {
                EvalArithmetic::Deployment => "QAT (integer-exact eval)",
                EvalArithmetic::Float => "QAT (float fake-quant eval)",
            };
            (what, logits(m, &test, 500, &device)?)
        }
        SavedModel::Float(m, _) => ("float", logits(m, &test, 500, &device)?),
    };
    let predicted = logits.argmax();
    println!("{what} test accuracy {:.2}% on {} images from {source}", 100.0 * accuracy(&predicted, &test), test.len());
    println!("per class: {}", per_class(&predicted, &test));
    if let Some(path) = &args.predictions {
        write_predictions(path, &logits, &predicted, &test)?;
        println!("wrote {} (index, label, predicted, {} logits per image)", path.display(), logits.classes);
    }
    Ok(())
}

/// `class accuracy (images)` for every class the labels hold.
fn per_class(predicted: &[usize], data: &Dataset) -> String {
    (0..data.classes)
        .filter_map(|class| {
            let of_class: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] as usize == class).collect();
            let right = of_class.iter().filter(|&&i| predicted[i] == class).count();
            (!of_class.is_empty()).then(|| format!("{class} {:.1}% ({})", 100.0 * right as f64 / of_class.len() as f64, of_class.len()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One CSV row per image: index, label, predicted class, then the logits (shortest decimal
/// that reads back as the same f32).
fn write_predictions(path: &Path, logits: &Logits, predicted: &[usize], data: &Dataset) -> burn_qat::Result<()> {
    let header = (0..logits.classes).map(|c| format!(",logit_{c}")).collect::<String>();
    let mut csv = format!("index,label,predicted{header}\n");
    for (i, row) in logits.values.chunks(logits.classes.max(1)).enumerate() {
        let values: String = row.iter().map(|v| format!(",{v}")).collect();
        csv.push_str(&format!("{i},{},{}{values}\n", data.labels[i], predicted[i]));
    }
    std::fs::write(path, csv).map_err(|e| io_error(path, e))
}
