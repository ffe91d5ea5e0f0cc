//! MTCNN (Zhang et al. 2016) on tch: P-Net proposes faces over an image pyramid, R-Net refines
//! the proposals, O-Net scores them and finds five landmarks. The pipeline follows
//! facenet-pytorch's `detect_face` (its weights, thresholds, box arithmetic, crops and
//! suppressions), so the two give the same faces; what differs is how the work is batched: every
//! crop of a stage is resampled in one gather (see [`super::crops`]) and every photo of a batch
//! of equal-sized photos goes through each network together, with the candidates brought to
//! the CPU once per pyramid level and once per later stage for the suppressions.
use super::boxes::{nms, BoxF, Face, Overlap};
use super::crops::{CropRect, Integral};
use crate::image::decode::RgbImage;
use crate::weights::torchfile;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// The three weight files facenet-pytorch ships, in the order P, R, O.
pub const WEIGHT_FILES: [&str; 3] = ["pnet.pt", "rnet.pt", "onet.pt"];

pub use super::boxes::DEFAULT_MIN_FACE;

/// The most candidates P-Net may propose in one photo at one pyramid level. Each is compared
/// with every other in the suppression that follows (quadratic time), then cropped and run
/// through R-Net: a photo of real faces, a crowd included, stays far below this; a photo that
/// exceeds it (noise, fine repeated texture) is refused with [`TooManyCandidates`] instead of
/// holding the detector for minutes.
pub const MAX_LEVEL_CANDIDATES: usize = 20_000;

/// A photo with more face candidates than the detector examines ([`MAX_LEVEL_CANDIDATES`]).
#[derive(Debug, thiserror::Error)]
#[error("{found} face candidates at one scale, more than the detector examines ({limit}): a photo of busy texture rather than faces")]
pub struct TooManyCandidates {
    /// The photo of the batch (its index) that exceeded the limit.
    pub image: usize,
    pub found: usize,
    pub limit: usize,
}

/// facenet-pytorch's `MTCNN` defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// The smallest face searched for, in pixels.
    pub min_face_size: f64,
    /// Face probability thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f64; 3],
    /// Scale step of the image pyramid.
    pub factor: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig { min_face_size: DEFAULT_MIN_FACE, thresholds: [0.6, 0.7, 0.7], factor: 0.709 }
    }
}

fn prelu(p: nn::Path, n: i64) -> Tensor {
    p.var("weight", &[n], nn::Init::Const(0.25))
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, k, Default::default())
}

fn pool(x: &Tensor, k: i64) -> Tensor {
    x.max_pool2d([k, k], [2, 2], [0, 0], [1, 1], true)
}

/// Flattens `(N, C, H, W)` as the original Caffe/TensorFlow weights expect: `(N, W, H, C)` order.
fn flatten_whc(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    x.permute([0, 3, 2, 1]).contiguous().view([n, -1])
}

struct PNet {
    conv1: nn::Conv2D,
    prelu1: Tensor,
    conv2: nn::Conv2D,
    prelu2: Tensor,
    conv3: nn::Conv2D,
    prelu3: Tensor,
    conv4_1: nn::Conv2D,
    conv4_2: nn::Conv2D,
}

impl PNet {
    fn new(p: &nn::Path) -> PNet {
        PNet {
            conv1: conv(p / "conv1", 3, 10, 3),
            prelu1: prelu(p / "prelu1", 10),
            conv2: conv(p / "conv2", 10, 16, 3),
            prelu2: prelu(p / "prelu2", 16),
            conv3: conv(p / "conv3", 16, 32, 3),
            prelu3: prelu(p / "prelu3", 32),
            conv4_1: conv(p / "conv4_1", 32, 2, 1),
            conv4_2: conv(p / "conv4_2", 32, 4, 1),
        }
    }

    /// `(box regression (N, 4, h, w), face probability (N, 2, h, w))`.
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = pool(&self.conv1.forward(x).prelu(&self.prelu1), 2);
        let x = self.conv2.forward(&x).prelu(&self.prelu2);
        let x = self.conv3.forward(&x).prelu(&self.prelu3);
        (self.conv4_2.forward(&x), self.conv4_1.forward(&x).softmax(1, Kind::Float))
    }
}

struct RNet {
    conv1: nn::Conv2D,
    prelu1: Tensor,
    conv2: nn::Conv2D,
    prelu2: Tensor,
    conv3: nn::Conv2D,
    prelu3: Tensor,
    dense4: nn::Linear,
    prelu4: Tensor,
    dense5_1: nn::Linear,
    dense5_2: nn::Linear,
}

