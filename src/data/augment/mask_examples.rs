//! Examples of what `augment.synth_mask` (and `synth_mask_on_masked`) fed a run: the first training
//! samples painted in its first epoch, as the model saw them (after the crop and the resize), for
//! the run report.
use crate::data::prepared::{prepare, PrepareSettings};
use crate::data::settings::DataConfig;
use anyhow::{Context, Result};
use image::ImageEncoder;
use std::path::Path;

/// One painted training sample.
pub struct PaintedExample {
    /// JPEG of the model input.
    pub jpeg: Vec<u8>,
    /// `incorrect (chin only)`, `worn`, ...
    pub wear: String,
    pub path: String,
}

/// Up to `count` training samples of `data` painted in epoch 1 under `cfg` (reads the dataset and
/// its faces.csv again, as the run did).
pub fn painted_examples(data: &Path, cfg: &PrepareSettings, count: usize) -> Result<Vec<PaintedExample>> {
    let prepared = prepare(data, cfg)?;
    let Some(plan) = prepared.synth_plan(cfg) else { return Ok(Vec::new()) };
    let loader = prepared.loader(&PrepareSettings { data: DataConfig { cache_mib: 0, ..cfg.data.clone() }, ..cfg.clone() }).for_epoch(1);
    let mut out = Vec::new();
    for &i in prepared.train_idx.iter().filter(|&&i| plan.faces[i].is_some()) {
        if out.len() >= count {
            break;
        }
        // Only the samples the plan paints are decoded.
        if !plan.drawn(1, i) {
            continue;
        }
        let batch = loader.load(&[i])?;
        let Some(Some(mask)) = batch.painted.first().copied() else { continue };
        let pixels = Vec::<u8>::try_from(batch.images.contiguous().view([-1])).context("painted pixels")?;
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).write_image(&pixels, prepared.prep.width, prepared.prep.height, image::ExtendedColorType::Rgb8)?;
        out.push(PaintedExample { jpeg, wear: mask.describe(), path: prepared.samples[i].path.display().to_string() });
    }
    Ok(out)
}
