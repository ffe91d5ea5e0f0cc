//! Distributed engine across real processes, on the CPU with Gloo: masklab's launcher, torchrun
//! from the project's .venv, a rank killed mid-collective, and two ranks in two network
//! namespaces joined by a veth pair.
//!
//! The worker processes are this test binary run again with `--exact worker` and
//! `MASKLAB_DIST_TEST_ROLE` naming what to do; each writes what it saw to
//! `$MASKLAB_DIST_TEST_OUT/rank-R.json` for the test to check.
//!
//! Then `masklab train` itself, data-parallel on two Gloo ranks: launched by `--nproc 2`, by
//! torchrun and across the two namespaces, checked against one process that accumulates the same
//! two half-batches per step; and a worker killed mid-run, then `--resume`.
mod common;
use masklab::dist::env::{Launcher, StoreHost};
use masklab::dist::launch::{launch, LaunchOptions, WorkerCommand};
use masklab::dist::sync::{all_gather_indexed_rows, any_rank, average_gradients, broadcast_tensors};
use masklab::dist::{BackendChoice, Dist, ReduceOp};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

const ROLE: &str = "MASKLAB_DIST_TEST_ROLE";
const OUT: &str = "MASKLAB_DIST_TEST_OUT";
/// Bounds every rendezvous and collective of the workers: no test can hang for longer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The worker processes' entry point (this binary re-run with `--exact worker`); without
/// MASKLAB_DIST_TEST_ROLE, as in a plain `cargo test`, it does nothing.
#[test]
fn worker() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let out = PathBuf::from(std::env::var(OUT).expect("MASKLAB_DIST_TEST_OUT"));
    match role.as_str() {
        "collectives" => collectives(&out),
        "stall" => stall(&out),
        // The launcher itself, run in a child process so that the test can read what it prints.
        "launch-collectives" => launch(&worker_command(&out, "collectives"), &LaunchOptions::new(2)).unwrap(),
        "launch-dying" => {
            let command = worker_command(&out, "die-after-one");
            launch(&command, &LaunchOptions { grace: Duration::from_secs(5), ..LaunchOptions::new(2) }).unwrap();
        }
        "die-after-one" => die_after_one(),
        other => panic!("unknown {ROLE} `{other}`"),
    }
}

fn join() -> Dist {
    Dist::init(BackendChoice::Auto, Device::Cpu, TIMEOUT).unwrap().expect("started as a rank of a distributed run")
}