impl RNet {
    fn new(p: &nn::Path) -> RNet {
        RNet {
            conv1: conv(p / "conv1", 3, 28, 3),
            prelu1: prelu(p / "prelu1", 28),
            conv2: conv(p / "conv2", 28, 48, 3),
            prelu2: prelu(p / "prelu2", 48),
            conv3: conv(p / "conv3", 48, 64, 2),
            prelu3: prelu(p / "prelu3", 64),
            dense4: nn::linear(p / "dense4", 576, 128, Default::default()),
            prelu4: prelu(p / "prelu4", 128),
            dense5_1: nn::linear(p / "dense5_1", 128, 2, Default::default()),
            dense5_2: nn::linear(p / "dense5_2", 128, 4, Default::default()),
        }
    }

    /// `(box regression (N, 4), face probability (N, 2))` of 24x24 crops.
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = pool(&self.conv1.forward(x).prelu(&self.prelu1), 3);
        let x = pool(&self.conv2.forward(&x).prelu(&self.prelu2), 3);
        let x = self.conv3.forward(&x).prelu(&self.prelu3);
        let x = self.dense4.forward(&flatten_whc(&x)).prelu(&self.prelu4);
        (self.dense5_2.forward(&x), self.dense5_1.forward(&x).softmax(1, Kind::Float))
    }
}

struct ONet {
    conv1: nn::Conv2D,
    prelu1: Tensor,
    conv2: nn::Conv2D,
    prelu2: Tensor,
    conv3: nn::Conv2D,
    prelu3: Tensor,
    conv4: nn::Conv2D,
    prelu4: Tensor,
    dense5: nn::Linear,
    prelu5: Tensor,
    dense6_1: nn::Linear,
    dense6_2: nn::Linear,
    dense6_3: nn::Linear,
}

impl ONet {
    fn new(p: &nn::Path) -> ONet {
        ONet {
            conv1: conv(p / "conv1", 3, 32, 3),
            prelu1: prelu(p / "prelu1", 32),
            conv2: conv(p / "conv2", 32, 64, 3),
            prelu2: prelu(p / "prelu2", 64),
            conv3: conv(p / "conv3", 64, 64, 3),
            prelu3: prelu(p / "prelu3", 64),
            conv4: conv(p / "conv4", 64, 128, 2),
            prelu4: prelu(p / "prelu4", 128),
            dense5: nn::linear(p / "dense5", 1152, 256, Default::default()),
            prelu5: prelu(p / "prelu5", 256),
            dense6_1: nn::linear(p / "dense6_1", 256, 2, Default::default()),
            dense6_2: nn::linear(p / "dense6_2", 256, 4, Default::default()),
            dense6_3: nn::linear(p / "dense6_3", 256, 10, Default::default()),
        }
    }

    /// `(box regression (N, 4), landmarks (N, 10): five x then five y, face probability (N, 2))` of 48x48 crops.
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let x = pool(&self.conv1.forward(x).prelu(&self.prelu1), 3);
        let x = pool(&self.conv2.forward(&x).prelu(&self.prelu2), 3);
        let x = pool(&self.conv3.forward(&x).prelu(&self.prelu3), 2);
        let x = self.conv4.forward(&x).prelu(&self.prelu4);
        let x = self.dense5.forward(&flatten_whc(&x)).prelu(&self.prelu5);
        (self.dense6_2.forward(&x), self.dense6_3.forward(&x), self.dense6_1.forward(&x).softmax(1, Kind::Float))
    }
}

/// A candidate between stages: its photo, box and (after R-Net and O-Net) score.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    image: usize,
    bbox: BoxF,
    score: f32,
}

/// The loaded detector.
pub struct Mtcnn {
    _vs: VarStore,
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    device: Device,
    pub config: DetectorConfig,
}

/// The three weight files in `dir`, or an error that says how to get them.
pub fn weight_paths(dir: &Path) -> Result<[PathBuf; 3]> {
    let paths = WEIGHT_FILES.map(|f| dir.join(f));
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        bail!("MTCNN weights not found: {} is missing (get them with `masklab weights fetch mtcnn`)", missing.display());
    }
    Ok(paths)
}

