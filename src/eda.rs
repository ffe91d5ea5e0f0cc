//! Exploratory data analysis of a dataset layout: counts, distributions, image sizes, charts.
use crate::image::decode::image_size;
use crate::util::data_error::Problems;
use crate::data::dataset::{read_eval, TrainSet};
use crate::labels::{AgeBand, AgeBounds, Class, Mask, NUM_CLASSES};
use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct EdaReport {
    pub data: PathBuf,
    pub people: usize,
    pub images: usize,
    pub skipped_files: usize,
    pub skipped_paths: Vec<PathBuf>,
    pub relabel_file: Option<PathBuf>,
    pub relabeled: usize,
    pub age_bounds: [u32; 2],
    /// Images per 18-way class, in class order.
    pub class_counts: Vec<usize>,
    pub class_labels: Vec<String>,
    pub mask_counts: BTreeMap<String, usize>,
    pub gender_counts: BTreeMap<String, usize>,
    pub age_band_counts: BTreeMap<String, usize>,
    /// People per age in years.
    pub age_histogram: BTreeMap<u32, usize>,
    /// Images per `WxH`.
    pub image_sizes: BTreeMap<String, usize>,
    /// Images per lower-case extension.
    pub extensions: BTreeMap<String, usize>,
    /// Images listed in eval/info.csv, when the layout has one.
    pub eval_images: Option<usize>,
    /// Problems reported and skipped under --skip-bad.
    pub problems: Vec<String>,
}

pub fn analyse(set: &TrainSet, bounds: &AgeBounds, skip_bad: bool) -> Result<EdaReport> {
    let samples = set.samples(bounds);
    let mut class_counts = vec![0; NUM_CLASSES];
    for s in &samples {
        class_counts[s.class.encode()] += 1;
    }
    let mut mask_counts = BTreeMap::new();
    let mut gender_counts = BTreeMap::new();
    let mut age_band_counts = BTreeMap::new();
    for (c, &n) in class_counts.iter().enumerate() {
        let class = Class::decode(c).expect("class in range");
        *mask_counts.entry(class.mask.name().to_string()).or_insert(0) += n;
        *gender_counts.entry(class.gender.name().to_string()).or_insert(0) += n;
        *age_band_counts.entry(bounds.band_label(class.age)).or_insert(0) += n;
    }
    let mut age_histogram = BTreeMap::new();
    for p in &set.people {
        *age_histogram.entry(p.age).or_insert(0) += 1;
    }
    let mut extensions = BTreeMap::new();
    for s in &samples {
        let ext = s.path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        *extensions.entry(ext).or_insert(0) += 1;
    }
    // Reading headers of every image also finds the unreadable ones.
    let sizes: Vec<_> = samples.par_iter().map(|s| image_size(&s.path)).collect();
    let mut problems = Problems::new(skip_bad);
    problems.reported.extend(set.problems.iter().cloned());
    let mut image_sizes = BTreeMap::new();
    for size in sizes {
        match size {
            Ok((w, h)) => *image_sizes.entry(format!("{w}x{h}")).or_insert(0) += 1,
            Err(e) => problems.bad(e)?,
        }
    }
    let eval_dir = set.root.join("eval");
    let eval_images = if eval_dir.join("info.csv").is_file() {
        let eval = read_eval(&eval_dir, skip_bad)?;
        problems.reported.extend(eval.problems);
        Some(eval.image_ids.len())
    } else {
        None
    };
    Ok(EdaReport {
        data: set.root.clone(),
        people: set.people.len(),
        images: samples.len(),
        skipped_files: set.skipped_files.len(),
        skipped_paths: set.skipped_files.clone(),
        relabel_file: set.relabel_file.clone(),
        relabeled: set.relabeled,
        age_bounds: [bounds.middle, bounds.old],
        class_labels: Class::all().map(|c| c.label(bounds)).collect(),
        class_counts,
        mask_counts,
        gender_counts,
        age_band_counts,
        age_histogram,
        image_sizes,
        extensions,
        eval_images,
        problems: problems.reported,
    })
}

