//! Reads PyTorch checkpoint files into named tch tensors, with no Python: the zip format of
//! `torch.save` (PyTorch >= 1.6, `.pt`/`.pth`), the legacy pre-1.6 format (a sequence of pickles
//! followed by raw storages), and `.safetensors`. [`super::raw`] parses the file (and refuses
//! hostile ones); this module makes tensors of what it found.
pub use super::raw::Format;
use super::raw::{self, DType};
use anyhow::{Context, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// A checkpoint's tensors in file order, and where in the file the state dict was.
pub struct Checkpoint {
    pub format: Format,
    /// "" for a state dict at the top level, else the key it was found under.
    pub location: String,
    pub tensors: Vec<(String, Tensor)>,
}

/// Reads a checkpoint; every error names the file.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    raw::read(&bytes).and_then(to_tensors).with_context(|| format!("{}", path.display()))
}

fn kind(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

fn to_tensors(c: raw::RawCheckpoint) -> Result<Checkpoint> {
    let mut storages: Vec<Option<Tensor>> = (0..c.storages.len()).map(|_| None).collect();
    let mut tensors = Vec::with_capacity(c.tensors.len());
    for t in &c.tensors {
        let base = match &storages[t.storage] {
            Some(b) => b.shallow_clone(),
            None => {
                let s = &c.storages[t.storage];
                let b = Tensor::f_from_data_size(&s.bytes, &[s.numel() as i64], kind(s.dtype)).with_context(|| format!("tensor {}", t.name))?;
                storages[t.storage] = Some(b.shallow_clone());
                b
            }
        };
        // raw checked that the view lies inside the storage.
        let v = base.f_as_strided(t.shape.as_slice(), t.stride.as_slice(), t.offset).with_context(|| format!("tensor {}", t.name))?;
        tensors.push((t.name.clone(), v.contiguous()));
    }
    Ok(Checkpoint { format: c.format, location: c.location, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bytes_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.pth");
        std::fs::write(&path, b"hello world, not a checkpoint").unwrap();
        let err = format!("{:#}", read(&path).err().unwrap());
        assert!(err.contains("junk.pth") && err.contains("not a PyTorch checkpoint"), "{err}");
        let path = dir.path().join("plain.pkl");
        // pickle.dumps({'a': 1}, protocol=2): a pickle without torch's magic number.
        std::fs::write(&path, b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.").unwrap();
        let err = format!("{:#}", read(&path).err().unwrap());
        assert!(err.contains("plain.pkl") && err.contains("magic number"), "{err}");
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    /// tests/fixtures/tiny_*.pth were written by torch 2.11's `torch.save` (zip and
    /// `_use_new_zipfile_serialization=False`) from the same OrderedDict: a 3x4 float tensor,
    /// its transpose and a slice at offset 6 (views of one storage), an int64 scalar, float16,
    /// int32 and bool tensors.
    fn check_tiny(c: &Checkpoint) {
        let names: Vec<&str> = c.tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["conv.weight", "conv.weight_t", "conv.tail", "bn.num_batches_tracked", "half", "ints", "flag"]);
        let get = |k: &str| c.tensors.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
        let base = Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).view([3, 4]);
        assert!(get("conv.weight").equal(&base));
        assert!(get("conv.weight_t").equal(&base.tr()));
        assert!(get("conv.tail").equal(&base.slice(0, 1, 3, 1).slice(1, 2, 4, 1)));
        let counter = get("bn.num_batches_tracked");
        assert_eq!((counter.kind(), counter.dim(), counter.int64_value(&[])), (Kind::Int64, 0, 3));
        assert_eq!(get("half").kind(), Kind::Half);
        assert_eq!(Vec::<f32>::try_from(get("half").to_kind(Kind::Float)).unwrap(), [0.5, -2.0]);
        assert_eq!(Vec::<i32>::try_from(get("ints")).unwrap(), [1, -2, 3]);
        assert_eq!(Vec::<bool>::try_from(get("flag")).unwrap(), [true, false]);
    }

    #[test]
    fn reads_torch_zip_legacy_and_nested_checkpoints() {
        let zip = read(&fixture("tiny_zip.pth")).unwrap();
        assert_eq!((zip.format, zip.location.as_str()), (Format::TorchZip, ""));
        check_tiny(&zip);
        let legacy = read(&fixture("tiny_legacy.pth")).unwrap();
        assert_eq!((legacy.format, legacy.location.as_str()), (Format::TorchLegacy, ""));
        check_tiny(&legacy);
        // {"epoch": 3, "state_dict": ..., "optimizer": {...}}: the tensors under `state_dict`.
        let nested = read(&fixture("tiny_nested.pt")).unwrap();
        assert_eq!(nested.location, "state_dict");
        check_tiny(&nested);
    }

    #[test]
    fn a_truncated_legacy_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
        let path = dir.path().join("cut.pth");
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = format!("{:#}", read(&path).err().unwrap());
        assert!(err.contains("cut.pth") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn safetensors_files_are_recognised_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        crate::run_dir::checkpoint::save(&path, &[("a.weight".into(), t.shallow_clone())], &serde_json::json!({})).unwrap();
        let c = read(&path).unwrap();
        assert_eq!(c.format, Format::Safetensors);
        assert_eq!(c.tensors.len(), 1);
        assert!(c.tensors[0].1.equal(&t));
    }
}
