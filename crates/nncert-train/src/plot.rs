//! PNG plots of training logs (the shapes of constrained-ibp-training.md
//! Figures 3–7): errors per epoch, and the hidden-layer bound size per epoch
//! on a log scale, one line per run. Text is drawn with an embedded font
//! (DejaVu Sans Mono, assets/DejaVu-LICENSE), so no system fonts are needed.

use crate::train::EpochLog;
use crate::{Result, TrainError};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is embedded and valid: a failure is a build defect.
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("embedded font parses");
    });
}

/// Which per-epoch figure a line shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    TestError,
    PgdError,
    IbpVerifiedError,
    BoundSize,
}

impl Metric {
    fn value(self, l: &EpochLog) -> f64 {
        match self {
            Metric::TestError => l.test_error,
            Metric::PgdError => l.pgd_error,
            Metric::IbpVerifiedError => l.ibp_verified_error,
            Metric::BoundSize => l.bound_size,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Metric::TestError => "test error",
            Metric::PgdError => "PGD error",
            Metric::IbpVerifiedError => "IBP-verified error",
            Metric::BoundSize => "hidden bound size",
        }
    }
}

fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> TrainError + '_ {
    move |e| TrainError::Invalid(format!("{}: plotting: {e}", path.display()))
}

/// One line per (run, metric) against the epoch; errors in percent on a
/// linear axis, the bound size on a log axis (it spans decades).
pub fn plot_runs(
    path: &Path,
    title: &str,
    runs: &[(&str, &[EpochLog])],
    metrics: &[Metric],
) -> Result<()> {
    register_font();
    let err = plot_err(path);
    let epochs = runs.iter().map(|(_, l)| l.len()).max().unwrap_or(0).max(2) as f64;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let lines: Lines = runs
        .iter()
        .flat_map(|(name, log)| {
            metrics.iter().map(move |&m| {
                let label = if runs.len() > 1 {
                    format!("{name}: {}", m.name())
                } else {
                    m.name().to_string()
                };
                (
                    label,
                    log.iter()
                        .map(|l| (l.epoch as f64 + 1.0, m.value(l)))
                        .filter(|p| p.1.is_finite())
                        .collect(),
                )
            })
        })
        .collect();
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    if metrics == [Metric::BoundSize] {
        let values = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.1))
            .filter(|&v| v > 0.0);
        let lo = values.clone().fold(f64::INFINITY, f64::min).min(1.0) * 0.5;
        let hi = values.fold(0.0, f64::max).max(1.0) * 2.0;
        let c = builder
            .build_cartesian_2d(1.0..epochs, (lo..hi).log_scale())
            .map_err(&err)?;
        // A log axis has no place for zeros (the warm-up's ε = 0 epochs).
        let lines = lines
            .into_iter()
            .map(|(l, p)| (l, p.into_iter().filter(|q| q.1 > 0.0).collect()))
            .collect();
        draw_lines(c, "bound size", lines, &err)?;
    } else {
        let c = builder
            .build_cartesian_2d(1.0..epochs, 0.0..100.0)
            .map_err(&err)?;
        draw_lines(c, "% of test images", lines, &err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

type Lines = Vec<(String, Vec<(f64, f64)>)>;

fn draw_lines<'a, DB, Y>(
    mut c: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
    lines: Lines,
    err: &dyn Fn(DrawingAreaErrorKind<DB::ErrorType>) -> TrainError,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    c.configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (k, (label, points)) in lines.into_iter().enumerate() {
        let color = palette[k % palette.len()];
        c.draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// `errors.png` and `bound_size.png` of one or more runs into `dir`.
pub fn plot_training(dir: &Path, runs: &[(&str, &[EpochLog])]) -> Result<()> {
    let errors = [
        Metric::TestError,
        Metric::PgdError,
        Metric::IbpVerifiedError,
    ];
    plot_runs(&dir.join("errors.png"), "errors per epoch", runs, &errors)?;
    plot_runs(
        &dir.join("bound_size.png"),
        "hidden-layer bound size: sum over layers of mean (upper - lower)^2",
        runs,
        &[Metric::BoundSize],
    )
}
