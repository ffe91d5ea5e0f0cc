//! Data-parallel training on libtorch's own distributed engine, c10d: the TCPStore rendezvous and
//! the Gloo (CPU) and NCCL (CUDA) process groups that PyTorch's DDP runs on, reached through the
//! C shim `csrc/c10d_shim.cpp` (tch has no bindings for c10d).
//!
//! - [`Store`]: a c10d TCPStore (hosted or connected), a key-value store for the rendezvous.
//! - [`ProcessGroup`]: one rank of a group; in-place all-reduce, broadcast, all-gather, barrier.
//! - [`env`]: rank, world size and rendezvous from torchrun, Slurm or masklab's launcher.
//! - [`launch`]: `masklab train --nproc N` spawns N workers and brings all down when one dies.
//! - [`shard`] and [`sync`]: what a data-parallel trainer does with them (shard the epoch order,
//!   average gradients, broadcast weights, agree on skips, gather validation rows).
//!
//! Errors from c10d (a peer that died, a timeout, a refused connection) come back as
//! [`DistError`], never as a C++ exception or a hang past the group's timeout.
mod ffi;

pub mod env;
pub mod launch;
pub mod shard;
pub mod sync;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tch::{Device, Tensor};

/// A failed c10d call: what was attempted and libtorch's message.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct DistError {
    pub what: String,
    pub message: String,
}

/// Turns the shim's error string (NULL = success) into a Result, freeing it.
fn check(what: impl FnOnce() -> String, error: *mut c_char) -> Result<(), DistError> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL return is a NUL-terminated string from malloc that we now own.
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { ffi::masklab_c10d_free_error(error) };
    Err(DistError { what: what(), message })
}

fn c_string(text: &str, what: &str) -> Result<CString> {
    CString::new(text).map_err(|_| anyhow::anyhow!("{what} `{text}` contains a NUL byte"))
}

fn millis(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)
}

/// Whether this build has the NCCL backend (libtorch with CUDA and the NCCL headers at build time).
pub fn has_nccl() -> bool {
    unsafe { ffi::masklab_c10d_has_nccl() != 0 }
}

/// Sets which of libtorch's own log lines reach stderr (c10's levels: 0 info, 1 warning,
/// 2 error, 3 fatal only). c10d logs every failed try to reach a store, each with dozens of C++
/// stack frames, before masklab's own error says what failed; `cli::main` keeps only fatal ones
/// unless `MASKLAB_LOG` asks for debug output.
pub fn set_cpp_log_level(level: i32) {
    unsafe { ffi::masklab_set_cpp_log_level(level) }
}

/// A c10d TCPStore: the key-value store ranks meet through. Dropping it closes the connection
/// (and stops the server, for the process that hosts it).
pub struct Store {
    raw: *mut ffi::RawStore,
    /// Process groups made through this store so far: each gets its own key prefix, in the same
    /// order on every rank (PyTorch numbers its groups the same way).
    groups: AtomicUsize,
}

// SAFETY: c10d stores serialise their own requests; the handle may move between threads.
unsafe impl Send for Store {}

impl Store {
    /// Hosts a store on `port` of every interface (0 = any free port: see [`Store::port`]).
    /// `host` is how this process reaches it itself. Does not wait for the other ranks.
    pub fn host(host: &str, port: u16, world_size: usize, timeout: Duration) -> Result<Store> {
        Self::tcp(host, port, true, world_size, timeout)
    }

    /// Connects to a store at host:port, retrying until `timeout`.
    pub fn connect(host: &str, port: u16, world_size: usize, timeout: Duration) -> Result<Store> {
        Self::tcp(host, port, false, world_size, timeout)
    }

    fn tcp(host: &str, port: u16, server: bool, world_size: usize, timeout: Duration) -> Result<Store> {
        let c_host = c_string(host, "host")?;
        let world = c_int::try_from(world_size).unwrap_or(c_int::MAX);
        let mut raw = std::ptr::null_mut();
        let error = unsafe { ffi::masklab_store_tcp(c_host.as_ptr(), port, server as c_int, world, millis(timeout), &mut raw) };
        let action = if server { "host" } else { "connect to" };
        check(|| format!("cannot {action} the rendezvous store at {host}:{port}"), error)?;
        Ok(Store { raw, groups: AtomicUsize::new(0) })
    }

