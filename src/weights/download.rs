//! torchvision's weight files, the way `torch.hub.load_state_dict_from_url(url, check_hash=True)`
//! gets them: looked up in `$TORCH_HOME/hub/checkpoints` (the cache PyTorch users already have),
//! else downloaded there, and checked against the sha256 prefix in the file name
//! (`resnet34-b627a593.pth`: the digest starts with `b627a593`) before use.
//!
//! A download goes to a temporary file beside the destination and is renamed into place only
//! when it is complete and its digest matches, so a half-downloaded or corrupt file is never
//! used (nor left under the real name). A cached file is checked too; one that does not match
//! is downloaded again.
//!
//! `MASKLAB_TORCHVISION_URL` replaces `https://download.pytorch.org/models` (a mirror, or the
//! tests' local server).
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TORCHVISION_URL: &str = "https://download.pytorch.org/models";
pub const TORCHVISION_URL_ENV: &str = "MASKLAB_TORCHVISION_URL";

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$HOME/.cache`, or `$XDG_CACHE_HOME` when set (what PyTorch and huggingface_hub use).
pub fn cache_home() -> PathBuf {
    env_path("XDG_CACHE_HOME")
        .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// PyTorch's `torch.hub.get_dir()/checkpoints`: `$TORCH_HOME/hub/checkpoints`, where TORCH_HOME
/// defaults to `$XDG_CACHE_HOME/torch` (`~/.cache/torch`).
pub fn torch_checkpoints_dir() -> PathBuf {
    env_path("TORCH_HOME").unwrap_or_else(|| cache_home().join("torch")).join("hub").join("checkpoints")
}

pub fn torchvision_base_url() -> String {
    std::env::var(TORCHVISION_URL_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| TORCHVISION_URL.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The hash prefix in a torch.hub file name: torch's `HASH_REGEX = r"-([a-f0-9]*)\."`.
pub fn hash_prefix(file: &str) -> Option<&str> {
    // The first "-<hex>." in the name, as the regex's search finds it.
    let mut rest = file;
    while let Some(i) = rest.find('-') {
        let tail = &rest[i + 1..];
        let hex_len = tail.bytes().take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)).count();
        if tail[hex_len..].starts_with('.') {
            return Some(&tail[..hex_len]);
        }
        rest = tail;
    }
    None
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// A byte-count progress bar on stderr (drawn only on a terminal).
pub fn progress_bar(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Downloads `url` into `dest` through a temporary file, checking the length the server
/// announced and, when given, that the sha256 starts with `expected_prefix`. On any failure the
/// temporary file is removed and `dest` is left as it was.
pub fn download_verified(url: &str, dest: &Path, expected_prefix: Option<&str>) -> Result<()> {
    let dir = dest.parent().ok_or_else(|| anyhow!("{} has no folder", dest.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = fetch_into(url, &partial, &name, expected_prefix).and_then(|()| {
        std::fs::rename(&partial, dest).with_context(|| format!("cannot move the download to {}", dest.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn fetch_into(url: &str, partial: &Path, name: &str, expected_prefix: Option<&str>) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| anyhow!("{e}"))?;
    let mut body = response.into_body();
    let expected_len = body.content_length();
    let mut reader = body.as_reader();
    let mut file = std::fs::File::create(partial).with_context(|| format!("cannot write {}", partial.display()))?;
    let bar = progress_bar(expected_len, name);
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                bar.abandon();
                bail!("the download broke off after {received} bytes{}: {e}", expected_len.map(|n| format!(" of {n}")).unwrap_or_default());
            }
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).with_context(|| format!("cannot write {}", partial.display()))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    file.sync_all().with_context(|| format!("cannot write {}", partial.display()))?;
    if let Some(n) = expected_len {
        if received != n {
            bail!("the download is truncated: {received} of {n} bytes");
        }
    }
    let digest = format!("{:x}", hasher.finalize());
    if let Some(prefix) = expected_prefix {
        if !digest.starts_with(prefix) {
            bail!("hash mismatch: the downloaded file's sha256 is {digest}, which does not start with {prefix}");
        }
    }
    Ok(())
}

/// A torchvision weight file by name (`resnet34-b627a593.pth`): from the torch hub cache when a
/// verified copy is there, else downloaded into it. `what` names the weights in messages.
pub fn torchvision_file(file: &str, what: &str) -> Result<PathBuf> {
    let dir = torch_checkpoints_dir();
    let dest = dir.join(file);
    let prefix = hash_prefix(file).ok_or_else(|| anyhow!("{file}: no sha256 prefix in the name"))?;
    if dest.is_file() {
        let digest = sha256_file(&dest)?;
        if digest.starts_with(prefix) {
            return Ok(dest);
        }
        eprintln!(
            "warning: {} has sha256 {digest}, which does not start with {prefix} (a corrupt or different file); downloading it again",
            dest.display()
        );
    }
    let url = format!("{}/{file}", torchvision_base_url());
    eprintln!("downloading {what} from {url} to {}", dest.display());
    download_verified(&url, &dest, Some(prefix)).map_err(|e| {
        anyhow!(
            "cannot get {what}: {url}: {e:#}. Put the file at {} (its sha256 starts with {prefix}; PyTorch's own \
             cache, $TORCH_HOME/hub/checkpoints, is the same folder), or set {TORCHVISION_URL_ENV} to a mirror",
            dest.display()
        )
    })?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_prefixes_as_torch_hub_reads_them() {
        assert_eq!(hash_prefix("resnet34-b627a593.pth"), Some("b627a593"));
        assert_eq!(hash_prefix("efficientnet_b0_rwightman-7f5810bc.pth"), Some("7f5810bc"));
        assert_eq!(hash_prefix("vit_b_16_lc_swag-4e70ced5.pth"), Some("4e70ced5"));
        // The first "-<hex>." wins; a dash followed by non-hex is skipped.
        assert_eq!(hash_prefix("my-model-0a1b.pth"), Some("0a1b"));
        assert_eq!(hash_prefix("model.pth"), None);
        assert_eq!(hash_prefix("model-final.pth"), None);
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
