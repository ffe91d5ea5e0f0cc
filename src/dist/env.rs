//! Where this process sits in a distributed run, read from the environment conventions that
//! launchers already use, and the rendezvous store that follows from it.
//!
//! - torchrun (and any `env://` launcher): `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//!   `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`. With `TORCHELASTIC_USE_AGENT_STORE=True`
//!   torchrun's agent already hosts a TCPStore at MASTER_ADDR:MASTER_PORT and every rank connects
//!   as a client; otherwise rank 0 hosts it. torchrun's agent keeps its own keys in that store and
//!   reuses it when it restarts workers, so masklab's keys live under
//!   `masklab/<TORCHELASTIC_RESTART_COUNT>/`.
//! - masklab's launcher (`masklab train --nproc N`): the same variables plus
//!   `MASKLAB_LAUNCHER_STORE=1`: the launcher hosts the store, every rank is a client.
//! - Slurm (`srun masklab train ...`): `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` (else
//!   `SLURM_NTASKS`), `SLURM_LOCALID`; the master is the first host of `SLURM_STEP_NODELIST` (else
//!   `SLURM_JOB_NODELIST`), unless `MASTER_ADDR` says otherwise, and the port is `MASTER_PORT`, else
//!   20000 + `SLURM_JOB_ID` mod 10000 (the same on every task of the job, different between jobs).
//!   A Slurm job of one task (an array job's element, say) is an ordinary single-process run.
use super::Store;
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tch::Device;

/// Set by `masklab train --nproc N` in its workers: the launcher hosts the store.
pub const LAUNCHER_STORE_VAR: &str = "MASKLAB_LAUNCHER_STORE";

/// What started this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun / torch.distributed.run (TORCHELASTIC_* variables present).
    Torchrun,
    /// `masklab train --nproc N`.
    Masklab,
    /// RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set some other way (by hand, a job script).
    Env,
    /// srun.
    Slurm,
}

/// Who hosts the rendezvous store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreHost {
    /// Rank 0 hosts it at MASTER_PORT; the others connect.
    Rank0,
    /// A launcher (torchrun's agent, masklab's launcher) hosts it; every rank connects.
    Launcher,
}

/// This process's place in a distributed run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    /// Rank among the processes of this machine: the GPU it uses.
    pub local_rank: usize,
    /// Processes on this machine, when the launcher says.
    pub local_world_size: Option<usize>,
    pub master_addr: String,
    pub master_port: u16,
    pub launcher: Launcher,
    pub store_host: StoreHost,
    /// Prefix of masklab's keys in the store.
    pub key_prefix: String,
}

