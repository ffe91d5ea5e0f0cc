//! Parity with torchvision, both ways, for every backbone torchvision has: a torchvision model
//! (random weights, random BatchNorm statistics) saved by `torch.save` loads into masklab and
//! gives the same eval-mode output; and a masklab model exported under torchvision's names loads
//! into torchvision with `load_state_dict(strict=True)` and gives the same output. The PyTorch
//! side is scripts/torchvision_parity.py in `.venv` (scripts/setup.sh --test installs torchvision
//! and safetensors there). EfficientNet-Lite is compared with its PyTorch port when that is
//! importable (not in CI), and skipped otherwise.
use masklab::model::registry::{build_backbone, BackboneOptions};
use masklab::run_dir::checkpoint;
use masklab::weights::export::torchvision_state_dict;
use masklab::weights::import::load_into;
use masklab::weights::torchfile;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

const NUM_CLASSES: i64 = 5;
const TOLERANCE: f64 = 1e-4;

/// (backbone, how torch.save writes its file): one of them in the legacy format.
const BACKBONES: [(&str, &str); 14] = [
    ("efficientnet_b0", "zip"),
    ("efficientnet_b1", "zip"),
    ("efficientnet_b2", "zip"),
    ("efficientnet_b3", "zip"),
    ("efficientnet_b4", "zip"),
    ("resnet18", "legacy"),
    ("resnet34", "zip"),
    ("resnet50", "zip"),
    ("resnext50_32x4d", "zip"),
    ("vgg19_bn", "zip"),
    ("densenet121", "legacy"),
    ("efficientnet_lite0", "legacy"),
    ("efficientnet_lite1", "zip"),
    ("efficientnet_lite2", "zip"),
];

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
    let opts = BackboneOptions { num_classes: NUM_CLASSES, dropout: None, stochastic_depth: None };
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
fn export_error(name: &str, dir: &Path, worker: &mut Worker) -> Option<f64> {
    tch::manual_seed(17);
    let (vs, model) = build(name);
    tch::no_grad(|| {
        for (k, mut v) in vs.variables() {
            if k.ends_with("running_mean") {
                let _ = v.normal_(0.0, 0.2);
            } else if k.ends_with("running_var") {
                let _ = v.uniform_(0.5, 2.0);
            }
        }
    });
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
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
    for (name, format) in BACKBONES {
        // One model's files at a time: VGG19-BN alone is about 570 MB.
        let dir = tempfile::tempdir().unwrap();
        let answer = worker.ask(&format!("make {name} {NUM_CLASSES} {format} {}", dir.path().display()));
        if answer == "skip" {
            eprintln!("{name}: skipped (efficientnet_lite_pytorch is not installed)");
            continue;
        }
        let import = import_error(name, dir.path());
        // EfficientNet-Lite has no torchvision class to export to: import only.
        let export = export_error(name, dir.path(), &mut worker).unwrap_or(0.0);
        eprintln!("{name:<18} import ({format:<6}) relative error {import:.2e}   export relative error {export:.2e}");
        table.push((name, import, export));
    }
    for (name, import, export) in &table {
        assert!(*import < TOLERANCE, "{name}: torchvision -> masklab relative error {import:.3e}");
        assert!(*export < TOLERANCE, "{name}: masklab -> torchvision relative error {export:.3e}");
    }
    assert!(table.len() >= 11, "all 11 torchvision backbones were compared");
}
