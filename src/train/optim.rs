//! Adam, AdamW and SGD over flat parameter buffers.
//!
//! tch's optimisers update parameter by parameter: several kernel launches for each of hundreds
//! of tensors, which dominates a CUDA step for small models. Here every trainable variable of a
//! given dtype/device becomes a view into ONE contiguous buffer (`Tensor::set_data` keeps the
//! variable, and so its autograd identity, while replacing its storage), the gradients are gathered
//! into one matching buffer, and each update is a handful of whole-buffer operations.
//!
//! The gradients are gathered with one `Tensor::cat` and then each variable's `.grad` is re-pointed
//! at its slice of that buffer. Autograd accumulates into an existing `.grad` in place, so from
//! the second step on the backward pass writes straight into the flat buffer: no gather is needed,
//! and `zero_grad` is a single fill.
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use tch::nn::VarStore;
use crate::train::flat::{group_by_kind, FlatLayout, Slot};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimKind {
    /// torch.optim.Adam: weight decay is an L2 term added to the gradient.
    Adam,
    /// torch.optim.AdamW: decoupled weight decay `p *= 1 - lr * weight_decay`.
    Adamw,
    /// torch.optim.SGD with optional (Nesterov) momentum and L2 weight decay.
    Sgd,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Which update rule to use.
    pub kind: OptimKind,
    /// Base learning rate (the schedule scales it per step).
    pub lr: f64,
    /// Weight decay (L2 for adam/sgd, decoupled for adamw).
    pub weight_decay: f64,
    /// SGD momentum (0 = plain SGD).
    pub momentum: f64,
    /// SGD: use Nesterov momentum (needs momentum > 0).
    pub nesterov: bool,
    /// Adam/AdamW decay rates of the first and second moment estimates.
    pub betas: [f64; 2],
    /// Adam/AdamW term added to the denominator for numerical stability.
    pub eps: f64,
    /// Maximum global L2 norm of the gradients; 0 turns clipping off.
    pub grad_clip: f64,
    /// Decay of the exponential moving average of the weights (e.g. 0.999); 0 turns it off.
    pub ema: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: OptimKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.01,
            momentum: 0.9,
            nesterov: false,
            betas: [0.9, 0.999],
            eps: 1e-8,
            grad_clip: 0.0,
            ema: 0.0,
        }
    }
}

impl crate::util::section::Section for OptimConfig {
    const KEY: &'static str = "optim";
}

impl OptimConfig {
    /// The same checks torch.optim makes, with the config key in each message.
    pub fn validate(&self) -> Result<()> {
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        ensure!(non_negative(self.lr), "optim.lr must be >= 0, got {}", self.lr);
        ensure!(non_negative(self.weight_decay), "optim.weight_decay must be >= 0, got {}", self.weight_decay);
        ensure!(non_negative(self.momentum), "optim.momentum must be >= 0, got {}", self.momentum);
        ensure!(
            !(self.kind == OptimKind::Sgd && self.nesterov && self.momentum == 0.0),
            "optim.nesterov needs optim.momentum > 0"
        );
        for (i, beta) in self.betas.iter().enumerate() {
            ensure!((0.0..1.0).contains(beta), "optim.betas[{i}] must be in [0, 1), got {beta}");
        }
        ensure!(non_negative(self.eps), "optim.eps must be >= 0, got {}", self.eps);
        ensure!(non_negative(self.grad_clip), "optim.grad_clip must be >= 0 (0 = off), got {}", self.grad_clip);
        ensure!((0.0..1.0).contains(&self.ema), "optim.ema must be in [0, 1) (0 = off), got {}", self.ema);
        Ok(())
    }
}

/// One trainable variable of a group: its slot in the group's buffers, and the variable itself
/// (sharing the VarStore variable's TensorImpl, so `set_data` on it rebinds the variable).
struct Param<'a> {
    name: &'a str,
    var: &'a Tensor,
    slot: &'a Slot,
}

/// All trainable variables of one dtype on one device, and their optimiser state.
#[derive(Debug)]
struct Group {
    layout: FlatLayout,
    /// The variables, in slot order.
    vars: Vec<Tensor>,
    /// The parameter values; every variable is a view into it.
    values: Tensor,
    /// The gradients, once gathered; each defined `.grad` is then a view into it.
    grads: Option<Tensor>,
    /// Adam first moment.
    exp_avg: Option<Tensor>,
    /// Adam second moment.
    exp_avg_sq: Option<Tensor>,
    /// SGD momentum buffer.
    momentum_buffer: Option<Tensor>,
}