impl DistEnv {
    /// The run this process belongs to, from its environment; None when it runs alone.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`DistEnv::from_env`], with the variables read through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            return Self::from_env_vars(&var).map(Some);
        }
        if var("SLURM_PROCID").is_some() {
            return Self::from_slurm(&var);
        }
        Ok(None)
    }

    fn from_env_vars(var: &impl Fn(&str) -> Option<String>) -> Result<DistEnv> {
        let rank: usize = required(var, "RANK")?;
        let world_size: usize = required(var, "WORLD_SIZE")?;
        let local_rank: usize = optional(var, "LOCAL_RANK")?.unwrap_or(rank);
        let local_world_size: Option<usize> = optional(var, "LOCAL_WORLD_SIZE")?;
        let master_addr = var("MASTER_ADDR").context("environment variable MASTER_ADDR is not set (RANK and WORLD_SIZE are)")?;
        let master_port: u16 = required(var, "MASTER_PORT")?;
        let torchrun = var("TORCHELASTIC_RUN_ID").is_some() || var("TORCHELASTIC_USE_AGENT_STORE").is_some();
        let (launcher, store_host, key_prefix) = if var(LAUNCHER_STORE_VAR).as_deref() == Some("1") {
            (Launcher::Masklab, StoreHost::Launcher, "masklab".to_string())
        } else if torchrun {
            let agent = var("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
            let restart: u64 = optional(var, "TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0);
            (Launcher::Torchrun, if agent { StoreHost::Launcher } else { StoreHost::Rank0 }, format!("masklab/{restart}"))
        } else {
            (Launcher::Env, StoreHost::Rank0, "masklab".to_string())
        };
        let env = DistEnv { rank, world_size, local_rank, local_world_size, master_addr, master_port, launcher, store_host, key_prefix };
        env.validate()?;
        Ok(env)
    }

    fn from_slurm(var: &impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let rank: usize = required(var, "SLURM_PROCID")?;
        let world_size: usize = match optional(var, "SLURM_STEP_NUM_TASKS")? {
            Some(n) => n,
            None => required(var, "SLURM_NTASKS")?,
        };
        if world_size <= 1 {
            return Ok(None);
        }
        let local_rank: usize = optional(var, "SLURM_LOCALID")?.unwrap_or(0);
        // "4" or "2(x3)": only a plain count is this node's count.
        let local_world_size: Option<usize> = var("SLURM_NTASKS_PER_NODE").and_then(|v| v.parse().ok());
        let master_addr = match var("MASTER_ADDR") {
            Some(addr) => addr,
            None => {
                let (name, list) = ["SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"]
                    .iter()
                    .find_map(|name| var(name).map(|list| (*name, list)))
                    .context("Slurm: none of SLURM_STEP_NODELIST, SLURM_JOB_NODELIST, SLURM_NODELIST is set (or set MASTER_ADDR)")?;
                first_host(&list).with_context(|| format!("Slurm: cannot read {name}=`{list}`"))?
            }
        };
        let master_port: u16 = match optional(var, "MASTER_PORT")? {
            Some(port) => port,
            None => {
                let job: u64 = required(var, "SLURM_JOB_ID").context("Slurm: set MASTER_PORT, or run inside a job")?;
                20000 + (job % 10000) as u16
            }
        };
        let env = DistEnv {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            launcher: Launcher::Slurm,
            store_host: StoreHost::Rank0,
            key_prefix: "masklab".to_string(),
        };
        env.validate()?;
        Ok(Some(env))
    }

    fn validate(&self) -> Result<()> {
        if self.world_size == 0 {
            bail!("the world size is 0 ({:?} launch)", self.launcher);
        }
        if self.rank >= self.world_size {
            bail!("rank {} is not in a world of {} ({:?} launch)", self.rank, self.world_size, self.launcher);
        }
        Ok(())
    }

    /// Whether this rank hosts the rendezvous store.
    pub fn hosts_store(&self) -> bool {
        self.store_host == StoreHost::Rank0 && self.rank == 0
    }

    /// This rank's device for a run configured on `configured`: on CUDA, GPU `LOCAL_RANK` of the
    /// visible ones (modulo their count, so a launcher that gives each task its own
    /// CUDA_VISIBLE_DEVICES also works); CPU stays CPU.
    pub fn device(&self, configured: Device) -> Device {
        match configured {
            Device::Cuda(_) => Device::Cuda(self.local_rank % tch::Cuda::device_count().max(1) as usize),
            other => other,
        }
    }

    /// The rendezvous store, hosted or connected as this launch requires, under masklab's prefix.
    pub fn connect(&self, timeout: Duration) -> Result<Store> {
        let store = if self.hosts_store() {
            Store::host(&self.master_addr, self.master_port, self.world_size, timeout)
        } else {
            Store::connect(&self.master_addr, self.master_port, self.world_size, timeout)
        }
        .with_context(|| format!("rank {} of {} ({:?} launch)", self.rank, self.world_size, self.launcher))?;
        store.prefixed(&self.key_prefix)
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.trim().parse().ok().with_context(|| format!("environment variable {name}=`{value}` is not a valid number here"))
}

fn required<T: std::str::FromStr>(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<T> {
    let value = var(name).with_context(|| format!("environment variable {name} is not set"))?;
    parse(name, &value)
}

fn optional<T: std::str::FromStr>(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<T>> {
    var(name).map(|value| parse(name, &value)).transpose()
}

/// The first host of a Slurm node list (`node[01-04,07],gpu5` -> `node01`).
pub fn first_host(list: &str) -> Result<String> {
    let hosts = hostlist_parser::parse(list.trim()).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    hosts.into_iter().next().context("the node list is empty")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DistEnv::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn alone_without_any_launcher_variable() {
        assert_eq!(read(&[("PATH", "/bin")]).unwrap(), None);
    }

    #[test]
    fn torchrun_with_its_agent_store() {
        let env = read(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "node07"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("TORCHELASTIC_RUN_ID", "job"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank, env.local_world_size), (3, 8, 1, Some(2)));
        assert_eq!((env.master_addr.as_str(), env.master_port), ("node07", 29500));
        assert_eq!((env.launcher, env.store_host), (Launcher::Torchrun, StoreHost::Launcher));
        assert_eq!(env.key_prefix, "masklab/2");
        assert!(!env.hosts_store());
        assert_eq!(env.device(Device::Cpu), Device::Cpu);
    }

    #[test]
    fn plain_env_rendezvous_has_rank_0_host_the_store() {
        let vars = [("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "1234")];
        let env = read(&vars).unwrap().unwrap();
        assert_eq!((env.launcher, env.store_host, env.local_rank), (Launcher::Env, StoreHost::Rank0, 0));
        assert!(env.hosts_store());
        let torchrun_without_agent = read(&[vars[0], vars[1], vars[2], vars[3], ("TORCHELASTIC_USE_AGENT_STORE", "False")]).unwrap().unwrap();
        assert_eq!((torchrun_without_agent.launcher, torchrun_without_agent.store_host), (Launcher::Torchrun, StoreHost::Rank0));
    }

    #[test]
    fn masklab_launcher_hosts_the_store() {
        let env = read(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "40000"),
            (LAUNCHER_STORE_VAR, "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((env.launcher, env.store_host, env.key_prefix.as_str()), (Launcher::Masklab, StoreHost::Launcher, "masklab"));
    }

    #[test]
    fn bad_or_missing_variables_are_named() {
        let err = read(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]).unwrap_err().to_string();
        assert!(err.contains("MASTER_ADDR"), "{err}");
        let err = read(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(err.contains("RANK=`x`"), "{err}");
        let err = read(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")]).unwrap_err().to_string();
        assert!(err.contains("rank 2 is not in a world of 2"), "{err}");
        let err = read(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")]).unwrap_err().to_string();
        assert!(err.contains("MASTER_PORT=`70000`"), "{err}");
    }

    #[test]
    fn slurm_takes_the_first_node_and_a_port_from_the_job_id() {
        let env = read(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "4"),
            ("SLURM_JOB_NODELIST", "gpu[03-04,07]"),
            ("SLURM_JOB_ID", "1234567"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((env.rank, env.world_size, env.local_rank, env.local_world_size), (5, 8, 1, Some(4)));
        assert_eq!((env.master_addr.as_str(), env.master_port), ("gpu03", 24567));
        assert_eq!((env.launcher, env.store_host), (Launcher::Slurm, StoreHost::Rank0));
        // The step's own task count and node list win; MASTER_ADDR/MASTER_PORT override.
        let env = read(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_STEP_NUM_TASKS", "2"),
            ("SLURM_STEP_NODELIST", "b1,a[1-2]"),
            ("SLURM_JOB_NODELIST", "z1"),
            ("MASTER_PORT", "3000"),
            ("SLURM_NTASKS_PER_NODE", "2(x3)"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((env.world_size, env.master_addr.as_str(), env.master_port, env.local_world_size), (2, "b1", 3000, None));
        assert!(env.hosts_store());
    }

    #[test]
    fn a_one_task_slurm_job_runs_alone() {
        assert_eq!(read(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"), ("SLURM_JOB_NODELIST", "n1")]).unwrap(), None);
    }

    #[test]
    fn slurm_errors_name_the_variable() {
        let err = read(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_ID", "1")]).unwrap_err().to_string();
        assert!(err.contains("SLURM_JOB_NODELIST"), "{err}");
        let err = read(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_NODELIST", "n[1-"), ("SLURM_JOB_ID", "1")])
            .unwrap_err();
        assert!(format!("{err:#}").contains("SLURM_JOB_NODELIST=`n[1-`"), "{err:#}");
    }

    #[test]
    fn node_lists_expand_ranges_with_their_padding() {
        assert_eq!(first_host("node[01-04,07]").unwrap(), "node01");
        assert_eq!(first_host("gpu-[10-12]-ib").unwrap(), "gpu-10-ib");
        assert_eq!(first_host("solo").unwrap(), "solo");
        assert_eq!(first_host("b9,a[1-2]").unwrap(), "b9");
    }
}
