//! The report's charts, drawn with plotters on an in-memory bitmap and returned as PNG bytes:
//! a confusion-matrix heat map, line charts (learning curves, overlaid runs) and horizontal
//! grouped bars per class. Sizes and fonts are chosen to be read at 100% zoom.
use anyhow::{bail, Result};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(super) const FONT: &str = "sans-serif";
pub(super) const INK: RGBColor = RGBColor(33, 33, 33);
pub(super) const MUTED: RGBColor = RGBColor(100, 100, 100);

/// Distinguishable line and bar colours (Tableau 10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws on a white `width x height` bitmap and encodes it as PNG.
pub(super) fn render(width: u32, height: u32, draw: impl FnOnce(&Area) -> Result<()>) -> Result<Vec<u8>> {
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)?;
    Ok(png)
}

pub(super) fn text(size: u32, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle { font: (FONT, size).into_font(), color: colour.to_backend_color(), pos: Pos::new(h, v) }
}

/// The width of a text in the plots' font, for layout before anything is drawn (a rough 0.6 em
/// per character when the font cannot be measured).
pub(super) fn text_width(s: &str, size: u32) -> u32 {
    (FONT, size).into_font().box_size(s).map(|(w, _)| w).unwrap_or_else(|_| (s.chars().count() as f64 * size as f64 * 0.6).ceil() as u32)
}

/// White to dark blue by `v` in [0, 1].
fn heat(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * v).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

/// A confusion matrix as a heat map: rows are true classes, columns predicted ones, each cell
/// coloured by its share of the row (the recall view) and labelled with its count and that
/// share; the row totals stand on the right. Readable from 2x2 up to 18x18.
pub fn confusion_png(counts: &[Vec<u64>], labels: &[String], title: &str) -> Result<Vec<u8>> {
    let n = counts.len();
    if n == 0 || labels.len() != n || counts.iter().any(|r| r.len() != n) {
        bail!("a confusion matrix needs n rows of n counts and n labels (got {} rows, {} labels)", n, labels.len());
    }
    let big = n > 6;
    let cell: u32 = if big { 50 } else { 100 };
    let (label_size, count_size, share_size) = if big { (15, 15, 12) } else { (18, 24, 16) };
    let label_w = labels.iter().map(|l| text_width(l, label_size)).max().unwrap_or(0) + 14;
    let (axis_w, top, right) = (34, 78, 80);
    let left = axis_w + label_w;
    let bottom = label_w + 44;
    let width = (left + n as u32 * cell + right).max(text_width(title, 22) + 40).max(560);
    let height = top + n as u32 * cell + bottom;
    // Centre the matrix when the title makes the picture wider than it.
    let left = left + (width - (left + n as u32 * cell + right)) / 2;
    render(width, height, |root| {
        root.draw_text(title, &text(22, INK, HPos::Center, VPos::Top), (width as i32 / 2, 10))?;
        root.draw_text(
            "rows: true class, columns: predicted class; colour and %: share of the row; numbers: images",
            &text(13, MUTED, HPos::Center, VPos::Top),
            (width as i32 / 2, 42),
        )?;
        let (x0, y0) = (left as i32, top as i32);
        let c = cell as i32;
        for (r, row) in counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            for (col, &count) in row.iter().enumerate() {
                let share = if total > 0 { count as f64 / total as f64 } else { 0.0 };
                let (x, y) = (x0 + col as i32 * c, y0 + r as i32 * c);
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], heat(share).filled()))?;
                root.draw(&Rectangle::new([(x, y), (x + c, y + c)], RGBColor(210, 210, 210).stroke_width(1)))?;
                if count == 0 {
                    continue;
                }
                let ink = if share > 0.5 { WHITE } else { INK };
                root.draw_text(&count.to_string(), &text(count_size, ink, HPos::Center, VPos::Center), (x + c / 2, y + c * 2 / 5))?;
                root.draw_text(&format!("{:.0}%", share * 100.0), &text(share_size, ink, HPos::Center, VPos::Center), (x + c / 2, y + c * 3 / 4))?;
            }
            let yc = y0 + r as i32 * c + c / 2;
            root.draw_text(&labels[r], &text(label_size, INK, HPos::Right, VPos::Center), (x0 - 8, yc))?;
            root.draw_text(&total.to_string(), &text(label_size, MUTED, HPos::Left, VPos::Center), (x0 + n as i32 * c + 8, yc))?;
        }
        // The diagonal outlined, so right answers stand out from confusions of the same size.
        for d in 0..n as i32 {
            let (x, y) = (x0 + d * c, y0 + d * c);
            root.draw(&Rectangle::new([(x + 1, y + 1), (x + c - 1, y + c - 1)], RGBColor(230, 120, 0).stroke_width(2)))?;
        }
        root.draw_text("n", &text(label_size, MUTED, HPos::Left, VPos::Bottom), (x0 + n as i32 * c + 8, y0 - 4))?;
        let down = (FONT, label_size).into_font().transform(FontTransform::Rotate270);
        for (col, label) in labels.iter().enumerate() {
            let style = TextStyle { font: down.clone(), color: INK.to_backend_color(), pos: Pos::new(HPos::Right, VPos::Center) };
            root.draw_text(label, &style, (x0 + col as i32 * c + c / 2, y0 + n as i32 * c + 8))?;
        }
        let axis = text(17, INK, HPos::Center, VPos::Bottom);
        root.draw_text("predicted class", &axis, (x0 + n as i32 * c / 2, height as i32 - 8))?;
        let rotated = TextStyle { font: (FONT, 17).into_font().transform(FontTransform::Rotate270), color: INK.to_backend_color(), pos: Pos::new(HPos::Center, VPos::Top) };
        root.draw_text("true class", &rotated, (6, y0 + n as i32 * c / 2))?;
        Ok(())
    })
}

