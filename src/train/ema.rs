//! Exponential moving average of a model's weights (parameters and BatchNorm statistics),
//! evaluated by swapping the averaged values into the live model.
//!
//! The shadow values of each floating dtype/device live in one flat buffer, so an update is one
//! `cat` of the live values plus one `lerp_`, whatever the number of variables.
use anyhow::{bail, ensure, Context, Result};
use std::collections::{HashMap, HashSet};
use tch::nn::VarStore;
use crate::train::flat::{group_by_kind, FlatLayout, Slot};
use tch::{Kind, Tensor};

/// The shadows of all variables of one kind on one device.
#[derive(Debug)]
struct ShadowGroup {
    layout: FlatLayout,
    shadow: Tensor,
    /// Floating groups are averaged; others (integer counters) simply follow the live value.
    averaged: bool,
}

impl ShadowGroup {
    fn view(&self, slot: &Slot) -> Tensor {
        self.layout.view(&self.shadow, slot)
    }

    /// The live values of the group's variables, flattened into one tensor like `shadow`.
    fn gather_live(&self, live: &HashMap<String, Tensor>) -> Tensor {
        self.layout.gather(|_, slot| Some(live_var(live, &slot.name).shallow_clone()))
    }
}

/// A variable the EMA was built with must still exist: a model whose variables differ from the
/// ones the EMA was created for is a caller bug, not a configuration problem.
fn live_var<'a>(live: &'a HashMap<String, Tensor>, name: &str) -> &'a Tensor {
    live.get(name).unwrap_or_else(|| panic!("EMA: variable `{name}` is missing from the VarStore it was built for"))
}

/// Shadow copies of every variable of a VarStore (parameters and BN buffers).
#[derive(Debug)]
pub struct Ema {
    decay: f64,
    groups: Vec<ShadowGroup>,
}

impl Ema {
    /// Starts the average at the current values. `decay` is the weight kept per update (e.g. 0.999).
    pub fn new(vs: &VarStore, decay: f64) -> Ema {
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        // Sorted so that buffers and saved states have a reproducible layout.
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let groups = group_by_kind(variables, 1)
            .into_iter()
            .map(|(layout, _)| {
                let averaged = matches!(layout.kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
                ShadowGroup { shadow: Tensor::zeros([0], (layout.kind, layout.device)), layout, averaged }
            })
            .collect::<Vec<_>>();
        let live = vs.variables();
        let groups = groups.into_iter().map(|g| ShadowGroup { shadow: g.gather_live(&live), ..g }).collect();
        Ema { decay, groups }
    }

    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// shadow = decay * shadow + (1 - decay) * current, for every variable.
    pub fn update(&mut self, vs: &VarStore) {
        let live = vs.variables();
        tch::no_grad(|| {
            for group in &mut self.groups {
                let current = group.gather_live(&live);
                if group.averaged {
                    let _ = group.shadow.lerp_(&current, 1.0 - self.decay);
                } else {
                    group.shadow.copy_(&current);
                }
            }
        });
    }

    /// Exchanges shadow and live values (call again to restore), e.g. to evaluate or save the
    /// averaged model. One copy per variable: it runs per evaluation, not per step.
    pub fn swap(&mut self, vs: &VarStore) {
        let live = vs.variables();
        tch::no_grad(|| {
            for group in &mut self.groups {
                let current = group.gather_live(&live);
                for slot in &group.layout.slots {
                    let mut var = live_var(&live, &slot.name).shallow_clone();
                    var.copy_(&group.view(slot));
                }
                group.shadow.copy_(&current);
            }
        });
    }

    /// The averaged values, named like the VarStore's variables, so that the list can also be
    /// saved as a plain weight file of the averaged model (copies).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.groups
            .iter()
            .flat_map(|g| g.layout.slots.iter().map(move |slot| (slot.name.clone(), g.view(slot).copy())))
            .collect()
    }

