//! Distributed engine across real processes, on the CPU with Gloo: masklab's launcher, torchrun
//! from the project's .venv, a rank killed mid-collective, and two ranks in two network
//! namespaces joined by a veth pair.
//!
//! The worker processes are this test binary run again with `--exact worker` and
//! `MASKLAB_DIST_TEST_ROLE` naming what to do; each writes what it saw to
//! `$MASKLAB_DIST_TEST_OUT/rank-R.json` for the test to check.
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
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &spaces.names[rank]])
                .arg(worker.get_program())
                .args(worker.get_args())
                .envs(worker.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
                .env("GLOO_SOCKET_IFNAME", format!("mlv{}{}", std::process::id() % 100_000, ["a", "b"][rank]))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "rank {rank} failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    }
    check_collectives(out.path(), Launcher::Env, StoreHost::Rank0);
}
