//! A model of a layout, ready to run: its variables, backbone and input pipeline; and the
//! inference loop shared by validation, `eval` and `bench`.
use crate::data::augment::Augmenter;
use crate::data::loader::Loader;
use crate::model::task_layout::Layout;
use crate::model::registry::{build_backbone, find, BackboneOptions};
use crate::model::precision::{self, Autocast};
use crate::model::settings::{Amp, NetSettings};
use anyhow::{Context, Result};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

pub struct Net {
    pub name: String,
    pub settings: NetSettings,
    pub vs: VarStore,
    pub module: Box<dyn ModuleT>,
    /// What the backbone was built with (a copy of it is built again from them, see `precise_bn`).
    pub backbone_options: BackboneOptions,
    pub augmenter: Augmenter,
}

impl Net {
    pub fn new(name: &str, settings: &NetSettings, num_classes: i64, device: Device) -> Result<Net> {
        let vs = VarStore::new(device);
        let m = &settings.model;
        let opts = BackboneOptions {
            num_classes,
            dropout: (m.dropout >= 0.0).then_some(m.dropout),
            stochastic_depth: (m.stochastic_depth >= 0.0).then_some(m.stochastic_depth),
            bn_momentum: (m.bn_momentum >= 0.0).then_some(m.bn_momentum),
        };
        let module = build_backbone(&m.backbone, &vs.root(), &opts).with_context(|| format!("model `{name}`"))?;
        // "backbone" in augment.mean/std: the input scaling the backbone's weights were trained with.
        let input = find(&m.backbone).and_then(|b| b.variant().input);
        let augmenter = Augmenter::for_backbone(&settings.augment, input).with_context(|| format!("model `{name}`"))?;
        Ok(Net { name: name.to_string(), settings: settings.clone(), vs, module, backbone_options: opts, augmenter })
    }

    /// The model's name and its loss settings, as `train::loss::head_losses` takes them.
    pub fn loss_settings(&self) -> (&str, &crate::model::loss::LossConfig) {
        (&self.name, &self.settings.loss)
    }

    /// The model's tensors named `<model name>.<variable>`, for checkpoints.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            self.vs.variables().into_iter().map(|(k, t)| (format!("{}.{k}", self.name), t)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Copies `<model name>.<variable>` tensors into the model; every variable must be present.
    pub fn load_tensors(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let prefix = format!("{}.", self.name);
        let mut vars = self.vs.variables();
        let mut loaded = 0;
        tch::no_grad(|| -> Result<()> {
            for (k, t) in tensors {
                if let Some(var) = k.strip_prefix(&prefix).and_then(|k| vars.get_mut(k)) {
                    anyhow::ensure!(var.size() == t.size(), "{k}: shape {:?} in the checkpoint, {:?} in the model", t.size(), var.size());
                    var.copy_(t);
                    loaded += 1;
                }
            }
            Ok(())
        })?;
        anyhow::ensure!(loaded == vars.len(), "checkpoint holds {loaded} of model `{}`'s {} tensors", self.name, vars.len());
        Ok(())
    }
}

/// How batches run on the device.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub device: Device,
    /// Mixed precision of forward passes.
    pub autocast: Autocast,
    /// Inputs in channels-last memory layout (NHWC strides), on CUDA and CPU alike.
    pub channels_last: bool,
    /// Test-time augmentation: the views of each image whose probabilities are averaged.
    pub tta: Tta,
}

impl RunOptions {
    /// A run's settings on `device`: fp16 takes effect on CUDA only, bf16 on CUDA and on CPUs
    /// with native bfloat16 (a warning says when it falls back to float32).
    pub fn new(amp: Amp, channels_last: bool, device: Device, tta: Tta) -> RunOptions {
        let requested = match amp {
            Amp::None => precision::Requested::None,
            Amp::Fp16 => precision::Requested::Fp16,
            Amp::Bf16 => precision::Requested::Bf16,
        };
        let (autocast, warning) = Autocast::choose(requested, device, precision::cpu_has_native_bf16());
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
        }
        RunOptions { device, autocast, channels_last, tta }
    }

    /// Puts the models' weights in the memory layout their inputs come in: with channels-last
    /// inputs, every convolution weight channels-last too, as PyTorch's
    /// `model.to(memory_format=torch.channels_last)` does (else each convolution converts its
    /// weight on every call, and its weight gradient back). Call before an optimiser takes the
    /// variables: it keeps the layout it finds (`train::flat`).
    pub fn prepare_weights(&self, nets: &[Net]) {
        if self.channels_last {
            for net in nets {
                weights_to_channels_last(&net.vs);
            }
        }
    }
}

