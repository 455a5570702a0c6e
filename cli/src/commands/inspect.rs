//! `burn-qat inspect`: the per-layer quantization table of a QAT model.

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::workflow::{LayerReport, inspect as inspect_model};

use super::args::InspectArgs;
use burn_qat::run::{SavedModel, check_data_fits, trained_data};

fn db(snr: f64) -> String {
    if snr.is_infinite() { "exact".into() } else { format!("{snr:.1} dB") }
}

fn row(r: &LayerReport) -> String {
    let weight = r.weight.as_ref().map_or_else(
        || format!("{:>19} {:>21} {:>9}", "", "", ""),
        |w| {
            let scale = if w.scales == 1 { format!("{:.3e}", w.scale_min) } else { format!("{:.2e}..{:.2e}", w.scale_min, w.scale_max) };
            format!("{:>19} {scale:>21} {:>9}", format!("[{:.3}, {:.3}]", w.min, w.max), db(w.snr_db))
        },
    );
    let output = r.output.as_ref().map_or_else(String::new, |a| {
        format!(
            "{:>10.3e} {:>4} {:>19} {:>7.3}% {:>9}",
            a.scale,
            a.zero_point,
            format!("[{:.3}, {:.3}]", a.min, a.max),
            100.0 * a.clipped,
            db(a.snr_db)
        )
    });
    format!("{:<24} {:<13} {weight}  {output}", r.path, r.kind)
}

pub fn inspect(args: InspectArgs) -> burn_qat::Result<()> {
    if let Some(bits) = args.sensitivity {
        return super::sensitivity::sensitivity(&args, bits);
    }
    let device = Device::flex();
    let (qat, spec) = SavedModel::load(&args.checkpoint, &device)?.into_qat(&args.checkpoint, "inspect")?;
    let source = args.data.or_else(|| trained_data(&args.checkpoint)).unwrap_or_default();
    let (_, test) = source.load()?;
    check_data_fits(&spec, &test, &args.checkpoint, &source)?;
    if args.samples == 0 || test.is_empty() {
        return Err(QatError::invalid("--samples", "inspect needs at least one test image (--samples 1 or more)"));
    }
    let indices: Vec<usize> = (0..args.samples.min(test.len())).collect();
    let rows = inspect_model(&qat, test.batch(&indices, &device).0)?;
    println!(
        "{} ({}), activation statistics on {} test images from {source}",
        spec.model.name(),
        spec.qconfig.choose()?.description,
        indices.len()
    );
    println!(
        "{:<24} {:<13} {:>19} {:>21} {:>9}  {:>10} {:>4} {:>19} {:>8} {:>9}",
        "layer", "kind", "weight range", "weight scale", "w SNR", "out scale", "zp", "output range", "clipped", "out SNR"
    );
    for r in &rows {
        println!("{}", row(r));
    }
    println!();
    println!("weight range: the float weight (BN folded in) min and max; weight scale: its quantization scale,");
    println!("  the smallest..largest over the output channels when per channel.");
    println!("w SNR: the float weight against its quantized value, signal power / error power in dB.");
    println!("out scale, zp: the output's quantization; output range: the float output's min and max on these images.");
    println!("clipped: the share of outputs whose integer lies beyond the range before clamping (values the");
    println!("  quantization cuts off). out SNR: each layer's float output against the same output quantized,");
    println!("  the layer reading the previous layer's quantized output, in dB.");
    Ok(())
}
