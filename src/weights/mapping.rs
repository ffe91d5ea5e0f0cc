//! The name-mapping engine: a checkpoint's tensor names -> masklab's (torchvision's), by the maps
//! a backbone family hands in (each `src/model/<family>.rs` holds its own maps for timm,
//! efficientnet_pytorch, ...). What is the same for every family is done here:
//!
//! | convention | mapping |
//! |---|---|
//! | `nn.DataParallel` | a `module.` prefix on every name is dropped |
//! | PyTorch BatchNorm | `*.num_batches_tracked` is dropped (tch has no such buffer) |
//! | torchvision | names stay as they are, unless the family's catch-all map renames them |
//! | any other library | the first of the family's maps whose name prefixes the checkpoint uses |
//!
//! A name a map does not know stays as it is (it then shows up as unexpected when loading).
use tch::Tensor;

/// Whose names a checkpoint uses: a library's name, for reports (`timm names`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Convention(&'static str);

impl Convention {
    pub const TORCHVISION: Convention = Convention("torchvision");
    pub const TIMM: Convention = Convention("timm");
    pub const EFFICIENTNET_PYTORCH: Convention = Convention("efficientnet_pytorch");

    /// Another library's names, declared by the family whose weights use them.
    pub const fn named(library: &'static str) -> Convention {
        Convention(library)
    }
}

impl std::fmt::Display for Convention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A mapped name and, when the tensor must change shape, the shape (`-1` infers one dimension).
/// A `None` name: the map does not know the tensor.
pub type Mapped = (Option<String>, Option<Vec<i64>>);

/// A new name, same shape.
pub fn renamed(name: String) -> Mapped {
    (Some(name), None)
}

/// One library's names for one backbone: how to recognise them and how to rename them.
pub struct NameMap {
    pub convention: Convention,
    /// Name starts that only this library uses: a checkpoint with any of them uses its names.
    /// Empty: the map takes every checkpoint that no earlier map of the list took (a family's
    /// renaming of older torchvision names); list it last.
    pub prefixes: &'static [&'static str],
    pub rename: Box<dyn Fn(&str) -> Mapped>,
}

impl NameMap {
    fn claims(&self, names: &[&str]) -> bool {
        self.prefixes.is_empty() || names.iter().any(|n| self.prefixes.iter().any(|p| n.starts_with(p)))
    }
}

/// A checkpoint's tensors under masklab's names, and the convention they were in. `maps` gets
/// the checkpoint's names (after the steps every family shares) and returns the family's maps in
/// the order they are tried; a checkpoint that none of them takes keeps torchvision's names.
pub fn to_masklab(
    tensors: Vec<(String, Tensor)>,
    maps: impl FnOnce(&[&str]) -> Vec<NameMap>,
) -> (Vec<(String, Tensor)>, Convention) {
    let strip_module = !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with("module."));
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (if strip_module { n["module.".len()..].to_string() } else { n }, t))
        .collect();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let maps = maps(&names);
    let Some(map) = maps.iter().find(|m| m.claims(&names)) else {
        return (tensors, Convention::TORCHVISION);
    };
    let mapped = tensors
        .into_iter()
        .map(|(name, t)| {
            let (new_name, reshape) = (map.rename)(&name);
            let t = match reshape {
                Some(shape) => t.reshape(shape.as_slice()),
                None => t,
            };
            (new_name.unwrap_or(name), t)
        })
        .collect();
    (mapped, map.convention)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn tensors(names: &[&str]) -> Vec<(String, Tensor)> {
        names.iter().map(|n| (n.to_string(), Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)))).collect()
    }

    fn names(mapped: &[(String, Tensor)]) -> Vec<&str> {
        mapped.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// A library whose names start with `lib.`: `lib.x` -> `x`, reshaped to one row.
    fn maps(_: &[&str]) -> Vec<NameMap> {
        vec![
            NameMap {
                convention: Convention::named("lib"),
                prefixes: &["lib."],
                rename: Box::new(|n| (n.strip_prefix("lib.").filter(|r| *r != "unknown").map(str::to_string), Some(vec![1, -1]))),
            },
            NameMap { convention: Convention::named("old"), prefixes: &[], rename: Box::new(|n| renamed(format!("new_{n}"))) },
        ]
    }

    #[test]
    fn the_first_map_whose_prefixes_the_checkpoint_uses_renames_it() {
        let (mapped, c) = to_masklab(tensors(&["module.lib.a", "module.lib.unknown", "module.bn.num_batches_tracked"]), maps);
        assert_eq!((names(&mapped), c.to_string()), (vec!["a", "lib.unknown"], "lib".to_string()));
        assert_eq!(mapped[0].1.size(), [1, 6]);
        assert_eq!(mapped[1].1.size(), [1, 6], "an unknown name keeps its place, reshaped by the map");
    }

    #[test]
    fn a_catch_all_map_takes_the_rest_and_no_map_means_torchvision() {
        let (mapped, c) = to_masklab(tensors(&["conv.weight"]), maps);
        assert_eq!((names(&mapped), c.to_string()), (vec!["new_conv.weight"], "old".to_string()));
        let (mapped, c) = to_masklab(tensors(&["module.conv.weight", "other"]), |_| Vec::new());
        assert_eq!((names(&mapped), c), (vec!["module.conv.weight", "other"], Convention::TORCHVISION));
    }
}
