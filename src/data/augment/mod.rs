//! Train-time augmentation, batched on whatever device the images are on (CPU or CUDA).
//!
//! The loader ships uint8 `[N, H, W, 3]` images; everything here works on the whole batch with
//! tensor ops, each image drawing its own random parameters from torch's generator, so that a
//! seeded CPU run (`tch::manual_seed`) is reproducible and a GPU run never waits on the host per
//! image. The semantics follow torchvision's transforms (RandomResizedCrop, RandomHorizontalFlip,
//! ColorJitter, GaussianBlur, RandomAdjustSharpness, Normalize, RandomErasing) and the MixUp /
//! CutMix papers, so settings carry over from the reference PyTorch recipes.
pub mod mask_examples;
pub mod mask_paint;
pub mod mask_plan;
pub mod mask_render;
pub mod tight_crop;

use anyhow::{bail, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::{Device, Kind, Tensor};

/// The random generator of training sample `index` in `epoch` for the per-sample augmentation
/// named `tag` (synthetic masks, tight crops): keyed by (seed, epoch, sample, tag), so a run draws
/// the same on every machine, a resumed run draws what an uninterrupted one would, and two
/// augmentations of one sample draw independently.
pub fn sample_rng(seed: u64, epoch: usize, index: usize, tag: &[u8; 8]) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(index as u64).to_le_bytes());
    key[24..].copy_from_slice(tag);
    rand_chacha::ChaCha8Rng::from_seed(key)
}

/// Box proposals RandomResizedCrop and RandomErasing try per image before giving up, as torchvision.
const BOX_ATTEMPTS: i64 = 10;

/// ITU-R 601 luma weights, as torchvision's `rgb_to_grayscale` (contrast and saturation blend towards it).
const LUMA: [f64; 3] = [0.2989, 0.587, 0.114];

/// torchvision's RandomAdjustSharpness smoothing kernel: centre weight 5, neighbours 1, sum 13.
const SHARPNESS_CENTRE_WEIGHT: f64 = 5.0;
const SHARPNESS_KERNEL_SUM: f64 = 13.0;

/// grid_sampler's codes: bilinear interpolation, border padding (a crop whose rounded edge
/// touches the image border samples the edge pixel rather than black).
const BILINEAR: i64 = 0;
const BORDER_PADDING: i64 = 1;

/// The augmentation settings (`[augment]` in the training config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// ColorJitter brightness: factor uniform in [max(0, 1-b), 1+b].
    pub brightness: f64,
    /// ColorJitter contrast: factor uniform in [max(0, 1-c), 1+c], blending towards the image's mean grey.
    pub contrast: f64,
    /// ColorJitter saturation: factor uniform in [max(0, 1-s), 1+s], blending towards the pixel's grey.
    pub saturation: f64,
    /// ColorJitter hue: shift uniform in [-h, h] turns of the colour wheel, h <= 0.5.
    pub hue: f64,
    /// Probability of RandomErasing (applied after normalisation, erased value 0).
    pub erasing: f64,
    /// RandomErasing area range, as fractions of the image area.
    pub erasing_scale: [f64; 2],
    /// RandomErasing aspect-ratio range.
    pub erasing_ratio: [f64; 2],
    /// Probability of a Gaussian blur.
    pub blur: f64,
    /// Gaussian blur kernel size in pixels (odd).
    pub blur_kernel: usize,
    /// Gaussian blur sigma range, drawn uniformly per image.
    pub blur_sigma: [f64; 2],
    /// Probability of RandomAdjustSharpness.
    pub sharpness: f64,
    /// Sharpness factor: 0 gives the smoothed image, 1 the original, 2 doubles the detail.
    pub sharpness_factor: f64,
    /// Probability of a RandomResizedCrop (the output keeps the input size).
    pub random_resized_crop: f64,
    /// RandomResizedCrop area range, as fractions of the image area.
    pub rrc_scale: [f64; 2],
    /// RandomResizedCrop aspect-ratio (width / height) range.
    pub rrc_ratio: [f64; 2],
    /// MixUp Beta(alpha, alpha) alpha; 0 turns MixUp off.
    pub mixup: f64,
    /// CutMix Beta(alpha, alpha) alpha; 0 turns CutMix off. With MixUp also on, each batch picks one.
    pub cutmix: f64,
    /// Probability that a batch is mixed at all.
    pub mix_prob: f64,
    /// Per-channel (RGB) mean subtracted in normalisation, on the [0,1] scale; "backbone": the backbone's own (FaceRes: its authors' caffe means), else the competition's photos' statistics.
    pub mean: PerChannel,
    /// Per-channel (RGB) standard deviation divided out in normalisation; "backbone" as for `mean`.
    pub std: PerChannel,
    /// Probability that a training sample of an unmasked (`normal`) photo gets a synthetic mask painted from its landmarks (faces.csv), worn or incorrectly worn, its label changed to match. The run's value applies to every model of a layout.
    pub synth_mask: f64,
    /// How synthetic masks are made: `rendered` (mask templates warped onto the face from its landmarks and lit like it: surgical, cloth, KN95, N95, prints; worn, nose out, mouth and nose out, on the chin) or `painted` (flat shapes drawn in the face's frame: the earlier method, kept to compare against).
    pub synth_mask_style: SynthMaskStyle,
    /// Probability that a training sample of a correctly masked photo (labelled worn) whose face was detected gets a rendered mask worn over its own, its label unchanged: real-looking masks on the masked photos too, without taking photos from the not-worn class as `synth_mask` does. Needs `synth_mask_style = "rendered"`.
    pub synth_mask_on_masked: f64,
    /// Whether `synth_mask` paints copies instead of the photos: each unmasked training photo with landmarks enters every epoch twice, as it is and as a copy that gets a synthetic mask with probability `synth_mask` (the photo itself is never painted), so the not-worn class keeps all its samples. Needs `synth_mask > 0`.
    pub synth_mask_copies: bool,
    /// Probability that a training sample with a face box (faces.csv) is cut to a tight window around its face and continued by the window's edge pixels, as `predict --largest-face`, `--faces` and `serve` continue a tightly cropped photo framed as in training (`augment::tight_crop`). The run's value applies to every model of a layout.
    pub tight_crop: f64,
}

/// How `augment.synth_mask` makes its masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthMaskStyle {
    /// `mask_render`: templates warped onto the face, relit, with straps.
    #[default]
    Rendered,
    /// `mask_paint`: shapes painted in the face's frame.
    Painted,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            hflip: 0.5,
            brightness: 0.1,
            contrast: 0.1,
            saturation: 0.1,
            hue: 0.0,
            erasing: 0.0,
            erasing_scale: [0.02, 0.33],
            erasing_ratio: [0.3, 3.3],
            blur: 0.0,
            blur_kernel: 5,
            blur_sigma: [0.1, 2.0],
            sharpness: 0.0,
            sharpness_factor: 2.0,
            random_resized_crop: 0.0,
            rrc_scale: [0.08, 1.0],
            rrc_ratio: [0.75, 4.0 / 3.0],
            mixup: 0.0,
            cutmix: 0.0,
            mix_prob: 1.0,
            mean: PerChannel::Backbone,
            std: PerChannel::Backbone,
            synth_mask: 0.0,
            synth_mask_style: SynthMaskStyle::Rendered,
            synth_mask_on_masked: 0.0,
            synth_mask_copies: false,
            tight_crop: 0.0,
        }
    }
}

