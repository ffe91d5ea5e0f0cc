//! Reads PyTorch checkpoint files into named tensors, with no Python: the zip format of
//! `torch.save` (PyTorch >= 1.6, `.pt`/`.pth`), the legacy pre-1.6 format (a sequence of pickles
//! followed by raw storages), and `.safetensors`. The format is recognised from the bytes, not
//! the file name. A state dict is taken from the top level or from under `state_dict` or `model`.
use super::pickle::{self, Value};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` with the zip container (the default since PyTorch 1.6).
    TorchZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)` and everything before PyTorch 1.6.
    TorchLegacy,
    Safetensors,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::TorchZip => "PyTorch zip",
            Format::TorchLegacy => "PyTorch legacy (pre-1.6) pickle",
            Format::Safetensors => "safetensors",
        })
    }
}

/// A checkpoint's tensors in file order, and where in the file the state dict was.
pub struct Checkpoint {
    pub format: Format,
    /// "" for a state dict at the top level, else the key it was found under.
    pub location: String,
    pub tensors: Vec<(String, Tensor)>,
}

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as pickle's LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;

/// Reads a checkpoint; every error names the file.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_bytes(&bytes, path).with_context(|| format!("{}", path.display()))
}

fn read_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    if bytes.starts_with(b"PK\x03\x04") {
        let root = read_zip(bytes)?;
        return state_dict(Format::TorchZip, root);
    }
    if looks_like_safetensors(bytes) {
        let (tensors, _) = crate::run_dir::checkpoint::load(path)?;
        return Ok(Checkpoint { format: Format::Safetensors, location: String::new(), tensors });
    }
    if bytes.starts_with(b"\x80") {
        let root = read_legacy(bytes)?;
        return state_dict(Format::TorchLegacy, root);
    }
    bail!("not a PyTorch checkpoint (zip or legacy pickle) nor a safetensors file")
}

/// safetensors: an 8-byte little-endian header length, then a JSON header starting with `{`.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    if bytes.len() < 9 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    n > 0 && n <= (bytes.len() - 8) as u64 && bytes[8] == b'{'
}

/// A storage's element type, from its pickled class name (`torch.FloatStorage`, ...).
fn storage_kind(storage_type: &Value) -> Result<Kind> {
    let name = storage_type.global_name().ok_or_else(|| anyhow!("storage type is not a class name"))?;
    Ok(match name.as_str() {
        "torch.FloatStorage" => Kind::Float,
        "torch.DoubleStorage" => Kind::Double,
        "torch.HalfStorage" => Kind::Half,
        "torch.BFloat16Storage" => Kind::BFloat16,
        "torch.LongStorage" => Kind::Int64,
        "torch.IntStorage" => Kind::Int,
        "torch.ShortStorage" => Kind::Int16,
        "torch.CharStorage" => Kind::Int8,
        "torch.ByteStorage" => Kind::Uint8,
        "torch.BoolStorage" => Kind::Bool,
        other => bail!("unsupported storage type {other}"),
    })
}

/// A storage reference from a persistent id: ('storage', type, key, location, numel[, view]).
struct StorageRef {
    kind: Kind,
    key: String,
    numel: i64,
    /// Legacy views into a larger storage: (offset, size) in elements.
    view: Option<(i64, i64)>,
}

fn storage_ref(pid: &Value) -> Result<StorageRef> {
    let items = pid.as_seq().ok_or_else(|| anyhow!("persistent id is not a tuple"))?;
    match items {
        [tag, ty, key, _location, numel, rest @ ..] if tag.as_str() == Some("storage") => {
            let view = match rest.first().and_then(|v| v.as_seq()) {
                Some([offset, size, ..]) => Some((
                    offset.as_int().ok_or_else(|| anyhow!("bad storage view offset"))?,
                    size.as_int().ok_or_else(|| anyhow!("bad storage view size"))?,
                )),
                _ => None,
            };
            Ok(StorageRef {
                kind: storage_kind(ty)?,
                key: key.as_str().map(str::to_string).or_else(|| key.as_int().map(|i| i.to_string())).ok_or_else(|| anyhow!("bad storage key"))?,
                numel: numel.as_int().ok_or_else(|| anyhow!("bad storage size"))?,
                view,
            })
        }
        [tag, ..] => bail!("unsupported persistent object {:?} (only tensor storages are read)", tag.as_str().unwrap_or("?")),
        [] => bail!("empty persistent id"),
    }
}

/// Turns the unpickled tree into tensors, reading storages through `storage(key, kind, numel)`.
struct Rebuilder<'a> {
    storage: &'a mut dyn FnMut(&StorageRef) -> Result<Tensor>,
    cache: HashMap<String, Tensor>,
}

