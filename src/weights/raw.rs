//! Checkpoint files read into raw tensors (element type, shape, strides and the bytes of their
//! storages), with no libtorch: the zip format of `torch.save` (PyTorch >= 1.6), the legacy
//! pre-1.6 format (a sequence of pickles followed by raw storages), and `.safetensors`. The format
//! is recognised from the bytes. A state dict is taken from the top level or from under
//! `state_dict` or `model`. `torchfile.rs` turns the result into tch tensors.
//!
//! A hostile file is refused with an error, never a crash or a runaway allocation: the pickle
//! reader has its own limits ([`super::pickle`]); a zip entry must hold exactly the bytes its
//! header declares, `data.pkl` at most [`pickle::MAX_PICKLE_BYTES`], and all entries together at
//! most the file's length plus 64 MiB (torch stores entries uncompressed, so a real checkpoint
//! reads about its own size, where a deflate bomb would read 1000 times it); every tensor's
//! shape, strides and offset must lie inside its storage, with overflow-checked arithmetic.
use super::pickle::{self, Value};
use anyhow::{anyhow, bail, Context, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

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

/// Element types a checkpoint's tensors may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
}

/// One storage: `bytes.len() / dtype.size()` elements.
pub struct Storage<'a> {
    pub dtype: DType,
    pub bytes: Cow<'a, [u8]>,
}

impl Storage<'_> {
    pub fn numel(&self) -> usize {
        self.bytes.len() / self.dtype.size()
    }
}

/// A tensor as a strided view of a storage; shape, strides and offset are in elements and
/// checked to lie inside the storage.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub storage: usize,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
    pub offset: i64,
}

/// A checkpoint's tensors in file order, and where in the file the state dict was.
pub struct RawCheckpoint<'a> {
    pub format: Format,
    /// "" for a state dict at the top level, else the key it was found under.
    pub location: String,
    pub storages: Vec<Storage<'a>>,
    pub tensors: Vec<RawTensor>,
}

/// `torch.serialization.MAGIC_NUMBER` (0x1950a86a20f9469cfc6c) as pickle's LONG1 bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;
/// What a zip may inflate to beyond its own length, in all.
const ZIP_SLACK_BYTES: u64 = 64 << 20;

/// Reads a checkpoint file's bytes. Errors do not name the file: the caller adds it.
pub fn read(bytes: &[u8]) -> Result<RawCheckpoint<'_>> {
    if bytes.starts_with(b"PK\x03\x04") {
        return read_zip(bytes);
    }
    if looks_like_safetensors(bytes) {
        return read_safetensors(bytes);
    }
    if bytes.starts_with(b"\x80") {
        return read_legacy(bytes);
    }
    bail!("not a PyTorch checkpoint (zip or legacy pickle) nor a safetensors file")
}

/// safetensors: an 8-byte little-endian header length, then a JSON header starting with `{`.
pub fn looks_like_safetensors(bytes: &[u8]) -> bool {
    if bytes.len() < 9 {
        return false;
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    n > 0 && n <= (bytes.len() - 8) as u64 && bytes[8] == b'{'
}

fn read_safetensors(bytes: &[u8]) -> Result<RawCheckpoint<'_>> {
    use safetensors::tensor::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes).context("not a valid safetensors file")?;
    let mut storages = Vec::new();
    let mut tensors = Vec::new();
    // In file order (by data offset), as torchfile did before: names alone would sort them.
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    views.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    for (name, view) in views {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I16 => DType::I16,
            Dtype::I8 => DType::I8,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool,
            other => bail!("tensor {name}: unsupported dtype {other:?}"),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| i64::try_from(d)).collect::<Result<_, _>>()?;
        let stride = contiguous_strides(&shape)?;
        tensors.push(RawTensor { name, storage: storages.len(), shape, stride, offset: 0 });
        storages.push(Storage { dtype, bytes: Cow::Borrowed(view.data()) });
    }
    Ok(RawCheckpoint { format: Format::Safetensors, location: String::new(), storages, tensors })
}

fn contiguous_strides(shape: &[i64]) -> Result<Vec<i64>> {
    let mut stride = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        stride[i] = stride[i + 1].checked_mul(shape[i + 1].max(1)).ok_or_else(|| anyhow!("tensor shape {shape:?} overflows"))?;
    }
    Ok(stride)
}