/// One line of a line chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Dots on the points (per-epoch values); without them a thin line (per-step values).
    pub markers: bool,
    pub colour: RGBColor,
}

/// A line chart over epochs (or any x) with a legend and an optional marked x.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. 0..1 for scores); by default from 0 (or the lowest value when negative) to the highest.
    pub y_range: Option<(f64, f64)>,
    /// A vertical line with its legend name, e.g. the best epoch.
    pub mark_x: Option<(f64, String)>,
    /// Scientific tick labels (learning rates).
    pub scientific: bool,
    /// Where the legend goes: where the lines are not (scores rise to the top, losses fall).
    pub legend: SeriesLabelPosition,
}

impl LineChart {
    /// Curves per epoch: a score with a fixed range (legend low, where score lines are not) or
    /// a loss with a free one (legend high).
    pub fn per_epoch(title: &str, y_desc: &str, series: Vec<Series>, y_range: Option<(f64, f64)>) -> LineChart {
        LineChart {
            title: title.into(),
            x_desc: "epoch".into(),
            y_desc: y_desc.into(),
            series,
            y_range,
            mark_x: None,
            scientific: false,
            legend: if y_range.is_some() { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight },
        }
    }
}

impl LineChart {
    /// The same chart over another x (minutes, trials) than epochs.
    pub fn with_x_desc(mut self, x_desc: &str) -> LineChart {
        self.x_desc = x_desc.to_string();
        self
    }
}

pub fn line_chart_png(chart: &LineChart) -> Result<Vec<u8>> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let points: Vec<(f64, f64)> = chart.series.iter().flat_map(|s| s.points.iter().filter(finite).copied()).collect();
    let x_max = points.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let x_min = points.iter().map(|p| p.0).fold(0.0f64, f64::min);
    let (y_lo, y_hi) = chart.y_range.unwrap_or_else(|| {
        let hi = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        let lo = points.iter().map(|p| p.1).fold(0.0f64, f64::min);
        if hi > lo { (lo, hi + (hi - lo) * 0.08) } else { (lo, lo + 1.0) }
    });
    let scientific = chart.scientific;
    // Two fit side by side on a 1400 px wide window.
    render(660, 420, |root| {
        let mut c = ChartBuilder::on(root)
            .caption(&chart.title, (FONT, 22))
            .margin(14)
            .x_label_area_size(52)
            .y_label_area_size(if scientific { 86 } else { 70 })
            .build_cartesian_2d(x_min..x_max, y_lo..y_hi)?;
        c.configure_mesh()
            .x_desc(chart.x_desc.as_str())
            .y_desc(chart.y_desc.as_str())
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 14))
            .x_label_formatter(&|v| trim_number(*v))
            .y_label_formatter(&|v| if scientific { format!("{v:.1e}") } else { trim_number(*v) })
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        if let Some((x, name)) = &chart.mark_x {
            let grey = RGBColor(120, 120, 120);
            c.draw_series(DashedLineSeries::new([(*x, y_lo), (*x, y_hi)], 6, 4, grey.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
        }
        for s in &chart.series {
            let colour = s.colour;
            let pts: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
            let width = if s.markers { 2 } else { 1 };
            let line = c.draw_series(LineSeries::new(pts.clone(), colour.stroke_width(width)))?;
            line.label(s.name.as_str()).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(3)));
            if s.markers {
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
            }
        }
        c.configure_series_labels()
            .position(chart.legend.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .label_font((FONT, 14))
            .draw()?;
        Ok(())
    })
}

/// `3`, `0.5`, `0.25`: no trailing zeros on tick labels.
pub(super) fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// One set of bars of a grouped bar chart: a value and its printed text per category.
#[derive(Clone, Debug)]
pub struct BarGroup {
    pub name: String,
    pub values: Vec<f64>,
    pub texts: Vec<String>,
    pub colour: RGBColor,
}