/// Copies a checkpoint's tensors into the variables under `prefix.`; every variable must be in
/// the file with its shape, and the file must hold nothing else.
fn load_net(vs: &VarStore, prefix: &str, path: &Path) -> Result<()> {
    let checkpoint = torchfile::read(path)?;
    let mut vars: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix(&format!("{prefix}.")).map(|s| (s.to_string(), t)))
        .collect();
    let mut unexpected = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (name, t) in &checkpoint.tensors {
            match vars.remove(name) {
                None => unexpected.push(name.clone()),
                Some(mut var) => {
                    if var.size() != t.size() {
                        bail!("{}: tensor {name} has shape {:?}, {prefix} expects {:?}", path.display(), t.size(), var.size());
                    }
                    var.copy_(t);
                }
            }
        }
        Ok(())
    })?;
    if !vars.is_empty() || !unexpected.is_empty() {
        bail!(
            "{} is not {prefix} weights: missing [{}], unexpected [{}]",
            path.display(),
            vars.keys().cloned().collect::<Vec<_>>().join(", "),
            unexpected.join(", ")
        );
    }
    Ok(())
}

/// facenet-pytorch's `pad`: the box truncated to integers and clipped, as the rows `y - 1 .. ey`
/// and columns `x - 1 .. ex` it crops; None when nothing of the box is inside the photo.
fn crop_of(c: &Candidate, width: usize, height: usize) -> Option<CropRect> {
    let t = |v: f32| v.trunc() as i64;
    let (x, y) = (t(c.bbox[0]).max(1), t(c.bbox[1]).max(1));
    let (ex, ey) = (t(c.bbox[2]).min(width as i64), t(c.bbox[3]).min(height as i64));
    (ey > y - 1 && ex > x - 1).then_some(CropRect { image: c.image, x0: x - 1, y0: y - 1, x1: ex, y1: ey })
}

/// facenet-pytorch's `rerec`: the square of the box's longer side, on the same centre.
fn square(b: BoxF) -> BoxF {
    let (h, w) = (b[3] - b[1], b[2] - b[0]);
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// facenet-pytorch's `bbreg`: the box moved by a regression in units of its pixel-inclusive size.
fn regress(b: BoxF, reg: &[f32]) -> BoxF {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [b[0] + reg[0] * w, b[1] + reg[1] * h, b[2] + reg[2] * w, b[3] + reg[3] * h]
}

/// Suppression within each photo; returns the kept indices.
fn nms_per_image(cands: &[Candidate], threshold: f64, overlap: Overlap) -> Vec<usize> {
    let mut by_image: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, c) in cands.iter().enumerate() {
        by_image.entry(c.image).or_default().push(i);
    }
    let mut keep = Vec::new();
    for idx in by_image.values() {
        let boxes: Vec<BoxF> = idx.iter().map(|&i| cands[i].bbox).collect();
        let scores: Vec<f32> = idx.iter().map(|&i| cands[i].score).collect();
        keep.extend(nms(&boxes, &scores, threshold, overlap).into_iter().map(|k| idx[k]));
    }
    keep
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]);
    Vec::<f32>::try_from(&t).map_err(|e| anyhow!("cannot read a tensor back: {e}"))
}

/// Photos of one size as a `(B, 3, H, W)` float batch on `device` (u8 travels, floats do not).
fn batch_tensor(images: &[&RgbImage], device: Device) -> Tensor {
    let (w, h) = (images[0].width as i64, images[0].height as i64);
    let mut bytes = Vec::with_capacity(images.len() * (w * h * 3) as usize);
    for img in images {
        bytes.extend_from_slice(&img.data);
    }
    Tensor::from_slice(&bytes)
        .view([images.len() as i64, h, w, 3])
        .to_device(device)
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
}

fn normalise(x: Tensor) -> Tensor {
    (x - 127.5) * 0.0078125
}