fn floats(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// Every helper the trainer uses, on values that differ by rank.
fn collectives(out: &Path) {
    let dist = join();
    let pg = &dist.pg;
    let r = pg.rank() as f64;
    let mut sum = Tensor::from_slice(&[r + 1.0, 10.0 * (r + 1.0)]);
    pg.all_reduce_(&mut sum, ReduceOp::Sum).unwrap();
    let mut grads = vec![Tensor::from_slice(&[r, 2.0 * r]).to_kind(Kind::Float), Tensor::from_slice(&[4.0 * r])];
    average_gradients(pg, &mut grads).unwrap();
    let weights = Tensor::from_slice(&[r + 0.5, r + 1.5]);
    let steps = Tensor::from_slice(&[pg.rank() as i64 + 100]);
    broadcast_tensors(pg, &[weights.shallow_clone(), steps.shallow_clone()], 0).unwrap();
    let overflow_somewhere = any_rank(pg, pg.rank() == pg.world_size() - 1).unwrap();
    let overflow_nowhere = any_rank(pg, false).unwrap();
    // Validation shard: rank r scored items r, r + world, ... of 5 (an unpadded shard).
    let items: Vec<i64> = (pg.rank() as i64..5).step_by(pg.world_size()).collect();
    let probabilities: Vec<f32> = items.iter().flat_map(|&i| [i as f32 / 10.0, 1.0 - i as f32 / 10.0]).collect();
    let rows = Tensor::from_slice(&probabilities).view([items.len() as i64, 2]);
    let (all_rows, all_items) = all_gather_indexed_rows(pg, &rows, &Tensor::from_slice(&items)).unwrap();
    pg.barrier().unwrap();
    let result = json!({
        "rank": pg.rank(),
        "world": pg.world_size(),
        "launcher": format!("{:?}", dist.env.launcher),
        "store_host": format!("{:?}", dist.env.store_host),
        "backend": pg.backend().to_string(),
        "sum": floats(&sum),
        "grads": [floats(&grads[0]), floats(&grads[1])],
        "weights": floats(&weights),
        "steps": steps.int64_value(&[0]),
        "any": [overflow_somewhere, overflow_nowhere],
        "rows": floats(&all_rows),
        "items": Vec::<i64>::try_from(&all_items).unwrap(),
    });
    println!("rank {} of {}: collectives done", pg.rank(), pg.world_size());
    std::fs::write(out.join(format!("rank-{}.json", pg.rank())), result.to_string()).unwrap();
}

/// Rank 0 all-reduces until it fails; the last rank joins two all-reduces, says so, then stalls
/// outside any collective (so rank 0 is left waiting inside one) until the test kills it.
fn stall(out: &Path) {
    let dist = join();
    let pg = &dist.pg;
    let last = pg.rank() == pg.world_size() - 1;
    for step in 0.. {
        let mut t = Tensor::from_slice(&[1.0f32]);
        if let Err(e) = pg.all_reduce_(&mut t, ReduceOp::Sum) {
            std::fs::write(out.join(format!("rank-{}.error", pg.rank())), format!("{e:#}")).unwrap();
            panic!("rank {} step {step}: {e:#}", pg.rank());
        }
        if last && step == 1 {
            std::fs::write(out.join("stalled"), "").unwrap();
            std::thread::sleep(Duration::from_secs(300));
        }
    }
}

/// Rank 1 leaves after one all-reduce with status 3; the others go on all-reducing.
fn die_after_one() {
    let dist = join();
    let pg = &dist.pg;
    for step in 0.. {
        let mut t = Tensor::from_slice(&[1.0f32]);
        pg.all_reduce_(&mut t, ReduceOp::Sum).unwrap();
        if pg.rank() == 1 && step == 0 {
            std::process::exit(3);
        }
    }
}

fn worker_command(out: &Path, role: &str) -> WorkerCommand {
    WorkerCommand {
        program: std::env::current_exe().unwrap(),
        args: ["--exact", "worker", "--nocapture", "--test-threads=1"].iter().map(OsString::from).collect(),
        env: vec![(ROLE.into(), role.into()), (OUT.into(), out.as_os_str().to_owned())],
    }
}

/// This binary in a worker role, as a child process with the given extra environment.
fn worker_process(out: &Path, role: &str, env: &[(&str, String)]) -> Command {
    let command = worker_command(out, role);
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args).envs(command.env.iter().map(|(k, v)| (k, v)));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn result(out: &Path, rank: usize) -> Value {
    let path = out.join(format!("rank-{rank}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// What every rank of a two-rank run of `collectives` must have seen.
fn check_collectives(out: &Path, launcher: Launcher, store_host: StoreHost) {
    for rank in 0..2 {
        let r = result(out, rank);
        assert_eq!(r["rank"], json!(rank));
        assert_eq!(r["world"], json!(2));
        assert_eq!(r["launcher"], json!(format!("{launcher:?}")), "rank {rank}");
        assert_eq!(r["store_host"], json!(format!("{store_host:?}")), "rank {rank}");
        assert_eq!(r["backend"], json!("gloo"));
        assert_eq!(r["sum"], json!([3.0, 30.0]), "rank {rank}: 1 + 2, 10 + 20");
        assert_eq!(r["grads"], json!([[0.5, 1.0], [2.0]]), "rank {rank}: the mean of 0 and 1, 0 and 2, 0 and 4");
        assert_eq!(r["weights"], json!([0.5, 1.5]), "rank {rank}: rank 0's weights");
        assert_eq!(r["steps"], json!(100), "rank {rank}: rank 0's counter");
        assert_eq!(r["any"], json!([true, false]), "rank {rank}");
        assert_eq!(r["items"], json!([0, 1, 2, 3, 4]), "rank {rank}: both shards, in item order");
        let rows: Vec<f64> = serde_json::from_value(r["rows"].clone()).unwrap();
        let expected: Vec<f64> = (0..5).flat_map(|i| [i as f64 / 10.0, 1.0 - i as f64 / 10.0]).collect();
        assert!(rows.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6) && rows.len() == 10, "rank {rank}: {rows:?}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("start a worker process")
}

#[test]
fn masklab_launcher_runs_two_gloo_ranks() {
    let out = tempfile::tempdir().unwrap();
    let output = run(worker_process(out.path(), "launch-collectives", &[]));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", text(&output.stderr));
    for rank in 0..2 {
        assert!(stdout.contains(&format!("[rank {rank}] test worker ... rank {rank} of 2: collectives done")), "{stdout}");
    }
    check_collectives(out.path(), Launcher::Masklab, StoreHost::Launcher);
}

#[test]
fn launcher_names_the_rank_that_died_and_stops_the_other() {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = run(worker_process(out.path(), "launch-dying", &[]));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
    assert!(stderr.contains("worker rank 1 of 2 exited with status 3"), "{stderr}");
    assert!(stdout.contains("[rank 0] running 1 test") && stdout.contains("[rank 1] running 1 test"), "{stdout}");
    // Rank 0 was inside an all-reduce with rank 1: it failed too, or the launcher stopped it.
    assert!(!stderr.contains("[rank 0] thread 'worker'") || stderr.contains("all-reduce (Sum) failed"), "{stderr}");
}

#[test]
fn torchrun_launches_two_ranks_on_its_agent_store() {
    let torchrun = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/torchrun");
    assert!(torchrun.exists(), "{} is missing: run scripts/setup.sh", torchrun.display());
    let out = tempfile::tempdir().unwrap();
    let command = worker_command(out.path(), "collectives");
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--no-python", "--standalone", "--nproc-per-node", "2"])
        .arg(&command.program)
        .args(&command.args)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .env("OMP_NUM_THREADS", "1");
    let output = run(cmd);
    assert!(output.status.success(), "torchrun failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    check_collectives(out.path(), Launcher::Torchrun, StoreHost::Launcher);
}

/// A free TCP port on loopback (free when asked; the test's ranks take it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rank_env(rank: usize, master: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![("RANK", rank.to_string()), ("WORLD_SIZE", "2".into()), ("MASTER_ADDR", master.into()), ("MASTER_PORT", port.to_string())]
}

/// A child process killed when the test lets go of it (a failed assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_rank_killed_mid_collective_fails_the_other_promptly() {
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let spawn = |rank| Killed(worker_process(out.path(), "stall", &rank_env(rank, "127.0.0.1", port)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let (mut rank0, mut rank1) = (spawn(0), spawn(1));
    let stalled = out.path().join("stalled");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stalled.exists() {
        assert!(Instant::now() < deadline, "rank 1 never reached its stall");
        assert!(rank0.0.try_wait().unwrap().is_none(), "rank 0 ended before rank 1 was killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Rank 0 is now inside an all-reduce that rank 1 will never join.
    std::thread::sleep(Duration::from_millis(300));
    rank1.0.kill().unwrap();
    rank1.0.wait().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = rank0.0.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "rank 0 still waits 20 s after rank 1 was killed");
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = killed.elapsed();
    assert!(!status.success());
    let error = std::fs::read_to_string(out.path().join("rank-0.error")).expect("rank 0 wrote its error");
    assert!(error.contains("rank 0: all-reduce (Sum) failed"), "{error}");
    println!("rank 0 failed {waited:?} after rank 1 was killed: {error}");
}

/// Two network namespaces joined by a veth pair; removed when dropped.
struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    const ADDRESSES: [&'static str; 2] = ["10.77.0.1", "10.77.0.2"];

    fn create() -> Result<Namespaces, String> {
        let id = std::process::id() % 100_000;
        let names = [format!("masklab-{id}-a"), format!("masklab-{id}-b")];
        let veths = [format!("mlv{id}a"), format!("mlv{id}b")];
        let ip = |args: &[&str]| -> Result<(), String> {
            let output = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!("`ip {}`: {}", args.join(" "), text(&output.stderr).trim()))
            }
        };
        ip(&["netns", "add", &names[0]])?;
        let spaces = Namespaces { names: names.clone() };
        ip(&["netns", "add", &names[1]])?;
        ip(&["link", "add", &veths[0], "netns", &names[0], "type", "veth", "peer", "name", &veths[1], "netns", &names[1]])?;
        for side in 0..2 {
            let ns = ["-n", names[side].as_str()];
            ip(&[&ns[..], &["addr", "add", &format!("{}/24", Self::ADDRESSES[side]), "dev", &veths[side]]].concat())?;
            ip(&[&ns[..], &["link", "set", &veths[side], "up"]].concat())?;
            ip(&[&ns[..], &["link", "set", "lo", "up"]].concat())?;
        }
        Ok(spaces)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Runs `command` (program and args) with `env` in namespace `side` of `spaces`, Gloo bound to its veth.
fn in_namespace(spaces: &Namespaces, side: usize, program: &std::ffi::OsStr, args: Vec<&std::ffi::OsStr>, env: Vec<(&std::ffi::OsStr, &std::ffi::OsStr)>) -> std::process::Child {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &spaces.names[side]])
        .arg(program)
        .args(args)
        .envs(env)
        .env("GLOO_SOCKET_IFNAME", format!("mlv{}{}", std::process::id() % 100_000, ["a", "b"][side]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

#[test]
fn two_machines_rendezvous_over_a_veth_link() {
    let spaces = match Namespaces::create() {
        Ok(spaces) => spaces,
        Err(why) => {
            println!("skipped: cannot make two network namespaces here ({why}); run as root with iproute2");
            return;
        }
    };
    let out = tempfile::tempdir().unwrap();
    // Rank 0 hosts the store on its side of the link; each rank's Gloo binds its own veth.
    let children: Vec<_> = (0..2)
        .map(|rank| {
            let worker = worker_process(out.path(), "collectives", &rank_env(rank, Namespaces::ADDRESSES[0], 29400));
            let env = worker.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
            in_namespace(&spaces, rank, worker.get_program(), worker.get_args().collect(), env)
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "rank {rank} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    }
    check_collectives(out.path(), Launcher::Env, StoreHost::Rank0);

    // Then `masklab train` across the link, one rank per "machine", as torchrun --nnodes 2 would
    // start it (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; rank 0 hosts the store).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 8, 7);
    let single = single_process_reference(&data, dir.path());
    let trained = dir.path().join("two-machines");
    let args: Vec<std::ffi::OsString> = train_args(&data, &trained, &[]).into_iter().map(Into::into).collect();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            let vars: Vec<(std::ffi::OsString, std::ffi::OsString)> =
                rank_env(rank, Namespaces::ADDRESSES[0], 29401).into_iter().map(|(k, v)| (k.into(), v.into())).chain([("OMP_NUM_THREADS".into(), "1".into())]).collect();
            let env = vars.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())).collect();
            in_namespace(&spaces, rank, std::ffi::OsStr::new(env!("CARGO_BIN_EXE_masklab")), args.iter().map(|a| a.as_os_str()).collect(), env)
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "rank {rank} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    }
    check_matches_single(&trained, &single);
}

// ---- masklab train, data-parallel ----

/// The recipe of the data-parallel training tests: no random augmentation or dropout, SGD (its
/// update is linear in the gradient, so a different summation order stays at float rounding),
/// batch 4 per process; the demo data of 8 people trains on 6 (42 images): 5 steps of 2 x 4.
fn dp_recipe(extra: &[&str]) -> Vec<String> {
    common::tiny_recipe(
        &[
            &[
                "train.batch_size=4",
                "train.epochs=1",
                "train.threads=1",
                "train.log_every=1",
                "train.dist_timeout=60",
                "augment.hflip=0",
                "augment.brightness=0",
                "augment.contrast=0",
                "augment.saturation=0",
                "optim.kind=sgd",
                "optim.lr=0.05",
                "optim.momentum=0.9",
                "schedule.kind=constant",
            ][..],
            extra,
        ]
        .concat(),
    )
}

fn train_args(data: &Path, run: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["train", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"].iter().map(|s| s.to_string()).collect();
    args.extend(dp_recipe(extra));
    args
}

fn masklab_cmd(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_masklab"));
    cmd.args(args).env("OMP_NUM_THREADS", "1");
    cmd
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn metrics(run: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// The trained parameters of a run's last checkpoint (BatchNorm's running statistics left out:
/// a data-parallel run keeps rank 0's, which saw half of each step's images).
fn parameters(run: &Path) -> Vec<(String, Tensor)> {
    let mut tensors = Tensor::read_safetensors(run.join("last.safetensors")).unwrap();
    tensors.retain(|(name, _)| !name.contains("running_") && !name.contains("num_batches_tracked") && !name.starts_with("optim.") && !name.starts_with("ema."));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// A distributed run's checks: every rank held the same weights at the checkpoint, the world
/// and global batch were logged, and its parameters equal those of `single` (one process with
/// train.accumulate = 2).
fn check_matches_single(run: &Path, single: &Path) {
    let last = json_file(&run.join("last.json"));
    let fingerprints = last["replicas"]["weight_fingerprints"].as_array().unwrap_or_else(|| panic!("no replicas in {last}"));
    assert_eq!(fingerprints.len(), 2, "{last}");
    assert_eq!(fingerprints[0], fingerprints[1], "both ranks hold identical weights");
    let start = &metrics(run, "start")[0];
    assert_eq!((start["world_size"].as_u64(), start["global_batch"].as_u64()), (Some(2), Some(8)), "{start}");
    let epoch = &metrics(run, "epoch")[0];
    assert_eq!(epoch["step"], json!(5), "{epoch}");
    assert!(epoch["allreduce_seconds"].as_f64().unwrap() > 0.0, "{epoch}");
    let (a, b) = (parameters(run), parameters(single));
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 10, "{} parameters", a.len());
    let mut worst = 0.0f64;
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        worst = worst.max((x - y).abs().max().double_value(&[]));
    }
    println!("{}: largest difference from one process accumulating: {worst:e}", run.display());
    assert!(worst < 1e-4, "the distributed run's weights differ from one process accumulating the same half-batches by up to {worst}");
    // Rank 0's validation covered the whole split (both shards gathered).
    let single_val = metrics(single, "epoch")[0]["val"].clone();
    assert_eq!(epoch["val"]["images"], single_val["images"], "{epoch} vs {single_val}");
}

fn single_process_reference(data: &Path, dir: &Path) -> PathBuf {
    let single = dir.join("single");
    let output = run(masklab_cmd(&train_args(data, &single, &["train.accumulate=2"])));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let epoch = &metrics(&single, "epoch")[0];
    assert_eq!(epoch["step"], json!(5), "{epoch}");
    assert!(text(&output.stderr).contains("global batch 8 = 4 per process x 2 accumulated x 1 processes"), "{}", text(&output.stderr));
    single
}

#[test]
fn nproc_and_torchrun_training_equal_one_process_accumulating() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 8, 7);
    let single = single_process_reference(&data, dir.path());

    let launched = dir.path().join("nproc");
    let mut args = train_args(&data, &launched, &[]);
    args.splice(1..1, ["--nproc".to_string(), "2".to_string()]);
    let output = run(masklab_cmd(&args));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("[rank 0] global batch 8 = 4 per process x 1 accumulated x 2 processes"), "{stderr}");
    assert!(stdout.contains("[rank 0] run ") && !stdout.contains("[rank 1] run "), "only rank 0 reports: {stdout}");
    check_matches_single(&launched, &single);

    let torchrun = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/torchrun");
    let by_torchrun = dir.path().join("torchrun");
    let mut cmd = Command::new(&torchrun);
    cmd.args(["--no-python", "--standalone", "--nproc-per-node", "2", env!("CARGO_BIN_EXE_masklab")])
        .args(train_args(&data, &by_torchrun, &[]))
        .env("OMP_NUM_THREADS", "1");
    let output = run(cmd);
    assert!(output.status.success(), "torchrun failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    check_matches_single(&by_torchrun, &single);
}

/// Pids of the processes whose parent is `parent` and whose environment holds `RANK=rank`.
fn worker_pid(parent: u32, rank: usize) -> Option<i32> {
    let wanted = format!("RANK={rank}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
        let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.split(|&b| b == 0).any(|var| var == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_killed_worker_stops_the_run_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 8, 9);
    let run_dir = dir.path().join("run");
    let mut args = train_args(&data, &run_dir, &["train.epochs=4"]);
    args.splice(1..1, ["--nproc".to_string(), "2".to_string()]);
    let launcher = Killed(masklab_cmd(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let mut launcher = launcher;
    let started = Instant::now();
    while !run_dir.join("last.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(240), "no checkpoint after 240 s");
        assert!(launcher.0.try_wait().unwrap().is_none(), "training ended before a worker could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = worker_pid(launcher.0.id(), 1).expect("rank 1's worker process");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = launcher.0.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "the run still goes on 60 s after a worker was killed");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(launcher.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("worker rank 1 of 2 was killed by signal 9 (SIGKILL)"), "{stderr}");
    let done = metrics(&run_dir, "epoch").len();
    assert!(done < 4, "killed after {done} epochs");

    let resume = ["train", data.to_str().unwrap(), "--resume", run_dir.to_str().unwrap(), "--nproc", "2", "--quiet"].map(String::from);
    let output = run(masklab_cmd(&resume));
    assert!(output.status.success(), "{}\n{}", text(&output.stdout), text(&output.stderr));
    let epochs: Vec<u64> = metrics(&run_dir, "epoch").iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4]);
    let last = json_file(&run_dir.join("last.json"));
    assert_eq!(last["epoch"], json!(4));
    assert_eq!(last["replicas"]["world_size"], json!(2));
}

#[test]
fn kfold_trains_each_fold_data_parallel_and_rank_0_gathers_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 8, 11);
    let run_dir = dir.path().join("cv");
    let mut args = train_args(&data, &run_dir, &["data.folds=2", "report.enabled=false"]);
    args.splice(1..1, ["--nproc".to_string(), "2".to_string()]);
    let output = run(masklab_cmd(&args));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[rank 0] cross-validated (2 folds") && !stdout.contains("[rank 1] cross-validated"), "{stdout}");
    let cv = json_file(&run_dir.join("cv.json"));
    let images: u64 = std::fs::read_to_string(run_dir.join("oof_predictions.csv")).unwrap().lines().count() as u64 - 1;
    assert_eq!(cv["images"].as_u64(), Some(images), "{cv}");
    assert_eq!(images, 8 * 7, "every image predicted once, by the fold that held it out");
    for fold in 1..=2 {
        let last = json_file(&run_dir.join(format!("fold-{fold}/last.json")));
        assert_eq!(last["replicas"]["world_size"], json!(2), "fold {fold}");
    }
}

#[test]
fn nproc_beyond_the_machine_is_refused_unless_oversubscribed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 6, 12);
    let run_dir = dir.path().join("run");
    let mut args = train_args(&data, &run_dir, &[]);
    args.splice(1..1, ["--nproc".to_string(), "1000".to_string()]);
    let started = std::time::Instant::now();
    let output = run(masklab_cmd(&args));
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "--nproc 1000 was accepted");
    assert!(stderr.contains("--nproc 1000") && stderr.contains("--oversubscribe") && stderr.contains("cores"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60) && !run_dir.join("metrics.jsonl").exists(), "refused before any worker started");
    let output = run(masklab_cmd(&["train".into(), data.display().to_string(), "--oversubscribe".into()]));
    assert!(!output.status.success() && text(&output.stderr).contains("--nproc"), "{}", text(&output.stderr));
}

#[test]
fn a_rank_that_cannot_reach_its_store_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo(&data, 6, 13);
    let port = free_port(); // nothing listens there
    let args = train_args(&data, &dir.path().join("run"), &["train.dist_timeout=2"]);
    for (log, frames) in [(None, false), (Some("debug"), true)] {
        let mut cmd = masklab_cmd(&args);
        cmd.envs(rank_env(1, "127.0.0.1", port)).env_remove("MASKLAB_LOG");
        if let Some(level) = log {
            cmd.env("MASKLAB_LOG", level);
        }
        let output = run(cmd);
        let stderr = text(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains("cannot connect to the rendezvous store at 127.0.0.1"), "{stderr}");
        assert_eq!(stderr.contains("frame #"), frames, "C++ stack frames only under MASKLAB_LOG=debug: {stderr}");
        if !frames {
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
    }
}