/// Input normalisation, `(x - mean) / std` per RGB channel of pixels on the [0, 1] scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl Normalisation {
    /// The competition's training photos' statistics: what masklab normalises by for every
    /// backbone that declares no input scaling of its own (the ImageNet ones: their statistics
    /// are close, and runs and presets have used these).
    pub const COMPETITION: Normalisation = Normalisation { mean: [0.548, 0.504, 0.479], std: [0.237, 0.247, 0.246] };
}

/// `augment.mean` or `augment.std`: three values (RGB), or `"backbone"`: the backbone's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PerChannel {
    Backbone,
    Values([f64; 3]),
}

impl PerChannel {
    const WORD: &'static str = "backbone";

    fn or(self, backbone: [f64; 3]) -> [f64; 3] {
        match self {
            PerChannel::Backbone => backbone,
            PerChannel::Values(v) => v,
        }
    }
}

impl Serialize for PerChannel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PerChannel::Backbone => s.serialize_str(PerChannel::WORD),
            PerChannel::Values(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for PerChannel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PerChannel, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Values([f64; 3]),
        }
        let expected = "\"backbone\" or three numbers [r, g, b]";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(format!("expected {expected}")))? {
            Raw::Word(w) if w == PerChannel::WORD => Ok(PerChannel::Backbone),
            Raw::Word(w) => Err(serde::de::Error::custom(format!("expected {expected}, got {w:?}"))),
            Raw::Values(v) => Ok(PerChannel::Values(v)),
        }
    }
}

impl crate::util::section::Section for AugmentConfig {
    const KEY: &'static str = "augment";
}

fn check_probability(key: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        bail!("augment.{key} must be in [0,1], got {p}");
    }
    Ok(())
}

fn check_non_negative(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("augment.{key} must be a finite number >= 0, got {v}");
    }
    Ok(())
}

/// A `[lo, hi]` range with `0 < lo <= hi`, and `hi <= max` where there is a maximum.
fn check_interval(key: &str, [lo, hi]: [f64; 2], max: Option<f64>) -> Result<()> {
    let ordered = lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi;
    match max {
        Some(max) if !(ordered && hi <= max) => {
            bail!("augment.{key} must be [lo, hi] with 0 < lo <= hi <= {max}, got [{lo}, {hi}]")
        }
        None if !ordered => bail!("augment.{key} must be [lo, hi] with 0 < lo <= hi, got [{lo}, {hi}]"),
        _ => Ok(()),
    }
}

impl AugmentConfig {
    /// Checks every setting's range; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        check_probability("hflip", self.hflip)?;
        check_probability("synth_mask", self.synth_mask)?;
        check_probability("synth_mask_on_masked", self.synth_mask_on_masked)?;
        if self.synth_mask_on_masked > 0.0 && self.synth_mask_style != SynthMaskStyle::Rendered {
            bail!("augment.synth_mask_on_masked = {} needs augment.synth_mask_style = \"rendered\" (a flat painted mask over a worn one would hide it)", self.synth_mask_on_masked);
        }
        if self.synth_mask_copies && self.synth_mask <= 0.0 {
            bail!("augment.synth_mask_copies = true needs augment.synth_mask > 0 (the share of the copies that get a mask)");
        }
        check_probability("tight_crop", self.tight_crop)?;
        check_non_negative("brightness", self.brightness)?;
        check_non_negative("contrast", self.contrast)?;
        check_non_negative("saturation", self.saturation)?;
        if !(0.0..=0.5).contains(&self.hue) {
            bail!("augment.hue must be in [0,0.5], got {}", self.hue);
        }
        check_probability("erasing", self.erasing)?;
        check_interval("erasing_scale", self.erasing_scale, Some(1.0))?;
        check_interval("erasing_ratio", self.erasing_ratio, None)?;
        check_probability("blur", self.blur)?;
        if self.blur_kernel % 2 == 0 {
            bail!("augment.blur_kernel must be an odd number of pixels, got {}", self.blur_kernel);
        }
        check_interval("blur_sigma", self.blur_sigma, None)?;
        check_probability("sharpness", self.sharpness)?;
        check_non_negative("sharpness_factor", self.sharpness_factor)?;
        check_probability("random_resized_crop", self.random_resized_crop)?;
        check_interval("rrc_scale", self.rrc_scale, Some(1.0))?;
        check_interval("rrc_ratio", self.rrc_ratio, None)?;
        check_non_negative("mixup", self.mixup)?;
        check_non_negative("cutmix", self.cutmix)?;
        check_probability("mix_prob", self.mix_prob)?;
        let Normalisation { mean, std } = self.normalisation(None);
        for (c, (&m, &s)) in mean.iter().zip(&std).enumerate() {
            if !m.is_finite() {
                bail!("augment.mean[{c}] must be finite, got {m}");
            }
            if !(s.is_finite() && s > 0.0) {
                bail!("augment.std[{c}] must be > 0, got {s}");
            }
        }
        Ok(())
    }

    /// The normalisation these settings ask for, for a backbone whose own input scaling is
    /// `backbone` (None: it declares none, and "backbone" means the competition's statistics).
    pub fn normalisation(&self, backbone: Option<Normalisation>) -> Normalisation {
        let own = backbone.unwrap_or(Normalisation::COMPETITION);
        Normalisation { mean: self.mean.or(own.mean), std: self.std.or(own.std) }
    }
}

/// A mixed batch's bookkeeping: `loss = lam * L(y) + (1 - lam) * L(y[perm])`.
#[derive(Debug)]
pub struct Mix {
    /// int64 `[N]`: the partner of each sample, on the batch's device.
    pub perm: Tensor,
    /// Weight of each sample's own label.
    pub lam: f64,
}

/// Applies an [`AugmentConfig`] to batches.
#[derive(Clone, Debug)]
pub struct Augmenter {
    cfg: AugmentConfig,
    normalisation: Normalisation,
}

/// The ColorJitter adjustments.
#[derive(Clone, Copy, Debug)]
enum Jitter {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

impl Augmenter {
    /// For a backbone without input scaling of its own (see [`Augmenter::for_backbone`]).
    pub fn new(cfg: &AugmentConfig) -> Result<Self> {
        Augmenter::for_backbone(cfg, None)
    }

    /// For a backbone whose own input scaling is `backbone` (what `"backbone"` in
    /// `augment.mean`/`augment.std` means; None: the competition's statistics).
    pub fn for_backbone(cfg: &AugmentConfig, backbone: Option<Normalisation>) -> Result<Self> {
        cfg.validate()?;
        Ok(Augmenter { cfg: cfg.clone(), normalisation: cfg.normalisation(backbone) })
    }

    pub fn config(&self) -> &AugmentConfig {
        &self.cfg
    }

    /// The normalisation applied, "backbone" resolved.
    pub fn normalisation(&self) -> Normalisation {
        self.normalisation
    }

