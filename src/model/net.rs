//! A model of a layout, ready to run: its variables, backbone and input pipeline; and the
//! inference loop shared by validation, `eval` and `bench`.
use crate::config::ModelSettings;
use crate::data::augment::Augmenter;
use crate::data::loader::Loader;
use crate::model::layout::Layout;
use crate::model::registry::{build_backbone, BackboneOptions};
use anyhow::{Context, Result};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

pub struct Net {
    pub name: String,
    pub settings: ModelSettings,
    pub vs: VarStore,
    pub module: Box<dyn ModuleT>,
    pub augmenter: Augmenter,
}

impl Net {
    pub fn new(name: &str, settings: &ModelSettings, num_classes: i64, device: Device) -> Result<Net> {
        let vs = VarStore::new(device);
        let m = &settings.model;
        let opts = BackboneOptions {
            num_classes,
            dropout: (m.dropout >= 0.0).then_some(m.dropout),
            stochastic_depth: (m.stochastic_depth >= 0.0).then_some(m.stochastic_depth),
        };
        let module = build_backbone(&m.backbone, &vs.root(), &opts).with_context(|| format!("model `{name}`"))?;
        let augmenter = Augmenter::new(&settings.augment).with_context(|| format!("model `{name}`"))?;
        Ok(Net { name: name.to_string(), settings: settings.clone(), vs, module, augmenter })
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
    /// fp16 autocast (CUDA only).
    pub amp: bool,
    pub channels_last: bool,
    /// Test-time augmentation: average the probabilities of each image and its mirror image.
    pub tta_flip: bool,
}

impl RunOptions {
    /// A run's settings on `device`: fp16 and channels-last take effect on CUDA only.
    pub fn new(cfg: &crate::config::Config, device: Device, tta_flip: bool) -> RunOptions {
        RunOptions {
            device,
            amp: cfg.train.amp == "fp16" && device.is_cuda(),
            channels_last: cfg.train.channels_last && device.is_cuda(),
            tta_flip,
        }
    }
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

/// Runs every model of a layout over `order` and returns the 18-way probabilities `[N, 18]`
/// and each model's raw outputs (float32, CPU), in the order of `order`.
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
    tch::no_grad(|| -> Result<()> {
        for batch in loader.batches(order, batch_size, false) {
            let batch = batch?;
            let outs: Vec<Tensor> = nets
                .iter()
                .map(|net| {
                    let x = eval_input(net, &batch.images, run);
                    tch::autocast(run.amp, || net.module.forward_t(&x, false)).to_kind(Kind::Float)
                })
                .collect();
            let mut p = layout.probs18(&outs);
            if run.tta_flip {
                let mirrored = batch.images.flip([2]); // NHWC: dimension 2 is the width
                let outs_flip: Vec<Tensor> = nets
                    .iter()
                    .map(|net| {
                        let x = eval_input(net, &mirrored, run);
                        tch::autocast(run.amp, || net.module.forward_t(&x, false)).to_kind(Kind::Float)
                    })
                    .collect();
                p = (p + layout.probs18(&outs_flip)) * 0.5;
            }
            probs.push(p.to_device(Device::Cpu));
            for (acc, o) in outputs.iter_mut().zip(outs) {
                acc.push(o.to_device(Device::Cpu));
            }
            kept.extend(batch.indices);
        }
        Ok(())
    })?;
    let cat = |v: Vec<Tensor>, width: i64| if v.is_empty() { Tensor::zeros([0, width], (Kind::Float, Device::Cpu)) } else { Tensor::cat(&v, 0) };
    let widths: Vec<i64> = layout.models().iter().map(|(_, n)| *n).collect();
    Ok((cat(probs, 18), outputs.into_iter().zip(widths).map(|(v, w)| cat(v, w)).collect(), kept))
}