impl Group {
    fn params(&self) -> impl Iterator<Item = Param<'_>> {
        self.layout.slots.iter().zip(&self.vars).map(|(slot, var)| Param { name: &slot.name, var, slot })
    }

    fn slice(&self, buffer: &Tensor, param: &Param) -> Tensor {
        self.layout.view(buffer, param.slot)
    }

    /// The state buffers this optimiser kind keeps, with their checkpoint names.
    fn state_buffers(&self) -> Vec<(&'static str, &Tensor)> {
        let mut buffers = Vec::new();
        if let Some(b) = &self.exp_avg {
            buffers.push(("exp_avg", b));
        }
        if let Some(b) = &self.exp_avg_sq {
            buffers.push(("exp_avg_sq", b));
        }
        if let Some(b) = &self.momentum_buffer {
            buffers.push(("momentum_buffer", b));
        }
        buffers
    }

    /// Whether the parameter's `.grad` is its slice of the flat gradient buffer.
    fn grad_is_bound(&self, param: &Param, grad: &Tensor) -> bool {
        match &self.grads {
            Some(grads) => grad.defined() && grad.data_ptr() as usize == self.layout.address(grads, param.slot),
            None => false,
        }
    }

    /// The flat gradient buffer, re-gathered only when some `.grad` is not (or no longer) a view
    /// into it: on the first step, after a parameter's grad was recreated, or while some stay undefined.
    fn flat_grads(&mut self) -> Tensor {
        if let Some(grads) = &self.grads {
            if self.params().all(|p| self.grad_is_bound(&p, &p.var.grad())) {
                return grads.shallow_clone();
            }
        }
        // An unused parameter (e.g. a head the layout ignores) has no grad: it counts as zero.
        let grads = self.layout.gather(|i, _| Some(self.vars[i].grad()).filter(|g| g.defined()));
        for p in self.params() {
            let mut grad = p.var.grad();
            if grad.defined() {
                grad.set_data(&self.slice(&grads, &p));
            }
        }
        self.grads = Some(grads.shallow_clone());
        grads
    }

    /// A VarStore cast or moved after `Optimizer::new` re-allocates its variables with
    /// `set_data`; stepping the old buffer would then silently train nothing.
    fn assert_still_bound(&self) {
        for p in self.params() {
            assert!(
                p.var.data_ptr() as usize == self.layout.address(&self.values, p.slot),
                "optimizer: variable `{}` no longer lives in the optimiser's buffer: the VarStore was moved \
                 or cast (set_device/half/float) after Optimizer::new, or another Optimizer took it over",
                p.name
            );
        }
    }
}

/// Byte alignment of each parameter inside a flat buffer. Some CUDA kernels (cuDNN's among
/// them) load weights with vector instructions that fault on an address that is not aligned:
/// EfficientNet's batch norms of 40 or 112 channels would otherwise start at any 4-byte offset.
const PARAM_ALIGN_BYTES: i64 = 256;

/// Adam / AdamW / SGD over flat per-dtype buffers (see the module docs).
#[derive(Debug)]
pub struct Optimizer {
    cfg: OptimConfig,
    groups: Vec<Group>,
    /// Steps taken; the same for every parameter because undefined grads count as zero.
    steps: u64,
}