/// The report as a human reads it in a terminal.
pub fn render_text(r: &EdaReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "dataset        {}", r.data.display());
    let _ = writeln!(s, "people         {}", r.people);
    let _ = writeln!(s, "images         {}", r.images);
    let _ = writeln!(s, "skipped files  {} (macOS junk and files that are not one of the seven photos)", r.skipped_files);
    match &r.relabel_file {
        Some(f) => {
            let _ = writeln!(s, "relabeled      {} corrections from {}", r.relabeled, f.display());
        }
        None => {
            let _ = writeln!(s, "relabeled      0 (no relabel file)");
        }
    }
    if let Some(n) = r.eval_images {
        let _ = writeln!(s, "eval images    {n}");
    }
    let _ = writeln!(s, "\nclass  {:<26} images  share", "label");
    let total = r.images.max(1) as f64;
    for (c, (label, n)) in r.class_labels.iter().zip(&r.class_counts).enumerate() {
        let _ = writeln!(s, "{c:>5}  {label:<26} {n:>6}  {:>5.1}%", *n as f64 * 100.0 / total);
    }
    let line = |name: &str, m: &BTreeMap<String, usize>| {
        format!("{name:<14} {}\n", m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
    };
    s.push('\n');
    s += &line("mask", &r.mask_counts);
    s += &line("gender", &r.gender_counts);
    s += &line("age band", &r.age_band_counts);
    s += &line("image sizes", &r.image_sizes);
    s += &line("extensions", &r.extensions);
    if let (Some((lo, _)), Some((hi, _))) = (r.age_histogram.first_key_value(), r.age_histogram.last_key_value()) {
        let _ = writeln!(s, "ages           {lo}..{hi} (people per year in age_histogram.png / --json)");
    }
    for p in &r.problems {
        let _ = writeln!(s, "problem        {p}");
    }
    s
}

const FONT: &str = "sans-serif";

/// The files [`write_charts`] writes.
pub const CHART_FILES: [&str; 3] = ["class_distribution.png", "age_histogram.png", "eda.json"];

/// Writes `class_distribution.png`, `age_histogram.png` and `eda.json` into `dir`.
pub fn write_charts(r: &EdaReport, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let classes = dir.join(CHART_FILES[0]);
    draw_class_chart(r, &classes).with_context(|| format!("cannot draw {}", classes.display()))?;
    let ages = dir.join(CHART_FILES[1]);
    draw_age_chart(r, &ages).with_context(|| format!("cannot draw {}", ages.display()))?;
    let json = dir.join(CHART_FILES[2]);
    crate::util::write_atomic(&json, serde_json::to_string_pretty(r)?.as_bytes())?;
    Ok(vec![classes, ages, json])
}

fn draw_class_chart(r: &EdaReport, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1100, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = *r.class_counts.iter().max().unwrap_or(&1) as f64 * 1.15 + 1.0;
    // Horizontal bars keep the class names readable; class 0 at the top.
    let row = |c: usize| NUM_CLASSES - 1 - c;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Images per class ({} images, {} people)", r.images, r.people), (FONT, 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(230)
        .build_cartesian_2d(0f64..max, (0usize..NUM_CLASSES - 1).into_segmented())?;
    let labels = r.class_labels.clone();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(NUM_CLASSES)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < NUM_CLASSES => format!("{:>2}  {}", row(*i), labels[row(*i)]),
            _ => String::new(),
        })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("images")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .draw()?;
    let colour = |c: usize| match Class::decode(c).map(|k| k.mask) {
        Some(Mask::Wear) => RGBColor(66, 133, 244),
        Some(Mask::Incorrect) => RGBColor(244, 160, 0),
        _ => RGBColor(219, 68, 55),
    };
    for (c, &n) in r.class_counts.iter().enumerate() {
        let (lo, hi) = (SegmentValue::Exact(row(c)), SegmentValue::Exact(row(c) + 1));
        let mut bar = Rectangle::new([(0.0, lo), (n as f64, hi)], colour(c).mix(0.85).filled());
        bar.set_margin(3, 3, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        chart.draw_series(std::iter::once(Text::new(
            format!(" {n}"),
            (n as f64, SegmentValue::CenterOf(row(c))),
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        )))?;
    }
    root.present()?;
    Ok(())
}

fn draw_age_chart(r: &EdaReport, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1000, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = r.age_histogram.keys().next().copied().unwrap_or(0);
    let hi = r.age_histogram.keys().last().copied().unwrap_or(100) + 1;
    let max = *r.age_histogram.values().max().unwrap_or(&1) as f64 * 1.15 + 1.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("People per age (bands {})", AgeBand::ALL.map(|b| band_label(r, b)).join(", ")),
            (FONT, 24),
        )
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0f64..max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("age (years)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("people")
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .draw()?;
    let bounds = AgeBounds { middle: r.age_bounds[0], old: r.age_bounds[1] };
    for (&age, &n) in &r.age_histogram {
        let colour = match bounds.band(age) {
            AgeBand::Young => RGBColor(66, 133, 244),
            AgeBand::Middle => RGBColor(15, 157, 88),
            AgeBand::Old => RGBColor(219, 68, 55),
        };
        chart.draw_series(std::iter::once(Rectangle::new([(age, 0.0), (age + 1, n as f64)], colour.filled())))?;
    }
    root.present()?;
    Ok(())
}

fn band_label(r: &EdaReport, band: AgeBand) -> String {
    AgeBounds { middle: r.age_bounds[0], old: r.age_bounds[1] }.band_label(band)
}