    /// A view of this store whose keys all start with `prefix/` (c10d's PrefixStore).
    pub fn prefixed(&self, prefix: &str) -> Result<Store> {
        let c_prefix = c_string(prefix, "store prefix")?;
        let mut raw = std::ptr::null_mut();
        let error = unsafe { ffi::masklab_store_prefixed(self.raw, c_prefix.as_ptr(), &mut raw) };
        check(|| format!("cannot make a store view with prefix `{prefix}`"), error)?;
        Ok(Store { raw, groups: AtomicUsize::new(0) })
    }

    /// The TCP port of the store (the one picked, for a store hosted on port 0).
    pub fn port(&self) -> u16 {
        unsafe { ffi::masklab_store_port(self.raw) }
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let c_key = c_string(key, "store key")?;
        let error = unsafe { ffi::masklab_store_set(self.raw, c_key.as_ptr(), value.as_ptr(), value.len()) };
        Ok(check(|| format!("store: cannot set `{key}`"), error)?)
    }

    /// The value of `key`, waiting for it to be set up to the store's timeout.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let c_key = c_string(key, "store key")?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        let error = unsafe { ffi::masklab_store_get(self.raw, c_key.as_ptr(), &mut data, &mut len) };
        check(|| format!("store: cannot get `{key}`"), error)?;
        // SAFETY: on success `data` holds `len` bytes from malloc, ours to free.
        let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { ffi::masklab_c10d_free_bytes(data) };
        Ok(value)
    }

    /// Adds `delta` to the integer at `key` (0 when unset) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let c_key = c_string(key, "store key")?;
        let mut value = 0i64;
        let error = unsafe { ffi::masklab_store_add(self.raw, c_key.as_ptr(), delta, &mut value) };
        check(|| format!("store: cannot add to `{key}`"), error)?;
        Ok(value)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        unsafe { ffi::masklab_store_free(self.raw) };
    }
}

/// `train.dist_backend`: which c10d backend a distributed run uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// NCCL when training on CUDA, Gloo on CPU.
    #[default]
    Auto,
    Nccl,
    Gloo,
}

impl BackendChoice {
    /// The backend for a run on `device`; NCCL needs CUDA tensors and a build with NCCL.
    pub fn resolve(self, device: Device) -> Result<Backend> {
        let backend = match self {
            BackendChoice::Auto if device.is_cuda() => Backend::Nccl,
            BackendChoice::Auto | BackendChoice::Gloo => Backend::Gloo,
            BackendChoice::Nccl => Backend::Nccl,
        };
        if backend == Backend::Nccl {
            if !device.is_cuda() {
                bail!("train.dist_backend = nccl needs CUDA (train.device is {device:?}): use gloo on CPU");
            }
            if !has_nccl() {
                bail!(
                    "train.dist_backend: this masklab was built without NCCL (build.rs found no NCCL/CUDA headers \
                     beside libtorch; scripts/setup.sh installs them): rebuild, or use gloo"
                );
            }
        }
        Ok(backend)
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(BackendChoice::Auto),
            "nccl" => Ok(BackendChoice::Nccl),
            "gloo" => Ok(BackendChoice::Gloo),
            other => bail!("unknown distributed backend `{other}` (expected auto, nccl or gloo)"),
        }
    }
}

/// A c10d backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    Nccl,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        })
    }
}

/// How an all-reduce combines the ranks' tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// The mean over ranks (Gloo: a sum, then a division, as DDP does).
    Avg,
    Max,
    Min,
}

impl ReduceOp {
    fn code(self) -> c_int {
        match self {
            ReduceOp::Sum => ffi::OP_SUM,
            ReduceOp::Avg => ffi::OP_AVG,
            ReduceOp::Max => ffi::OP_MAX,
            ReduceOp::Min => ffi::OP_MIN,
        }
    }
}

/// One rank's member of a c10d process group. Collectives must be called in the same order on
/// every rank; each returns an error (never hangs) once the group's timeout passes or a peer fails.
pub struct ProcessGroup {
    raw: *mut ffi::RawProcessGroup,
    backend: Backend,
    rank: usize,
    world_size: usize,
    device: Device,
    timeout: Duration,
}

