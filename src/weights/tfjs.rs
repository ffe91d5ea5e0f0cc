//! TensorFlow.js model files read into named f32 tensors, with no TensorFlow: a `model.json`
//! (graph or layers model) whose `weightsManifest` lists groups of weights, each group stored in
//! one or more binary shards (`paths`) that together hold its weights back to back, in manifest
//! order. Element types as TF.js's `io.decodeWeights` reads them: `float32`, `int32`, `bool`
//! (and `float16`), and the quantised forms its converter writes: `uint8`/`uint16` affine
//! (`value = q * scale + min`; rounded for an `int32` weight) and `float16` (IEEE half). Every
//! value comes out as f32. String and complex weights are refused.
//!
//! A hostile folder is refused with an error that names the file, never a crash or a runaway
//! allocation: the JSON is at most [`MAX_JSON_BYTES`]; a shard path must be a plain relative
//! path inside the model's folder (no `..`, no root, no URL); every shape's element count and
//! byte size are computed with overflow checks, and each group's byte total must equal its
//! shards' sizes on disk before a shard is read or a tensor allocated. The decoding core works
//! on bytes ([`parse_manifest`], [`decode_group`]), which `fuzz/` drives.
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The largest `model.json` read. Real ones are far smaller (MobileNet v1's graph: 71 KB; large
/// detection graphs: a few MB), so more is a wrong or hostile file.
pub const MAX_JSON_BYTES: u64 = 32 << 20;

/// One weight as the manifest declares it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct WeightSpec {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: String,
    #[serde(default)]
    pub quantization: Option<Quantization>,
}

/// TF.js's quantisation record: `dtype` is what is stored (`uint8`, `uint16`, `float16`);
/// `scale` and `min` are the affine map of the integer forms.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Quantization {
    pub dtype: String,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
}

/// One group of the manifest: its shards and the weights they hold.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct WeightGroup {
    pub paths: Vec<String>,
    pub weights: Vec<WeightSpec>,
}

/// The parts of `model.json` this reader uses; the graph itself is kept as JSON for the
/// callers that check it (a model family verifies the layers it maps).
#[derive(Clone, Debug, Deserialize)]
pub struct ModelJson {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(rename = "modelTopology", default)]
    pub topology: serde_json::Value,
    #[serde(rename = "weightsManifest")]
    pub manifest: Vec<WeightGroup>,
}

/// A decoded weight: its values in row-major order, as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct TfjsTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A model's JSON and all its weights, in manifest order.
#[derive(Debug)]
pub struct TfjsModel {
    pub json: ModelJson,
    pub tensors: Vec<TfjsTensor>,
}

impl TfjsModel {
    pub fn get(&self, name: &str) -> Option<&TfjsTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// How one weight is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Encoding {
    F32,
    F16,
    I32,
    Bool,
    /// `q * scale + min` from u8 or u16 (`bytes` = 1 or 2); `round` for an int32 weight.
    Affine {
        bytes: usize,
        scale: f64,
        min: f64,
        round: bool,
    },
}

impl Encoding {
    fn bytes_per_value(self) -> usize {
        match self {
            Encoding::F32 | Encoding::I32 => 4,
            Encoding::F16 => 2,
            Encoding::Bool => 1,
            Encoding::Affine { bytes, .. } => bytes,
        }
    }

    fn of(spec: &WeightSpec) -> Result<Encoding> {
        let Some(q) = &spec.quantization else {
            return match spec.dtype.as_str() {
                "float32" => Ok(Encoding::F32),
                "float16" => Ok(Encoding::F16),
                "int32" => Ok(Encoding::I32),
                "bool" => Ok(Encoding::Bool),
                "string" | "complex64" => bail!("dtype {} is not supported (only numeric weights are read)", spec.dtype),
                other => bail!("unknown dtype {other:?} (TF.js writes float32, int32, bool, string, complex64)"),
            };
        };
        let round = match spec.dtype.as_str() {
            "float32" => false,
            "int32" => true,
            other => bail!("a quantised weight must be float32 or int32, not {other:?}"),
        };
        match q.dtype.as_str() {
            "float16" if !round => Ok(Encoding::F16),
            "float16" => bail!("float16 quantisation is only defined for float32 weights"),
            "uint8" | "uint16" => {
                let (Some(scale), Some(min)) = (q.scale, q.min) else {
                    bail!("{} quantisation needs both `scale` and `min`", q.dtype);
                };
                if !scale.is_finite() || !min.is_finite() {
                    bail!("{} quantisation has a non-finite scale {scale} or min {min}", q.dtype);
                }
                Ok(Encoding::Affine { bytes: if q.dtype == "uint8" { 1 } else { 2 }, scale, min, round })
            }
            other => bail!("unknown quantisation dtype {other:?} (TF.js writes uint8, uint16, float16)"),
        }
    }
}