    /// Restores `state()` output; checked completely before anything is changed.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let by_name: HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut known = HashSet::new();
        let mut copies = Vec::new();
        for group in &self.groups {
            for slot in &group.layout.slots {
                let saved = by_name
                    .get(slot.name.as_str())
                    .with_context(|| format!("EMA state lacks variable `{}` (saved for another model?)", slot.name))?;
                ensure!(
                    saved.size() == slot.shape,
                    "EMA state `{}` has shape {:?}, the variable has {:?}",
                    slot.name,
                    saved.size(),
                    slot.shape
                );
                known.insert(slot.name.as_str());
                copies.push((group.view(slot), *saved));
            }
        }
        let mut unknown: Vec<&str> = by_name.keys().filter(|n| !known.contains(*n)).copied().collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            bail!("EMA state has variables this model does not have: {unknown:?}");
        }
        tch::no_grad(|| {
            for (mut target, saved) in copies {
                target.copy_(saved);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::{OptimConfig, OptimKind, Optimizer};
    use tch::nn::{self, ModuleT};
    use tch::Device;

    fn values(vs: &VarStore, name: &str) -> Vec<f64> {
        Vec::<f64>::try_from(&vs.variables()[name].to_kind(Kind::Double).reshape([-1])).unwrap()
    }

    fn set(vs: &VarStore, name: &str, v: &[f32]) {
        tch::no_grad(|| vs.variables()[name].shallow_clone().copy_(&Tensor::from_slice(v).view(vs.variables()[name].size().as_slice())));
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    fn small_store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().add("w", Tensor::from_slice(&[1.0f32, 2.0]), true);
        let _ = vs.root().add("stat", Tensor::from_slice(&[4.0f64]), false);
        let _ = vs.root().add("count", Tensor::from_slice(&[3i64]), false);
        vs
    }

    #[test]
    fn update_averages_with_the_decay() {
        let vs = small_store();
        let mut ema = Ema::new(&vs, 0.9);
        set(&vs, "w", &[11.0, -8.0]);
        tch::no_grad(|| vs.variables()["stat"].shallow_clone().copy_(&Tensor::from_slice(&[14.0f64])));
        tch::no_grad(|| vs.variables()["count"].shallow_clone().copy_(&Tensor::from_slice(&[5i64])));
        ema.update(&vs);
        // 0.9 * 1 + 0.1 * 11 = 2; 0.9 * 2 + 0.1 * -8 = 1; 0.9 * 4 + 0.1 * 14 = 5; the counter follows.
        ema.update(&vs);
        // Second update: 0.9 * 2 + 1.1 = 2.9; 0.9 * 1 - 0.8 = 0.1; 0.9 * 5 + 1.4 = 5.9.
        let state: HashMap<String, Tensor> = ema.state().into_iter().collect();
        let read = |n: &str| Vec::<f64>::try_from(&state[n].to_kind(Kind::Double).reshape([-1])).unwrap();
        assert!(close(&read("w"), &[2.9, 0.1]), "{:?}", read("w"));
        assert!(close(&read("stat"), &[5.9]));
        assert_eq!(read("count"), vec![5.0]);
        assert_eq!(state["stat"].kind(), Kind::Double);
    }

    #[test]
    fn swap_exchanges_and_restores() {
        let vs = small_store();
        let mut ema = Ema::new(&vs, 0.5);
        set(&vs, "w", &[3.0, 4.0]);
        ema.update(&vs); // shadow w = [2, 3]
        ema.swap(&vs);
        assert!(close(&values(&vs, "w"), &[2.0, 3.0]));
        ema.swap(&vs);
        assert!(close(&values(&vs, "w"), &[3.0, 4.0]));
    }

    /// With the optimiser's flat buffers underneath, swapping must write into the variables the
    /// model uses (and that the optimiser keeps training), including BN running statistics.
    #[test]
    fn works_with_a_model_under_the_optimiser() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let net = nn::seq_t()
            .add(nn::linear(&root / "fc", 4, 3, Default::default()))
            .add(nn::batch_norm1d(&root / "bn", 3, Default::default()));
        let mut ema = Ema::new(&vs, 0.5);
        let cfg = OptimConfig { kind: OptimKind::Sgd, momentum: 0.0, weight_decay: 0.0, lr: 0.1, ..Default::default() };
        let mut opt = Optimizer::new(&vs, &cfg).unwrap();
        let before: HashMap<String, Vec<f64>> = vs.variables().keys().map(|n| (n.clone(), values(&vs, n))).collect();
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 2.0, 1.0]).view([2, 4]);
        opt.zero_grad();
        net.forward_t(&x, true).square().sum(Kind::Float).backward();
        opt.step(0.1);
        ema.update(&vs);
        let after: HashMap<String, Vec<f64>> = vs.variables().keys().map(|n| (n.clone(), values(&vs, n))).collect();
        assert_ne!(before["fc.weight"], after["fc.weight"]);
        assert_ne!(before["bn.running_mean"], after["bn.running_mean"]);
        ema.swap(&vs);
        for (name, old) in &before {
            let mid: Vec<f64> = old.iter().zip(&after[name]).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
            assert!(close(&values(&vs, name), &mid), "{name}");
        }
        let averaged_out = net.forward_t(&x, false);
        ema.swap(&vs);
        assert!(close(&values(&vs, "fc.weight"), &after["fc.weight"]));
        assert!(!averaged_out.allclose(&net.forward_t(&x, false), 1e-6, 1e-6, false));
        // Training continues on the restored live weights.
        opt.zero_grad();
        net.forward_t(&x, true).square().sum(Kind::Float).backward();
        opt.step(0.1);
        assert_ne!(values(&vs, "fc.weight"), after["fc.weight"]);
    }

    #[test]
    fn state_round_trips_and_rejects_other_models() {
        let vs = small_store();
        let mut ema = Ema::new(&vs, 0.9);
        set(&vs, "w", &[5.0, 6.0]);
        ema.update(&vs);
        let state = ema.state();
        let mut fresh = Ema::new(&small_store(), 0.9);
        fresh.load_state(&state).unwrap();
        let read = |e: &Ema| e.state().into_iter().map(|(n, t)| (n, Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap())).collect::<Vec<_>>();
        assert_eq!(read(&fresh), read(&ema));
        let mut extra = state;
        extra.push(("other".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        assert!(fresh.load_state(&extra).unwrap_err().to_string().contains("other"));
        assert!(fresh.load_state(&extra[1..extra.len() - 1]).is_err());
    }
}
