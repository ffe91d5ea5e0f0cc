//! Charts of a parameter search, drawn like the other report charts (plotters, PNG): one
//! parameter against the metric (a scatter plot; log-scaled and categorical parameters too), and
//! every trial across every parameter (parallel coordinates).
use super::plots::{render, text, text_width, trim_number, FONT, INK, MUTED};
use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// How a parameter's values lie along an axis.
#[derive(Clone, Debug, PartialEq)]
pub enum AxisScale {
    Linear { low: f64, high: f64 },
    /// Positive values on a log scale.
    Log { low: f64, high: f64 },
    /// One position per named value (x = its index).
    Categories(Vec<String>),
}

impl AxisScale {
    /// `x` placed on [0, 1] along the axis.
    fn unit(&self, x: f64) -> f64 {
        let t = match self {
            AxisScale::Linear { low, high } => (x - low) / (high - low),
            AxisScale::Log { low, high } => (x.ln() - low.ln()) / (high.ln() - low.ln()),
            AxisScale::Categories(c) if c.len() <= 1 => 0.5,
            AxisScale::Categories(c) => x / (c.len() - 1) as f64,
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    fn label(&self, x: f64) -> String {
        match self {
            AxisScale::Categories(c) => c.get(x.round().max(0.0) as usize).cloned().unwrap_or_default(),
            _ => short_number(x),
        }
    }
}

/// `0.001`, `3.2e-05`, `12`: numbers as an axis shows them.
fn short_number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.1e}")
    } else {
        trim_number(v)
    }
}

/// One trial's point.
#[derive(Clone, Debug)]
pub struct ScatterPoint {
    pub x: f64,
    pub y: f64,
    pub colour: RGBColor,
}

pub struct Scatter {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x: AxisScale,
    pub points: Vec<ScatterPoint>,
    /// What the colours mean.
    pub legend: Vec<(String, RGBColor)>,
}