/// A weight's element count and its byte size as stored, overflow-checked.
fn sizes(spec: &WeightSpec, encoding: Encoding) -> Result<(usize, u64)> {
    let mut numel: u64 = 1;
    for &d in &spec.shape {
        numel = numel.checked_mul(d).ok_or_else(|| anyhow!("shape {:?} overflows", spec.shape))?;
    }
    let bytes = numel.checked_mul(encoding.bytes_per_value() as u64).ok_or_else(|| anyhow!("shape {:?} overflows as bytes", spec.shape))?;
    let numel = usize::try_from(numel).map_err(|_| anyhow!("shape {:?} is too large for this machine", spec.shape))?;
    Ok((numel, bytes))
}

/// Parses `model.json`'s bytes (not its shards). Errors do not name the file: the caller adds it.
pub fn parse_manifest(json: &[u8]) -> Result<ModelJson> {
    if json.len() as u64 > MAX_JSON_BYTES {
        bail!("{} bytes of JSON, more than the {MAX_JSON_BYTES} a TF.js model.json may have here", json.len());
    }
    let model: ModelJson = serde_json::from_slice(json).context("not a TF.js model.json")?;
    let mut names = HashSet::new();
    for (g, group) in model.manifest.iter().enumerate() {
        if group.paths.is_empty() && !group.weights.is_empty() {
            bail!("weightsManifest[{g}] lists weights but no shard paths");
        }
        for path in &group.paths {
            check_relative(path).with_context(|| format!("weightsManifest[{g}]: shard path {path:?}"))?;
        }
        for (w, spec) in group.weights.iter().enumerate() {
            let encoding = Encoding::of(spec).with_context(|| format!("weightsManifest[{g}].weights[{w}] `{}`", spec.name))?;
            sizes(spec, encoding).with_context(|| format!("weightsManifest[{g}].weights[{w}] `{}`", spec.name))?;
            if !names.insert(spec.name.as_str()) {
                bail!("weightsManifest[{g}].weights[{w}]: the name `{}` appears twice", spec.name);
            }
        }
    }
    Ok(model)
}

/// A shard path must stay inside the model's folder: relative, plain components only.
fn check_relative(path: &str) -> Result<()> {
    if path.is_empty() {
        bail!("is empty");
    }
    if path.contains("://") || path.contains('\\') {
        bail!("is not a plain relative file path");
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => bail!("leaves the model's folder (`..`)"),
            Component::RootDir | Component::Prefix(_) => bail!("is absolute; shards must lie in the model's folder"),
        }
    }
    Ok(())
}

/// The bytes a group's weights take, overflow-checked.
pub fn group_bytes(group: &WeightGroup) -> Result<u64> {
    let mut total: u64 = 0;
    for spec in &group.weights {
        let (_, bytes) = sizes(spec, Encoding::of(spec)?)?;
        total = total.checked_add(bytes).ok_or_else(|| anyhow!("the group's byte total overflows"))?;
    }
    Ok(total)
}

/// Decodes one group from its shards' bytes, in order; they must hold exactly the group's
/// weights. Errors name the weight, not the file.
pub fn decode_group(group: &WeightGroup, shards: &[Vec<u8>]) -> Result<Vec<TfjsTensor>> {
    let need = group_bytes(group)?;
    let have: u64 = shards.iter().map(|s| s.len() as u64).sum();
    if have != need {
        bail!("the shards hold {have} bytes, the manifest's weights need {need}");
    }
    // Weights may straddle shard boundaries: read them through one continuous cursor.
    let mut cursor = ShardCursor { shards, shard: 0, offset: 0 };
    let mut out = Vec::with_capacity(group.weights.len());
    for spec in &group.weights {
        let encoding = Encoding::of(spec).with_context(|| format!("`{}`", spec.name))?;
        let (numel, bytes) = sizes(spec, encoding).with_context(|| format!("`{}`", spec.name))?;
        let raw = cursor.take(bytes as usize);
        let values = decode_values(&raw, encoding, numel);
        let shape = spec.shape.iter().map(|&d| d as usize).collect();
        out.push(TfjsTensor { name: spec.name.clone(), shape, values });
    }
    Ok(out)
}

struct ShardCursor<'a> {
    shards: &'a [Vec<u8>],
    shard: usize,
    offset: usize,
}

