//! `sweep.png`: int8 test accuracy against bit width, one line per way of getting there (PTQ,
//! QAT with fixed quantizers, QAT with learned ones), the float model as a dashed reference.

use std::path::Path;

use plotters::prelude::*;

use super::{DrawResult, FAMILY, FLOAT_COLOR, GRID_COLOR, INT8_COLOR, PTQ_COLOR, QAT_COLOR, draw_error, legend_box, series, text};
use burn_qat::error::{QatError, Result};

/// What [`plot_sweep`] draws: accuracies (0..1) per bit width, in the order of `bits`.
#[derive(Clone, Debug, Default)]
pub struct SweepPlot {
    pub title: String,
    pub bits: Vec<u32>,
    pub float: f64,
    pub ptq: Vec<f64>,
    pub qat_fixed: Vec<f64>,
    /// The learned quantizer's name and accuracies.
    pub qat_learned: (String, Vec<f64>),
}

/// Writes the sweep as a PNG of 900 x 560 pixels, widths falling from left to right.
pub fn plot_sweep(path: impl AsRef<Path>, sweep: &SweepPlot) -> Result<()> {
    let path = path.as_ref();
    let n = sweep.bits.len();
    if n == 0 || [&sweep.ptq, &sweep.qat_fixed, &sweep.qat_learned.1].iter().any(|v| v.len() != n) {
        return Err(QatError::shape(
            "sweep plot",
            format!("one accuracy per bit width ({n}) in every series, at least one"),
            format!("{} ptq, {} qat_fixed, {} qat_learned", sweep.ptq.len(), sweep.qat_fixed.len(), sweep.qat_learned.1.len()),
        ));
    }
    super::register_font()?;
    let font = text::parse_font(super::FONT).ok_or_else(super::bad_font)?;
    let root = text::GlyphText::new(BitMapBackend::new(path, (900, 560)), font).into_drawing_area();
    draw(&root, sweep).map_err(|e| draw_error(path, e))?;
    root.present().map_err(|e| draw_error(path, e))
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, plotters::coord::Shift>, s: &SweepPlot) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    // Position i on the x axis is the i-th width given (8, 4, 3, 2: falling precision).
    let at = |values: &[f64]| values.iter().enumerate().map(|(i, a)| (i as f64, 100.0 * a)).collect::<Vec<_>>();
    let all = s.ptq.iter().chain(&s.qat_fixed).chain(&s.qat_learned.1).chain([&s.float]).map(|a| 100.0 * a);
    let lo = all.fold(100.0f64, f64::min);
    let (lo, hi) = ((lo - 1.0).floor().max(0.0), 100.0f64.min((100.0 * s.float + 1.0).ceil()));
    let last = s.bits.len() as f64 - 1.0;
    let mut chart = ChartBuilder::on(root)
        .caption(&s.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.4..last + 0.4, lo..hi)?;
    let bits = s.bits.clone();
    chart
        .configure_mesh()
        .x_desc("bits (weights / activations)")
        .y_desc("int8 test accuracy (%)")
        .x_labels(s.bits.len() * 4)
        .x_label_formatter(&move |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                bits.get(i as usize).map_or(String::new(), |b| format!("{b}/{b}"))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(WHITE)
        .bold_line_style(GRID_COLOR.mix(0.25))
        .draw()?;
    let float = 100.0 * s.float;
    chart
        .draw_series(DashedLineSeries::new([(-0.4, float), (last + 0.4, float)], 8, 5, FLOAT_COLOR.stroke_width(2)))?
        .label(format!("float {float:.2}%"))
        .legend(|(x, y)| PathElement::new(vec![(x - 4, y), (x + 14, y)], FLOAT_COLOR.stroke_width(2)));
    series(&mut chart, &at(&s.ptq), PTQ_COLOR, "PTQ (best observer)")?;
    series(&mut chart, &at(&s.qat_fixed), QAT_COLOR, "QAT, fixed quantizers")?;
    series(&mut chart, &at(&s.qat_learned.1), INT8_COLOR, &format!("QAT, {}", s.qat_learned.0))?;
    legend_box(&mut chart, SeriesLabelPosition::LowerLeft)
}