impl Rebuilder<'_> {
    fn storage(&mut self, pid: &Value) -> Result<Tensor> {
        let r = storage_ref(pid)?;
        let base = match self.cache.get(&r.key) {
            Some(t) => t.shallow_clone(),
            None => {
                let t = (self.storage)(&r)?;
                self.cache.insert(r.key.clone(), t.shallow_clone());
                t
            }
        };
        Ok(match r.view {
            Some((offset, size)) => base.narrow(0, offset, size),
            None => base,
        })
    }

    /// A tensor from `_rebuild_tensor_v2(storage, offset, size, stride, ...)` (or a Parameter
    /// around one); None when the value is not a tensor.
    fn tensor(&mut self, v: &Value) -> Result<Option<Tensor>> {
        let Value::Call { callable, args, .. } = v else { return Ok(None) };
        let Some(name) = callable.global_name() else { return Ok(None) };
        let args = args.as_seq().unwrap_or(&[]);
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let [storage, offset, size, stride, ..] = args else { bail!("{name} with {} arguments", args.len()) };
                let Value::Persistent(pid) = storage else { bail!("{name}: storage is not a persistent id") };
                let base = self.storage(pid)?;
                let ints = |v: &Value, what: &str| -> Result<Vec<i64>> {
                    v.as_seq()
                        .ok_or_else(|| anyhow!("{name}: {what} is not a tuple"))?
                        .iter()
                        .map(|x| x.as_int().ok_or_else(|| anyhow!("{name}: {what} holds a non-integer")))
                        .collect()
                };
                let (size, stride) = (ints(size, "size")?, ints(stride, "stride")?);
                let offset = offset.as_int().ok_or_else(|| anyhow!("{name}: bad storage offset"))?;
                let needed = offset + size.iter().zip(&stride).map(|(&n, &s)| (n - 1).max(0) * s).sum::<i64>() + 1;
                if size.iter().all(|&n| n > 0) && needed > base.numel() as i64 {
                    bail!("tensor of size {size:?} reaches past its storage of {} elements", base.numel());
                }
                Ok(Some(base.as_strided(size.as_slice(), stride.as_slice(), offset).contiguous()))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
                Some(inner) => self.tensor(inner),
                None => bail!("{name} without data"),
            },
            _ => Ok(None),
        }
    }

    /// The key/value pairs of a dict or an OrderedDict; None for other values.
    fn dict_items<'v>(v: &'v Value) -> Option<&'v [(Value, Value)]> {
        match v {
            Value::Dict(items) => Some(items),
            Value::Call { callable, state, .. } if callable.global_name().as_deref() == Some("collections.OrderedDict") => {
                match state.as_deref() {
                    Some(Value::Dict(items)) => Some(items),
                    _ => Some(&[]),
                }
            }
            _ => None,
        }
    }

    /// Named tensors of a dict (non-tensor values are skipped).
    fn tensors_of(&mut self, items: &[(Value, Value)]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (k, v) in items {
            let Some(name) = k.as_str() else { continue };
            if let Some(t) = self.tensor(v).with_context(|| format!("tensor {name}"))? {
                out.push((name.to_string(), t));
            }
        }
        Ok(out)
    }
}

/// The pickled root and a way to read storages.
struct Unpickled<'a> {
    root: Value,
    storage: Box<dyn FnMut(&StorageRef) -> Result<Tensor> + 'a>,
}

fn state_dict(format: Format, u: Unpickled) -> Result<Checkpoint> {
    let Unpickled { root, mut storage } = u;
    let mut rb = Rebuilder { storage: &mut *storage, cache: HashMap::new() };
    let Some(items) = Rebuilder::dict_items(&root) else { bail!("the checkpoint holds no dict of tensors (a pickled module or other object?)") };
    let top = rb.tensors_of(items)?;
    if !top.is_empty() {
        return Ok(Checkpoint { format, location: String::new(), tensors: top });
    }
    for key in ["state_dict", "model"] {
        let inner = items.iter().find(|(k, _)| k.as_str() == Some(key)).and_then(|(_, v)| Rebuilder::dict_items(v));
        if let Some(inner) = inner {
            let tensors = rb.tensors_of(inner)?;
            if !tensors.is_empty() {
                return Ok(Checkpoint { format, location: key.to_string(), tensors });
            }
        }
    }
    let keys: Vec<&str> = items.iter().filter_map(|(k, _)| k.as_str()).take(10).collect();
    bail!("no tensors at the top level nor under `state_dict` or `model` (top-level keys: {})", keys.join(", "))
}