impl ShardCursor<'_> {
    /// The next `n` bytes (the caller checked that they exist), borrowed when inside one shard.
    fn take(&mut self, n: usize) -> std::borrow::Cow<'_, [u8]> {
        while self.shard < self.shards.len() && self.offset == self.shards[self.shard].len() {
            self.shard += 1;
            self.offset = 0;
        }
        if n == 0 {
            return std::borrow::Cow::Borrowed(&[]);
        }
        let current = &self.shards[self.shard];
        if self.offset + n <= current.len() {
            let slice = &current[self.offset..self.offset + n];
            self.offset += n;
            return std::borrow::Cow::Borrowed(slice);
        }
        let mut joined = Vec::with_capacity(n);
        while joined.len() < n {
            let current = &self.shards[self.shard];
            let piece = (n - joined.len()).min(current.len() - self.offset);
            joined.extend_from_slice(&current[self.offset..self.offset + piece]);
            self.offset += piece;
            if self.offset == current.len() {
                self.shard += 1;
                self.offset = 0;
            }
        }
        std::borrow::Cow::Owned(joined)
    }
}

/// Little-endian values to f32 (TF.js's typed arrays are little-endian on every platform it runs).
fn decode_values(raw: &[u8], encoding: Encoding, numel: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(numel);
    match encoding {
        Encoding::F32 => values.extend(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Encoding::I32 => values.extend(raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)),
        Encoding::F16 => values.extend(raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        Encoding::Bool => values.extend(raw.iter().map(|&b| b as f32)),
        Encoding::Affine { bytes, scale, min, round } => {
            // As TF.js: the product and sum in double precision, stored as f32 (Math.round for int32).
            let value = |q: u16| {
                let v = q as f64 * scale + min;
                (if round { (v + 0.5).floor() } else { v }) as f32
            };
            if bytes == 1 {
                values.extend(raw.iter().map(|&q| value(q as u16)));
            } else {
                values.extend(raw.chunks_exact(2).map(|b| value(u16::from_le_bytes([b[0], b[1]]))));
            }
        }
    }
    values
}

/// Reads `model.json` and its shards from its folder. Every size is checked before anything
/// large is read; errors name the file.
pub fn read_model(json_path: &Path) -> Result<TfjsModel> {
    let json = read_bounded(json_path, MAX_JSON_BYTES)?;
    let model = parse_manifest(&json).with_context(|| format!("{}", json_path.display()))?;
    let folder = match json_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tensors = Vec::new();
    for (g, group) in model.manifest.iter().enumerate() {
        let need = group_bytes(group).with_context(|| format!("{}: weightsManifest[{g}]", json_path.display()))?;
        let files: Vec<PathBuf> = group.paths.iter().map(|p| folder.join(p)).collect();
        let mut have: u64 = 0;
        for file in &files {
            confined(folder, file)?;
            let len = std::fs::metadata(file)
                .with_context(|| format!("{}: shard {} is missing or unreadable", json_path.display(), file.display()))?
                .len();
            have = have.saturating_add(len);
        }
        if have != need {
            bail!(
                "{}: weightsManifest[{g}] needs {need} bytes, its shards ({}) hold {have}: a truncated, padded or different file",
                json_path.display(),
                files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        let shards = files.iter().map(|f| read_bounded(f, need)).collect::<Result<Vec<_>>>()?;
        let decoded = decode_group(group, &shards)
            .with_context(|| format!("{} (weightsManifest[{g}] in {})", group.paths.join(", "), json_path.display()))?;
        tensors.extend(decoded);
    }
    Ok(TfjsModel { json: model, tensors })
}

/// A shard file must resolve inside the model's folder (a symbolic link could lead out).
fn confined(folder: &Path, file: &Path) -> Result<()> {
    let root = folder.canonicalize().with_context(|| format!("cannot resolve {}", folder.display()))?;
    let real = file.canonicalize().with_context(|| format!("shard {} is missing or unreadable", file.display()))?;
    if !real.starts_with(&root) {
        bail!("shard {} resolves to {}, outside the model's folder {}", file.display(), real.display(), root.display());
    }
    Ok(())
}

/// A file's bytes, refused when it is longer than `limit` (checked before reading, and the read
/// stops at the limit in case the file grows meanwhile).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
    if len > limit {
        bail!("{}: {len} bytes, more than the {limit} expected", path.display());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{}: grew past {limit} bytes while being read", path.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, shape: &[u64], dtype: &str, quantization: Option<serde_json::Value>) -> serde_json::Value {
        let mut v = json!({"name": name, "shape": shape, "dtype": dtype});
        if let Some(q) = quantization {
            v["quantization"] = q;
        }
        v
    }

    fn model_json(groups: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": groups})).unwrap()
    }

    fn write_model(dir: &Path, groups: serde_json::Value, shards: &[(&str, Vec<u8>)]) -> PathBuf {
        let path = dir.join("model.json");
        std::fs::write(&path, model_json(groups)).unwrap();
        for (name, bytes) in shards {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        path
    }

    fn le_f32(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn every_encoding_decodes_as_tfjs_does_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let halves: Vec<u8> = [1.0f32, -2.5, 65504.0, 6.1e-5].iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let mut group0 = le_f32(&[1.5, -2.0, 3.25, 0.0, 7.0, -8.5]);
        group0.extend([3u8, 0, 255]); // uint8 affine
        group0.extend([0u8, 0, 0xff, 0xff]); // uint16 affine
        group0.extend(&halves);
        group0.extend((-7i32).to_le_bytes());
        group0.extend([1u8, 0]); // bool
        group0.extend([2u8, 5]); // uint8 quantised int32: rounds
                                 // Split the group into two shards in the middle of the first weight: the cursor joins them.
        let (a, b) = group0.split_at(10);
        let groups = json!([
            {"paths": ["g0-shard1of2.bin", "g0-shard2of2.bin"], "weights": [
                spec("w", &[2, 3], "float32", None),
                spec("q8", &[3], "float32", Some(json!({"dtype": "uint8", "scale": 0.5, "min": -1.0}))),
                spec("q16", &[2], "float32", Some(json!({"dtype": "uint16", "scale": 0.001, "min": 2.0}))),
                spec("h", &[4], "float32", Some(json!({"dtype": "float16"}))),
                spec("i", &[], "int32", None),
                spec("b", &[2], "bool", None),
                spec("qi", &[2], "int32", Some(json!({"dtype": "uint8", "scale": 0.25, "min": 0.0}))),
            ]},
            {"paths": ["g1.bin"], "weights": [spec("empty", &[0, 4], "float32", None), spec("v", &[1], "float32", None)]},
        ]);
        let path = write_model(
            dir.path(),
            groups,
            &[("g0-shard1of2.bin", a.to_vec()), ("g0-shard2of2.bin", b.to_vec()), ("g1.bin", le_f32(&[9.0]))],
        );
        let m = read_model(&path).unwrap();
        let names: Vec<&str> = m.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["w", "q8", "q16", "h", "i", "b", "qi", "empty", "v"]);
        let w = m.get("w").unwrap();
        assert_eq!((w.shape.clone(), w.values.clone()), (vec![2, 3], vec![1.5, -2.0, 3.25, 0.0, 7.0, -8.5]));
        assert_eq!(m.get("q8").unwrap().values, [0.5, -1.0, 126.5]);
        assert_eq!(m.get("q16").unwrap().values, [2.0, (65535.0f64 * 0.001 + 2.0) as f32]);
        assert_eq!(m.get("h").unwrap().values, [1.0, -2.5, 65504.0, half::f16::from_f32(6.1e-5).to_f32()]);
        assert_eq!(m.get("i").unwrap().values, [-7.0]);
        assert!(m.get("i").unwrap().shape.is_empty());
        assert_eq!(m.get("b").unwrap().values, [1.0, 0.0]);
        // 2 * 0.25 = 0.5 rounds up (Math.round), 5 * 0.25 = 1.25 down.
        assert_eq!(m.get("qi").unwrap().values, [1.0, 1.0]);
        assert_eq!(m.get("empty").unwrap().values.len(), 0);
        assert_eq!(m.get("v").unwrap().values, [9.0]);
        assert_eq!(m.json.format.as_deref(), Some("graph-model"));
    }

    fn read_err(groups: serde_json::Value, shards: &[(&str, Vec<u8>)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write_model(dir.path(), groups, shards);
        format!("{:#}", read_model(&path).unwrap_err())
    }

    #[test]
    fn sizes_are_checked_against_the_shards_before_reading() {
        let one = |shape: &[u64]| json!([{"paths": ["w.bin"], "weights": [spec("w", shape, "float32", None)]}]);
        // One byte short, one byte over: both name the JSON and the shard.
        let err = read_err(one(&[2]), &[("w.bin", vec![0; 7])]);
        assert!(err.contains("model.json") && err.contains("w.bin") && err.contains("needs 8 bytes") && err.contains("hold 7"), "{err}");
        let err = read_err(one(&[2]), &[("w.bin", vec![0; 9])]);
        assert!(err.contains("hold 9"), "{err}");
        // A huge shape is refused from the manifest alone, nothing allocated.
        let err = read_err(one(&[1 << 40, 1 << 30]), &[("w.bin", vec![0; 8])]);
        assert!(err.contains("overflows"), "{err}");
        let err = read_err(one(&[1 << 20, 1 << 20]), &[("w.bin", vec![0; 8])]);
        assert!(err.contains("needs 4398046511104 bytes"), "{err}");
        let err = read_err(one(&[2]), &[]);
        assert!(err.contains("w.bin") && err.contains("missing"), "{err}");
    }

    #[test]
    fn paths_must_stay_inside_the_models_folder() {
        for bad in ["../w.bin", "/etc/passwd", "a/../../w.bin", "https://example.com/w.bin", "", "a\\..\\w.bin"] {
            let groups = json!([{"paths": [bad], "weights": [spec("w", &[1], "float32", None)]}]);
            let err = read_err(groups, &[]);
            assert!(err.contains("model.json") && err.contains("shard path"), "{bad}: {err}");
        }
        // A symbolic link that leads out of the folder is refused too.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("w.bin"), le_f32(&[1.0])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("w.bin"), dir.path().join("w.bin")).unwrap();
        let path = write_model(dir.path(), json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "float32", None)]}]), &[]);
        let err = format!("{:#}", read_model(&path).unwrap_err());
        assert!(err.contains("outside the model's folder"), "{err}");
        // A subfolder is fine.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shards")).unwrap();
        let path = write_model(
            dir.path(),
            json!([{"paths": ["./shards/w.bin"], "weights": [spec("w", &[1], "float32", None)]}]),
            &[("shards/w.bin", le_f32(&[4.0]))],
        );
        assert_eq!(read_model(&path).unwrap().tensors[0].values, [4.0]);
    }

    #[test]
    fn bad_manifests_are_clear_errors() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "string", None)]}]), "not supported"),
            (json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "float64", None)]}]), "unknown dtype"),
            (
                json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "float32", Some(json!({"dtype": "uint8", "scale": 1.0})))]}]),
                "needs both",
            ),
            (
                json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "float32", Some(json!({"dtype": "int4"})))]}]),
                "unknown quantisation",
            ),
            (
                json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "int32", Some(json!({"dtype": "float16"})))]}]),
                "only defined for float32",
            ),
            (
                json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "bool", Some(json!({"dtype": "uint8", "scale": 1.0, "min": 0.0})))]}]),
                "float32 or int32",
            ),
            (
                json!([{"paths": ["w.bin"], "weights": [spec("w", &[1], "float32", None), spec("w", &[1], "float32", None)]}]),
                "appears twice",
            ),
            (json!([{"paths": [], "weights": [spec("w", &[1], "float32", None)]}]), "no shard paths"),
            (json!([{"paths": ["w.bin"], "weights": [{"name": "w", "shape": [-1], "dtype": "float32"}]}]), "not a TF.js model.json"),
            (json!({"paths": []}), "not a TF.js model.json"),
        ];
        for (groups, want) in cases {
            let err = read_err(groups.clone(), &[("w.bin", vec![0; 8])]);
            assert!(err.contains("model.json") && err.contains(want), "{groups}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::write(&path, b"{\"weightsManifest\": [").unwrap();
        let err = format!("{:#}", read_model(&path).unwrap_err());
        assert!(err.contains("model.json") && err.contains("not a TF.js model.json"), "{err}");
    }

    #[test]
    fn oversized_json_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_JSON_BYTES + 1).unwrap();
        let err = format!("{:#}", read_model(&path).unwrap_err());
        assert!(err.contains("model.json") && err.contains("more than"), "{err}");
        assert!(parse_manifest(&vec![b' '; MAX_JSON_BYTES as usize + 1]).is_err());
    }

    #[test]
    fn decode_group_checks_the_total_and_joins_shards() {
        let group: WeightGroup =
            serde_json::from_value(json!({"paths": ["a", "b", "c"], "weights": [spec("x", &[3], "float32", None)]})).unwrap();
        let bytes = le_f32(&[1.0, 2.0, 3.0]);
        let shards = vec![bytes[..3].to_vec(), Vec::new(), bytes[3..].to_vec()];
        assert_eq!(decode_group(&group, &shards).unwrap()[0].values, [1.0, 2.0, 3.0]);
        let err = decode_group(&group, &[bytes[..11].to_vec()]).unwrap_err().to_string();
        assert!(err.contains("11 bytes") && err.contains("need 12"), "{err}");
    }
}