/// Every 4-D variable (the convolution weights) of `vs` re-laid channels-last in place: same
/// values and the same variable (`set_data`), NHWC memory order.
pub fn weights_to_channels_last(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, var) in vs.variables() {
            if var.dim() == 4 && !is_channels_last(&var) {
                let mut var = var.shallow_clone();
                var.set_data(&to_channels_last(&var));
            }
        }
    });
}

pub use super::blocks::is_channels_last;

/// Test-time augmentation. Each image is seen as several views and the 18-way probabilities
/// of the views are averaged: `flip` adds the mirror image of every view; `crops` adds five
/// crops of 7/8 of the side (the four corners and the centre, as torchvision's FiveCrop),
/// each resized back to the input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tta {
    pub flip: bool,
    pub crops: bool,
}

impl std::str::FromStr for Tta {
    type Err = String;

    /// `none`, `flip`, `crops`, or both joined with `,` or `+`.
    fn from_str(s: &str) -> Result<Tta, String> {
        let mut tta = Tta::default();
        for part in s.split([',', '+']).map(str::trim) {
            match part {
                "none" | "" => {}
                "flip" => tta.flip = true,
                "crops" => tta.crops = true,
                other => return Err(format!("unknown test-time augmentation `{other}` (none, flip, crops, flip,crops)")),
            }
        }
        Ok(tta)
    }
}

/// The side of a TTA crop, as a fraction of the image side.
const TTA_CROP: f64 = 0.875;

impl Tta {
    /// The views of a uint8 NHWC batch, the batch itself first.
    pub fn views(&self, images_u8: &Tensor) -> Vec<Tensor> {
        let mut views = vec![images_u8.shallow_clone()];
        if self.crops {
            let (h, w) = (images_u8.size()[1], images_u8.size()[2]);
            let (ch, cw) = (((h as f64) * TTA_CROP).round() as i64, ((w as f64) * TTA_CROP).round() as i64);
            for (top, left) in [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) / 2, (w - cw) / 2)] {
                let crop = images_u8.narrow(1, top, ch).narrow(2, left, cw);
                views.push(resize_u8(&crop, h, w));
            }
        }
        if self.flip {
            let mirrored: Vec<Tensor> = views.iter().map(|v| v.flip([2])).collect(); // NHWC: dimension 2 is the width
            views.extend(mirrored);
        }
        views
    }
}

/// Bilinear resize of a uint8 NHWC batch (half-pixel centres, as the decoder's resize).
fn resize_u8(images: &Tensor, h: i64, w: i64) -> Tensor {
    images
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        .upsample_bilinear2d([h, w], false, None, None)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
        .permute([0, 2, 3, 1])
        .contiguous()
}

/// uint8 NHWC batch on the device -> normalised float NCHW (channels-last strides when asked).
pub fn eval_input(net: &Net, images_u8: &Tensor, run: &RunOptions) -> Tensor {
    let x = net.augmenter.eval(&images_u8.to_device(run.device));
    if run.channels_last {
        to_channels_last(&x)
    } else {
        x
    }
}

/// A NCHW tensor with NHWC memory layout: what PyTorch's `channels_last` memory format is.
/// tch has no memory-format API, so we build the strides by permuting an NHWC copy.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// One batch through every model of a layout, with the run's test-time augmentation:
/// uint8 NHWC images -> the 18-way probabilities `[B, 18]` averaged over the TTA views, and
/// each model's raw outputs on the plain images (float32), all on the run's device.
pub fn forward_batch(nets: &[Net], layout: Layout, images_u8: &Tensor, run: &RunOptions) -> (Tensor, Vec<Tensor>) {
    tch::no_grad(|| {
        let forward = |images: &Tensor| -> Vec<Tensor> {
            nets.iter()
                .map(|net| {
                    let x = eval_input(net, images, run);
                    run.autocast.run(run.device, || net.module.forward_t(&x, false)).to_kind(Kind::Float)
                })
                .collect()
        };
        let views = run.tta.views(&images_u8.to_device(run.device));
        let outs = forward(&views[0]);
        let mut p = layout.probs18(&outs);
        for view in &views[1..] {
            p += layout.probs18(&forward(view));
        }
        (p / views.len() as f64, outs)
    })
}