    /// uint8 [N,H,W,3] -> float32 [N,3,H,W] normalised, with the train-time augmentations.
    pub fn train(&self, images: &Tensor) -> Tensor {
        let cfg = &self.cfg;
        let mut x = to_unit_nchw(images);
        if x.size()[0] == 0 {
            return self.normalise(&x);
        }
        if cfg.random_resized_crop > 0.0 {
            x = self.random_resized_crop(&x);
        }
        if cfg.hflip > 0.0 {
            let flipped = draw_mask(&x, cfg.hflip);
            x = select_samples(&flipped, &x.flip([3]), &x);
        }
        x = self.color_jitter(x);
        if cfg.blur > 0.0 {
            x = self.gaussian_blur(&x);
        }
        if cfg.sharpness > 0.0 {
            x = self.adjust_sharpness(&x);
        }
        x = self.normalise(&x);
        if cfg.erasing > 0.0 {
            x = self.random_erasing(&x);
        }
        x
    }

    /// uint8 [N,H,W,3] -> float32 [N,3,H,W] normalised, nothing random.
    pub fn eval(&self, images: &Tensor) -> Tensor {
        self.normalise(&to_unit_nchw(images))
    }

    /// MixUp / CutMix on a normalised batch; (x unchanged, None) when off or not drawn.
    ///
    /// One lam (and one CutMix box) per batch, as the papers do; the batch-level draws use
    /// torch's CPU generator so that a CUDA batch does not wait on the device for them.
    pub fn mix(&self, x: &Tensor) -> (Tensor, Option<Mix>) {
        let cfg = &self.cfg;
        let (mixup_on, cutmix_on) = (cfg.mixup > 0.0, cfg.cutmix > 0.0);
        if !(mixup_on || cutmix_on) {
            return (x.shallow_clone(), None);
        }
        let draws = Tensor::rand([2], (Kind::Double, Device::Cpu));
        if draws.double_value(&[0]) >= cfg.mix_prob {
            return (x.shallow_clone(), None);
        }
        let use_cutmix = cutmix_on && (!mixup_on || draws.double_value(&[1]) < 0.5);
        let n = x.size()[0];
        let perm = Tensor::randperm(n, (Kind::Int64, x.device()));
        if use_cutmix {
            let lam = sample_beta(cfg.cutmix);
            let (mixed, lam) = cutmix(x, &perm, lam);
            (mixed, Some(Mix { perm, lam }))
        } else {
            let lam = sample_beta(cfg.mixup);
            let mixed = x * lam + x.index_select(0, &perm) * (1.0 - lam);
            (mixed, Some(Mix { perm, lam }))
        }
    }

    fn normalise(&self, x: &Tensor) -> Tensor {
        let device = x.device();
        let per_channel = |v: &[f64; 3]| {
            Tensor::from_slice(&v.map(|c| c as f32)).to_device(device).view([1, 3, 1, 1])
        };
        (x - per_channel(&self.normalisation.mean)) / per_channel(&self.normalisation.std)
    }

    /// torchvision's RandomResizedCrop, as one affine grid sample for the whole batch.
    fn random_resized_crop(&self, x: &Tensor) -> Tensor {
        let cfg = &self.cfg;
        let (n, _, height, width) = dims(x);
        let device = x.device();
        let area = (height * width) as f64;
        let target = uniform([n, BOX_ATTEMPTS], cfg.rrc_scale, device) * area;
        let log_ratio = [cfg.rrc_ratio[0].ln(), cfg.rrc_ratio[1].ln()];
        let aspect = uniform([n, BOX_ATTEMPTS], log_ratio, device).exp();
        let crop_w = (&target * &aspect).sqrt().round();
        let crop_h = (&target / &aspect).sqrt().round();
        let fits = crop_w.gt(0.0).logical_and(&crop_w.le(width as f64))
            .logical_and(&crop_h.gt(0.0)).logical_and(&crop_h.le(height as f64));
        let (crop_h, crop_w, found) = first_fitting(&fits, &crop_h, &crop_w);

        // No proposal fitted: torchvision's fallback, the largest central crop within the ratio range.
        let (fallback_h, fallback_w) = centre_crop_fallback(height, width, cfg.rrc_ratio);
        let crop_h = crop_h.where_scalarother(&found, fallback_h);
        let crop_w = crop_w.where_scalarother(&found, fallback_w);
        let top = random_offset(&crop_h, height)
            .where_scalarother(&found, ((height as f64 - fallback_h) / 2.0).floor());
        let left = random_offset(&crop_w, width)
            .where_scalarother(&found, ((width as f64 - fallback_w) / 2.0).floor());

        // With align_corners = false the image spans [-1, 1] edge to edge, so a crop of `w` pixels
        // starting at `left` is a scale of w/W about the centre, shifted to the crop's centre.
        let scale_x = &crop_w / width as f64;
        let scale_y = &crop_h / height as f64;
        let shift_x = (&left * 2.0 + &crop_w) / width as f64 - 1.0;
        let shift_y = (&top * 2.0 + &crop_h) / height as f64 - 1.0;
        let zero = scale_x.zeros_like();
        let theta = Tensor::stack(&[&scale_x, &zero, &shift_x, &zero, &scale_y, &shift_y], 1)
            .view([n, 2, 3]);
        let grid = Tensor::affine_grid_generator(&theta, [n, 3, height, width], false);
        let cropped = x.grid_sampler_2d(&grid, BILINEAR, BORDER_PADDING, false);
        select_samples(&draw_mask(x, cfg.random_resized_crop), &cropped, x)
    }

    /// torchvision's ColorJitter with a factor per image. torchvision also shuffles the order of
    /// the four adjustments per call; here one order is drawn per batch (on the CPU generator),
    /// which keeps a batch at one pass per adjustment instead of evaluating every order.
    fn color_jitter(&self, x: Tensor) -> Tensor {
        let cfg = &self.cfg;
        let jitters: Vec<Jitter> = [
            (Jitter::Brightness, cfg.brightness),
            (Jitter::Contrast, cfg.contrast),
            (Jitter::Saturation, cfg.saturation),
            (Jitter::Hue, cfg.hue),
        ]
        .into_iter()
        .filter(|&(_, strength)| strength > 0.0)
        .map(|(jitter, _)| jitter)
        .collect();
        if jitters.is_empty() {
            return x;
        }
        let order = Tensor::randperm(jitters.len() as i64, (Kind::Int64, Device::Cpu));
        let (n, device) = (x.size()[0], x.device());
        let factor = |strength: f64| {
            uniform([n], [(1.0 - strength).max(0.0), 1.0 + strength], device).view([n, 1, 1, 1])
        };
        let mut x = x;
        for k in 0..jitters.len() as i64 {
            x = match jitters[order.int64_value(&[k]) as usize] {
                Jitter::Brightness => (&x * factor(cfg.brightness)).clamp(0.0, 1.0),
                Jitter::Contrast => {
                    let mean_grey = grayscale(&x).mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
                    blend(&x, &mean_grey, &factor(cfg.contrast))
                }
                Jitter::Saturation => blend(&x, &grayscale(&x), &factor(cfg.saturation)),
                Jitter::Hue => shift_hue(&x, &uniform([n], [-cfg.hue, cfg.hue], device)),
            };
        }
        x
    }

