//! Training reports for people: `curves.png`, the loss and test accuracy of the float and QAT
//! phases, epoch by epoch, with the int8 results beside them; `sweep.png`, accuracy against bit
//! width.
//!
//! Text is drawn with a font built into the binary (`assets/fonts`, DejaVu Sans, laid out by
//! plotters' `ab_glyph` feature and drawn by [`GlyphText`]), so drawing needs no system fonts,
//! fontconfig or FreeType.

mod sweep;
mod text;

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use burn_qat::error::{QatError, Result};
use burn_qat::train::EpochReport;
pub use sweep::{SweepPlot, plot_sweep};
pub use text::GlyphText;

/// DejaVu Sans, subset to Latin-1; see `assets/fonts/README.md` and its licence beside it.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// [`FONT`]'s file, for the error when it does not parse.
const FONT_PATH: &str = "assets/fonts/DejaVuSans-subset.ttf";
const FAMILY: &str = "sans-serif";

const FLOAT_COLOR: RGBColor = RGBColor(31, 119, 180);
const QAT_COLOR: RGBColor = RGBColor(255, 127, 14);
const INT8_COLOR: RGBColor = RGBColor(44, 160, 44);
const PTQ_COLOR: RGBColor = RGBColor(214, 39, 40);
const GRID_COLOR: RGBColor = RGBColor(150, 150, 150);

/// What [`plot_curves`] draws.
#[derive(Clone, Debug, Default)]
pub struct Curves<'a> {
    /// The figure's title.
    pub title: String,
    /// One report per float epoch, then one per QAT epoch.
    pub float: &'a [EpochReport],
    pub qat: &'a [EpochReport],
    /// Test accuracy of the int8 model converted from the QAT model (0..1).
    pub int8_accuracy: Option<f64>,
    /// Test accuracy of the post-training-quantized int8 model (0..1), no QAT.
    pub ptq_int8_accuracy: Option<f64>,
    /// What to call the integer models in the legend ("int8", "w4/a4"); empty: "int8".
    pub quantized: String,
}

/// The built-in font does not parse.
fn bad_font() -> QatError {
    QatError::File { path: FONT_PATH.into(), reason: "the built-in plot font is not a valid font".into() }
}

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font(FAMILY, style, FONT).is_err() {
                result = Err(bad_font());
            }
        }
    });
    result
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> QatError {
    QatError::File { path: path.display().to_string(), reason: format!("drawing the curves: {e}") }
}

/// Epoch numbers along the x axis: float epochs 1..=F, QAT epochs F+1..=F+Q.
fn points(reports: &[EpochReport], offset: usize, value: impl Fn(&EpochReport) -> f64) -> Vec<(f64, f64)> {
    reports.iter().enumerate().map(|(i, r)| ((offset + i + 1) as f64, value(r))).collect()
}