/// Runs every model of a layout over `order` and returns the 18-way probabilities `[N, 18]`
/// and each model's raw outputs (float32, CPU), in the order of `order`, with the indices of the
/// images that were read (all of `order` unless the loader skips bad images).
pub fn infer(
    nets: &[Net],
    layout: Layout,
    loader: &Loader,
    order: Vec<usize>,
    batch_size: usize,
    run: &RunOptions,
) -> Result<(Tensor, Vec<Tensor>, Vec<usize>)> {
    let mut probs = Vec::new();
    let mut outputs: Vec<Vec<Tensor>> = nets.iter().map(|_| Vec::new()).collect();
    let mut kept = Vec::with_capacity(order.len());
    for batch in loader.batches(order, batch_size, false) {
        let batch = batch?;
        let (p, outs) = forward_batch(nets, layout, &batch.images, run);
        probs.push(p.to_device(Device::Cpu));
        for (acc, o) in outputs.iter_mut().zip(outs) {
            acc.push(o.to_device(Device::Cpu));
        }
        kept.extend(batch.indices);
    }
    let cat = |v: Vec<Tensor>, width: i64| if v.is_empty() { Tensor::zeros([0, width], (Kind::Float, Device::Cpu)) } else { Tensor::cat(&v, 0) };
    let widths: Vec<i64> = layout.models().iter().map(|(_, n)| *n).collect();
    Ok((cat(probs, 18), outputs.into_iter().zip(widths).map(|(v, w)| cat(v, w)).collect(), kept))
}

/// Probabilities that are NaN or infinite: weights whose activations overflow, as those of a
/// training run that diverged do (their values can be finite and still overflow).
#[derive(Debug, thiserror::Error)]
#[error("the model's outputs are not finite (NaN or infinity) for {bad} of {total} images: its weights overflow, as those of a training run that diverged do")]
pub struct NonFiniteOutputs {
    pub bad: usize,
    pub total: usize,
}

/// Fails when a row of `[N, C]` probabilities holds a NaN or an infinity (one host read).
pub fn check_finite_outputs(probs: &Tensor) -> Result<(), NonFiniteOutputs> {
    if probs.numel() == 0 {
        return Ok(());
    }
    let bad = probs.isfinite().logical_not().any_dim(1, false).sum(Kind::Int64).int64_value(&[]) as usize;
    if bad > 0 {
        return Err(NonFiniteOutputs { bad, total: probs.size()[0] as usize });
    }
    Ok(())
}

#[cfg(test)]
mod tta_tests {
    use super::*;

    #[test]
    fn non_finite_outputs_are_counted_by_image() {
        let p = Tensor::full([4, 18], 1.0 / 18.0, (Kind::Float, Device::Cpu));
        assert!(check_finite_outputs(&p).is_ok());
        let _ = p.get(1).get(3).fill_(f64::NAN);
        let _ = p.get(2).fill_(f64::INFINITY);
        let err = check_finite_outputs(&p).unwrap_err();
        assert_eq!((err.bad, err.total), (2, 4));
        assert!(check_finite_outputs(&Tensor::zeros([0, 18], (Kind::Float, Device::Cpu))).is_ok());
    }

    #[test]
    fn tta_parses_and_makes_the_views_it_names() {
        assert_eq!("none".parse::<Tta>().unwrap(), Tta::default());
        assert_eq!("flip,crops".parse::<Tta>().unwrap(), Tta { flip: true, crops: true });
        assert_eq!("crops+flip".parse::<Tta>().unwrap(), Tta { flip: true, crops: true });
        assert!("mirror".parse::<Tta>().unwrap_err().contains("mirror"));

        // A 1x8x8x1 image whose pixel is 10*row + column.
        let img = Tensor::from_slice(&(0..64u8).map(|i| (i / 8) * 10 + i % 8).collect::<Vec<u8>>()).view([1, 8, 8, 1]);
        assert_eq!(Tta::default().views(&img).len(), 1);
        let flip = Tta { flip: true, crops: false }.views(&img);
        assert_eq!(flip.len(), 2);
        assert_eq!(flip[1].int64_value(&[0, 0, 0, 0]), 7, "mirror: column 7 comes first");
        let crops = Tta { flip: false, crops: true }.views(&img);
        assert_eq!(crops.len(), 6, "the image, four corners, the centre");
        for v in &crops {
            assert_eq!(v.size(), vec![1, 8, 8, 1]);
        }
        // 7x7 crops resized to 8x8 keep their corner pixels' neighbourhood: the top-left crop
        // starts at (0,0); the bottom-right one ends at (7,7).
        assert_eq!(crops[1].int64_value(&[0, 0, 0, 0]), 0);
        assert_eq!(crops[4].int64_value(&[0, 7, 7, 0]), 77);
        assert_eq!(crops[2].int64_value(&[0, 0, 7, 0]), 7, "top-right crop ends at column 7");
        assert_ne!(crops[1], crops[4]);
        assert_eq!(Tta { flip: true, crops: true }.views(&img).len(), 12);
    }
}