fn tensor_from_bytes(bytes: &[u8], kind: Kind, numel: i64, key: &str) -> Result<Tensor> {
    let needed = numel as usize * kind.elt_size_in_bytes();
    if bytes.len() < needed {
        bail!("storage {key} holds {} bytes, {needed} needed for {numel} elements", bytes.len());
    }
    Tensor::f_from_data_size(&bytes[..needed], &[numel], kind).with_context(|| format!("storage {key}"))
}

fn read_zip(bytes: &[u8]) -> Result<Unpickled<'_>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("bad zip container")?;
    let pkl_name = zip
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("zip file without data.pkl: not a torch.save file"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let read_entry = move |zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).with_context(|| format!("zip entry {name} missing"))?;
        let mut buf = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut buf).with_context(|| format!("cannot read zip entry {name}"))?;
        Ok(buf)
    };
    if let Ok(order) = read_entry(&mut zip, &format!("{prefix}byteorder")) {
        if order != b"little" {
            bail!("big-endian checkpoints are not supported");
        }
    }
    let pkl = read_entry(&mut zip, &pkl_name)?;
    let (root, _) = pickle::read(&pkl).context("data.pkl")?;
    let storage = move |r: &StorageRef| -> Result<Tensor> {
        let data = read_entry(&mut zip, &format!("{prefix}data/{}", r.key))?;
        tensor_from_bytes(&data, r.kind, r.numel, &r.key)
    };
    Ok(Unpickled { root, storage: Box::new(storage) })
}

fn read_legacy(bytes: &[u8]) -> Result<Unpickled<'_>> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value> {
        let (v, used) = pickle::read(&bytes[pos..]).with_context(|| format!("legacy checkpoint: {what}"))?;
        pos += used;
        Ok(v)
    };
    match next("magic number")? {
        Value::BigInt(b) if b == LEGACY_MAGIC => {}
        _ => bail!("a pickle, but not a torch.save file (no magic number)"),
    }
    if next("protocol version")?.as_int() != Some(LEGACY_PROTOCOL) {
        bail!("unsupported legacy torch.save protocol version");
    }
    let _sys_info = next("system info")?;
    let root = next("object")?;
    let keys_value = next("storage keys")?;
    let keys: Vec<String> = keys_value
        .as_seq()
        .ok_or_else(|| anyhow!("legacy checkpoint: storage keys are not a list"))?
        .iter()
        .map(|k| k.as_str().map(str::to_string).ok_or_else(|| anyhow!("legacy checkpoint: bad storage key")))
        .collect::<Result<_>>()?;
    // After the pickles, each storage in key order: its element count (int64), then its bytes.
    // Element sizes come from the storage types named in the object pickle.
    let mut types: HashMap<String, Kind> = HashMap::new();
    collect_storage_kinds(&root, &mut types)?;
    let mut offsets: HashMap<String, (usize, i64, Kind)> = HashMap::new();
    for key in &keys {
        let kind = *types.get(key).ok_or_else(|| anyhow!("legacy checkpoint: storage {key} is not used by any tensor"))?;
        let head = bytes.get(pos..pos + 8).ok_or_else(|| anyhow!("legacy checkpoint truncated before storage {key}"))?;
        let numel = i64::from_le_bytes(head.try_into().expect("8 bytes"));
        let start = pos + 8;
        let end = start + numel as usize * kind.elt_size_in_bytes();
        if numel < 0 || end > bytes.len() {
            bail!("legacy checkpoint truncated in storage {key}");
        }
        offsets.insert(key.clone(), (start, numel, kind));
        pos = end;
    }
    let storage = move |r: &StorageRef| -> Result<Tensor> {
        let &(start, numel, _) = offsets.get(&r.key).ok_or_else(|| anyhow!("storage {} is not in the file", r.key))?;
        tensor_from_bytes(&bytes[start..], r.kind, numel, &r.key)
    };
    Ok(Unpickled { root, storage: Box::new(storage) })
}

/// Every storage key of the tree with its element type.
fn collect_storage_kinds(v: &Value, out: &mut HashMap<String, Kind>) -> Result<()> {
    match v {
        Value::Persistent(pid) => {
            if let Ok(r) = storage_ref(pid) {
                out.insert(r.key, r.kind);
            }
        }
        Value::Tuple(items) | Value::List(items) => {
            for i in items {
                collect_storage_kinds(i, out)?;
            }
        }
        Value::Dict(items) => {
            for (k, v) in items {
                collect_storage_kinds(k, out)?;
                collect_storage_kinds(v, out)?;
            }
        }
        Value::Call { args, state, .. } => {
            collect_storage_kinds(args, out)?;
            if let Some(s) = state {
                collect_storage_kinds(s, out)?;
            }
        }
        _ => {}
    }
    Ok(())
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