/// A storage's element type, from its pickled class name (`torch.FloatStorage`, ...).
fn storage_dtype(storage_type: &Value) -> Result<DType> {
    let name = storage_type.global_name().ok_or_else(|| anyhow!("storage type is not a class name"))?;
    Ok(match name.as_str() {
        "torch.FloatStorage" => DType::F32,
        "torch.DoubleStorage" => DType::F64,
        "torch.HalfStorage" => DType::F16,
        "torch.BFloat16Storage" => DType::BF16,
        "torch.LongStorage" => DType::I64,
        "torch.IntStorage" => DType::I32,
        "torch.ShortStorage" => DType::I16,
        "torch.CharStorage" => DType::I8,
        "torch.ByteStorage" => DType::U8,
        "torch.BoolStorage" => DType::Bool,
        other => bail!("unsupported storage type {other}"),
    })
}

/// A storage reference from a persistent id: ('storage', type, key, location, numel[, view]).
struct StorageRef {
    dtype: DType,
    key: String,
    numel: usize,
    /// Legacy views into a larger storage: (offset, size) in elements.
    view: Option<(usize, usize)>,
}

fn count(v: &Value, what: &str) -> Result<usize> {
    let n = v.as_int().ok_or_else(|| anyhow!("bad {what}"))?;
    usize::try_from(n).map_err(|_| anyhow!("bad {what} {n}"))
}

fn storage_ref(pid: &Value) -> Result<StorageRef> {
    let items = pid.as_seq().ok_or_else(|| anyhow!("persistent id is not a tuple"))?;
    match items {
        [tag, ty, key, _location, numel, rest @ ..] if tag.as_str() == Some("storage") => {
            let view = match rest.first().and_then(|v| v.as_seq()) {
                Some([offset, size, ..]) => Some((count(offset, "storage view offset")?, count(size, "storage view size")?)),
                _ => None,
            };
            Ok(StorageRef {
                dtype: storage_dtype(ty)?,
                key: key.as_str().map(str::to_string).or_else(|| key.as_int().map(|i| i.to_string())).ok_or_else(|| anyhow!("bad storage key"))?,
                numel: count(numel, "storage size")?,
                view,
            })
        }
        [tag, ..] => bail!("unsupported persistent object {:?} (only tensor storages are read)", tag.as_str().unwrap_or("?")),
        [] => bail!("empty persistent id"),
    }
}

/// Where a storage's bytes come from.
trait StorageSource<'a> {
    /// The bytes of storage `key`: `numel` elements of `dtype`.
    fn bytes(&mut self, key: &str, dtype: DType, numel: usize) -> Result<Cow<'a, [u8]>>;
}

/// Turns the unpickled tree into raw tensors, reading each storage once.
struct Rebuilder<'s, 'a> {
    source: &'s mut dyn StorageSource<'a>,
    storages: Vec<Storage<'a>>,
    /// Storage key -> index in `storages`.
    index: HashMap<String, usize>,
}