// SAFETY: a c10d backend may be driven from any one thread at a time (not Sync).
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group through `store`: blocks until all `world_size` ranks have joined (or the
    /// timeout). `device`: where this rank's tensors live (CUDA for NCCL). Gloo binds the
    /// interfaces named in `GLOO_SOCKET_IFNAME` (comma-separated), else the address of this host's
    /// name, else loopback, as PyTorch does.
    pub fn new(store: &Store, backend: Backend, rank: usize, world_size: usize, device: Device, timeout: Duration) -> Result<ProcessGroup> {
        if world_size == 0 || rank >= world_size {
            bail!("process group: rank {rank} is not in a world of {world_size}");
        }
        if backend == Backend::Nccl && !device.is_cuda() {
            bail!("process group: NCCL needs a CUDA device, got {device:?}");
        }
        let group = store.groups.fetch_add(1, Ordering::SeqCst);
        let scoped = store.prefixed(&format!("pg{group}"))?;
        let (c_rank, c_world) = (rank as c_int, world_size as c_int);
        let mut raw = std::ptr::null_mut();
        let error = match backend {
            Backend::Gloo => {
                let ifnames = std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default();
                let c_ifnames = c_string(&ifnames, "GLOO_SOCKET_IFNAME")?;
                unsafe { ffi::masklab_pg_gloo(scoped.raw, c_rank, c_world, millis(timeout), c_ifnames.as_ptr(), 0, &mut raw) }
            }
            Backend::Nccl => {
                let Device::Cuda(index) = device else { unreachable!("checked above: NCCL has a CUDA device") };
                unsafe { ffi::masklab_pg_nccl(scoped.raw, c_rank, c_world, millis(timeout), index as c_int, &mut raw) }
            }
        };
        check(|| format!("rank {rank} of {world_size} cannot join the {backend} process group"), error)?;
        Ok(ProcessGroup { raw, backend, rank, world_size, device, timeout })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Rank 0 writes the run folder, logs and trackers.
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The device this rank's collectives run on.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check_tensor(&self, tensor: &Tensor, what: &str) -> Result<()> {
        if !tensor.is_contiguous() {
            bail!("{what}: the tensor must be contiguous");
        }
        if self.backend == Backend::Nccl && !tensor.device().is_cuda() {
            bail!("{what}: NCCL needs CUDA tensors, got one on {:?}", tensor.device());
        }
        Ok(())
    }

    /// Reduces `tensor` over all ranks, in place: afterwards every rank holds the result.
    pub fn all_reduce_(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<()> {
        self.check_tensor(tensor, "all-reduce")?;
        let error = unsafe { ffi::masklab_pg_allreduce(self.raw, tensor.as_mut_ptr() as *mut c_void, op.code()) };
        Ok(check(|| format!("rank {}: all-reduce ({op:?}) failed", self.rank), error)?)
    }

    /// Overwrites `tensor` on every rank with rank `root`'s.
    pub fn broadcast_(&self, tensor: &mut Tensor, root: usize) -> Result<()> {
        self.check_tensor(tensor, "broadcast")?;
        if root >= self.world_size {
            bail!("broadcast: root {root} is not a rank of a world of {}", self.world_size);
        }
        let error = unsafe { ffi::masklab_pg_broadcast(self.raw, tensor.as_mut_ptr() as *mut c_void, root as c_int) };
        Ok(check(|| format!("rank {}: broadcast from rank {root} failed", self.rank), error)?)
    }

    /// Every rank's `tensor`, in rank order. All ranks must pass the same shape and dtype
    /// (see [`sync::all_gather_rows`] for rows of different counts).
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>> {
        self.check_tensor(tensor, "all-gather")?;
        let mut input = tensor.shallow_clone();
        let mut outputs: Vec<Tensor> = (0..self.world_size).map(|_| tensor.empty_like()).collect();
        let pointers: Vec<*mut c_void> = outputs.iter_mut().map(|t| t.as_mut_ptr() as *mut c_void).collect();
        let error = unsafe { ffi::masklab_pg_allgather(self.raw, input.as_mut_ptr() as *mut c_void, pointers.as_ptr(), pointers.len()) };
        check(|| format!("rank {}: all-gather failed", self.rank), error)?;
        Ok(outputs)
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        let error = unsafe { ffi::masklab_pg_barrier(self.raw) };
        Ok(check(|| format!("rank {}: barrier failed", self.rank), error)?)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { ffi::masklab_pg_free(self.raw) };
    }
}

impl fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("backend", &self.backend)
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("device", &self.device)
            .finish()
    }
}

/// A distributed run as the trainer sees it: where this process sits and its process group.
#[derive(Debug)]
pub struct Dist {
    pub env: env::DistEnv,
    pub pg: ProcessGroup,
}

