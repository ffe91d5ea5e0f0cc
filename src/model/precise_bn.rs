//! Precise BatchNorm statistics (pycls's and Detectron2's `PreciseBN`): the running mean and
//! variance of every BatchNorm re-estimated as the average of their batch statistics over a
//! number of training batches, for the weights as they are now.
//!
//! Training keeps running statistics as a moving average with `model.bn_momentum`; after a short
//! fine-tune, and with a slow momentum such as TensorFlow's 0.01, they still describe the
//! pretrained weights' data (ImageNet) rather than this network's activations, and validation,
//! which uses them, sees a different network from the one training optimised. Here the backbone
//! is built a second time with momentum 1 (each forward pass leaves the batch's own statistics),
//! without dropout and stochastic depth (the network validation runs), the weights are copied in,
//! each batch runs through it in training mode, and the statistics of the batches are averaged and
//! written back. A family without BatchNorm (LayerNorm, or BatchNorm folded into its weights) is
//! left as it is.
use super::net::{eval_input, Net, RunOptions};
use super::registry::{build_backbone, BackboneOptions};
use anyhow::{bail, Context, Result};
use tch::nn::VarStore;
use tch::Tensor;

const RUNNING_MEAN: &str = ".running_mean";
const RUNNING_VAR: &str = ".running_var";

/// Re-estimates the BatchNorm statistics of `net` over `batches` (uint8 NHWC images, at least two
/// per batch: a batch of one has no variance), prepared as validation prepares them (no random
/// augmentation). Returns how many batches were used; 0 when the backbone has no BatchNorm.
pub fn recompute_net(net: &Net, batches: impl IntoIterator<Item = Result<Tensor>>, run: &RunOptions) -> Result<usize> {
    let inputs = batches.into_iter().map(|images| images.map(|images| eval_input(net, &images, run)));
    recompute(&net.vs, &net.settings.model.backbone, &net.backbone_options, inputs, run)
        .with_context(|| format!("model `{}`: precise BatchNorm statistics", net.name))
}

/// As [`recompute_net`], for backbone `backbone` built with `options` whose variables are `vs`,
/// over normalised float `[N, 3, H, W]` inputs.
pub fn recompute(
    vs: &VarStore,
    backbone: &str,
    options: &BackboneOptions,
    inputs: impl IntoIterator<Item = Result<Tensor>>,
    run: &RunOptions,
) -> Result<usize> {
    let mut live = vs.variables();
    let mut names: Vec<String> = live.keys().filter_map(|k| k.strip_suffix(RUNNING_MEAN).map(str::to_string)).collect();
    if names.is_empty() {
        return Ok(0);
    }
    names.sort();
    // The network validation runs, with every BatchNorm keeping the last batch's statistics.
    let mut scratch = VarStore::new(vs.device());
    let eval_like = BackboneOptions { dropout: Some(0.0), stochastic_depth: Some(0.0), bn_momentum: Some(1.0), ..options.clone() };
    let module = build_backbone(backbone, &scratch.root(), &eval_like)?;
    scratch.copy(vs)?;
    let stats = scratch.variables();
    let stat = |name: &str, suffix: &str| stats[&format!("{name}{suffix}")].shallow_clone();
    let mut sums: Vec<(Tensor, Tensor)> = names.iter().map(|n| (stat(n, RUNNING_MEAN).zeros_like(), stat(n, RUNNING_VAR).zeros_like())).collect();
    let mut count = 0usize;
    tch::no_grad(|| -> Result<()> {
        for x in inputs {
            let x = x?;
            if x.size()[0] < 2 {
                bail!("a batch of {} image(s): BatchNorm statistics need at least 2 per batch", x.size()[0]);
            }
            let _ = run.autocast.run(run.device, || module.forward_t(&x, true));
            for (name, (mean, var)) in names.iter().zip(&mut sums) {
                *mean += stat(name, RUNNING_MEAN);
                *var += stat(name, RUNNING_VAR);
            }
            count += 1;
        }
        if count == 0 {
            bail!("no batches to estimate BatchNorm statistics from");
        }
        for (name, (mean, var)) in names.iter().zip(&sums) {
            for (suffix, sum) in [(RUNNING_MEAN, mean), (RUNNING_VAR, var)] {
                let target = live.get_mut(&format!("{name}{suffix}")).expect("listed above");
                target.copy_(&(sum / count as f64).to_kind(target.kind()));
            }
        }
        Ok(())
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::net::Tta;
    use crate::model::precision::Autocast;
    use tch::{Device, Kind};

    fn cpu() -> RunOptions {
        RunOptions { device: Device::Cpu, autocast: Autocast::Off, channels_last: false, tta: Tta::default() }
    }

    #[test]
    fn statistics_are_the_mean_over_batches() {
        // A ResNet-18's first BatchNorm sees the stem convolution's output: over two batches its
        // estimate is the mean of the two batches' statistics.
        tch::manual_seed(2);
        let options = BackboneOptions::new(3);
        let vs = VarStore::new(Device::Cpu);
        let _model = build_backbone("resnet18", &vs.root(), &options).unwrap();
        let conv = vs.variables()["conv1.weight"].shallow_clone();
        let batches = [Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu)), Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 3.0 + 1.0];
        let stats = |x: &Tensor| {
            let y = tch::no_grad(|| x.conv2d(&conv, None::<Tensor>, [2], [3], [1], 1));
            (y.mean_dim(&[0i64, 2, 3][..], false, Kind::Float), y.var_dim(&[0i64, 2, 3][..], true, false))
        };
        let ((m0, v0), (m1, v1)) = (stats(&batches[0]), stats(&batches[1]));
        let used = recompute(&vs, "resnet18", &options, batches.iter().map(|b| Ok(b.shallow_clone())), &cpu()).unwrap();
        assert_eq!(used, 2);
        let variables = vs.variables();
        assert!(variables["bn1.running_mean"].allclose(&((m0 + m1) / 2.0), 1e-4, 1e-4, false));
        assert!(variables["bn1.running_var"].allclose(&((v0 + v1) / 2.0), 1e-3, 1e-4, false));
    }

    #[test]
    fn batches_of_one_and_no_batches_are_errors() {
        let options = BackboneOptions::new(3);
        let vs = VarStore::new(Device::Cpu);
        let _model = build_backbone("mobilenet_v2", &vs.root(), &options).unwrap();
        let one = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        let err = recompute(&vs, "mobilenet_v2", &options, [Ok(one)], &cpu()).unwrap_err().to_string();
        assert!(err.contains("at least 2"), "{err}");
        let err = recompute(&vs, "mobilenet_v2", &options, Vec::<Result<Tensor>>::new(), &cpu()).unwrap_err().to_string();
        assert!(err.contains("no batches"), "{err}");
    }
}
