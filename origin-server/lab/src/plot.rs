//! PNG charts for benchmark and evaluation results, drawn with `plotters`.
//!
//! Text is rendered with `ab_glyph` (pure Rust) from a TrueType font read at
//! run time: `$EDGEWISE_PLOT_FONT`, or DejaVu Sans where Debian and most Linux
//! distributions put it (package `fonts-dejavu-core`). Without a font the
//! chart is not drawn and the error says what to install; the numbers it
//! would show are always printed and written as JSON first.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum PlotError {
    /// No usable TrueType font.
    #[error(
        "no TrueType font for chart labels: install fonts-dejavu-core or set EDGEWISE_PLOT_FONT to a .ttf file ({0})"
    )]
    NoFont(String),
    /// plotters failed (I/O, encoding).
    #[error("cannot draw {path}: {reason}")]
    Draw { path: PathBuf, reason: String },
    /// Nothing to draw.
    #[error("{0}: no finite points to draw")]
    Empty(PathBuf),
}

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the font with plotters once per process.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let explicit = std::env::var_os("EDGEWISE_PLOT_FONT").map(PathBuf::from);
            let candidates: Vec<PathBuf> = match &explicit {
                Some(p) => vec![p.clone()],
                None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
            };
            let Some((path, bytes)) = candidates.iter().find_map(|p| std::fs::read(p).ok().map(|b| (p, b))) else {
                let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
                return Err(format!("looked in {}", looked.join(", ")));
            };
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a TrueType font", path.display()))
        })
        .clone()
        .map_err(PlotError::NoFont)
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with markers.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title above the chart.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

fn draw_err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError::Draw { path: path.to_owned(), reason }
}

fn padded(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        (lo / 1.15, hi * 1.15)
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-9);
        (lo - pad, hi + pad)
    }
}

impl LineChart {
    /// Draws the chart as a 1000×640 PNG at `path`.
    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        ensure_font()?;
        let ok = |x: f64, log: bool| x.is_finite() && (!log || x > 0.0);
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&(x, y)| ok(x, self.log_x) && ok(y, self.log_y))
            .collect();
        if pts.is_empty() {
            return Err(PlotError::Empty(path.to_owned()));
        }
        let fold = |f: fn(&(f64, f64)) -> f64| {
            pts.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
        };
        let (x0, x1) = fold(|p| p.0);
        let (y0, y1) = fold(|p| p.1);
        let (x0, x1) = padded(x0, x1, self.log_x);
        let (y0, y1) = padded(y0, y1, self.log_y);
        let err = draw_err(path);
        let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(&self.title, ("sans-serif", 24)).margin(16).x_label_area_size(48).y_label_area_size(72);
        // plotters types a chart by its coordinate kinds, so each axis combination is its own call.
        match (self.log_x, self.log_y) {
            (false, false) => self.draw(builder.build_cartesian_2d(x0..x1, y0..y1), &err),
            (false, true) => self.draw(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()), &err),
            (true, false) => self.draw(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1), &err),
            (true, true) => self.draw(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()), &err),
        }?;
        root.present().map_err(|e| err(e.to_string()))
    }

    fn draw<'a, X, Y, E>(
        &self,
        chart: Result<ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>, E>,
        err: &impl Fn(String) -> PlotError,
    ) -> Result<(), PlotError>
    where
        X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
        E: std::fmt::Display,
    {
        let mut chart = chart.map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> =
                s.points.iter().copied().filter(|&(x, y)| x.is_finite() && y.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(|e| err(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| err(e.to_string()))
    }
}

/// A bar chart: one labelled bar per value, its value written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// (label, value) per bar, drawn left to right.
    pub bars: Vec<(String, f64)>,
}

impl BarChart {
    /// Draws the chart as a 1000×640 PNG at `path`.
    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        ensure_font()?;
        let bars: Vec<&(String, f64)> = self.bars.iter().filter(|(_, v)| v.is_finite()).collect();
        if bars.is_empty() {
            return Err(PlotError::Empty(path.to_owned()));
        }
        let top = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9) * 1.15;
        let err = draw_err(path);
        let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let n = bars.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0.0f64..top)
            .map_err(|e| err(e.to_string()))?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                bars.get(i as usize).map(|b| b.0.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .y_desc(&self.y_label)
            .y_label_formatter(&tick)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (i, (_, v)) in bars.iter().enumerate() {
            let x = i as f64;
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], color.filled())))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v:.4}"),
                    (x - 0.12, v + top * 0.02),
                    ("sans-serif", 16),
                )))
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))
    }
}

/// An axis label: whole numbers from 100 up, else up to three decimals.
fn tick(v: &f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_every_axis_kind() {
        let dir = std::env::temp_dir().join(format!("ew-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (log_x, log_y) in [(false, false), (false, true), (true, false), (true, true)] {
            let chart = LineChart {
                title: "test".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                log_x,
                log_y,
                series: vec![
                    Series { label: "a".into(), points: vec![(1.0, 10.0), (2.0, 100.0), (4.0, 1000.0)] },
                    Series { label: "b".into(), points: vec![(1.0, 20.0), (3.0, 50.0)] },
                ],
            };
            let path = dir.join(format!("c-{log_x}-{log_y}.png"));
            chart.write_png(&path).expect("draws");
            let bytes = std::fs::read(&path).expect("written");
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
        }
        let empty = LineChart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: false,
            log_y: true,
            series: vec![Series { label: "z".into(), points: vec![(1.0, 0.0)] }],
        };
        assert!(matches!(empty.write_png(&dir.join("e.png")), Err(PlotError::Empty(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn draws_a_bar_chart() {
        let dir = std::env::temp_dir().join(format!("ew-bars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let chart = BarChart {
            title: "t".into(),
            y_label: "NDCG@10".into(),
            bars: vec![("a".into(), 0.02), ("b".into(), 0.05), ("c".into(), f64::NAN)],
        };
        let path = dir.join("bars.png");
        chart.write_png(&path).expect("draws");
        assert_eq!(&std::fs::read(&path).expect("written")[..4], b"\x89PNG");
        let none = BarChart { title: "t".into(), y_label: "y".into(), bars: vec![] };
        assert!(matches!(none.write_png(&dir.join("n.png")), Err(PlotError::Empty(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick(&10000.0), "10000");
        assert_eq!(tick(&0.95), "0.95");
        assert_eq!(tick(&2.0), "2");
        assert_eq!(tick(&0.1234), "0.123");
    }
}