impl Mtcnn {
    /// Loads `pnet.pt`, `rnet.pt` and `onet.pt` from `dir` (what `masklab weights fetch mtcnn` writes).
    pub fn load(dir: &Path, device: Device) -> Result<Mtcnn> {
        let [p, r, o] = weight_paths(dir)?;
        let vs = VarStore::new(device);
        let root = vs.root();
        let (pnet, rnet, onet) = (PNet::new(&(&root / "pnet")), RNet::new(&(&root / "rnet")), ONet::new(&(&root / "onet")));
        load_net(&vs, "pnet", &p)?;
        load_net(&vs, "rnet", &r)?;
        load_net(&vs, "onet", &o)?;
        Ok(Mtcnn { _vs: vs, pnet, rnet, onet, device, config: DetectorConfig::default() })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Searches for faces of at least `pixels` (on a side) only. The pyramid's first level is
    /// the photo scaled by 12 / `pixels` and P-Net's cost falls with its area: doubling the
    /// smallest face quarters it. Faces much smaller than the classifier's input gain nothing
    /// from being found, so a served or cropped dataset whose faces are large can skip them.
    pub fn with_min_face(mut self, pixels: f64) -> Result<Mtcnn> {
        if !(pixels.is_finite() && pixels >= 12.0) {
            bail!("the smallest face must be at least 12 pixels (P-Net's window), got {pixels}");
        }
        self.config.min_face_size = pixels;
        Ok(self)
    }

    /// The faces of one photo, largest first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>> {
        Ok(self.detect_batch(&[image])?.pop().unwrap_or_default())
    }

    /// The faces of each photo, largest first. Photos of equal size go through the networks together.
    pub fn detect_batch(&self, images: &[&RgbImage]) -> Result<Vec<Vec<Face>>> {
        let mut out = vec![Vec::new(); images.len()];
        let mut by_size: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
        for (i, img) in images.iter().enumerate() {
            if img.data.len() != img.width as usize * img.height as usize * 3 {
                bail!("image {i}: {} bytes for {}x{} RGB", img.data.len(), img.width, img.height);
            }
            by_size.entry((img.width, img.height)).or_default().push(i);
        }
        for idx in by_size.values() {
            let group: Vec<&RgbImage> = idx.iter().map(|&i| images[i]).collect();
            let found = match tch::no_grad(|| self.detect_same_size(&group)) {
                Ok(found) => found,
                // The photo's index in the batch, not in its group of equal-sized photos.
                Err(e) => match e.downcast::<TooManyCandidates>() {
                    Ok(t) => return Err(TooManyCandidates { image: idx[t.image], ..t }.into()),
                    Err(e) => return Err(e.context("face detection")),
                },
            };
            for (k, faces) in idx.iter().zip(found) {
                out[*k] = faces;
            }
        }
        Ok(out)
    }

    /// The pyramid's scales for a `width` x `height` photo (facenet-pytorch's loop, in float64).
    pub fn scales(&self, width: usize, height: usize) -> Vec<f64> {
        let m = 12.0 / self.config.min_face_size;
        let mut minl = width.min(height) as f64 * m;
        let mut scale = m;
        let mut out = Vec::new();
        while minl >= 12.0 {
            out.push(scale);
            scale *= self.config.factor;
            minl *= self.config.factor;
        }
        out
    }

    fn detect_same_size(&self, images: &[&RgbImage]) -> Result<Vec<Vec<Face>>> {
        let (w, h) = (images[0].width as usize, images[0].height as usize);
        let x = batch_tensor(images, self.device);
        let mut results = vec![Vec::new(); images.len()];
        let stage1 = self.proposals(&x, w, h)?;
        if stage1.is_empty() {
            return Ok(results);
        }
        let integral = Integral::new(&x);
        let stage2 = self.refine(&integral, stage1, w, h)?;
        if stage2.is_empty() {
            return Ok(results);
        }
        for (image, face) in self.output(&integral, stage2, w, h)? {
            results[image].push(face);
        }
        for faces in &mut results {
            faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
        }
        Ok(results)
    }