    /// torchvision's GaussianBlur with a sigma per image: a separable depthwise convolution whose
    /// groups are the batch's N*3 channels, so every image gets its own kernel in one launch.
    fn gaussian_blur(&self, x: &Tensor) -> Tensor {
        let cfg = &self.cfg;
        let (n, channels, height, width) = dims(x);
        let device = x.device();
        let size = cfg.blur_kernel as i64;
        let half = size / 2;
        let sigma = uniform([n, 1], cfg.blur_sigma, device);
        let offsets = Tensor::arange_start(-half, half + 1, (Kind::Float, device)).view([1, size]);
        let weights = (offsets.square() / (sigma.square() * -2.0)).exp();
        let weights = &weights / weights.sum_dim_intlist(&[1i64][..], true, Kind::Float);
        let per_channel = weights.unsqueeze(1).expand([n, channels, size], false);
        let horizontal = per_channel.reshape([n * channels, 1, 1, size]);
        let vertical = per_channel.reshape([n * channels, 1, size, 1]);
        // Reflection (torchvision's choice) needs the image to be wider than half the kernel;
        // tinier images repeat their edge instead of failing.
        let mode = if half < height && half < width { "reflect" } else { "replicate" };
        let padded = x.reshape([1, n * channels, height, width]).pad([half, half, half, half], mode, None);
        let groups = n * channels;
        let blurred = padded
            .conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], groups)
            .conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], groups)
            .reshape([n, channels, height, width]);
        select_samples(&draw_mask(x, cfg.blur), &blurred, x)
    }

    /// torchvision's RandomAdjustSharpness: blend each image with its 3x3-smoothed copy by
    /// `sharpness_factor`; the one-pixel border keeps its original values, as torchvision does.
    fn adjust_sharpness(&self, x: &Tensor) -> Tensor {
        let cfg = &self.cfg;
        let (_, channels, height, width) = dims(x);
        if height <= 2 || width <= 2 {
            // No interior to smooth: torchvision leaves such images as they are.
            return x.shallow_clone();
        }
        let mut kernel = [1.0f32; 9];
        kernel[4] = SHARPNESS_CENTRE_WEIGHT as f32;
        let kernel = (Tensor::from_slice(&kernel).to_device(x.device()) / SHARPNESS_KERNEL_SUM)
            .view([1, 1, 3, 3])
            .expand([channels, 1, 3, 3], false);
        let smoothed = x.conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], channels);
        let degenerate = x.copy();
        degenerate.narrow(2, 1, height - 2).narrow(3, 1, width - 2).copy_(&smoothed);
        let factor = Tensor::from(cfg.sharpness_factor as f32).to_device(x.device());
        let sharpened = blend(x, &degenerate, &factor);
        select_samples(&draw_mask(x, cfg.sharpness), &sharpened, x)
    }

    /// torchvision's RandomErasing (value 0, after normalisation): one rectangle per chosen
    /// image, masked out with `arange` comparisons.
    fn random_erasing(&self, x: &Tensor) -> Tensor {
        let cfg = &self.cfg;
        let (n, _, height, width) = dims(x);
        let device = x.device();
        let area = (height * width) as f64;
        let target = uniform([n, BOX_ATTEMPTS], cfg.erasing_scale, device) * area;
        let log_ratio = [cfg.erasing_ratio[0].ln(), cfg.erasing_ratio[1].ln()];
        let aspect = uniform([n, BOX_ATTEMPTS], log_ratio, device).exp();
        // torchvision's RandomErasing reads the ratio as height / width, unlike RandomResizedCrop.
        let box_h = (&target * &aspect).sqrt().round();
        let box_w = (&target / &aspect).sqrt().round();
        let fits = box_h.lt(height as f64).logical_and(&box_w.lt(width as f64));
        let (box_h, box_w, found) = first_fitting(&fits, &box_h, &box_w);
        let top = random_offset(&box_h, height).view([n, 1]);
        let left = random_offset(&box_w, width).view([n, 1]);
        let rows = Tensor::arange(height, (Kind::Float, device)).view([1, height]);
        let cols = Tensor::arange(width, (Kind::Float, device)).view([1, width]);
        let in_rows = rows.ge_tensor(&top).logical_and(&rows.lt_tensor(&(&top + box_h.view([n, 1]))));
        let in_cols = cols.ge_tensor(&left).logical_and(&cols.lt_tensor(&(&left + box_w.view([n, 1]))));
        let erase_image = draw_mask(x, cfg.erasing).logical_and(&found).view([n, 1, 1, 1]);
        let mask = in_rows
            .view([n, 1, height, 1])
            .logical_and(&in_cols.view([n, 1, 1, width]))
            .logical_and(&erase_image);
        x.masked_fill(&mask, 0.0)
    }
}

/// uint8 [N,H,W,3] -> float32 [N,3,H,W] in [0,1].
fn to_unit_nchw(images: &Tensor) -> Tensor {
    let size = images.size();
    assert!(
        size.len() == 4 && size[3] == 3 && images.kind() == Kind::Uint8,
        "augment expects uint8 images [N, H, W, 3], got {:?} {:?}",
        images.kind(),
        size
    );
    (images.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0).contiguous()
}

fn dims(x: &Tensor) -> (i64, i64, i64, i64) {
    let s = x.size();
    (s[0], s[1], s[2], s[3])
}

/// Uniform draws in `[lo, hi)` on `device`.
fn uniform<const D: usize>(size: [i64; D], [lo, hi]: [f64; 2], device: Device) -> Tensor {
    Tensor::rand(size, (Kind::Float, device)) * (hi - lo) + lo
}

/// bool `[N]`: which images of the batch an augmentation applied with probability `p` hits.
fn draw_mask(x: &Tensor, p: f64) -> Tensor {
    Tensor::rand([x.size()[0]], (Kind::Float, x.device())).lt(p)
}

/// Per image: `chosen[i] ? a[i] : b[i]`.
fn select_samples(chosen: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    a.where_self(&chosen.view([-1, 1, 1, 1]), b)
}

/// Per image, the first of its `[N, attempts]` box proposals that fits: its height and width
/// `[N]`, and bool `[N]` saying whether any fitted (the sizes are then meaningless).
fn first_fitting(fits: &Tensor, heights: &Tensor, widths: &Tensor) -> (Tensor, Tensor, Tensor) {
    // argmax returns the first maximal index, i.e. the first fitting attempt.
    let first = fits.to_kind(Kind::Float).argmax(1, true);
    let pick = |t: &Tensor| t.gather(1, &first, false).squeeze_dim(1);
    (pick(heights), pick(widths), fits.any_dim(1, false))
}

/// A random whole-pixel start in `[0, limit - size]` for each box size in `sizes` `[N]`.
fn random_offset(sizes: &Tensor, limit: i64) -> Tensor {
    (sizes.rand_like() * ((limit + 1) as f64 - sizes)).floor()
}

