//! FaceRes's reading of faces: each face framed as the FaceRes parity test frames faces (the MTCNN
//! box grown by the reading's margin on every side, made square, resized to 224 x 224), scaled as
//! the network was trained, and run through it. One framing for `face-attributes`, the heads'
//! fitting in `tune`, and the fusion in `predict`, `predict --faces` and `serve`.
use super::{FaceEvidence, FaceFeatures, FaceReading};
use crate::data::face_crop::face_region;
use crate::faces::cache::FacesCache;
use crate::image::decode::{read_upright, resize_region, Crop, Preprocess, RgbImage};
use crate::model::faceres::{self, FaceRes, FaceResOutput, FEATURES, INPUT_SIZE};
use crate::image::batch::batch_u8;
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// FaceRes with its weights, reading faces one way.
pub struct FaceReader {
    pub reading: FaceReading,
    net: FaceRes,
}

/// The evidence the face heads fuse for one batch of images: each reader's features of its own
/// crops (`crops[k]`, made by `readers[k]`; None where the image has no face).
pub fn read_evidence(readers: &[FaceReader], crops: &[&[Option<RgbImage>]]) -> Result<FaceEvidence> {
    readers.iter().zip(crops).map(|(reader, crops)| Ok((reader.reading.key(), reader.features_where_found(crops)?))).collect()
}

/// FaceRes's input size, with no crop of its own (the region is the crop).
const INPUT: Preprocess = Preprocess { crop: Crop::None, width: INPUT_SIZE as u32, height: INPUT_SIZE as u32 };

impl FaceReader {
    /// Loads the reading's FaceRes weights (fetched into the weights cache when missing).
    pub fn open(reading: &FaceReading, device: Device) -> Result<FaceReader> {
        Ok(FaceReader { reading: reading.clone(), net: faceres::open(&reading.network, device)? })
    }

    /// The face `bbox` of `image`, framed for FaceRes.
    pub fn crop(&self, image: &RgbImage, bbox: &[f32; 4]) -> Result<RgbImage, String> {
        crop_face(image, bbox, self.reading.margin)
    }

    /// Everything the network says about `[N, 224, 224, 3]` uint8 crops.
    pub fn forward(&self, crops_u8: &Tensor) -> FaceResOutput {
        let x = crops_u8.to_device(self.net.vs.device()).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
        tch::no_grad(|| self.net.model.forward(&faceres::normalise(&x)))
    }

    /// `[N, 1024]` pooled features (CPU) of crops made by [`FaceReader::crop`].
    pub fn features(&self, crops: &[&RgbImage]) -> Result<Tensor> {
        if crops.is_empty() {
            return Ok(Tensor::zeros([0, FEATURES], (Kind::Float, Device::Cpu)));
        }
        Ok(self.forward(&batch_u8(crops)?).features.to_device(Device::Cpu))
    }

    /// Features of faces that may be missing: `crops[i]` None gives a zero row, not found.
    pub fn features_where_found(&self, crops: &[Option<RgbImage>]) -> Result<FaceFeatures> {
        let present: Vec<&RgbImage> = crops.iter().flatten().collect();
        let found: Vec<bool> = crops.iter().map(Option::is_some).collect();
        let read = self.features(&present)?;
        let mut features = Tensor::zeros([crops.len() as i64, FEATURES], (Kind::Float, Device::Cpu));
        let rows: Vec<i64> = found.iter().enumerate().filter(|(_, f)| **f).map(|(i, _)| i as i64).collect();
        if !rows.is_empty() {
            let _ = features.index_copy_(0, &Tensor::from_slice(&rows), &read);
        }
        Ok(FaceFeatures { features, found })
    }

    /// The largest face's features of each photo, by its row in `cache` (faces.csv lists a
    /// photo's faces largest first); a photo without a face, or not in the cache, is not found.
    /// A photo that cannot be read now is an error, or with `skip_bad` reported (second value)
    /// and not found.
    pub fn largest_faces(&self, photos: &[PathBuf], cache: &FacesCache, batch: usize, skip_bad: bool) -> Result<(FaceFeatures, Vec<String>)> {
        let mut parts = Vec::new();
        let mut found = Vec::with_capacity(photos.len());
        let mut skipped = Vec::new();
        let margin = self.reading.margin;
        for chunk in photos.chunks(batch.max(1)) {
            let crops: Vec<Result<Option<RgbImage>>> = chunk
                .par_iter()
                .map(|path| {
                    let Some(face) = cache.get(path).and_then(|e| e.faces.first()) else { return Ok(None) };
                    let image = read_upright(path)?;
                    crop_face(&image, &face.bbox, margin).map(Some).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                })
                .collect();
            let mut kept = Vec::with_capacity(chunk.len());
            for (path, crop) in chunk.iter().zip(crops) {
                match crop {
                    Ok(c) => kept.push(c),
                    Err(e) if skip_bad => {
                        skipped.push(format!("{}: {e:#}", path.display()));
                        kept.push(None);
                    }
                    Err(e) => return Err(e).context("reading faces for FaceRes"),
                }
            }
            let part = self.features_where_found(&kept)?;
            found.extend(part.found);
            parts.push(part.features);
        }
        let features = if parts.is_empty() { Tensor::zeros([0, FEATURES], (Kind::Float, Device::Cpu)) } else { Tensor::cat(&parts, 0) };
        Ok((FaceFeatures { features, found }, skipped))
    }
}

/// The face `bbox` of `image`, grown by `margin` of its size on every side, squared, resized to
/// FaceRes's input.
pub fn crop_face(image: &RgbImage, bbox: &[f32; 4], margin: f32) -> Result<RgbImage, String> {
    resize_region(image, Some(face_region(bbox, margin, image.width, image.height)), &INPUT)
}
