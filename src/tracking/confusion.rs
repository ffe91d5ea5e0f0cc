//! The confusion matrix as a PNG image: rows are true classes, columns predicted ones, each cell
//! shaded by its share of the row (the class's recall on the outlined diagonal) and labelled with its count.
use anyhow::{bail, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width and height of the image `confusion_png` draws, in pixels.
pub const CONFUSION_SIZE: (u32, u32) = (1000, 820);

const FONT: &str = "sans-serif";

/// Draws `confusion` (`confusion[true][predicted]`) with `labels[c]` naming class `c`.
pub fn confusion_png(confusion: &[Vec<u64>], labels: &[String]) -> Result<Vec<u8>> {
    let n = confusion.len();
    if n == 0 || confusion.iter().any(|row| row.len() != n) {
        bail!("a confusion matrix must be square and not empty");
    }
    let (width, height) = CONFUSION_SIZE;
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let total: u64 = confusion.iter().flatten().sum();
        let correct: u64 = (0..n).map(|c| confusion[c][c]).sum();
        let accuracy = if total == 0 { 0.0 } else { correct as f64 / total as f64 };
        // Row 0 at the top: the y axis counts upwards, so class c sits at row n-1-c.
        let row = move |c: usize| n - 1 - c;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Confusion matrix: {total} images, accuracy {accuracy:.3}"), (FONT, 24))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(220)
            .build_cartesian_2d((0usize..n - 1).into_segmented(), (0usize..n - 1).into_segmented())?;
        let label = |c: usize| labels.get(c).map(|l| format!("{c:>2}  {l}")).unwrap_or_else(|| format!("{c:>2}"));
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(c) if *c < n => c.to_string(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(r) if *r < n => label(row(*r)),
                _ => String::new(),
            })
            .x_desc("predicted class")
            .y_desc("true class")
            .axis_desc_style((FONT, 17))
            .label_style((FONT, 14))
            .draw()?;
        for (t, counts) in confusion.iter().enumerate() {
            let row_total: u64 = counts.iter().sum();
            for (p, &count) in counts.iter().enumerate() {
                let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
                let (x, y) = (p, row(t));
                let cell = [(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))];
                chart.draw_series(std::iter::once(Rectangle::new(cell.clone(), shade(share).filled())))?;
                // The diagonal (correct predictions) is outlined so that it reads at a glance.
                let border = if t == p { RGBColor(60, 60, 60).stroke_width(2) } else { RGBColor(220, 220, 220).stroke_width(1) };
                chart.draw_series(std::iter::once(Rectangle::new(cell, border)))?;
                if count > 0 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    chart.draw_series(std::iter::once(Text::new(
                        count.to_string(),
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        TextStyle::from((FONT, 13).into_font()).color(&ink).pos(Pos::new(HPos::Center, VPos::Center)),
                    )))?;
                }
            }
        }
        root.present()?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(image::codecs::png::PngEncoder::new(&mut png), &rgb, width, height, image::ExtendedColorType::Rgb8)?;
    Ok(png)
}

/// White for an empty cell to dark blue for a whole row.
fn shade(share: f64) -> RGBColor {
    let mix = |from: u8, to: u8| (from as f64 + (to as f64 - from as f64) * share.clamp(0.0, 1.0)).round() as u8;
    RGBColor(mix(255, 8), mix(255, 48), mix(255, 107))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{AgeBounds, Class, NUM_CLASSES};

    #[test]
    fn draws_an_18_class_matrix_as_a_png_of_the_stated_size() {
        let bounds = AgeBounds::new(30, 60).unwrap();
        let labels: Vec<String> = Class::all().map(|c| c.label(&bounds)).collect();
        let mut m = vec![vec![0u64; NUM_CLASSES]; NUM_CLASSES];
        for c in 0..NUM_CLASSES {
            m[c][c] = 10 + c as u64;
            m[c][(c + 1) % NUM_CLASSES] = 3;
        }
        let png = confusion_png(&m, &labels).unwrap();
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), CONFUSION_SIZE);
        // Something beyond the white background was drawn: dark diagonal cells.
        let dark = img.pixels().filter(|p| p.0.iter().all(|&v| v < 120)).count();
        assert!(dark > 1000, "only {dark} dark pixels");
        assert!(confusion_png(&[], &labels).is_err());
        assert!(confusion_png(&[vec![1, 2]], &labels).is_err());
    }
}
