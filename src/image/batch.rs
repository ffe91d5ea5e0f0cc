//! Decoded images as one tensor for a network.
use super::decode::RgbImage;
use anyhow::{bail, Result};
use tch::Tensor;

/// A uint8 NHWC batch `[B, H, W, 3]` of decoded images, which must all have one size.
pub fn batch_u8(images: &[&RgbImage]) -> Result<Tensor> {
    let Some(first) = images.first() else { bail!("an empty batch") };
    let (w, h) = (first.width, first.height);
    let mut buf = Vec::with_capacity(images.len() * (w * h * 3) as usize);
    for img in images {
        if (img.width, img.height) != (w, h) || img.data.len() != (w * h * 3) as usize {
            bail!("images of different sizes in one batch: {}x{} and {}x{}", w, h, img.width, img.height);
        }
        buf.extend_from_slice(&img.data);
    }
    Ok(Tensor::from_slice(&buf).view([images.len() as i64, h as i64, w as i64, 3]))
}