/// torchvision's RandomResizedCrop fallback: the whole image, narrowed to the ratio range.
fn centre_crop_fallback(height: i64, width: i64, [min_ratio, max_ratio]: [f64; 2]) -> (f64, f64) {
    let (h, w) = (height as f64, width as f64);
    let in_ratio = w / h;
    if in_ratio < min_ratio {
        ((w / min_ratio).round(), w)
    } else if in_ratio > max_ratio {
        (h, (h * max_ratio).round())
    } else {
        (h, w)
    }
}

/// `[N,3,H,W]` -> `[N,1,H,W]` luma.
fn grayscale(x: &Tensor) -> Tensor {
    let weights = Tensor::from_slice(&LUMA.map(|w| w as f32)).to_device(x.device()).view([1, 3, 1, 1]);
    (x * weights).sum_dim_intlist(&[1i64][..], true, Kind::Float)
}

/// torchvision's `_blend`: `factor * a + (1 - factor) * b`, clamped to [0,1].
fn blend(a: &Tensor, b: &Tensor, factor: &Tensor) -> Tensor {
    (a * factor + b * (1f64 - factor)).clamp(0.0, 1.0)
}

/// Turns each image's hue by `shift[i]` (in turns), keeping saturation and value.
fn shift_hue(x: &Tensor, shift: &Tensor) -> Tensor {
    let (hue, saturation, value) = rgb_to_hsv(x);
    let hue = (hue + shift.view([-1, 1, 1])).remainder(1.0);
    hsv_to_rgb(&hue, &saturation, &value)
}

/// `[N,3,H,W]` in [0,1] -> hue (turns, [0,1)), saturation, value, each `[N,H,W]`.
fn rgb_to_hsv(x: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (r, g, b) = (x.select(1, 0), x.select(1, 1), x.select(1, 2));
    let value = x.amax([1], false);
    let chroma = &value - x.amin([1], false);
    // Greys have no hue; dividing by 1 there keeps the arithmetic finite (their chroma is 0).
    let grey = chroma.eq(0.0);
    let saturation = &chroma / value.masked_fill(&grey, 1.0);
    let safe_chroma = chroma.masked_fill(&grey, 1.0);
    let rc = (&value - &r) / &safe_chroma;
    let gc = (&value - &g) / &safe_chroma;
    let bc = (&value - &b) / &safe_chroma;
    let red_max = value.eq_tensor(&r);
    let green_max = value.eq_tensor(&g).logical_and(&red_max.logical_not());
    let sector_hue = (&bc - &gc).where_self(
        &red_max,
        &((&rc - &bc + 2.0).where_self(&green_max, &(&gc - &rc + 4.0))),
    );
    ((sector_hue / 6.0).remainder(1.0), saturation, value)
}

/// Inverse of [`rgb_to_hsv`]: picks each channel's formula by the hue's sixth of the wheel.
fn hsv_to_rgb(hue: &Tensor, saturation: &Tensor, value: &Tensor) -> Tensor {
    let h6 = hue * 6.0;
    let sector_floor = h6.floor();
    let frac = &h6 - &sector_floor;
    let sector = sector_floor.remainder(6.0).to_kind(Kind::Int64).unsqueeze(1);
    let p = (value * (1f64 - saturation)).clamp(0.0, 1.0);
    let q = (value * (1f64 - saturation * &frac)).clamp(0.0, 1.0);
    let t = (value * (1f64 - saturation * (1f64 - &frac))).clamp(0.0, 1.0);
    let v = value.shallow_clone();
    // Rows: the channel's value in sectors 0..5 of the hue wheel.
    let channel = |by_sector: [&Tensor; 6]| Tensor::stack(&by_sector, 1).gather(1, &sector, false);
    Tensor::cat(
        &[
            channel([&v, &q, &p, &p, &t, &v]),
            channel([&t, &v, &v, &q, &p, &p]),
            channel([&p, &p, &t, &v, &v, &q]),
        ],
        1,
    )
}

/// One draw of Beta(alpha, alpha) from two Gamma(alpha) draws on torch's CPU generator.
fn sample_beta(alpha: f64) -> f64 {
    let gammas = Tensor::full([2], alpha, (Kind::Double, Device::Cpu)).internal_standard_gamma();
    let (a, b) = (gammas.double_value(&[0]), gammas.double_value(&[1]));
    if a + b > 0.0 {
        a / (a + b)
    } else {
        // Both draws underflowed, which happens for tiny alphas whose Beta puts nearly all its
        // mass at 0 and 1; lam = 1 (no mixing) is that limit, and 0 would be the same batch relabelled.
        1.0
    }
}

