//! `burn-qat eval`: test accuracy of any saved model.

use burn::tensor::Device;
use burn_qat::data::Dataset;
use burn_qat::train::{accuracy, predictions};
use burn_qat::workflow::{EvalArithmetic, Int8Model};

use super::args::EvalArgs;
use super::saved_model::{SavedModel, check_data_fits, trained_data};

/// Predicted classes of an int8 model, in batches of 500.
pub fn int8_predictions(model: &Int8Model, data: &Dataset) -> burn_qat::Result<Vec<usize>> {
    let device = Device::flex();
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for batch in indices.chunks(500) {
        out.extend(model.predict(data.batch(batch, &device).0)?);
    }
    Ok(out)
}

pub fn eval(args: EvalArgs) -> burn_qat::Result<()> {
    let device = Device::flex();
    let model = SavedModel::load(&args.checkpoint, &device)?;
    let source = args.data.or_else(|| trained_data(&args.checkpoint)).unwrap_or_default();
    let (_, test) = source.load()?;
    if let Some(spec) = model.spec() {
        check_data_fits(spec, &test, &args.checkpoint, &source)?;
    }
    let (what, pred) = match &model {
        SavedModel::Int8(m, _) => ("int8", int8_predictions(m, &test)?),
        SavedModel::Qat(m, _) => {
            let what = match m.eval_arithmetic {
                EvalArithmetic::Deployment => "QAT (integer-exact eval)",
                EvalArithmetic::Float => "QAT (float fake-quant eval)",
            };
            (what, predictions(m, &test, 500, &device)?)
        }
        SavedModel::Float(m, _) => ("float", predictions(m, &test, 500, &device)?),
    };
    println!("{what} test accuracy {:.2}% on {} images from {source}", 100.0 * accuracy(&pred, &test), test.len());
    Ok(())
}