/// Horizontal bars, one row per category (first at the top) with one bar per group, the
/// category names on the left and each bar's text at its end.
pub fn grouped_bars_png(title: &str, categories: &[String], groups: &[BarGroup], x_desc: &str, x_max: f64) -> Result<Vec<u8>> {
    let n = categories.len();
    let k = groups.len();
    if n == 0 || k == 0 || groups.iter().any(|g| g.values.len() != n || g.texts.len() != n) {
        bail!("grouped bars need a value and a text per category in every group");
    }
    let bar_h = 13u32;
    let row_h = bar_h * k as u32 + 10;
    let label_w = categories.iter().map(|l| text_width(l, 15)).max().unwrap_or(0) + 24;
    let legend_h = 34;
    let height = 60 + legend_h + row_h * n as u32 + 60;
    let width = 1000;
    render(width, height, |root| {
        root.draw_text(title, &text(22, INK, HPos::Center, VPos::Top), (width as i32 / 2, 10))?;
        // The legend sits under the title so that it never covers a bar.
        let mut x = 20 + label_w as i32;
        for g in groups {
            root.draw(&Rectangle::new([(x, 48), (x + 16, 64)], g.colour.filled()))?;
            root.draw_text(&g.name, &text(15, INK, HPos::Left, VPos::Center), (x + 22, 56))?;
            x += 40 + text_width(&g.name, 15) as i32;
        }
        let area = root.margin(60 + legend_h, 0, 0, 0);
        let mut c = ChartBuilder::on(&area)
            .margin_left(12)
            .margin_right(30)
            .margin_bottom(6)
            .x_label_area_size(52)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..x_max * 1.14, (0usize..n - 1).into_segmented())?;
        let flip = |i: usize| n - 1 - i;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => categories[flip(*i)].clone(),
                _ => String::new(),
            })
            .x_label_formatter(&|v| trim_number(*v))
            .x_desc(x_desc)
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 15))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        let row_px = c.plotting_area().dim_in_pixel().1 as f64 / n as f64;
        let bar_px = ((row_px - 8.0) / k as f64).max(2.0);
        for (j, g) in groups.iter().enumerate() {
            let top_margin = 4.0 + j as f64 * bar_px;
            let bottom_margin = (row_px - top_margin - bar_px).max(0.0);
            let colour = g.colour;
            c.draw_series(g.values.iter().enumerate().map(|(i, &v)| {
                let row = flip(i);
                let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(row + 1)), (v, SegmentValue::Exact(row))], colour.filled());
                bar.set_margin(top_margin.round() as u32, bottom_margin.round() as u32, 0, 0);
                bar
            }))?;
            let dy = (top_margin + bar_px / 2.0 - row_px / 2.0).round() as i32;
            c.draw_series(g.values.iter().zip(&g.texts).enumerate().map(|(i, (&v, t))| {
                EmptyElement::at((v, SegmentValue::CenterOf(flip(i)))) + Text::new(t.clone(), (4, dy), text(12, INK, HPos::Left, VPos::Center))
            }))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("a PNG").to_rgb8()
    }

    fn has_ink(img: &image::RgbImage) -> bool {
        img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 1000
    }

    #[test]
    fn confusion_heat_maps_from_2x2_to_18x18_decode_and_grow_with_classes() {
        let small = confusion_png(&[vec![5, 1], vec![0, 4]], &["Male".into(), "Female".into()], "Gender").unwrap();
        let labels: Vec<String> = (0..18).map(|c| format!("Class/{c}/<30")).collect();
        let counts: Vec<Vec<u64>> = (0..18).map(|r| (0..18).map(|c| if r == c { 9 } else { (r + c) as u64 % 3 }).collect()).collect();
        let big = confusion_png(&counts, &labels, "18 classes").unwrap();
        let (s, b) = (decode(&small), decode(&big));
        assert!(has_ink(&s) && has_ink(&b));
        assert!(b.width() > 900 && b.height() > 900 && b.width() < 2000, "{}x{}", b.width(), b.height());
        assert!(s.width() < b.width());
        // The darkest blue is a full row share: the second row of the small matrix is all column 1.
        assert!(s.pixels().any(|p| p.0 == [8, 48, 107]));
        assert!(confusion_png(&[vec![1, 2]], &["a".into()], "bad").is_err());
    }

    #[test]
    fn line_and_bar_charts_decode() {
        let chart = LineChart {
            title: "Loss".into(),
            x_desc: "epoch".into(),
            y_desc: "loss".into(),
            series: vec![Series { name: "train".into(), points: vec![(1.0, 2.0), (2.0, 1.0), (3.0, f64::NAN)], markers: true, colour: PALETTE[0] }],
            y_range: None,
            mark_x: Some((2.0, "best epoch 2".into())),
            scientific: false,
            legend: SeriesLabelPosition::UpperRight,
        };
        let img = decode(&line_chart_png(&chart).unwrap());
        assert_eq!((img.width(), img.height()), (660, 420));
        assert!(has_ink(&img));
        let bars = grouped_bars_png(
            "Per class",
            &["a".into(), "b".into()],
            &[BarGroup { name: "precision".into(), values: vec![0.5, 1.0], texts: vec!["0.50".into(), "1.00".into()], colour: PALETTE[1] }],
            "score",
            1.0,
        )
        .unwrap();
        assert!(decode(&bars).pixels().any(|p| p.0 == [255, 127, 14]), "the bars are drawn in their group's colour");
        assert_eq!(trim_number(2.0), "2");
        assert_eq!(trim_number(0.25), "0.25");
    }
}