impl<'a> Rebuilder<'_, 'a> {
    /// The storage a persistent id names, and the element range of a legacy view into it.
    fn storage(&mut self, pid: &Value) -> Result<(usize, usize, usize)> {
        let r = storage_ref(pid)?;
        let index = match self.index.get(&r.key) {
            Some(&i) => i,
            None => {
                let bytes = self.source.bytes(&r.key, r.dtype, r.numel)?;
                self.storages.push(Storage { dtype: r.dtype, bytes });
                self.index.insert(r.key.clone(), self.storages.len() - 1);
                self.storages.len() - 1
            }
        };
        let s = &self.storages[index];
        if s.dtype != r.dtype {
            bail!("storage {} is read as both {:?} and {:?}", r.key, s.dtype, r.dtype);
        }
        let (start, len) = r.view.unwrap_or((0, s.numel()));
        if start.checked_add(len).is_none_or(|end| end > s.numel()) {
            bail!("a view of {len} elements at {start} reaches past storage {} of {} elements", r.key, s.numel());
        }
        Ok((index, start, len))
    }

    /// A tensor from `_rebuild_tensor_v2(storage, offset, size, stride, ...)` (or a Parameter
    /// around one); None when the value is not a tensor. Parameters nest a tensor once; the
    /// loop (not recursion) follows any nesting.
    fn tensor(&mut self, name: &str, v: &Value) -> Result<Option<RawTensor>> {
        let mut v = v;
        loop {
            let Value::Call { callable, args, .. } = v else { return Ok(None) };
            let Some(func) = callable.global_name() else { return Ok(None) };
            let args = args.as_seq().unwrap_or(&[]);
            match func.as_str() {
                "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                    let [storage, offset, size, stride, ..] = args else { bail!("{func} with {} arguments", args.len()) };
                    let Value::Persistent(pid) = storage else { bail!("{func}: storage is not a persistent id") };
                    let (index, view_start, view_len) = self.storage(pid)?;
                    let ints = |v: &Value, what: &str| -> Result<Vec<i64>> {
                        v.as_seq()
                            .ok_or_else(|| anyhow!("{func}: {what} is not a tuple"))?
                            .iter()
                            .map(|x| x.as_int().filter(|&i| i >= 0).ok_or_else(|| anyhow!("{func}: {what} holds a negative or non-integer value")))
                            .collect()
                    };
                    let (shape, stride) = (ints(size, "size")?, ints(stride, "stride")?);
                    if shape.len() != stride.len() {
                        bail!("{func}: size {shape:?} and stride {stride:?} differ in length");
                    }
                    let offset = count(offset, "storage offset")?;
                    let end = extent(&shape, &stride, offset).ok_or_else(|| anyhow!("tensor of size {shape:?} overflows"))?;
                    if end > view_len {
                        bail!("tensor of size {shape:?} reaches past its storage of {view_len} elements");
                    }
                    let offset = (view_start + offset) as i64;
                    return Ok(Some(RawTensor { name: name.to_string(), storage: index, shape, stride, offset }));
                }
                "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
                    Some(inner) => v = inner,
                    None => bail!("{func} without data"),
                },
                _ => return Ok(None),
            }
        }
    }

    /// Named tensors of a dict (non-tensor values are skipped).
    fn tensors_of(&mut self, items: &[(Value, Value)]) -> Result<Vec<RawTensor>> {
        let mut out = Vec::new();
        for (k, v) in items {
            let Some(name) = k.as_str() else { continue };
            if let Some(t) = self.tensor(name, v).with_context(|| format!("tensor {name}"))? {
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// One past the last element a strided view touches (0 for an empty tensor), or None on overflow.
fn extent(shape: &[i64], stride: &[i64], offset: usize) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    let mut last = offset as i64;
    for (&n, &s) in shape.iter().zip(stride) {
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    usize::try_from(last.checked_add(1)?).ok()
}

/// The key/value pairs of a dict or an OrderedDict; None for other values.
fn dict_items(v: &Value) -> Option<&[(Value, Value)]> {
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

fn state_dict<'a>(format: Format, root: &Value, source: &mut dyn StorageSource<'a>) -> Result<RawCheckpoint<'a>> {
    let mut rb = Rebuilder { source, storages: Vec::new(), index: HashMap::new() };
    let Some(items) = dict_items(root) else { bail!("the checkpoint holds no dict of tensors (a pickled module or other object?)") };
    let mut found = None;
    let top = rb.tensors_of(items)?;
    if !top.is_empty() {
        found = Some((String::new(), top));
    } else {
        for key in ["state_dict", "model"] {
            let inner = items.iter().find(|(k, _)| k.as_str() == Some(key)).and_then(|(_, v)| dict_items(v));
            if let Some(inner) = inner {
                let tensors = rb.tensors_of(inner)?;
                if !tensors.is_empty() {
                    found = Some((key.to_string(), tensors));
                    break;
                }
            }
        }
    }
    let Some((location, tensors)) = found else {
        let keys: Vec<&str> = items.iter().filter_map(|(k, _)| k.as_str()).take(10).collect();
        bail!("no tensors at the top level nor under `state_dict` or `model` (top-level keys: {})", keys.join(", "))
    };
    Ok(RawCheckpoint { format, location, storages: rb.storages, tensors })
}

/// The bytes a storage of `numel` elements needs.
fn storage_bytes(key: &str, dtype: DType, numel: usize) -> Result<usize> {
    numel.checked_mul(dtype.size()).ok_or_else(|| anyhow!("storage {key}: {numel} elements overflow"))
}

struct ZipSource<'a> {
    zip: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    prefix: String,
    /// Bytes the remaining entries may inflate to.
    budget: u64,
}

impl ZipSource<'_> {
    /// An entry's bytes: exactly what its header declares, at most `max`.
    fn entry(&mut self, name: &str, max: u64) -> Result<Vec<u8>> {
        let f = self.zip.by_name(name).with_context(|| format!("zip entry {name} missing"))?;
        let declared = f.size();
        if declared > max {
            bail!("zip entry {name} declares {declared} bytes, more than the {max} it may hold");
        }
        if declared > self.budget {
            bail!("zip entry {name} declares {declared} bytes: the entries would inflate to far more than the file's size");
        }
        let mut buf = Vec::with_capacity(declared as usize);
        f.take(declared + 1).read_to_end(&mut buf).with_context(|| format!("cannot read zip entry {name}"))?;
        if buf.len() as u64 != declared {
            bail!("zip entry {name} holds {} bytes, its header says {declared}", buf.len());
        }
        self.budget -= declared;
        Ok(buf)
    }
}

