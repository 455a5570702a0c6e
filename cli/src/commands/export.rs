//! `burn-qat export`: a QDQ ONNX file from an int8 model, or from a QAT model via convert.

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::workflow::convert;

use super::args::ExportArgs;
use super::check_output_file;
use burn_qat::run::SavedModel;

pub fn export(args: ExportArgs) -> burn_qat::Result<()> {
    check_output_file(&args.out, &args.checkpoint, args.overwrite)?;
    let device = Device::flex();
    let (model, trained_on) = match SavedModel::load(&args.checkpoint, &device)? {
        SavedModel::Int8(m, spec) => (m, spec.map(|s| s.input)),
        SavedModel::Qat(m, spec) => (convert(&m)?, Some(spec.input)),
        SavedModel::Float(..) => {
            return Err(QatError::File {
                path: args.checkpoint.display().to_string(),
                reason: "a float model has no quantization parameters to export; pass qat.safetensors or int8.safetensors".into(),
            });
        }
    };
    let [c, h, w] = match (args.input.as_deref(), trained_on) {
        (Some(&[c, h, w]), Some(s)) if [c, h, w] != [s.channels, s.height, s.width] => {
            return Err(QatError::invalid(
                "--input",
                format!(
                    "{}: the model was trained on {}x{}x{} images, --input {c} {h} {w} does not fit it; leave --input out to use the recorded shape",
                    args.checkpoint.display(),
                    s.channels,
                    s.height,
                    s.width
                ),
            ));
        }
        (Some(&[c, h, w]), _) => [c, h, w],
        (Some(_), _) => return Err(QatError::invalid("--input", "--input takes three numbers: C H W")),
        (None, Some(s)) => [s.channels, s.height, s.width],
        (None, None) => [1, 28, 28],
    };
    burn_qat::export::export_onnx_with(&model, [1, c, h, w], &args.out, args.opset)?;
    println!("wrote {} (opset {}, input [N, {c}, {h}, {w}])", args.out.display(), args.opset.version());
    Ok(())
}