    /// Stage 1: P-Net over the pyramid, suppression per level and then across levels, the
    /// boxes regressed and squared.
    fn proposals(&self, x: &Tensor, w: usize, h: usize) -> Result<Vec<Candidate>> {
        let threshold = self.config.thresholds[0];
        // Per candidate: image, level, x1, y1, x2, y2, score, 4 regressions.
        let mut found = Vec::new();
        for (level, &scale) in self.scales(w, h).iter().enumerate() {
            let size = [(h as f64 * scale + 1.0) as i64, (w as f64 * scale + 1.0) as i64];
            let (reg, prob) = self.pnet.forward(&normalise(x.adaptive_avg_pool2d(size)));
            let prob = prob.select(1, 1);
            let mask = prob.ge(threshold);
            let at = mask.nonzero();
            let k = at.size()[0];
            if k == 0 {
                continue;
            }
            if k as usize > MAX_LEVEL_CANDIDATES {
                let per_image = to_vec(&at.select(1, 0).bincount(None::<Tensor>, 0))?;
                if let Some((image, &found)) = per_image.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).filter(|(_, &n)| n as usize > MAX_LEVEL_CANDIDATES) {
                    return Err(TooManyCandidates { image, found: found as usize, limit: MAX_LEVEL_CANDIDATES }.into());
                }
            }
            let score = prob.masked_select(&mask).view([k, 1]);
            let reg = reg.permute([0, 2, 3, 1]).index(&[Some(&mask)]);
            let xy = at.narrow(1, 1, 2).to_kind(Kind::Float).flip([1]);
            let q1 = ((&xy * 2.0 + 1.0) / scale).floor();
            let q2 = ((&xy * 2.0 + 12.0) / scale).floor();
            let image = at.narrow(1, 0, 1).to_kind(Kind::Float);
            let level = Tensor::full([k, 1], level as f64, (Kind::Float, x.device()));
            found.push(Tensor::cat(&[image, level, q1, q2, score, reg], 1));
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let rows = to_vec(&Tensor::cat(&found, 0))?;
        let rows: Vec<&[f32]> = rows.chunks_exact(11).collect();
        let cands: Vec<Candidate> = rows
            .iter()
            .map(|r| Candidate { image: r[0] as usize, bbox: [r[2], r[3], r[4], r[5]], score: r[6] })
            .collect();
        // Suppression within each photo and level, then within each photo.
        let mut by_level: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            by_level.entry((r[0] as usize, r[1] as usize)).or_default().push(i);
        }
        let mut kept = Vec::new();
        for idx in by_level.values() {
            let sub: Vec<Candidate> = idx.iter().map(|&i| cands[i]).collect();
            kept.extend(nms_per_image(&sub, 0.5, Overlap::Union).into_iter().map(|k| idx[k]));
        }
        let level_kept: Vec<Candidate> = kept.iter().map(|&i| cands[i]).collect();
        let out = nms_per_image(&level_kept, 0.7, Overlap::Union)
            .into_iter()
            .map(|k| {
                let i = kept[k];
                let (c, r) = (cands[i], rows[i]);
                let b = c.bbox;
                let (rw, rh) = (b[2] - b[0], b[3] - b[1]);
                let moved = [b[0] + r[7] * rw, b[1] + r[8] * rh, b[2] + r[9] * rw, b[3] + r[10] * rh];
                Candidate { image: c.image, bbox: square(moved), score: c.score }
            })
            .collect();
        Ok(out)
    }

    /// Crops of the candidates (those with any pixel inside their photo) resampled to `size`.
    fn crops(&self, integral: &Integral, cands: Vec<Candidate>, size: i64, w: usize, h: usize) -> (Vec<Candidate>, Option<Tensor>) {
        let (cands, rects): (Vec<Candidate>, Vec<CropRect>) = cands.into_iter().filter_map(|c| crop_of(&c, w, h).map(|r| (c, r))).unzip();
        if rects.is_empty() {
            return (cands, None);
        }
        (cands, Some(normalise(integral.resample(&rects, size))))
    }

    /// Stage 2: R-Net scores and regresses 24x24 crops of the proposals.
    fn refine(&self, integral: &Integral, cands: Vec<Candidate>, w: usize, h: usize) -> Result<Vec<Candidate>> {
        let (cands, Some(x)) = self.crops(integral, cands, 24, w, h) else { return Ok(Vec::new()) };
        let (reg, prob) = self.rnet.forward(&x);
        let out = to_vec(&Tensor::cat(&[reg, prob.narrow(1, 1, 1)], 1))?;
        let threshold = self.config.thresholds[1];
        let (passed, regs): (Vec<Candidate>, Vec<&[f32]>) = cands
            .iter()
            .zip(out.chunks_exact(5))
            .filter(|(_, r)| r[4] as f64 > threshold)
            .map(|(c, r)| (Candidate { score: r[4], ..*c }, r))
            .unzip();
        Ok(nms_per_image(&passed, 0.7, Overlap::Union)
            .into_iter()
            .map(|k| Candidate { bbox: square(regress(passed[k].bbox, regs[k])), ..passed[k] })
            .collect())
    }

    /// Stage 3: O-Net scores, regresses and finds landmarks in 48x48 crops; the last suppression
    /// measures overlap by the smaller box. Returns `(image, face)` pairs.
    fn output(&self, integral: &Integral, cands: Vec<Candidate>, w: usize, h: usize) -> Result<Vec<(usize, Face)>> {
        let (cands, Some(x)) = self.crops(integral, cands, 48, w, h) else { return Ok(Vec::new()) };
        let (reg, points, prob) = self.onet.forward(&x);
        let out = to_vec(&Tensor::cat(&[reg, points, prob.narrow(1, 1, 1)], 1))?;
        let threshold = self.config.thresholds[2];
        let mut faces = Vec::new();
        let mut passed = Vec::new();
        for (c, r) in cands.iter().zip(out.chunks_exact(15)) {
            let score = r[14];
            if score as f64 <= threshold {
                continue;
            }
            let b = c.bbox;
            let (bw, bh) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            let mut landmarks = [[0.0f32; 2]; 5];
            for (j, p) in landmarks.iter_mut().enumerate() {
                *p = [bw * r[4 + j] + b[0] - 1.0, bh * r[9 + j] + b[1] - 1.0];
            }
            let bbox = regress(b, &r[0..4]);
            passed.push(Candidate { image: c.image, bbox, score });
            faces.push(Face { bbox, score, landmarks });
        }
        Ok(nms_per_image(&passed, 0.7, Overlap::Min).into_iter().map(|k| (passed[k].image, faces[k])).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_matches_facenet_pytorch_for_a_384x512_photo() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let m = Mtcnn {
            pnet: PNet::new(&(&root / "pnet")),
            rnet: RNet::new(&(&root / "rnet")),
            onet: ONet::new(&(&root / "onet")),
            _vs: vs,
            device: Device::Cpu,
            config: DetectorConfig::default(),
        };
        let s = m.scales(384, 512);
        // 384 * 0.6 = 230.4 shrinks by 0.709 while at least 12: nine levels.
        assert_eq!(s.len(), 9);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[8] - 0.6 * 0.709f64.powi(8)).abs() < 1e-12);
        assert!(m.scales(20, 20).len() == 1 && m.scales(19, 40).is_empty());
        // Twice the smallest face: the pyramid starts at half the scale, a quarter of the pixels.
        let m = m.with_min_face(40.0).unwrap();
        let s = m.scales(384, 512);
        assert!((s[0] - 0.3).abs() < 1e-12 && s.len() == 7, "{s:?}");
        assert!(m.with_min_face(11.0).is_err());
    }

    #[test]
    fn networks_have_the_shapes_of_facenet_pytorchs() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let (p, r, o) = (PNet::new(&(&root / "pnet")), RNet::new(&(&root / "rnet")), ONet::new(&(&root / "onet")));
        let (reg, prob) = p.forward(&Tensor::zeros([2, 3, 31, 40], (Kind::Float, Device::Cpu)));
        assert_eq!((reg.size(), prob.size()), (vec![2, 4, 11, 15], vec![2, 2, 11, 15]));
        let (reg, prob) = r.forward(&Tensor::zeros([3, 3, 24, 24], (Kind::Float, Device::Cpu)));
        assert_eq!((reg.size(), prob.size()), (vec![3, 4], vec![3, 2]));
        let (reg, pts, prob) = o.forward(&Tensor::zeros([1, 3, 48, 48], (Kind::Float, Device::Cpu)));
        assert_eq!((reg.size(), pts.size(), prob.size()), (vec![1, 4], vec![1, 10], vec![1, 2]));
        let names: Vec<String> = vs.variables().into_keys().filter(|n| n.starts_with("onet.")).collect();
        assert_eq!(names.len(), 21, "{names:?}");
    }

    #[test]
    fn squares_regressions_and_crops_follow_facenet_pytorch() {
        assert_eq!(square([10.0, 20.0, 30.0, 60.0]), [0.0, 20.0, 40.0, 60.0]);
        assert_eq!(regress([0.0, 0.0, 9.0, 19.0], &[0.1, 0.0, -0.1, 0.5]), [1.0, 0.0, 8.0, 29.0]);
        let c = |b: BoxF| Candidate { image: 0, bbox: b, score: 1.0 };
        assert_eq!(crop_of(&c([-5.5, 3.9, 20.2, 30.0]), 100, 100), Some(CropRect { image: 0, x0: 0, y0: 2, x1: 20, y1: 30 }));
        assert_eq!(crop_of(&c([90.0, 90.0, 130.0, 140.0]), 100, 100), Some(CropRect { image: 0, x0: 89, y0: 89, x1: 100, y1: 100 }));
        assert_eq!(crop_of(&c([120.0, 10.0, 160.0, 50.0]), 100, 100), None);
    }
}