impl Optimizer {
    /// Takes over the trainable variables of `vs`: afterwards they are views into the optimiser's
    /// buffers. Create it after the VarStore has its final device and dtype.
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Result<Optimizer> {
        cfg.validate()?;
        // trainable_variables() carries no names: match them to named variables by storage address.
        let mut names_by_address: HashMap<usize, String> = HashMap::new();
        for (name, var) in vs.variables() {
            if var.numel() > 0 {
                let entry = names_by_address.entry(var.data_ptr() as usize).or_insert_with(|| name.clone());
                // Deterministic choice if two names alias one tensor.
                if name < *entry {
                    *entry = name;
                }
            }
        }
        let mut seen = HashSet::new();
        let mut trainable: Vec<(String, Tensor)> = Vec::new();
        for var in vs.trainable_variables() {
            if var.numel() == 0 {
                continue; // nothing to update, and no storage address to identify it by
            }
            let address = var.data_ptr() as usize;
            if !seen.insert(address) {
                continue;
            }
            let name = names_by_address
                .get(&address)
                .cloned()
                .with_context(|| format!("a trainable variable of shape {:?} has no name in the VarStore", var.size()))?;
            let kind = var.kind();
            ensure!(
                matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16),
                "trainable variable `{name}` has non-floating dtype {kind:?}"
            );
            trainable.push((name, var));
        }
        let mut groups = Vec::new();
        for (layout, vars) in group_by_kind(trainable, PARAM_ALIGN_BYTES) {
            // Zeros: the alignment gaps between parameters must hold no NaN or Inf.
            let values = layout.zeros();
            let mut group = Group { layout, vars, values, grads: None, exp_avg: None, exp_avg_sq: None, momentum_buffer: None };
            tch::no_grad(|| -> Result<()> {
                for p in group.params() {
                    let mut view = group.slice(&group.values, &p);
                    view.copy_(&p.var.detach());
                    let mut var = p.var.shallow_clone();
                    var.f_set_data(&view).with_context(|| format!("cannot move `{}` into the optimiser's buffer", p.name))?;
                }
                Ok(())
            })?;
            let zeros = || Some(group.values.zeros_like());
            match cfg.kind {
                OptimKind::Adam | OptimKind::Adamw => {
                    group.exp_avg = zeros();
                    group.exp_avg_sq = zeros();
                }
                OptimKind::Sgd if cfg.momentum > 0.0 => group.momentum_buffer = zeros(),
                OptimKind::Sgd => {}
            }
            groups.push(group);
        }
        Ok(Optimizer { cfg: cfg.clone(), groups, steps: 0 })
    }

    /// Number of scalar parameters trained.
    pub fn num_parameters(&self) -> i64 {
        self.groups.iter().flat_map(|g| g.layout.slots.iter().map(|s| s.numel)).sum()
    }

    /// The flat gradient buffer of each dtype group, the grads gathered into it first: what a
    /// data-parallel step averages across ranks (`dist::sync::average_gradients`) between the
    /// backward pass and `step`. Writing into them changes the gradients `step` uses.
    pub fn grad_buffers(&mut self) -> Vec<Tensor> {
        self.groups.iter_mut().map(|g| g.flat_grads()).collect()
    }

    /// Zeroes every gradient: one fill per buffer for the grads that are already views into it.
    pub fn zero_grad(&mut self) {
        tch::no_grad(|| {
            for group in &mut self.groups {
                if let Some(grads) = &mut group.grads {
                    let _ = grads.zero_();
                }
                for p in group.params() {
                    let mut grad = p.var.grad();
                    if grad.defined() && !group.grad_is_bound(&p, &grad) {
                        let _ = grad.zero_();
                    }
                }
            }
        });
    }

    /// Multiplies grads by `factor` (fp16 loss-scale unscaling) and returns whether all are finite.
    pub fn unscale_grads(&mut self, factor: f64) -> bool {
        tch::no_grad(|| {
            let mut finite = true;
            for group in &mut self.groups {
                let mut grads = group.flat_grads();
                if factor != 1.0 {
                    let _ = grads.g_mul_scalar_(factor);
                }
                finite &= grads.isfinite().all().int64_value(&[]) != 0;
            }
            finite
        })
    }

    /// Global L2 norm of the grads, clipped to max_norm when max_norm > 0; returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.groups.iter_mut().map(|g| g.flat_grads()).collect();
            let squared_sum: f64 = grads
                .iter()
                .map(|g| {
                    // f16 grads would overflow when squared; accumulate in at least f32.
                    let accumulate = if g.kind() == Kind::Double { Kind::Double } else { Kind::Float };
                    g.norm_scalaropt_dtype(2, accumulate).double_value(&[]).powi(2)
                })
                .sum();
            let norm = squared_sum.sqrt();
            // As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is < 1.
            let coefficient = max_norm / (norm + 1e-6);
            if max_norm > 0.0 && coefficient < 1.0 {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coefficient);
                }
            }
            norm
        })
    }

    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let step = self.steps as i32;
        let cfg = &self.cfg;
        let wd = cfg.weight_decay;
        tch::no_grad(|| {
            for group in &mut self.groups {
                group.assert_still_bound();
                let grads = group.flat_grads();
                let mut values = group.values.shallow_clone();
                match cfg.kind {
                    OptimKind::Sgd => {
                        // PyTorch adds the decay out of place: the visible .grad stays the loss gradient.
                        let mut update = if wd != 0.0 { &grads + &values * wd } else { grads };
                        if let Some(buffer) = &mut group.momentum_buffer {
                            if step == 1 {
                                buffer.copy_(&update);
                            } else {
                                let _ = buffer.g_mul_scalar_(cfg.momentum);
                                let _ = buffer.g_add_(&update);
                            }
                            update = if cfg.nesterov { update + &*buffer * cfg.momentum } else { buffer.shallow_clone() };
                        }
                        let _ = values.g_sub_(&(update * lr));
                    }
                    OptimKind::Adam | OptimKind::Adamw => {
                        let grads = if cfg.kind == OptimKind::Adam && wd != 0.0 { &grads + &values * wd } else { grads };
                        if cfg.kind == OptimKind::Adamw && wd != 0.0 {
                            let _ = values.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let [beta1, beta2] = cfg.betas;
                        let (Some(exp_avg), Some(exp_avg_sq)) = (&mut group.exp_avg, &mut group.exp_avg_sq) else {
                            unreachable!("Adam groups get both moment buffers in Optimizer::new")
                        };
                        let _ = exp_avg.lerp_(&grads, 1.0 - beta1);
                        let _ = exp_avg_sq.g_mul_scalar_(beta2);
                        let _ = exp_avg_sq.addcmul_(&grads, &(&grads * (1.0 - beta2)));
                        let bias_correction1 = 1.0 - beta1.powi(step);
                        let bias_correction2 = 1.0 - beta2.powi(step);
                        let denominator = exp_avg_sq.sqrt() / bias_correction2.sqrt() + cfg.eps;
                        let _ = values.addcdiv_(&(&*exp_avg * (-lr / bias_correction1)), &denominator);
                    }
                }
            }
        });
    }

    /// Whether every gradient is finite, as a 0-dim bool tensor on the parameters' device: no
    /// host read, so the training loop can gate the step with [`Optimizer::step_if`] without
    /// waiting for the device.
    pub fn grads_finite(&mut self) -> Tensor {
        tch::no_grad(|| {
            let flags: Vec<Tensor> = self.groups.iter_mut().map(|g| g.flat_grads().isfinite().all()).collect();
            match flags.split_first() {
                Some((first, rest)) => rest.iter().fold(first.shallow_clone(), |a, b| a.logical_and(&b.to_device(a.device()))),
                None => Tensor::from(true),
            }
        })
    }

    /// [`Optimizer::step`] where `apply` (a 0-dim bool tensor on the parameters' device) is true;
    /// where it is false the values, moments and momentum stay exactly as they were, whatever the
    /// gradients hold (NaN included), decided on the device without a host read. A skipped step
    /// still counts in Adam's bias correction (the step counter lives on the host), which makes
    /// the correction of the next steps a little weaker than if the step had never been tried.
    pub fn step_if(&mut self, lr: f64, apply: &Tensor) {
        self.steps += 1;
        let step = self.steps as i32;
        let cfg = &self.cfg;
        let wd = cfg.weight_decay;
        tch::no_grad(|| {
            for group in &mut self.groups {
                group.assert_still_bound();
                let apply = apply.to_device(group.values.device());
                // 1 to apply, 0 to skip, in the group's dtype: scales every change to the buffers.
                let gate = apply.to_kind(group.values.kind());
                let mut grads = group.flat_grads();
                // A skipped step's gradients may be NaN, and NaN * 0 is NaN: zero them first.
                let _ = grads.masked_fill_(&apply.logical_not(), 0.0);
                let mut values = group.values.shallow_clone();
                match cfg.kind {
                    OptimKind::Sgd => {
                        let mut update = if wd != 0.0 { &grads + &values * wd } else { grads };
                        if let Some(buffer) = &mut group.momentum_buffer {
                            // From the zeroed buffer, `momentum * 0 + update` is the first step's copy.
                            let next = &*buffer * cfg.momentum + &update;
                            buffer.copy_(&next.where_self(&apply, buffer));
                            update = if cfg.nesterov { update + &*buffer * cfg.momentum } else { buffer.shallow_clone() };
                        }
                        let _ = values.g_sub_(&(update * (&gate * lr)));
                    }
                    OptimKind::Adam | OptimKind::Adamw => {
                        let grads = if cfg.kind == OptimKind::Adam && wd != 0.0 { &grads + &values * wd } else { grads };
                        if cfg.kind == OptimKind::Adamw && wd != 0.0 {
                            let _ = values.g_mul_(&(-(&gate * (lr * wd)) + 1.0));
                        }
                        let [beta1, beta2] = cfg.betas;
                        let (Some(exp_avg), Some(exp_avg_sq)) = (&mut group.exp_avg, &mut group.exp_avg_sq) else {
                            unreachable!("Adam groups get both moment buffers in Optimizer::new")
                        };
                        let _ = exp_avg.lerp_tensor_(&grads, &(&gate * (1.0 - beta1)));
                        let _ = exp_avg_sq.g_mul_(&(-(&gate * (1.0 - beta2)) + 1.0));
                        let _ = exp_avg_sq.addcmul_(&grads, &(&grads * (&gate * (1.0 - beta2))));
                        let bias_correction1 = 1.0 - beta1.powi(step);
                        let bias_correction2 = 1.0 - beta2.powi(step);
                        let denominator = exp_avg_sq.sqrt() / bias_correction2.sqrt() + cfg.eps;
                        let _ = values.addcdiv_(&(&*exp_avg * (&gate * (-lr / bias_correction1))), &denominator);
                    }
                }
            }
        });
    }

    /// For checkpoints: `step` (int64 scalar) and each moment buffer per parameter, named
    /// `exp_avg.<variable>`, `exp_avg_sq.<variable>` or `momentum_buffer.<variable>` (copies).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("step".to_string(), Tensor::from(self.steps as i64))];
        for group in &self.groups {
            for (buffer_name, buffer) in group.state_buffers() {
                for p in group.params() {
                    state.push((format!("{buffer_name}.{}", p.name), group.slice(buffer, &p).copy()));
                }
            }
        }
        state
    }

    /// Restores `state()` output. Everything is checked before anything is changed, so a
    /// mismatching checkpoint (another model or optimiser kind) leaves the optimiser as it was.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let by_name: HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let step = by_name.get("step").context("optimizer state has no `step` entry")?;
        ensure!(step.numel() == 1, "optimizer state: `step` must be a scalar, got shape {:?}", step.size());
        let steps = step.int64_value(&[]);
        ensure!(steps >= 0, "optimizer state: negative step count {steps}");
        let mut expected: HashSet<String> = HashSet::from(["step".to_string()]);
        let mut copies = Vec::new();
        for group in &self.groups {
            for (buffer_name, buffer) in group.state_buffers() {
                for p in group.params() {
                    let key = format!("{buffer_name}.{}", p.name);
                    let saved = by_name.get(key.as_str()).with_context(|| {
                        format!("optimizer state lacks `{key}` (saved by another optimiser kind or model?)")
                    })?;
                    ensure!(
                        saved.size() == p.slot.shape,
                        "optimizer state `{key}` has shape {:?}, the parameter has {:?}",
                        saved.size(),
                        p.slot.shape
                    );
                    copies.push((group.slice(buffer, &p), *saved));
                    expected.insert(key);
                }
            }
        }
        let mut unknown: Vec<&str> = by_name.keys().filter(|k| !expected.contains(**k)).copied().collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            bail!("optimizer state has entries this optimiser does not keep (another optimiser kind or model?): {unknown:?}");
        }
        tch::no_grad(|| {
            for (mut target, saved) in copies {
                target.copy_(saved);
            }
        });
        self.steps = steps as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};
    use tch::Device;

    const LRS: [f64; 3] = [0.1, 0.05, 0.02];

    /// Three variables in two dtype groups; the loss `sum(0.5 * c * w^2)` has gradient `c * w`,
    /// so each step's gradient depends on the values the previous step wrote.
    struct Fixture {
        vs: VarStore,
        vars: Vec<(&'static str, Tensor, Vec<f64>)>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let vs = VarStore::new(Device::Cpu);
            let root = vs.root();
            let layer = &root / "layer";
            let weight = layer.add("weight", Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5]).view([2, 3]), true);
            let bias = layer.add("bias", Tensor::from_slice(&[0.1f32, -0.2, 0.3]), true);
            let scale = (&root / "extra").add("scale", Tensor::from_slice(&[1.0f64, -2.0]), true);
            let vars = vec![
                ("layer.weight", weight, vec![1.0, 2.0, 0.5, 3.0, 1.5, 0.25]),
                ("layer.bias", bias, vec![2.0, 1.0, 4.0]),
                ("extra.scale", scale, vec![0.5, 1.0]),
            ];
            Fixture { vs, vars }
        }

        fn backward(&self) {
            let mut loss = Tensor::zeros([], (Kind::Double, Device::Cpu));
            for (_, var, c) in &self.vars {
                let c = Tensor::from_slice(c).to_kind(var.kind()).view(var.size().as_slice());
                loss = loss + (&c * var * var * 0.5).sum(Kind::Double);
            }
            loss.backward();
        }

        fn values(&self) -> Vec<Vec<f64>> {
            self.vars.iter().map(|(_, v, _)| Vec::<f64>::try_from(&v.to_kind(Kind::Double).reshape([-1])).unwrap()).collect()
        }

        fn coefficients(&self) -> Vec<Vec<f64>> {
            self.vars.iter().map(|(_, _, c)| c.clone()).collect()
        }
    }

    /// The documented torch.optim algorithms, element by element in f64.
    struct Reference {
        cfg: OptimConfig,
        w: Vec<f64>,
        c: Vec<f64>,
        m: Vec<f64>,
        v: Vec<f64>,
        t: i32,
    }

    impl Reference {
        fn new(cfg: &OptimConfig, fixture: &Fixture) -> Reference {
            let w: Vec<f64> = fixture.values().concat();
            let n = w.len();
            Reference { cfg: cfg.clone(), w, c: fixture.coefficients().concat(), m: vec![0.0; n], v: vec![0.0; n], t: 0 }
        }

        fn step(&mut self, lr: f64) {
            self.t += 1;
            let cfg = &self.cfg;
            let (wd, [b1, b2]) = (cfg.weight_decay, cfg.betas);
            for i in 0..self.w.len() {
                let mut g = self.c[i] * self.w[i];
                match cfg.kind {
                    OptimKind::Sgd => {
                        g += wd * self.w[i];
                        if cfg.momentum > 0.0 {
                            self.m[i] = if self.t == 1 { g } else { cfg.momentum * self.m[i] + g };
                            g = if cfg.nesterov { g + cfg.momentum * self.m[i] } else { self.m[i] };
                        }
                        self.w[i] -= lr * g;
                    }
                    OptimKind::Adam | OptimKind::Adamw => {
                        if cfg.kind == OptimKind::Adam {
                            g += wd * self.w[i];
                        } else {
                            self.w[i] *= 1.0 - lr * wd;
                        }
                        self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
                        self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
                        let m_hat = self.m[i] / (1.0 - b1.powi(self.t));
                        let v_hat = self.v[i] / (1.0 - b2.powi(self.t));
                        self.w[i] -= lr * m_hat / (v_hat.sqrt() + cfg.eps);
                    }
                }
            }
        }
    }

    fn assert_close(actual: &[f64], expected: &[f64], what: &str) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{what}: {actual:?} vs {expected:?}");
        }
    }

    fn check_against_reference(cfg: OptimConfig) {
        let fixture = Fixture::new();
        let mut reference = Reference::new(&cfg, &fixture);
        let mut opt = Optimizer::new(&fixture.vs, &cfg).unwrap();
        assert_eq!(opt.num_parameters(), 11);
        assert_eq!(opt.groups.len(), 2, "one buffer per dtype");
        for (i, lr) in LRS.into_iter().enumerate() {
            opt.zero_grad();
            fixture.backward();
            opt.step(lr);
            reference.step(lr);
            assert_close(&fixture.values().concat(), &reference.w, &format!("{:?} step {}", cfg.kind, i + 1));
        }
    }

    /// `step_if(true)` is `step`; `step_if(false)` changes nothing, NaN gradients included, and
    /// training goes on from there as if the skipped step had not been tried (but for Adam's
    /// bias correction, whose step counter counts it).
    fn check_gated_steps(cfg: OptimConfig) {
        let (gated, plain) = (Fixture::new(), Fixture::new());
        let mut reference = Reference::new(&cfg, &plain);
        let (mut a, mut b) = (Optimizer::new(&gated.vs, &cfg).unwrap(), Optimizer::new(&plain.vs, &cfg).unwrap());
        let yes = Tensor::from(true);
        for lr in LRS {
            a.zero_grad();
            gated.backward();
            assert!(bool::try_from(a.grads_finite()).unwrap());
            a.step_if(lr, &yes);
            b.zero_grad();
            plain.backward();
            b.step(lr);
            reference.step(lr);
            assert_close(&gated.values().concat(), &plain.values().concat(), &format!("{:?} gated vs plain", cfg.kind));
        }
        let (before, state_before) = (gated.values().concat(), a.state());
        a.zero_grad();
        (&gated.vars[0].1 * f64::NAN).sum(Kind::Float).backward();
        let finite = a.grads_finite();
        assert!(!bool::try_from(&finite).unwrap(), "NaN gradients are seen on the device");
        a.step_if(0.1, &finite);
        assert_eq!(gated.values().concat(), before, "{:?}: a skipped step moved the weights", cfg.kind);
        for ((name, x), (_, y)) in a.state().iter().zip(&state_before).skip(1) {
            assert!(x.equal(y), "{:?}: a skipped step changed {name}", cfg.kind);
        }
        if cfg.kind == OptimKind::Sgd {
            // SGD keeps no step count: the next step continues exactly as without the skipped one.
            a.zero_grad();
            gated.backward();
            a.step_if(0.01, &yes);
            reference.step(0.01);
            assert_close(&gated.values().concat(), &reference.w, "SGD after a skipped step");
        }
    }

    #[test]
    fn gated_steps_apply_or_change_nothing() {
        check_gated_steps(OptimConfig { kind: OptimKind::Adam, weight_decay: 0.1, ..Default::default() });
        check_gated_steps(OptimConfig { kind: OptimKind::Adamw, weight_decay: 0.1, betas: [0.8, 0.99], ..Default::default() });
        check_gated_steps(OptimConfig { kind: OptimKind::Sgd, weight_decay: 0.01, momentum: 0.9, ..Default::default() });
        check_gated_steps(OptimConfig { kind: OptimKind::Sgd, weight_decay: 0.0, momentum: 0.8, nesterov: true, ..Default::default() });
    }

    #[test]
    fn adam_matches_the_documented_algorithm() {
        check_against_reference(OptimConfig { kind: OptimKind::Adam, weight_decay: 0.1, ..Default::default() });
    }

    #[test]
    fn adamw_matches_the_documented_algorithm() {
        check_against_reference(OptimConfig { kind: OptimKind::Adamw, weight_decay: 0.1, betas: [0.8, 0.99], ..Default::default() });
    }

    #[test]
    fn sgd_matches_the_documented_algorithm() {
        check_against_reference(OptimConfig { kind: OptimKind::Sgd, weight_decay: 0.01, momentum: 0.9, ..Default::default() });
        check_against_reference(OptimConfig { kind: OptimKind::Sgd, weight_decay: 0.0, momentum: 0.8, nesterov: true, ..Default::default() });
        check_against_reference(OptimConfig { kind: OptimKind::Sgd, weight_decay: 0.05, momentum: 0.0, ..Default::default() });
    }

    /// The VarStore's variables stay the tensors autograd and the model use: a step through the
    /// optimiser changes the model's output exactly as `W -= lr * dW` predicts.
    #[test]
    fn model_output_follows_the_step() {
        let vs = VarStore::new(Device::Cpu);
        let linear = nn::linear(&vs.root() / "fc", 3, 2, Default::default());
        let x = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5, 0.0, 3.0]).view([2, 3]);
        let cfg = OptimConfig { kind: OptimKind::Sgd, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        let mut opt = Optimizer::new(&vs, &cfg).unwrap();
        let read = |name: &str| Vec::<f64>::try_from(&vs.variables()[name].to_kind(Kind::Double).reshape([-1])).unwrap();
        let (w0, b0) = (read("fc.weight"), read("fc.bias"));
        let xs = [[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]];
        let lr = 0.1;
        for _ in 0..2 {
            // loss = sum(y^2): dL/dy = 2y, dW[j][i] = sum_n 2 y[n][j] x[n][i], db[j] = sum_n 2 y[n][j].
            let (w, b) = (read("fc.weight"), read("fc.bias"));
            let y: Vec<[f64; 2]> =
                xs.iter().map(|x| [0, 1].map(|j| b[j] + (0..3).map(|i| w[j * 3 + i] * x[i]).sum::<f64>())).collect();
            opt.zero_grad();
            linear.forward(&x).square().sum(Kind::Float).backward();
            opt.step(lr);
            let mut expected_w = w.clone();
            let mut expected_b = b.clone();
            for j in 0..2 {
                for (n, x) in xs.iter().enumerate() {
                    expected_b[j] -= lr * 2.0 * y[n][j];
                    for i in 0..3 {
                        expected_w[j * 3 + i] -= lr * 2.0 * y[n][j] * x[i];
                    }
                }
            }
            assert_close(&read("fc.weight"), &expected_w, "weight");
            assert_close(&read("fc.bias"), &expected_b, "bias");
            let out = Vec::<f64>::try_from(&linear.forward(&x).to_kind(Kind::Double).reshape([-1])).unwrap();
            let expected_out: Vec<f64> = xs
                .iter()
                .flat_map(|x| [0, 1].map(|j| expected_b[j] + (0..3).map(|i| expected_w[j * 3 + i] * x[i]).sum::<f64>()))
                .collect();
            assert_close(&out, &expected_out, "model output");
        }
        assert_ne!(read("fc.weight"), w0);
        assert_ne!(read("fc.bias"), b0);
    }

    /// Channels-last convolution weights stay channels-last inside the optimiser's buffer, their
    /// grads too, and train to the same values as the same weights laid out plainly.
    #[test]
    fn channels_last_weights_keep_their_layout_and_train_the_same() {
        use crate::model::net::{is_channels_last, to_channels_last, weights_to_channels_last};
        let train = |channels_last: bool| {
            tch::manual_seed(3);
            let vs = VarStore::new(Device::Cpu);
            let conv = nn::conv2d(&vs.root() / "conv", 3, 4, 3, Default::default());
            let depthwise = nn::conv2d(&vs.root() / "dw", 4, 4, 3, nn::ConvConfig { groups: 4, ..Default::default() });
            if channels_last {
                weights_to_channels_last(&vs);
            }
            let mut opt = Optimizer::new(&vs, &OptimConfig { kind: OptimKind::Adamw, weight_decay: 0.1, ..Default::default() }).unwrap();
            let x = Tensor::randn([2, 3, 9, 9], (Kind::Float, Device::Cpu));
            let x = if channels_last { to_channels_last(&x) } else { x };
            for lr in LRS {
                opt.zero_grad();
                depthwise.forward(&conv.forward(&x)).square().mean(Kind::Float).backward();
                opt.step(lr);
            }
            // The depthwise weight ([4, 1, 3, 3]: one input channel) lies in the same memory
            // order either way, so only the full convolution's layout can tell.
            let var = &vs.variables()["conv.weight"];
            assert_eq!(is_channels_last(var), channels_last);
            assert_eq!(is_channels_last(&var.grad()), channels_last, "the grad");
            let mut weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            weights.sort_by(|a, b| a.0.cmp(&b.0));
            weights
        };
        for ((name, a), (_, b)) in train(false).iter().zip(train(true)) {
            assert!(a.allclose(&b, 1e-5, 1e-6, false), "{name}");
        }
    }

    #[test]
    fn every_parameter_and_its_grad_start_on_an_aligned_address() {
        let fixture = Fixture::new();
        let mut opt = Optimizer::new(&fixture.vs, &OptimConfig::default()).unwrap();
        fixture.backward();
        opt.step(0.1);
        // Buffers come from the allocator aligned (512 bytes on CUDA, 64 on the CPU); every
        // parameter and grad starts a multiple of PARAM_ALIGN_BYTES after its buffer's start.
        for g in &opt.groups {
            let grads = g.grads.as_ref().expect("bound after a step");
            for p in g.params() {
                let from = |t: &Tensor, base: &Tensor| t.data_ptr() as usize - base.data_ptr() as usize;
                assert_eq!(from(&p.var, &g.values) % PARAM_ALIGN_BYTES as usize, 0, "{}", p.name);
                assert_eq!(from(&p.var.grad(), grads) % PARAM_ALIGN_BYTES as usize, 0, "{} grad", p.name);
            }
        }
        let n: i64 = fixture.vars.iter().map(|(_, v, _)| v.numel() as i64).sum();
        assert_eq!(opt.num_parameters(), n, "padding is not counted as parameters");
    }

    #[test]
    fn gradients_accumulate_into_the_flat_buffer() {
        let fixture = Fixture::new();
        let cfg = OptimConfig { kind: OptimKind::Sgd, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        let mut opt = Optimizer::new(&fixture.vs, &cfg).unwrap();
        // First step gathers and binds the grads; later backward passes write into the buffer.
        fixture.backward();
        opt.step(0.0);
        opt.zero_grad();
        fixture.backward();
        fixture.backward();
        assert!(
            opt.groups.iter().all(|g| g.params().all(|p| g.grad_is_bound(&p, &p.var.grad()))),
            "backward wrote into the bound grads instead of replacing them"
        );
        let expected: Vec<f64> =
            fixture.values().concat().iter().zip(fixture.coefficients().concat()).map(|(w, c)| 2.0 * c * w).collect();
        let grads: Vec<f64> = fixture
            .vars
            .iter()
            .flat_map(|(_, v, _)| Vec::<f64>::try_from(&v.grad().to_kind(Kind::Double).reshape([-1])).unwrap())
            .collect();
        assert_close(&grads, &expected, "accumulated grads");
        let before = fixture.values().concat();
        opt.step(0.5);
        let after: Vec<f64> = before.iter().zip(&expected).map(|(w, g)| w - 0.5 * g).collect();
        assert_close(&fixture.values().concat(), &after, "step with accumulated grads");
        opt.zero_grad();
        assert_eq!(opt.clip_grad_norm(0.0), 0.0, "zero_grad clears the bound grads");
    }

    #[test]
    fn the_step_uses_what_was_written_into_the_grad_buffers() {
        let fixture = Fixture::new();
        let cfg = OptimConfig { kind: OptimKind::Sgd, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
        let mut opt = Optimizer::new(&fixture.vs, &cfg).unwrap();
        fixture.backward();
        let mut buffers = opt.grad_buffers();
        assert_eq!(buffers.iter().map(|b| b.kind()).collect::<Vec<_>>(), vec![Kind::Float, Kind::Double], "one buffer per dtype");
        // What an all-reduce average with a rank whose grads were zero would leave.
        for buffer in &mut buffers {
            let _ = buffer.g_mul_scalar_(0.5);
        }
        let expected_grads: Vec<f64> =
            fixture.values().concat().iter().zip(fixture.coefficients().concat()).map(|(w, c)| 0.5 * c * w).collect();
        let grads: Vec<f64> = fixture
            .vars
            .iter()
            .flat_map(|(_, v, _)| Vec::<f64>::try_from(&v.grad().to_kind(Kind::Double).reshape([-1])).unwrap())
            .collect();
        assert_close(&grads, &expected_grads, "each .grad sees the buffer");
        let before = fixture.values().concat();
        opt.step(1.0);
        let after: Vec<f64> = before.iter().zip(&expected_grads).map(|(w, g)| w - g).collect();
        assert_close(&fixture.values().concat(), &after, "step with the halved grads");
    }

    #[test]
    fn an_unused_parameter_counts_as_zero_gradient() {
        let vs = VarStore::new(Device::Cpu);
        let used = vs.root().add("used", Tensor::from_slice(&[1.0f32, 2.0]), true);
        let unused = vs.root().add("unused", Tensor::from_slice(&[3.0f32, -4.0]), true);
        let cfg = OptimConfig { kind: OptimKind::Adamw, weight_decay: 0.1, ..Default::default() };
        let mut opt = Optimizer::new(&vs, &cfg).unwrap();
        for _ in 0..2 {
            opt.zero_grad();
            used.sum(Kind::Float).backward();
            opt.step(0.1);
        }
        // Only the decoupled decay moves it: the moments stay 0, so the Adam term is 0 / (0 + eps).
        let decay = (1.0f64 - 0.1 * 0.1).powi(2);
        assert_close(&Vec::<f64>::try_from(&unused.to_kind(Kind::Double)).unwrap(), &[3.0 * decay, -4.0 * decay], "unused");
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let fixture = Fixture::new();
        let mut opt = Optimizer::new(&fixture.vs, &OptimConfig::default()).unwrap();
        fixture.backward();
        let grads: Vec<f64> =
            fixture.values().concat().iter().zip(fixture.coefficients().concat()).map(|(w, c)| c * w).collect();
        let norm = grads.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!((opt.clip_grad_norm(0.0) - norm).abs() < 1e-5, "max_norm 0 only measures");
        assert!((opt.clip_grad_norm(norm * 2.0) - norm).abs() < 1e-5, "a norm under the limit is kept");
        let max_norm = 0.5;
        assert!((opt.clip_grad_norm(max_norm) - norm).abs() < 1e-5, "returns the norm before clipping");
        let clipped: Vec<f64> = fixture
            .vars
            .iter()
            .flat_map(|(_, v, _)| Vec::<f64>::try_from(&v.grad().to_kind(Kind::Double).reshape([-1])).unwrap())
            .collect();
        let scale = max_norm / (norm + 1e-6);
        assert_close(&clipped, &grads.iter().map(|g| g * scale).collect::<Vec<_>>(), "clipped grads");
        assert!((opt.clip_grad_norm(0.0) - max_norm).abs() < 1e-5);
    }

    #[test]
    fn unscale_multiplies_and_detects_overflow() {
        let fixture = Fixture::new();
        let mut opt = Optimizer::new(&fixture.vs, &OptimConfig::default()).unwrap();
        fixture.backward();
        let norm = opt.clip_grad_norm(0.0);
        assert!(opt.unscale_grads(0.25));
        assert!((opt.clip_grad_norm(0.0) - norm * 0.25).abs() < 1e-5);
        opt.zero_grad();
        let (_, weight, _) = &fixture.vars[0];
        (weight * f64::INFINITY).sum(Kind::Float).backward();
        assert!(!opt.unscale_grads(1.0));
        opt.zero_grad();
        fixture.backward();
        assert!(opt.unscale_grads(1.0), "zero_grad clears the overflow");
    }

    fn round_trip(cfg: OptimConfig) {
        let a = Fixture::new();
        let mut opt_a = Optimizer::new(&a.vs, &cfg).unwrap();
        for lr in &LRS[..2] {
            opt_a.zero_grad();
            a.backward();
            opt_a.step(*lr);
        }
        let state = opt_a.state();
        let mut b = Fixture::new();
        b.vs.copy(&a.vs).unwrap();
        let mut opt_b = Optimizer::new(&b.vs, &cfg).unwrap();
        opt_b.load_state(&state).unwrap();
        for (fixture, opt) in [(&a, &mut opt_a), (&b, &mut opt_b)] {
            opt.zero_grad();
            fixture.backward();
            opt.step(LRS[2]);
        }
        assert_eq!(a.values(), b.values(), "{:?}: the step after loading is identical", cfg.kind);
    }

    #[test]
    fn state_round_trips() {
        round_trip(OptimConfig { kind: OptimKind::Adamw, ..Default::default() });
        round_trip(OptimConfig { kind: OptimKind::Sgd, nesterov: true, ..Default::default() });
        let names: Vec<String> = {
            let f = Fixture::new();
            Optimizer::new(&f.vs, &OptimConfig::default()).unwrap().state().into_iter().map(|(n, _)| n).collect()
        };
        assert!(names.contains(&"step".to_string()) && names.contains(&"exp_avg_sq.layer.weight".to_string()), "{names:?}");
    }

    #[test]
    fn mismatched_state_is_rejected_untouched() {
        let f = Fixture::new();
        let adam_state = Optimizer::new(&f.vs, &OptimConfig::default()).unwrap().state();
        let g = Fixture::new();
        let mut sgd = Optimizer::new(&g.vs, &OptimConfig { kind: OptimKind::Sgd, ..Default::default() }).unwrap();
        let err = sgd.load_state(&adam_state).unwrap_err().to_string();
        assert!(err.contains("momentum_buffer.layer.weight"), "{err}");
        let mut adam = Optimizer::new(&g.vs, &OptimConfig::default()).unwrap();
        let mut wrong_shape = adam_state;
        wrong_shape[1].1 = Tensor::zeros([7], (Kind::Float, Device::Cpu));
        assert!(adam.load_state(&wrong_shape).unwrap_err().to_string().contains("shape"));
        assert_eq!(adam.steps, 0);
    }

    #[test]
    #[should_panic(expected = "no longer lives in the optimiser's buffer")]
    fn stepping_after_the_varstore_was_cast_is_refused() {
        let mut fixture = Fixture::new();
        let mut opt = Optimizer::new(&fixture.vs, &OptimConfig::default()).unwrap();
        fixture.vs.double();
        fixture.backward();
        opt.step(0.1);
    }

    #[test]
    fn config_parses_and_validates() {
        let cfg: OptimConfig = toml::from_str("kind = \"sgd\"\nlr = 0.1\nnesterov = true").unwrap();
        assert_eq!((cfg.kind, cfg.momentum, cfg.betas), (OptimKind::Sgd, 0.9, [0.9, 0.999]));
        assert!(cfg.validate().is_ok());
        let no_momentum = OptimConfig { momentum: 0.0, ..cfg };
        assert!(no_momentum.validate().unwrap_err().to_string().contains("optim.nesterov"));
        assert!(toml::from_str::<OptimConfig>("learning_rate = 0.1").is_err());
        let bad_beta = OptimConfig { betas: [0.9, 1.0], ..Default::default() };
        assert!(Optimizer::new(&VarStore::new(Device::Cpu), &bad_beta).unwrap_err().to_string().contains("optim.betas[1]"));
    }
}
