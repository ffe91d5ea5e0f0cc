//! Hostile checkpoint files through every command that reads weights (`weights inspect`,
//! `weights convert`, `model.pretrained`): each is refused with an error naming the file, in
//! bounded memory (the child runs under an address-space limit) and without blowing the stack,
//! and no pickled code runs.
mod common;
use common::{demo, masklab, stderr};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

/// Address space a child gets: libtorch's mappings plus room for a real checkpoint's tensors,
/// far below what the hostile files made the old reader take (22.7 GB).
const CHILD_ADDRESS_SPACE: u64 = 6 << 30;

/// masklab under an address-space limit, so a runaway allocation fails fast in the child.
fn masklab_limited(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_masklab"));
    cmd.args(args);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: CHILD_ADDRESS_SPACE, rlim_max: CHILD_ADDRESS_SPACE };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run masklab")
}

/// Pickle opcodes, protocol 2, written by hand.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Pickle {
        self.0.extend_from_slice(bytes);
        self
    }
    fn text(mut self, s: &str) -> Pickle {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn global(mut self, module: &str, name: &str) -> Pickle {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }
    /// An int of any size (LONG1, 8 bytes little-endian).
    fn int(mut self, v: i64) -> Pickle {
        self.0.extend_from_slice(&[0x8a, 8]);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn stop(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// A torch.save-style zip: `archive/data.pkl`, `archive/byteorder`, and storages `archive/data/KEY`.
fn torch_zip(pkl: &[u8], deflate: bool, storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let opts = zip::write::FileOptions::default().compression_method(method).large_file(pkl.len() > (1 << 30));
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(pkl).unwrap();
        z.start_file("archive/byteorder", opts).unwrap();
        z.write_all(b"little").unwrap();
        for (key, data) in storages {
            z.start_file(format!("archive/data/{key}"), opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// `{"w": _rebuild_tensor_v2(storage '0' of 4 floats, offset, size, stride, False, OrderedDict())}`.
fn one_tensor_pickle(offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let mut p = Pickle::new().op(b"}").text("w").global("torch._utils", "_rebuild_tensor_v2").op(b"(");
    // The persistent id ('storage', torch.FloatStorage, '0', 'cpu', 4).
    p = p.op(b"(").text("storage").global("torch", "FloatStorage").text("0").text("cpu").int(4).op(b"tQ");
    p = p.int(offset).op(b"(");
    for &s in size {
        p = p.int(s);
    }
    p = p.op(b"t(");
    for &s in stride {
        p = p.int(s);
    }
    p = p.op(b"t").op(&[0x89]).global("collections", "OrderedDict").op(b")R").op(b"tR").op(b"s");
    p.stop()
}

/// Runs inspect, convert and model.pretrained on `file`; each must fail with exit code 1 (an
/// error, not a crash) and a message naming the file and containing `expect`.
fn refused_everywhere(dir: &Path, file: &Path, expect: &str) {
    refused(dir, file, expect, 3)
}

/// [`refused_everywhere`] with the first `commands` of inspect, convert and model.pretrained
/// (they share the reader; one command keeps the variations of a case quick).
fn refused(dir: &Path, file: &Path, expect: &str, commands: usize) {
    let f = file.to_str().unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    let out = dir.join("converted.safetensors");
    let data = dir.join("data");
    if !data.exists() {
        demo(&data, 6, 1);
    }
    let pretrained = format!("model.pretrained={f}");
    let run = dir.join("run");
    let runs: [Vec<&str>; 3] = [
        vec!["weights", "inspect", f],
        vec!["weights", "convert", f, out.to_str().unwrap(), "--backbone", "resnet18"],
        vec!["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet", "model.backbone=resnet18", "data.size=32", "train.epochs=1", "train.device=cpu", &pretrained],
    ];
    for args in runs.into_iter().take(commands) {
        let o = masklab_limited(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: want a clean error (exit 1), got {:?}: {err}", o.status);
        assert!(err.contains(name) && err.contains(expect), "{args:?}: {err}");
    }
    assert!(!out.exists());
}

#[test]
fn a_compressed_run_of_opcodes_is_refused_before_it_is_inflated() {
    // 100 MiB of NONE opcodes deflate to about 100 KB (the report's case: 600 KB, 22.7 GB used).
    let dir = tempfile::tempdir().unwrap();
    let mut pkl = vec![0x80, 2];
    pkl.resize(100 << 20, b'N');
    pkl.push(b'.');
    let file = dir.path().join("opcode_run.pth");
    std::fs::write(&file, torch_zip(&pkl, true, &[])).unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() < 1 << 20);
    refused_everywhere(dir.path(), &file, "data.pkl");
}

#[test]
fn a_run_of_opcodes_within_the_size_cap_stays_within_the_memory_budget() {
    // 16 MiB of NONE opcodes: each would become a value on the stack (about 40 bytes each).
    let dir = tempfile::tempdir().unwrap();
    let mut pkl = vec![0x80, 2];
    pkl.resize(16 << 20, b'N');
    pkl.push(b'.');
    let file = dir.path().join("opcode_run_small.pth");
    std::fs::write(&file, torch_zip(&pkl, true, &[])).unwrap();
    refused_everywhere(dir.path(), &file, "MiB");
}

#[test]
fn a_memo_bomb_is_refused() {
    // A list, memoised, then each step a list of two copies of the last: 2^60 elements if copied.
    let mut p = Pickle::new().op(b"]q\x00");
    for _ in 0..60 {
        p = p.op(b"(h\x00h\x00lq\x00");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memo_bomb.pth");
    std::fs::write(&file, torch_zip(&p.stop(), false, &[])).unwrap();
    refused_everywhere(dir.path(), &file, "MiB");
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // A million nested one-tuples in 1 MB (the report's 150 KB case aborted with a stack overflow).
    let mut pkl = vec![0x80, 2, b'N'];
    pkl.extend(std::iter::repeat(0x85).take(1_000_000));
    pkl.push(b'.');
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.pth");
    std::fs::write(&file, torch_zip(&pkl, false, &[])).unwrap();
    refused_everywhere(dir.path(), &file, "nest");
    // The legacy format too (a bare pickle).
    let legacy = dir.path().join("deep_legacy.pth");
    std::fs::write(&legacy, &pkl).unwrap();
    refused(dir.path(), &legacy, "nest", 1);
}

#[test]
fn code_in_a_pickle_is_refused_and_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    for (i, (module, name)) in [("os", "system"), ("posix", "system"), ("subprocess", "check_call"), ("builtins", "eval"), ("builtins", "getattr")].into_iter().enumerate() {
        let cmd = format!("touch {}", marker.display());
        let pkl = Pickle::new().op(b"}").text("w").global(module, name).text(&cmd).op(&[0x85]).op(b"R").op(b"s").stop();
        let file = dir.path().join(format!("{module}_{name}.pth"));
        std::fs::write(&file, torch_zip(&pkl, false, &[])).unwrap();
        refused(dir.path(), &file, &format!("`{module}.{name}`"), if i == 0 { 3 } else { 1 });
        assert!(!marker.exists(), "{module}.{name} ran");
    }
}

#[test]
fn tensor_geometry_that_overflows_or_leaves_its_storage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let storage = vec![("0", vec![0u8; 16])];
    let cases: [(&str, i64, &[i64], &[i64], &str); 4] = [
        ("overflow", 0, &[1 << 62, 4], &[1, 1 << 62], "overflows"),
        ("past_end", 1, &[2, 2], &[2, 1], "reaches past"),
        ("negative_stride", 0, &[2], &[-1], "negative"),
        ("huge_offset", i64::MAX, &[1], &[1], "overflows"),
    ];
    for (i, (name, offset, size, stride, expect)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("{name}.pth"));
        std::fs::write(&file, torch_zip(&one_tensor_pickle(offset, size, stride), false, &storage)).unwrap();
        refused(dir.path(), &file, expect, if i == 0 { 3 } else { 1 });
    }
    // The same pickle with a sane geometry loads: the cases above differ only in it.
    let file = dir.path().join("sane.pth");
    std::fs::write(&file, torch_zip(&one_tensor_pickle(0, &[2, 2], &[2, 1]), false, &storage)).unwrap();
    let o = masklab(&["weights", "inspect", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}