/// A parameter against the metric, one dot per trial.
pub fn scatter_png(chart: &Scatter) -> Result<Vec<u8>> {
    let ys: Vec<f64> = chart.points.iter().map(|p| p.y).filter(|y| y.is_finite()).collect();
    let (mut y_lo, mut y_hi) = (ys.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    if !(y_lo.is_finite() && y_hi.is_finite()) {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    let pad = ((y_hi - y_lo) * 0.08).max(1e-3);
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
    let categories = match &chart.x {
        AxisScale::Categories(c) => c.len(),
        _ => 0,
    };
    render(660, 420, |root| {
        let mut c = ChartBuilder::on(root)
            .caption(&chart.title, (FONT, 20))
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.05f64..1.05f64, y_lo..y_hi)?;
        let x_scale = &chart.x;
        // The axis runs over [0, 1]; its ticks are labelled with the parameter's value there
        // (a category only at its own position).
        let x_label = |t: &f64| -> String {
            match x_scale {
                AxisScale::Categories(names) if names.len() == 1 => if (t - 0.5).abs() < 1e-9 { names[0].clone() } else { String::new() },
                AxisScale::Categories(names) => {
                    let k = t * (names.len() - 1) as f64;
                    if (k - k.round()).abs() < 1e-6 && k.round() >= 0.0 { names.get(k.round() as usize).cloned().unwrap_or_default() } else { String::new() }
                }
                AxisScale::Linear { low, high } => short_number(low + t * (high - low)),
                AxisScale::Log { low, high } => short_number((low.ln() + t * (high.ln() - low.ln())).exp()),
            }
        };
        c.configure_mesh()
            .x_desc(chart.x_desc.as_str())
            .y_desc(chart.y_desc.as_str())
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .x_labels(if categories > 2 { 4 * (categories - 1) + 1 } else { 11 })
            .x_label_formatter(&x_label)
            .y_label_formatter(&|v| trim_number(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        c.draw_series(chart.points.iter().filter(|p| p.y.is_finite()).map(|p| Circle::new((x_scale.unit(p.x), p.y), 5, p.colour.mix(0.85).filled())))?;
        let legend_y = 16;
        let mut x = 90;
        for (name, colour) in &chart.legend {
            root.draw(&Circle::new((x, legend_y + 30), 5, colour.filled()))?;
            root.draw_text(name, &text(13, MUTED, HPos::Left, VPos::Center), (x + 9, legend_y + 30))?;
            x += 30 + text_width(name, 13) as i32;
        }
        Ok(())
    })
}

/// One axis of parallel coordinates: a parameter, or the metric (last).
pub struct ParallelAxis {
    pub name: String,
    pub scale: AxisScale,
}

/// One trial across the axes (a value per axis, in axis order).
pub struct ParallelLine {
    pub values: Vec<f64>,
    pub colour: RGBColor,
    /// Drawn over the others (the best trials).
    pub front: bool,
}

/// Every trial as a line across the parameters' axes and the metric's.
pub fn parallel_png(title: &str, axes: &[ParallelAxis], lines: &[ParallelLine], note: &str) -> Result<Vec<u8>> {
    if axes.len() < 2 {
        bail!("parallel coordinates need at least two axes, got {}", axes.len());
    }
    if lines.iter().any(|l| l.values.len() != axes.len()) {
        bail!("parallel coordinates: every line needs a value per axis");
    }
    let gap = 190u32;
    let (left, right, top, bottom) = (90u32, 90u32, 84u32, 60u32);
    let width = (left + right + gap * (axes.len() as u32 - 1)).max(text_width(title, 20) + 40).max(660);
    let height = 480u32;
    let span = (height - top - bottom) as f64;
    let x_of = |i: usize| (left + gap * i as u32) as i32 + ((width - left - right - gap * (axes.len() as u32 - 1)) / 2) as i32;
    let y_of = |t: f64| (top as f64 + (1.0 - t) * span).round() as i32;
    render(width, height, |root| {
        root.draw_text(title, &text(20, INK, HPos::Center, VPos::Top), (width as i32 / 2, 10))?;
        root.draw_text(note, &text(13, MUTED, HPos::Center, VPos::Top), (width as i32 / 2, 38))?;
        let mut ordered: Vec<&ParallelLine> = lines.iter().collect();
        ordered.sort_by_key(|l| l.front);
        for line in ordered {
            let points: Vec<(i32, i32)> =
                line.values.iter().zip(axes).enumerate().filter(|(_, (v, _))| v.is_finite()).map(|(i, (v, a))| (x_of(i), y_of(a.scale.unit(*v)))).collect();
            let style = if line.front { line.colour.stroke_width(3) } else { line.colour.mix(0.7).stroke_width(1) };
            root.draw(&PathElement::new(points, style))?;
        }
        for (i, axis) in axes.iter().enumerate() {
            let x = x_of(i);
            root.draw(&PathElement::new(vec![(x, y_of(1.0)), (x, y_of(0.0))], INK.stroke_width(2)))?;
            root.draw_text(&axis.name, &text(14, INK, HPos::Center, VPos::Bottom), (x, top as i32 - 10))?;
            let marks: Vec<(f64, f64)> = match &axis.scale {
                AxisScale::Categories(c) => (0..c.len()).map(|k| (k as f64, axis.scale.unit(k as f64))).collect(),
                AxisScale::Linear { low, high } | AxisScale::Log { low, high } => vec![(*low, 0.0), (*high, 1.0)],
            };
            for (value, t) in marks {
                let y = y_of(t);
                root.draw(&PathElement::new(vec![(x - 5, y), (x + 5, y)], INK.stroke_width(1)))?;
                root.draw_text(&axis.scale.label(value), &text(12, MUTED, HPos::Left, VPos::Center), (x + 8, y))?;
            }
        }
        Ok(())
    })
}

/// A colour from dark purple (low, t = 0) through teal to yellow (high, t = 1): viridis' ends and middle.
pub fn ramp(t: f64) -> RGBColor {
    let stops = [(68.0, 1.0, 84.0), (33.0, 145.0, 140.0), (253.0, 231.0, 37.0)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let (i, f) = if t < 0.5 { (0, t * 2.0) } else { (1, (t - 0.5) * 2.0) };
    let lerp = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (stops[i], stops[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("a PNG").to_rgb8()
    }

    #[test]
    fn axes_place_values_and_charts_decode() {
        assert!((AxisScale::Log { low: 1e-4, high: 1e-2 }.unit(1e-3) - 0.5).abs() < 1e-12);
        assert_eq!(AxisScale::Linear { low: 2.0, high: 4.0 }.unit(3.0), 0.5);
        assert_eq!(AxisScale::Categories(vec!["a".into(), "b".into(), "c".into()]).unit(2.0), 1.0);
        assert_eq!(AxisScale::Categories(vec!["a".into()]).unit(0.0), 0.5);
        assert_eq!(AxisScale::Linear { low: 2.0, high: 2.0 }.unit(2.0), 0.5, "a degenerate axis puts values in the middle");
        assert_eq!(short_number(3.2e-5), "3.2e-5");
        assert_eq!(ramp(0.0), RGBColor(68, 1, 84));
        assert_eq!(ramp(1.0), RGBColor(253, 231, 37));
        let scatter = Scatter {
            title: "optim.lr".into(),
            x_desc: "optim.lr (log)".into(),
            y_desc: "f1".into(),
            x: AxisScale::Log { low: 1e-4, high: 1e-2 },
            points: vec![ScatterPoint { x: 1e-3, y: 0.5, colour: RGBColor(214, 39, 40) }, ScatterPoint { x: 1e-2, y: f64::NAN, colour: RGBColor(0, 0, 0) }],
            legend: vec![("complete".into(), RGBColor(214, 39, 40))],
        };
        let img = decode(&scatter_png(&scatter).unwrap());
        assert!(img.pixels().any(|p| p.0 == [214, 39, 40] || (p.0[0] > 200 && p.0[1] < 80 && p.0[2] < 80)), "the dot is drawn");
        let axes = vec![
            ParallelAxis { name: "model.arch".into(), scale: AxisScale::Categories(vec!["resnet18".into(), "b0".into()]) },
            ParallelAxis { name: "f1".into(), scale: AxisScale::Linear { low: 0.2, high: 0.6 } },
        ];
        let lines = vec![ParallelLine { values: vec![1.0, 0.6], colour: ramp(1.0), front: true }, ParallelLine { values: vec![0.0, 0.2], colour: ramp(0.0), front: false }];
        let img = decode(&parallel_png("trials", &axes, &lines, "colour: f1").unwrap());
        assert!(img.pixels().any(|p| p.0 == [253, 231, 37]), "the best trial's line is drawn in full colour");
        assert!(parallel_png("x", &axes[..1], &[], "").is_err());
        assert!(parallel_png("x", &axes, &[ParallelLine { values: vec![1.0], colour: ramp(0.5), front: false }], "").is_err());
    }
}