/// Writes the curves as a PNG of 1400 x 560 pixels: training loss (log scale) on the left, test
/// accuracy on the right, float in blue, QAT in orange, the int8 model converted from QAT and
/// the post-training-quantized one beside them.
pub fn plot_curves(path: impl AsRef<Path>, curves: &Curves<'_>) -> Result<()> {
    let path = path.as_ref();
    register_font()?;
    let font = text::parse_font(FONT).ok_or_else(bad_font)?;
    let root = GlyphText::new(BitMapBackend::new(path, (1400, 560)), font).into_drawing_area();
    draw(&root, curves).map_err(|e| draw_error(path, e))?;
    root.present().map_err(|e| draw_error(path, e))
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Curves<'_>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let body = root.titled(&c.title, (FAMILY, 26).into_font().style(FontStyle::Bold))?;
    let (left, right) = body.split_horizontally(700);
    let n_float = c.float.len();
    let n_total = n_float + c.qat.len();
    let x_range = 0.5..(n_total.max(1) as f64 + 0.5);
    // Epoch ticks at whole numbers only (plotters picks "nice" fractional ticks for floats).
    let x_format = |x: &f64| if (x - x.round()).abs() < 1e-6 && *x >= 1.0 { format!("{x:.0}") } else { String::new() };
    let boundary = (n_float > 0 && !c.qat.is_empty()).then_some(n_float as f64 + 0.5);

    // Left: training loss, log scale (it falls by an order of magnitude in a few epochs).
    let float_loss = points(c.float, 0, |r| r.loss);
    let qat_loss = points(c.qat, n_float, |r| r.loss);
    let losses: Vec<f64> = float_loss.iter().chain(&qat_loss).map(|p| p.1).filter(|v| v.is_finite() && *v > 0.0).collect();
    let (lo, hi) = losses.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if losses.is_empty() { (0.01, 1.0) } else { (lo / 1.5, hi * 1.5) };
    // The legend (two entries) in a corner free of curves, else below them on a longer axis.
    let (w, h) = (0.32, 0.16);
    let x_frac = |x: f64| (x - 0.5) / n_total.max(1) as f64;
    let ink = |lo: f64, hi: f64| -> Vec<(f64, f64)> {
        let y_frac = |y: f64| (y.ln() - lo.ln()) / (hi.ln() - lo.ln());
        let mut ink: Vec<(f64, f64)> = along(&float_loss).chain(along(&qat_loss)).map(|(x, y)| (x_frac(x), y_frac(y))).collect();
        ink.extend(boundary.map(|x| label_ink(x_frac(x))).into_iter().flatten());
        ink
    };
    let corners =
        [SeriesLabelPosition::LowerLeft, SeriesLabelPosition::UpperRight, SeriesLabelPosition::LowerRight, SeriesLabelPosition::UpperLeft];
    let (lo, legend) = match free_corner(&ink(lo, hi), w, h, corners) {
        Some(corner) => (lo, corner),
        None => ((hi.ln() - (hi.ln() - lo.ln()) / (1.0 - h - 0.04)).exp(), SeriesLabelPosition::LowerLeft),
    };
    let mut chart = ChartBuilder::on(&left)
        .caption("Training loss (cross entropy, mean per epoch)", (FAMILY, 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss (log scale)")
        .x_labels(n_total.clamp(2, 30) * 2 + 1)
        .x_label_formatter(&x_format)
        .y_label_formatter(&|y| format!("{y:.*}", (-y.log10().floor()).max(0.0) as usize))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(WHITE)
        .bold_line_style(GRID_COLOR.mix(0.25))
        .draw()?;
    if let Some(x) = boundary {
        chart.draw_series(DashedLineSeries::new([(x, lo), (x, hi)], 6, 4, GRID_COLOR.stroke_width(1)))?;
        chart.draw_series([EmptyElement::at((x, hi)) + Text::new("QAT starts", (5, 3), label_style())])?;
    }
    series(&mut chart, &float_loss, FLOAT_COLOR, "float")?;
    series(&mut chart, &qat_loss, QAT_COLOR, "QAT (fake quant)")?;
    if !losses.is_empty() {
        legend_box(&mut chart, legend)?;
    }

    // Right: test accuracy, with the int8 models.
    let float_acc = points(c.float, 0, |r| 100.0 * r.test_accuracy);
    let qat_acc = points(c.qat, n_float, |r| 100.0 * r.test_accuracy);
    let extra = [c.int8_accuracy, c.ptq_int8_accuracy].into_iter().flatten().map(|a| 100.0 * a);
    let accs: Vec<f64> = float_acc.iter().chain(&qat_acc).map(|p| p.1).chain(extra).filter(|v| v.is_finite()).collect();
    let (lo, hi) = accs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if accs.is_empty() { (0.0, 100.0) } else { ((lo - 0.5).floor().max(0.0), (hi + 0.5).ceil().min(100.0)) };
    let (lo, hi) = if hi - lo < 1.0 { (lo.min(hi - 1.0), hi.max(lo + 1.0)) } else { (lo, hi) };
    let last = n_total.max(1) as f64;
    let ptq_from = if n_float > 0 { n_float as f64 } else { 0.5 };
    // The legend (up to four entries) in a corner free of curves, else below them.
    let (w, h) = (0.46, 0.27);
    let ink = |lo: f64, hi: f64| -> Vec<(f64, f64)> {
        let y_frac = |y: f64| (y - lo) / (hi - lo);
        let ptq = c.ptq_int8_accuracy.map(|a| [(ptq_from, 100.0 * a), (last + 0.5, 100.0 * a)]);
        let int8 = c.int8_accuracy.map(|a| (last + 0.15, 100.0 * a));
        let mut ink: Vec<(f64, f64)> = along(&float_acc)
            .chain(along(&qat_acc))
            .chain(ptq.iter().flat_map(|p| along(p)))
            .chain(int8)
            .map(|(x, y)| (x_frac(x), y_frac(y)))
            .collect();
        ink.extend(boundary.map(|x| label_ink(x_frac(x))).into_iter().flatten());
        ink
    };
    let corners =
        [SeriesLabelPosition::LowerRight, SeriesLabelPosition::UpperLeft, SeriesLabelPosition::LowerLeft, SeriesLabelPosition::UpperRight];
    let (lo, hi, legend) = match free_corner(&ink(lo, hi), w, h, corners) {
        Some(corner) => (lo, hi, corner),
        None => {
            let stretched = (hi - lo) / (1.0 - h - 0.04);
            if hi - stretched >= 0.0 {
                ((hi - stretched).floor(), hi, SeriesLabelPosition::LowerRight)
            } else {
                (lo, (lo + stretched).ceil(), SeriesLabelPosition::UpperRight)
            }
        }
    };
    let mut chart = ChartBuilder::on(&right)
        .caption("Test accuracy", (FAMILY, 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("test accuracy (%)")
        .x_labels(n_total.clamp(2, 30) * 2 + 1)
        .x_label_formatter(&x_format)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .light_line_style(WHITE)
        .bold_line_style(GRID_COLOR.mix(0.25))
        .draw()?;
    if let Some(x) = boundary {
        chart.draw_series(DashedLineSeries::new([(x, lo), (x, hi)], 6, 4, GRID_COLOR.stroke_width(1)))?;
        chart.draw_series([EmptyElement::at((x, hi)) + Text::new("QAT starts", (5, 3), label_style())])?;
    }
    series(&mut chart, &float_acc, FLOAT_COLOR, "float")?;
    series(&mut chart, &qat_acc, QAT_COLOR, "QAT (fake quant)")?;
    let quantized = if c.quantized.is_empty() { "int8" } else { c.quantized.as_str() };
    if let Some(a) = c.ptq_int8_accuracy {
        // PTQ starts from the last float epoch: a level line from there to the end, the value QAT
        // has to beat.
        let y = 100.0 * a;
        chart
            .draw_series(DashedLineSeries::new([(ptq_from, y), (last + 0.5, y)], 10, 5, PTQ_COLOR.stroke_width(2)))?
            .label(format!("PTQ {quantized}, no QAT ({y:.2}%)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], PTQ_COLOR.stroke_width(2)));
    }
    if let Some(a) = c.int8_accuracy {
        let y = 100.0 * a;
        chart
            // Just right of the last epoch, so that the QAT point under it stays visible.
            .draw_series([TriangleMarker::new((last + 0.15, y), 9, INT8_COLOR.filled())])?
            .label(format!("{quantized} from QAT ({y:.2}%)"))
            .legend(|(x, y)| TriangleMarker::new((x + 4, y), 7, INT8_COLOR.filled()));
    }
    if !accs.is_empty() {
        legend_box(&mut chart, legend)?;
    }
    Ok(())
}

/// Points every twentieth of the way along the polyline through `points`.
fn along(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    let segments = points.windows(2).flat_map(|p| {
        let ((x0, y0), (x1, y1)) = (p[0], p[1]);
        (0..20).map(move |i| (x0 + (x1 - x0) * i as f64 / 20.0, y0 + (y1 - y0) * i as f64 / 20.0))
    });
    segments.chain(points.last().copied())
}

/// Where the "QAT starts" label lies, in plot fractions, for a boundary at `x`.
fn label_ink(x: f64) -> impl Iterator<Item = (f64, f64)> {
    (0..=10).map(move |i| (x + 0.13 * i as f64 / 10.0, 0.97))
}

/// The first of `corners` where a legend of `w` x `h` (fractions of the plot area) covers none of
/// `ink` (points in plot fractions, y up), with a small margin.
fn free_corner(ink: &[(f64, f64)], w: f64, h: f64, corners: [SeriesLabelPosition; 4]) -> Option<SeriesLabelPosition> {
    let m = 0.03;
    corners.into_iter().find(|corner| {
        let (x0, y0) = match corner {
            SeriesLabelPosition::LowerLeft => (0.0, 0.0),
            SeriesLabelPosition::LowerRight => (1.0 - w, 0.0),
            SeriesLabelPosition::UpperLeft => (0.0, 1.0 - h),
            _ => (1.0 - w, 1.0 - h),
        };
        !ink.iter().any(|&(x, y)| x >= x0 - m && x <= x0 + w + m && y >= y0 - m && y <= y0 + h + m)
    })
}

/// Ticks at 1, 2 and 5 times the powers of ten between `lo` and `hi` (plotters' own log ticks
/// start at the first power of ten and leave the lower part of a short range unlabelled).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powi(lo.log10().floor() as i32);
    while decade <= hi {
        ticks.extend([1.0, 2.0, 5.0].iter().map(|m| m * decade).filter(|t| (lo..=hi).contains(t)));
        decade *= 10.0;
    }
    ticks
}

/// Small grey text just right of its anchor point, hanging below it.
fn label_style() -> TextStyle<'static> {
    TextStyle::from((FAMILY, 14).into_font()).color(&GRID_COLOR).pos(Pos::new(HPos::Left, VPos::Top))
}

/// The legend of the series drawn so far, at `position`.
fn legend_box<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    position: SeriesLabelPosition,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(GRID_COLOR)
        .draw()?;
    Ok(())
}

/// A line with a dot at each epoch, and its legend entry.
fn series<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    points: &[(f64, f64)],
    color: RGBColor,
    label: &str,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    if points.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x - 4, y), (x + 14, y)], color.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}
