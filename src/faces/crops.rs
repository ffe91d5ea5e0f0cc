//! Batched area resampling of many crops of the photos at once, on the device.
//!
//! MTCNN's second and third stages resample each candidate box to 24x24 and 48x48 pixels with
//! area interpolation (`F.interpolate(mode="area")`, which is `adaptive_avg_pool2d`): each output
//! pixel is the mean of a rectangle of input pixels. With a summed-area table of the photos, every
//! rectangle's sum is four look-ups, so all crops of a stage resample in one gather instead of one
//! call per crop. The table is kept in float64, exact for 8-bit pixels at any photo size.
use tch::{Device, Kind, Tensor};

/// A crop: rows `y0..y1` and columns `x0..x1` (end exclusive) of photo `image` of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropRect {
    pub image: usize,
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

/// Summed-area tables of a batch of photos.
pub struct Integral {
    /// `(3, B * (H + 1) * (W + 1))` float64: per channel, each photo's table with a zero row and column in front.
    table: Tensor,
    height: i64,
    width: i64,
    device: Device,
}

/// PyTorch's adaptive pooling bins: output `i` of `out` covers input `start..end` of `size`.
fn bin(i: i64, out: i64, size: i64) -> (i64, i64) {
    let start = (i * size) / out;
    let end = ((i + 1) * size + out - 1) / out;
    (start, end)
}

impl Integral {
    /// `images`: `(B, 3, H, W)` on the device, any real dtype.
    pub fn new(images: &Tensor) -> Integral {
        let (b, c, h, w) = images.size4().expect("a (B, 3, H, W) batch");
        let table = images
            .to_kind(Kind::Double)
            .cumsum(2, Kind::Double)
            .cumsum(3, Kind::Double)
            .constant_pad_nd([1, 0, 1, 0])
            .permute([1, 0, 2, 3])
            .reshape([c, b * (h + 1) * (w + 1)]);
        Integral { table, height: h, width: w, device: images.device() }
    }

    /// The crops area-resampled to `out` x `out`: `(K, 3, out, out)` float32 on the device.
    /// Every crop must lie inside its photo and be at least one pixel wide and high.
    pub fn resample(&self, crops: &[CropRect], out: i64) -> Tensor {
        let k = crops.len() as i64;
        let stride = self.width + 1;
        let plane = (self.height + 1) * stride;
        let (mut ys0, mut ys1, mut xs0, mut xs1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut hs, mut ws, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for c in crops {
            debug_assert!(c.x0 >= 0 && c.y0 >= 0 && c.x1 <= self.width && c.y1 <= self.height && c.x1 > c.x0 && c.y1 > c.y0);
            let (ch, cw) = (c.y1 - c.y0, c.x1 - c.x0);
            for i in 0..out {
                let (a, b) = bin(i, out, ch);
                ys0.push(c.y0 + a);
                ys1.push(c.y0 + b);
                hs.push((b - a) as f64);
                let (a, b) = bin(i, out, cw);
                xs0.push(c.x0 + a);
                xs1.push(c.x0 + b);
                ws.push((b - a) as f64);
            }
            base.push(c.image as i64 * plane);
        }
        let dev = |v: Vec<i64>| Tensor::from_slice(&v).to_device(self.device);
        let rows = |v: Vec<i64>| dev(v).view([k, out, 1]) * stride;
        let cols = |v: Vec<i64>| dev(v).view([k, 1, out]);
        let base = dev(base).view([k, 1, 1]);
        let (y0, y1) = (rows(ys0) + &base, rows(ys1) + &base);
        let (x0, x1) = (cols(xs0), cols(xs1));
        let at = |idx: Tensor| self.table.index_select(1, &idx.reshape([-1]));
        let sum = at(&y1 + &x1) - at(&y0 + &x1) - at(&y1 + &x0) + at(&y0 + &x0);
        let hs = Tensor::from_slice(&hs).to_device(self.device).view([k, out, 1]);
        let ws = Tensor::from_slice(&ws).to_device(self.device).view([k, 1, out]);
        let area = (hs * ws).reshape([1, -1]);
        (sum / area).to_kind(Kind::Float).view([3, k, out, out]).permute([1, 0, 2, 3]).contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_match_adaptive_average_pooling_of_each_crop() {
        tch::manual_seed(3);
        let images = Tensor::randint(256, [2, 3, 37, 29], (Kind::Float, Device::Cpu));
        let integral = Integral::new(&images);
        // Shrinking, enlarging (a crop smaller than the output) and a whole photo.
        let crops = [
            CropRect { image: 0, x0: 3, y0: 5, x1: 27, y1: 36 },
            CropRect { image: 1, x0: 10, y0: 2, x1: 17, y1: 11 },
            CropRect { image: 1, x0: 0, y0: 0, x1: 29, y1: 37 },
        ];
        let got = integral.resample(&crops, 12);
        for (n, c) in crops.iter().enumerate() {
            let want = images
                .get(c.image as i64)
                .narrow(1, c.y0, c.y1 - c.y0)
                .narrow(2, c.x0, c.x1 - c.x0)
                .unsqueeze(0)
                .adaptive_avg_pool2d([12, 12]);
            let diff = (got.get(n as i64).unsqueeze(0) - want).abs().max().double_value(&[]);
            assert!(diff < 1e-3, "crop {n}: max difference {diff}");
        }
    }
}