/// Pastes one box (the CutMix paper's size for `lam`, centre uniform, clipped to the image)
/// from `x[perm]` into `x`; returns the batch and lam corrected to the kept area.
fn cutmix(x: &Tensor, perm: &Tensor, lam: f64) -> (Tensor, f64) {
    let (_, _, height, width) = dims(x);
    let cut = (1.0 - lam).sqrt();
    let (cut_h, cut_w) = ((height as f64 * cut) as i64, (width as f64 * cut) as i64);
    let centre = Tensor::rand([2], (Kind::Double, Device::Cpu));
    let cy = ((centre.double_value(&[0]) * height as f64) as i64).min(height - 1);
    let cx = ((centre.double_value(&[1]) * width as f64) as i64).min(width - 1);
    let (y0, y1) = ((cy - cut_h / 2).clamp(0, height), (cy + cut_h / 2).clamp(0, height));
    let (x0, x1) = ((cx - cut_w / 2).clamp(0, width), (cx + cut_w / 2).clamp(0, width));
    let mixed = x.copy();
    let box_area = (y1 - y0) * (x1 - x0);
    if box_area > 0 {
        let patch = x.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0).index_select(0, perm);
        mixed.narrow(2, y0, y1 - y0).narrow(3, x0, x1 - x0).copy_(&patch);
    }
    (mixed, 1.0 - box_area as f64 / (height * width) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// torch's generator is global: tests that seed it and check reproducibility must not
    /// interleave their draws with each other.
    static TORCH_RNG: Mutex<()> = Mutex::new(());

    /// The GPU where there is one, so that a GPU machine checks the CUDA path; else the CPU.
    fn device() -> Device {
        Device::cuda_if_available()
    }

    fn seeded(seed: i64) -> MutexGuard<'static, ()> {
        let guard = TORCH_RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tch::manual_seed(seed);
        guard
    }

    /// Every augmentation off.
    fn plain() -> AugmentConfig {
        AugmentConfig { hflip: 0.0, brightness: 0.0, contrast: 0.0, saturation: 0.0, ..Default::default() }
    }

    fn noise(n: i64, size: i64, lo: i64, hi: i64) -> Tensor {
        Tensor::randint_low(lo, hi, [n, size, size, 3], (Kind::Uint8, device()))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Back from normalised to the [0,1] scale.
    fn unit(x: &Tensor, cfg: &AugmentConfig) -> Tensor {
        let Normalisation { mean, std } = cfg.normalisation(None);
        let m = Tensor::from_slice(&mean.map(|v| v as f32)).to_device(x.device()).view([1, 3, 1, 1]);
        let s = Tensor::from_slice(&std.map(|v| v as f32)).to_device(x.device()).view([1, 3, 1, 1]);
        x * s + m
    }

    fn both(cfg: &AugmentConfig, images: &Tensor) -> (Tensor, Tensor) {
        let aug = Augmenter::new(cfg).unwrap();
        (aug.train(images), aug.eval(images))
    }

    fn floats(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1).to_device(Device::Cpu)).unwrap()
    }

    #[test]
    fn defaults_parse_from_empty_toml_and_unknown_keys_are_rejected() {
        let cfg: AugmentConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, AugmentConfig::default());
        let cfg: AugmentConfig = toml::from_str("hflip = 0.0\nmixup = 0.2").unwrap();
        assert_eq!((cfg.hflip, cfg.mixup), (0.0, 0.2));
        assert!(toml::from_str::<AugmentConfig>("hflips = 0.5").is_err());
    }

    #[test]
    fn bad_settings_are_rejected_naming_the_key() {
        let cases: Vec<(AugmentConfig, &str)> = vec![
            (AugmentConfig { hflip: 1.5, ..Default::default() }, "augment.hflip must be in [0,1]"),
            (AugmentConfig { erasing: f64::NAN, ..Default::default() }, "augment.erasing"),
            (AugmentConfig { brightness: -0.1, ..Default::default() }, "augment.brightness"),
            (AugmentConfig { hue: 0.6, ..Default::default() }, "augment.hue"),
            (AugmentConfig { blur_kernel: 4, ..Default::default() }, "augment.blur_kernel"),
            (AugmentConfig { blur_sigma: [2.0, 1.0], ..Default::default() }, "augment.blur_sigma"),
            (AugmentConfig { rrc_scale: [0.5, 1.5], ..Default::default() }, "augment.rrc_scale"),
            (AugmentConfig { erasing_ratio: [0.0, 3.3], ..Default::default() }, "augment.erasing_ratio"),
            (AugmentConfig { cutmix: -1.0, ..Default::default() }, "augment.cutmix"),
            (AugmentConfig { mix_prob: 2.0, ..Default::default() }, "augment.mix_prob"),
            (AugmentConfig { std: PerChannel::Values([0.2, 0.0, 0.2]), ..Default::default() }, "augment.std[1]"),
        ];
        for (cfg, key) in cases {
            let err = Augmenter::new(&cfg).unwrap_err().to_string();
            assert!(err.contains(key), "`{err}` should name {key}");
        }
        assert!(Augmenter::new(&AugmentConfig::default()).is_ok());
    }

    #[test]
    fn eval_normalises_mean_to_zero_and_mean_plus_std_to_one() {
        let cfg = AugmentConfig::default();
        let norm = cfg.normalisation(None);
        let pixel = |v: [f64; 3]| v.map(|c| (c * 255.0).round() as u8);
        let at_mean = pixel(norm.mean);
        let at_one_std = pixel([0, 1, 2].map(|c| norm.mean[c] + norm.std[c]));
        let data: Vec<u8> = at_mean.iter().chain(&at_one_std).copied().collect();
        let images = Tensor::from_slice(&data).to_device(device()).view([2, 1, 1, 3]);
        let x = Augmenter::new(&cfg).unwrap().eval(&images);
        assert_eq!(x.size(), vec![2, 3, 1, 1]);
        assert_eq!(x.kind(), Kind::Float);
        // Rounding to whole uint8 levels moves a value by at most half a level: 0.5/255/0.237 < 0.01.
        assert!(x.get(0).abs().max().double_value(&[]) < 0.01, "{x}");
        assert!(max_diff(&x.get(1), &Tensor::ones([3, 1, 1], (Kind::Float, device()))) < 0.01, "{x}");
    }

    #[test]
    fn everything_off_makes_train_equal_eval() {
        let _rng = seeded(1);
        let images = noise(3, 32, 0, 256);
        let cfg = AugmentConfig { blur: 0.0, sharpness: 0.0, erasing: 0.0, random_resized_crop: 0.0, ..plain() };
        let (train, eval) = both(&cfg, &images);
        assert_eq!(train.size(), vec![3, 3, 32, 32]);
        assert_eq!((train.device(), eval.device()), (images.device(), images.device()));
        assert_eq!(max_diff(&train, &eval), 0.0);
        // Probability 0 of each random-applied augmentation, at full strength otherwise.
        let zero_p = AugmentConfig {
            blur_sigma: [2.0, 3.0],
            sharpness_factor: 5.0,
            rrc_scale: [0.1, 0.2],
            ..plain()
        };
        let (train, eval) = both(&zero_p, &images);
        assert_eq!(max_diff(&train, &eval), 0.0);
    }

    #[test]
    fn hflip_with_probability_one_mirrors_every_image() {
        let _rng = seeded(2);
        let images = noise(4, 32, 0, 256);
        let (train, eval) = both(&AugmentConfig { hflip: 1.0, ..plain() }, &images);
        assert_eq!(max_diff(&train, &eval.flip([3])), 0.0);
        assert!(max_diff(&train, &eval) > 0.1);
    }

    #[test]
    fn hflip_with_probability_half_mirrors_some_images_whole() {
        let _rng = seeded(3);
        let images = noise(16, 8, 0, 256);
        let (train, eval) = both(&AugmentConfig { hflip: 0.5, ..plain() }, &images);
        let mut flipped = 0;
        for i in 0..16 {
            let (t, e) = (train.get(i), eval.get(i));
            if max_diff(&t, &e.flip([2])) == 0.0 {
                flipped += 1;
            } else {
                assert_eq!(max_diff(&t, &e), 0.0, "image {i} is neither original nor mirrored");
            }
        }
        assert!((1..16).contains(&flipped), "{flipped} of 16 flipped");
    }

    #[test]
    fn brightness_scales_each_image_by_one_factor_in_range() {
        let _rng = seeded(4);
        let cfg = AugmentConfig { brightness: 0.5, ..plain() };
        // Values up to 127 so that a factor up to 1.5 never clips at 1.
        let images = noise(8, 16, 20, 128);
        let (train, eval) = both(&cfg, &images);
        let ratio = unit(&train, &cfg) / unit(&eval, &cfg);
        let mut factors = Vec::new();
        for i in 0..8 {
            let r = ratio.get(i);
            let f = r.mean(Kind::Float).double_value(&[]);
            assert!(max_diff(&r, &r.full_like(f)) < 1e-4, "image {i} not scaled uniformly");
            assert!((0.5 - 1e-4..=1.5 + 1e-4).contains(&f), "factor {f}");
            factors.push(f);
        }
        assert!(factors.iter().any(|f| (f - 1.0).abs() > 0.05), "{factors:?}");
    }

    #[test]
    fn contrast_keeps_the_mean_grey_and_scales_deviations() {
        let _rng = seeded(5);
        let cfg = AugmentConfig { contrast: 0.5, ..plain() };
        let images = noise(8, 16, 80, 176);
        let (train, eval) = both(&cfg, &images);
        let (t, e) = (unit(&train, &cfg), unit(&eval, &cfg));
        let mut factors = Vec::new();
        for i in 0..8 {
            let (ti, ei) = (t.get(i).unsqueeze(0), e.get(i).unsqueeze(0));
            let (mt, me) = (grayscale(&ti).mean(Kind::Float), grayscale(&ei).mean(Kind::Float));
            assert!(max_diff(&mt, &me) < 1e-4);
            let f = ((&ti - &mt).abs().mean(Kind::Float) / (&ei - &me).abs().mean(Kind::Float)).double_value(&[]);
            assert!((0.5 - 1e-3..=1.5 + 1e-3).contains(&f), "factor {f}");
            factors.push(f);
        }
        assert!(factors.iter().any(|f| (f - 1.0).abs() > 0.05), "{factors:?}");
    }

    #[test]
    fn saturation_keeps_each_pixels_grey() {
        let _rng = seeded(6);
        let cfg = AugmentConfig { saturation: 0.5, ..plain() };
        let images = noise(4, 16, 80, 176);
        let (train, eval) = both(&cfg, &images);
        let (t, e) = (unit(&train, &cfg), unit(&eval, &cfg));
        assert!(max_diff(&grayscale(&t), &grayscale(&e)) < 1e-4);
        assert!(max_diff(&t, &e) > 0.01);
    }

    #[test]
    fn hue_shift_keeps_value_and_saturation_and_changes_colour() {
        let _rng = seeded(7);
        let cfg = AugmentConfig { hue: 0.5, ..plain() };
        let images = noise(4, 16, 0, 256);
        let (train, eval) = both(&cfg, &images);
        let (t, e) = (unit(&train, &cfg), unit(&eval, &cfg));
        assert!(max_diff(&t.amax([1], false), &e.amax([1], false)) < 1e-4);
        assert!(max_diff(&t.amin([1], false), &e.amin([1], false)) < 1e-4);
        assert!(max_diff(&t, &e) > 0.05);
    }

    #[test]
    fn hsv_round_trip_and_known_colours() {
        let _rng = seeded(8);
        let x = Tensor::rand([2, 3, 8, 8], (Kind::Float, device()));
        let (h, s, v) = rgb_to_hsv(&x);
        assert!(max_diff(&hsv_to_rgb(&h, &s, &v), &x) < 1e-5);
        // Pure red turned by a third of the wheel is pure green, by two thirds pure blue.
        let on_device = |v: &[f32]| Tensor::from_slice(v).to_device(device());
        let red = on_device(&[1.0, 0.0, 0.0]).view([1, 3, 1, 1]);
        let green = shift_hue(&red, &on_device(&[1.0 / 3.0]));
        let blue = shift_hue(&red, &on_device(&[2.0 / 3.0]));
        assert!(max_diff(&green.view([3]), &on_device(&[0.0, 1.0, 0.0])) < 1e-5, "{green}");
        assert!(max_diff(&blue.view([3]), &on_device(&[0.0, 0.0, 1.0])) < 1e-5, "{blue}");
    }

    #[test]
    fn blur_lowers_the_variance_of_noise() {
        let _rng = seeded(9);
        let cfg = AugmentConfig { blur: 1.0, blur_sigma: [1.0, 2.0], ..plain() };
        let images = noise(3, 32, 0, 256);
        let (train, eval) = both(&cfg, &images);
        for i in 0..3 {
            let (vt, ve) = (train.get(i).var(true).double_value(&[]), eval.get(i).var(true).double_value(&[]));
            assert!(vt < 0.5 * ve, "image {i}: variance {vt} vs {ve}");
        }
        // A flat image stays flat: the kernel sums to 1 and reflection adds no new values.
        // (2e-3 leaves room for TF32 convolutions, cuDNN's default on recent GPUs.)
        let flat = Tensor::full([2, 16, 16, 3], 77i64, (Kind::Uint8, device()));
        let (train, eval) = both(&cfg, &flat);
        assert!(max_diff(&train, &eval) < 2e-3);
    }

    #[test]
    fn sharpness_follows_torchvisions_kernel_and_raises_detail() {
        let _rng = seeded(10);
        let cfg = AugmentConfig { sharpness: 1.0, sharpness_factor: 2.0, ..plain() };
        let images = noise(2, 16, 64, 192);
        let (train, eval) = both(&cfg, &images);
        let (t, e) = (unit(&train, &cfg), unit(&eval, &cfg));
        let detail = |x: &Tensor| {
            let dx = x.narrow(3, 1, 15) - x.narrow(3, 0, 15);
            dx.square().sum(Kind::Float).double_value(&[])
        };
        assert!(detail(&t) > 1.5 * detail(&e), "{} vs {}", detail(&t), detail(&e));
        // Border pixels keep their values.
        assert!(max_diff(&t.narrow(2, 0, 1), &e.narrow(2, 0, 1)) < 1e-5);
        // An interior pixel: 2 * x - smoothed(x), clamped to [0,1].
        let px = |y: i64, x: i64| e.double_value(&[1, 2, y, x]);
        let mut smoothed = 0.0;
        for dy in -1..=1 {
            for dx in -1..=1 {
                smoothed += px(5 + dy, 7 + dx) * if dy == 0 && dx == 0 { 5.0 } else { 1.0 };
            }
        }
        let expected = (2.0 * px(5, 7) - smoothed / 13.0).clamp(0.0, 1.0);
        // 2e-3 leaves room for TF32 convolutions on a GPU; a wrong kernel is off by ~0.1.
        assert!((t.double_value(&[1, 2, 5, 7]) - expected).abs() < 2e-3);
    }

    #[test]
    fn random_resized_crop_keeps_shape_and_changes_content() {
        let _rng = seeded(11);
        let cfg = AugmentConfig { random_resized_crop: 1.0, ..plain() };
        let images = noise(4, 32, 0, 256);
        let (train, eval) = both(&cfg, &images);
        assert_eq!(train.size(), eval.size());
        for i in 0..4 {
            assert!(max_diff(&train.get(i), &eval.get(i)) > 0.1, "image {i} unchanged");
        }
        // Non-square input keeps its shape too.
        let wide = Tensor::randint(256, [2, 24, 40, 3], (Kind::Uint8, device()));
        assert_eq!(Augmenter::new(&cfg).unwrap().train(&wide).size(), vec![2, 3, 24, 40]);
    }

    #[test]
    fn random_resized_crop_maps_the_chosen_window_onto_the_image() {
        let _rng = seeded(12);
        // The full-area, square crop of a square image is the image itself.
        let whole = AugmentConfig { random_resized_crop: 1.0, rrc_scale: [1.0, 1.0], rrc_ratio: [1.0, 1.0], ..plain() };
        let images = noise(2, 32, 0, 256);
        let (train, eval) = both(&whole, &images);
        assert!(max_diff(&train, &eval) < 1e-5);
        // A quarter-area square crop of a horizontal ramp (8 levels per column) is a 2x zoom:
        // 4 levels per output column away from the crop edges, rows untouched.
        let quarter = AugmentConfig { rrc_scale: [0.25, 0.25], ..whole };
        let ramp: Vec<u8> = (0..32 * 32).flat_map(|i| [((i % 32) * 8) as u8; 3]).collect();
        let ramp = Tensor::from_slice(&ramp).to_device(device()).view([1, 32, 32, 3]).repeat([3, 1, 1, 1]);
        let out = unit(&Augmenter::new(&quarter).unwrap().train(&ramp), &quarter) * 255.0;
        let step = out.narrow(3, 2, 28) - out.narrow(3, 1, 28);
        assert!(max_diff(&step, &step.full_like(4.0)) < 1e-3, "{step}");
        assert!(max_diff(&out.narrow(2, 1, 31), &out.narrow(2, 0, 31)) < 1e-3);
        // Output column u samples input column left + (u + 0.5) / 2 - 0.5, so column 16 reads
        // 8 * (left + 7.75): the window starts at a whole column inside the image.
        for i in 0..3 {
            let left = out.double_value(&[i, 0, 0, 16]) / 8.0 - 7.75;
            assert!((left - left.round()).abs() < 1e-3 && (0.0..=16.0).contains(&left.round()), "left {left}");
        }
    }

    #[test]
    fn erasing_zeroes_one_rectangle_per_image_in_the_scale_range() {
        let _rng = seeded(13);
        let cfg = AugmentConfig { erasing: 1.0, erasing_scale: [0.1, 0.2], ..plain() };
        let images = noise(6, 32, 0, 256);
        let (train, eval) = both(&cfg, &images);
        // Normalised pixel values are never exactly 0 (255 * mean is not a whole level).
        assert_eq!(eval.eq(0.0).sum(Kind::Int64).int64_value(&[]), 0);
        let area = 32.0 * 32.0;
        for i in 0..6 {
            let zero = train.get(i).eq(0.0).all_dim(0, false); // [H, W], all channels erased
            let count = zero.sum(Kind::Int64).int64_value(&[]) as f64;
            let rows = floats(&zero.any_dim(1, false).nonzero().view([-1]));
            let cols = floats(&zero.any_dim(0, false).nonzero().view([-1]));
            assert!(!rows.is_empty(), "image {i} not erased");
            let h = rows.last().unwrap() - rows[0] + 1.0;
            let w = cols.last().unwrap() - cols[0] + 1.0;
            assert_eq!(count, h * w, "image {i}: the zeros are not one rectangle");
            assert_eq!(rows.len() as f64, h);
            // Sides are rounded from sqrt(area * ratio), so the drawn area lies within half a pixel per side.
            assert!((h + 0.5) * (w + 0.5) >= 0.1 * area && (h - 0.5) * (w - 0.5) <= 0.2 * area, "{h}x{w}");
            // Outside the rectangle nothing changed.
            let keep = zero.logical_not();
            assert_eq!(max_diff(&train.get(i).masked_select(&keep), &eval.get(i).masked_select(&keep)), 0.0);
        }
    }

    #[test]
    fn mixup_blends_with_the_permuted_batch() {
        let _rng = seeded(14);
        let aug = Augmenter::new(&AugmentConfig { mixup: 0.4, ..plain() }).unwrap();
        let x = Tensor::randn([6, 3, 8, 8], (Kind::Float, device()));
        let (mixed, mix) = aug.mix(&x);
        let mix = mix.expect("mix_prob 1 always mixes");
        assert!((0.0..=1.0).contains(&mix.lam));
        let mut perm = Vec::<i64>::try_from(mix.perm.to_device(Device::Cpu)).unwrap();
        perm.sort();
        assert_eq!(perm, (0..6).collect::<Vec<i64>>());
        let expected = &x * mix.lam + x.index_select(0, &mix.perm) * (1.0 - mix.lam);
        assert!(max_diff(&mixed, &expected) < 1e-6);

        let never = Augmenter::new(&AugmentConfig { mixup: 0.4, mix_prob: 0.0, ..plain() }).unwrap();
        let (same, none) = never.mix(&x);
        assert!(none.is_none());
        assert_eq!(max_diff(&same, &x), 0.0);
        let (same, none) = Augmenter::new(&plain()).unwrap().mix(&x);
        assert!(none.is_none());
        assert_eq!(max_diff(&same, &x), 0.0);
    }

    #[test]
    fn cutmix_pastes_one_box_and_lam_is_the_kept_area() {
        let _rng = seeded(15);
        let aug = Augmenter::new(&AugmentConfig { cutmix: 1.0, ..plain() }).unwrap();
        // Each image one distinct value, so every pasted pixel from another image shows.
        let x = Tensor::arange(8i64, (Kind::Float, device())).view([8, 1, 1, 1]).expand([8, 3, 16, 16], false).contiguous();
        let mut boxes_seen = 0;
        for _ in 0..5 {
            let (mixed, mix) = aug.mix(&x);
            let mix = mix.expect("mix_prob 1 always mixes");
            let from_partner = x.index_select(0, &mix.perm);
            let changed = mixed.ne_tensor(&x).any_dim(1, false); // [N, H, W]
            let moved: Vec<i64> = (0..8).filter(|&i| mix.perm.int64_value(&[i]) != i).collect();
            assert!(!moved.is_empty(), "perm is the identity");
            let first = changed.get(moved[0]);
            let area = first.sum(Kind::Int64).int64_value(&[]) as f64;
            assert!((mix.lam - (1.0 - area / 256.0)).abs() < 1e-12, "lam {} area {area}", mix.lam);
            if area > 0.0 {
                boxes_seen += 1;
                let rows = first.any_dim(1, false).sum(Kind::Int64).int64_value(&[]) as f64;
                let cols = first.any_dim(0, false).sum(Kind::Int64).int64_value(&[]) as f64;
                assert_eq!(rows * cols, area, "the pasted region is not one box");
            }
            // The same box in every moved image, holding the partner's pixels.
            for &i in &moved {
                assert_eq!(max_diff(&changed.get(i).to_kind(Kind::Float), &first.to_kind(Kind::Float)), 0.0);
            }
            let expected = from_partner.where_self(&changed.get(moved[0]).view([1, 1, 16, 16]), &x);
            assert_eq!(max_diff(&mixed, &expected), 0.0);
        }
        assert!(boxes_seen > 0);
    }

    #[test]
    fn same_seed_same_batch_different_seed_different_batch() {
        let cfg = AugmentConfig {
            hflip: 0.5,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
            hue: 0.1,
            erasing: 0.5,
            blur: 0.5,
            sharpness: 0.5,
            random_resized_crop: 0.5,
            mixup: 0.2,
            cutmix: 1.0,
            ..Default::default()
        };
        let aug = Augmenter::new(&cfg).unwrap();
        let images = {
            let _rng = seeded(20);
            noise(6, 32, 0, 256)
        };
        let run = |seed: i64| {
            let _rng = seeded(seed);
            let (mixed, mix) = aug.mix(&aug.train(&images));
            let mix = mix.expect("mix_prob 1 always mixes");
            (mixed, mix.lam, Vec::<i64>::try_from(mix.perm.to_device(Device::Cpu)).unwrap())
        };
        let (a, lam_a, perm_a) = run(21);
        let (b, lam_b, perm_b) = run(21);
        assert_eq!(max_diff(&a, &b), 0.0);
        assert_eq!((lam_a, perm_a), (lam_b, perm_b));
        let (c, _, _) = run(22);
        assert!(max_diff(&a, &c) > 0.1);
    }
}