impl<'a> StorageSource<'a> for ZipSource<'a> {
    fn bytes(&mut self, key: &str, dtype: DType, numel: usize) -> Result<Cow<'a, [u8]>> {
        let needed = storage_bytes(key, dtype, numel)?;
        let data = self.entry(&format!("{}data/{key}", self.prefix), u64::MAX)?;
        if data.len() < needed {
            bail!("storage {key} holds {} bytes, {needed} needed for {numel} elements", data.len());
        }
        let mut data = data;
        data.truncate(needed);
        Ok(Cow::Owned(data))
    }
}

fn read_zip(bytes: &[u8]) -> Result<RawCheckpoint<'_>> {
    let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("bad zip container")?;
    let pkl_name = zip
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("zip file without data.pkl: not a torch.save file"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut source = ZipSource { zip, prefix, budget: bytes.len() as u64 + ZIP_SLACK_BYTES };
    if source.zip.file_names().any(|n| n == format!("{}byteorder", source.prefix)) {
        let order = source.entry(&format!("{}byteorder", source.prefix), 16)?;
        if order != b"little" {
            bail!("big-endian checkpoints are not supported");
        }
    }
    let pkl = source.entry(&pkl_name, pickle::MAX_PICKLE_BYTES as u64)?;
    let (root, _) = pickle::read_with(&pkl, pickle::Limits::for_file(bytes.len())).context("data.pkl")?;
    state_dict(Format::TorchZip, &root, &mut source)
}

struct LegacySource<'a> {
    bytes: &'a [u8],
    /// Storage key -> (first byte, element count) after the pickles.
    offsets: HashMap<String, (usize, usize)>,
}

impl<'a> StorageSource<'a> for LegacySource<'a> {
    fn bytes(&mut self, key: &str, dtype: DType, _numel: usize) -> Result<Cow<'a, [u8]>> {
        let &(start, numel) = self.offsets.get(key).ok_or_else(|| anyhow!("storage {key} is not in the file"))?;
        let end = start + storage_bytes(key, dtype, numel)?;
        Ok(Cow::Borrowed(&self.bytes[start..end]))
    }
}

fn read_legacy(bytes: &[u8]) -> Result<RawCheckpoint<'_>> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value> {
        let limits = pickle::Limits::for_file(bytes.len());
        let (v, used) = pickle::read_with(&bytes[pos..], limits).with_context(|| format!("legacy checkpoint: {what}"))?;
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
    let types = storage_dtypes(&root);
    let mut offsets = HashMap::new();
    for key in &keys {
        let dtype = *types.get(key).ok_or_else(|| anyhow!("legacy checkpoint: storage {key} is not used by any tensor"))?;
        let head = bytes.get(pos..pos + 8).ok_or_else(|| anyhow!("legacy checkpoint truncated before storage {key}"))?;
        let numel = usize::try_from(i64::from_le_bytes(head.try_into().expect("8 bytes")))
            .map_err(|_| anyhow!("legacy checkpoint: storage {key} has a negative size"))?;
        let start = pos + 8;
        let end = storage_bytes(key, dtype, numel)?.checked_add(start);
        let Some(end) = end.filter(|&e| e <= bytes.len()) else { bail!("legacy checkpoint truncated in storage {key}") };
        offsets.insert(key.clone(), (start, numel));
        pos = end;
    }
    state_dict(Format::TorchLegacy, &root, &mut LegacySource { bytes, offsets })
}

/// Every storage key of the tree with its element type (an explicit stack: no recursion).
fn storage_dtypes(root: &Value) -> HashMap<String, DType> {
    let mut out = HashMap::new();
    let mut todo = vec![root];
    while let Some(v) = todo.pop() {
        match v {
            Value::Persistent(pid) => {
                if let Ok(r) = storage_ref(pid) {
                    out.insert(r.key, r.dtype);
                }
            }
            Value::Tuple(items) | Value::List(items) => todo.extend(items),
            Value::Dict(items) => {
                for (k, v) in items {
                    todo.push(k);
                    todo.push(v);
                }
            }
            Value::Call { args, state, .. } => {
                todo.push(args);
                if let Some(s) = state {
                    todo.push(s);
                }
            }
            _ => {}
        }
    }
    out
}
