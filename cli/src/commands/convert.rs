//! `burn-qat convert`: a QAT model to an int8 model file.

use burn::tensor::Device;
use burn_qat::workflow::{ConvertOptions, convert_with};

use super::args::ConvertArgs;
use super::check_output_file;
use burn_qat::run::{SavedModel, provenance};

pub fn convert(args: ConvertArgs) -> burn_qat::Result<()> {
    check_output_file(&args.out, &args.checkpoint, args.overwrite)?;
    let device = Device::flex();
    let (qat, _) = SavedModel::load(&args.checkpoint, &device)?.into_qat(&args.checkpoint, "convert")?;
    let int8 = convert_with(&qat, ConvertOptions { pytorch_saturation: args.pytorch_saturation })?;
    // The int8 file says what the QAT file said: the run (input shape included) and its data.
    int8.save_with_metadata(&args.out, &provenance(&args.checkpoint)?)?;
    println!("wrote {} (int8 weights per channel, u8 activations, int32 bias)", args.out.display());
    Ok(())
}