impl Dist {
    /// Joins the run this process was started in (torchrun, Slurm, `masklab train --nproc`), or
    /// None when it was started alone. `device`: the configured device; on CUDA each rank takes
    /// GPU `LOCAL_RANK` (see [`env::DistEnv::device`]). `timeout` bounds the rendezvous and every
    /// collective (`train.dist_timeout`).
    pub fn init(choice: BackendChoice, device: Device, timeout: Duration) -> Result<Option<Dist>> {
        let Some(env) = env::DistEnv::from_env()? else { return Ok(None) };
        let device = env.device(device);
        let backend = choice.resolve(device)?;
        let store = env.connect(timeout)?;
        let pg = ProcessGroup::new(&store, backend, env.rank, env.world_size, device, timeout)?;
        Ok(Some(Dist { env, pg }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_rank() -> ProcessGroup {
        let store = Store::host("127.0.0.1", 0, 1, Duration::from_secs(10)).unwrap();
        ProcessGroup::new(&store, Backend::Gloo, 0, 1, Device::Cpu, Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn a_hosted_store_picks_a_port_and_serves_its_keys() {
        let server = Store::host("127.0.0.1", 0, 2, Duration::from_secs(10)).unwrap();
        assert_ne!(server.port(), 0);
        let client = Store::connect("127.0.0.1", server.port(), 2, Duration::from_secs(10)).unwrap();
        client.set("greeting", b"hello").unwrap();
        assert_eq!(server.get("greeting").unwrap(), b"hello");
        assert_eq!(server.add("count", 2).unwrap(), 2);
        assert_eq!(client.add("count", 3).unwrap(), 5);
        let scoped = client.prefixed("run").unwrap();
        scoped.set("k", b"v").unwrap();
        assert_eq!(server.get("run/k").unwrap(), b"v");
    }

    #[test]
    fn a_missing_key_times_out_with_an_error() {
        let store = Store::host("127.0.0.1", 0, 1, Duration::from_millis(300)).unwrap();
        let err = store.get("never-set").unwrap_err().to_string();
        assert!(err.contains("never-set"), "{err}");
    }

    #[test]
    fn nobody_listening_is_a_connection_error() {
        // Port 1 on loopback: nothing listens there, so the connect retries fail until the timeout.
        let err = Store::connect("127.0.0.1", 1, 2, Duration::from_millis(500)).err().unwrap().to_string();
        assert!(err.contains("cannot connect to the rendezvous store at 127.0.0.1:1"), "{err}");
    }

    #[test]
    fn a_one_rank_group_reduces_to_itself() {
        let pg = one_rank();
        let mut t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        pg.all_reduce_(&mut t, ReduceOp::Sum).unwrap();
        pg.all_reduce_(&mut t, ReduceOp::Avg).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.0, 2.0, 3.0]);
        pg.broadcast_(&mut t, 0).unwrap();
        let gathered = pg.all_gather(&t).unwrap();
        assert_eq!(gathered.len(), 1);
        assert_eq!(Vec::<f32>::try_from(&gathered[0]).unwrap(), vec![1.0, 2.0, 3.0]);
        pg.barrier().unwrap();
        let err = pg.broadcast_(&mut t, 1).unwrap_err().to_string();
        assert!(err.contains("root 1"), "{err}");
        let mut strided = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]).tr();
        assert!(pg.all_reduce_(&mut strided, ReduceOp::Sum).unwrap_err().to_string().contains("contiguous"));
        let mut ints = Tensor::from_slice(&[1i64]);
        let err = pg.all_reduce_(&mut ints, ReduceOp::Avg).unwrap_err().to_string();
        assert!(err.contains("floating-point"), "{err}");
    }

    #[test]
    fn backend_choice_parses_and_resolves_by_device() {
        assert_eq!("auto".parse::<BackendChoice>().unwrap(), BackendChoice::Auto);
        assert_eq!("gloo".parse::<BackendChoice>().unwrap(), BackendChoice::Gloo);
        assert!("mpi".parse::<BackendChoice>().unwrap_err().to_string().contains("auto, nccl or gloo"));
        assert_eq!(BackendChoice::Auto.resolve(Device::Cpu).unwrap(), Backend::Gloo);
        assert!(BackendChoice::Nccl.resolve(Device::Cpu).unwrap_err().to_string().contains("needs CUDA"));
        if has_nccl() {
            assert_eq!(BackendChoice::Auto.resolve(Device::Cuda(0)).unwrap(), Backend::Nccl);
        }
        assert_eq!(BackendChoice::Gloo.resolve(Device::Cuda(0)).unwrap(), Backend::Gloo);
    }
}
