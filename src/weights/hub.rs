//! Files from the Hugging Face hub (timm's weights: `timm/<model>.<tag>`, `model.safetensors`),
//! through the `hf-hub` crate's blocking client, in the cache layout of Python's
//! `huggingface_hub` (`models--timm--<model>.<tag>/{blobs,snapshots,refs}`), so that a file either
//! of them downloaded is found by the other.
//!
//! Environment, as `huggingface_hub` reads it: `HF_HUB_CACHE` (else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), `HF_ENDPOINT` (else `https://huggingface.co`; the tests' local
//! server), `HF_HUB_OFFLINE=1` (the cache only, no network), `HF_TOKEN` (else `$HF_HOME/token`).
//!
//! hf-hub downloads into `blobs/<etag>.sync.part` and renames it when complete. The etag of a
//! file stored with Git LFS (every weight file) is its sha256; masklab checks the blob against it
//! before every use and removes a blob that does not match, so a corrupt file is never loaded.
use super::download::{cache_home, sha256_file};
use anyhow::{anyhow, bail, Result};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const REVISION: &str = "main";

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// The hub cache folder, as `huggingface_hub.constants.HF_HUB_CACHE`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = env("HF_HUB_CACHE").or_else(|| env("HUGGINGFACE_HUB_CACHE")) {
        return PathBuf::from(dir);
    }
    env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| cache_home().join("huggingface")).join("hub")
}

pub fn endpoint() -> String {
    env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()).trim_end_matches('/').to_string()
}

/// `HF_HUB_OFFLINE` set to a true value (1, true, yes, on), as huggingface_hub reads it.
pub fn offline() -> bool {
    env("HF_HUB_OFFLINE").is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `models--<org>--<name>`: the repo's folder in the cache.
pub fn repo_folder(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// Checks a cached file against the sha256 its blob is named by (Git LFS etags are sha256
/// digests). Returns Ok(false) when the blob does not match; a blob named otherwise (a small
/// file stored in git, etag = git's sha1) is taken as it is.
fn blob_matches(pointer: &Path) -> Result<bool> {
    let blob = std::fs::canonicalize(pointer).unwrap_or_else(|_| pointer.to_path_buf());
    let etag = blob.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if etag.len() != 64 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(true);
    }
    Ok(sha256_file(&blob)? == etag.to_ascii_lowercase())
}

/// Removes a cached file (its snapshot pointer and the blob it points to).
fn evict(pointer: &Path) {
    if let Ok(blob) = std::fs::canonicalize(pointer) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(pointer);
}

/// `filename` of the hub repo `repo_id` at `main`: from the cache when a verified copy is there,
/// else downloaded into it (unless offline).
pub fn hub_file(repo_id: &str, filename: &str) -> Result<PathBuf> {
    let cache_dir = hub_cache_dir();
    let cache = Cache::new(cache_dir.clone());
    let repo = Repo::with_revision(repo_id.to_string(), RepoType::Model, REVISION.to_string());
    let url = format!("{}/{repo_id}/resolve/{REVISION}/{filename}", endpoint());
    let folder = cache_dir.join(repo_folder(repo_id));
    let explain = |cause: String| {
        anyhow!(
            "cannot get {repo_id} ({filename}): {url}: {cause}. Put the file into the Hugging Face cache as \
             {}/snapshots/<commit>/{filename} with <commit> written in {}/refs/{REVISION} (what \
             `huggingface-cli download {repo_id} {filename}` does on a machine that reaches the hub; copy the \
             folder {}), or set HF_ENDPOINT to a mirror. Its sha256 is the hub's ETag for the file \
             (X-Linked-Etag), which cannot be known offline",
            folder.display(),
            folder.display(),
            folder.display()
        )
    };
    if let Some(pointer) = cache.repo(repo.clone()).get(filename) {
        if blob_matches(&pointer)? {
            return Ok(pointer);
        }
        eprintln!("warning: {} does not match the sha256 it is named by (a corrupt blob); removing it", pointer.display());
        evict(&pointer);
    }
    if offline() {
        return Err(explain("HF_HUB_OFFLINE is set (unset it to download) and the file is not in the cache".into()));
    }
    let token = env("HF_TOKEN").or_else(|| cache.token());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint())
        .with_token(token)
        .with_progress(progress)
        .build()
        .map_err(|e| explain(e.to_string()))?;
    eprintln!("downloading {url} into {}", folder.display());
    let pointer = api.repo(repo).download(filename).map_err(|e| explain(e.to_string()))?;
    if !blob_matches(&pointer)? {
        let blob = std::fs::canonicalize(&pointer).unwrap_or_default();
        let announced = blob.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let got = sha256_file(&blob).unwrap_or_default();
        evict(&pointer);
        bail!(explain(format!(
            "hash mismatch: the downloaded file's sha256 is {got}, the hub announced {announced}; it was removed"
        )));
    }
    Ok(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_folders_follow_huggingface_hub() {
        assert_eq!(repo_folder("timm/convnext_tiny.fb_in1k"), "models--timm--convnext_tiny.fb_in1k");
    }
}
