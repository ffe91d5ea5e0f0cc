//! How libtorch's OpenMP threads wait for work: asleep, not spinning.
//!
//! libgomp, the OpenMP runtime of PyTorch's Linux wheels, keeps each of its threads spinning on
//! the CPU for a while after a parallel region (`GOMP_SPINCOUNT`, 300,000 turns by default) in
//! case another region follows at once. On a machine where torch has every core to itself that
//! saves a wake-up; but masklab decodes images on other threads while the model runs, and
//! machines are shared: there a spinning thread takes its core from a decoder (or from another
//! program) and the work that would start the next region waits behind it. `OMP_WAIT_POLICY=
//! PASSIVE` makes the threads sleep as soon as they are idle (README, Training, has the
//! measurements).
//!
//! libgomp reads its environment once, when it is loaded, which is before `main` runs: setting
//! the variable from inside the process changes nothing. So [`reexec_with_passive_wait`] starts
//! the program again, once, with the variable set, when the environment chooses no policy of its
//! own; a user's `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` is left as it is.
use std::ffi::OsString;

/// The variable libgomp reads for its wait policy, and the value masklab runs with.
pub const WAIT_POLICY_VAR: &str = "OMP_WAIT_POLICY";
pub const PASSIVE: &str = "PASSIVE";
/// libgomp's own knob for the same thing (how many turns a thread spins before it sleeps): a user
/// who sets it has chosen, so masklab leaves the policy alone.
const SPIN_COUNT_VAR: &str = "GOMP_SPINCOUNT";

/// What the environment says about OpenMP's waiting, as `masklab --version` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Set by the user: `OMP_WAIT_POLICY=...` and/or `GOMP_SPINCOUNT=...`, as written.
    FromEnvironment(String),
    /// Neither variable set: libgomp spins (this process was not restarted with the policy).
    RuntimeDefault,
}

/// The policy `var` (an environment lookup) chooses.
pub fn wait_policy(var: impl Fn(&str) -> Option<OsString>) -> WaitPolicy {
    let chosen: Vec<String> =
        [WAIT_POLICY_VAR, SPIN_COUNT_VAR].iter().filter_map(|name| var(name).map(|value| format!("{name}={}", value.to_string_lossy()))).collect();
    if chosen.is_empty() {
        WaitPolicy::RuntimeDefault
    } else {
        WaitPolicy::FromEnvironment(chosen.join(" "))
    }
}

/// This process's policy.
pub fn current_wait_policy() -> WaitPolicy {
    wait_policy(|name| std::env::var_os(name))
}

/// When the environment sets no OpenMP wait policy, replaces this process with the same program
/// and arguments under `OMP_WAIT_POLICY=PASSIVE` (same process id, so launchers and signals are
/// unaffected) and does not return. Returns why it did not restart: a policy was already chosen
/// (the restarted process itself takes this path), or the restart failed (the program then runs
/// on with libgomp's spinning, which is slower but correct). Call it first thing in `main`,
/// before any thread starts. Only Linux restarts (libgomp); elsewhere it returns at once.
pub fn reexec_with_passive_wait() -> Result<(), String> {
    if let WaitPolicy::FromEnvironment(chosen) = current_wait_policy() {
        return Err(format!("{chosen} chosen by the environment"));
    }
    restart_with(WAIT_POLICY_VAR, PASSIVE)
}

#[cfg(target_os = "linux")]
fn restart_with(var: &str, value: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program to restart it: {e}"))?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` returns only when it fails.
    let error = std::process::Command::new(&exe).arg0(arg0).args(args).env(var, value).exec();
    Err(format!("cannot restart {} with {var}={value}: {error}", exe.display()))
}

#[cfg(not(target_os = "linux"))]
fn restart_with(_var: &str, _value: &str) -> Result<(), String> {
    Err("the OpenMP wait policy is only set on Linux (libgomp)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_setting_is_kept_and_none_means_the_runtime_default() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(wait_policy(env(&[])), WaitPolicy::RuntimeDefault);
        assert_eq!(wait_policy(env(&[("OMP_WAIT_POLICY", "ACTIVE")])), WaitPolicy::FromEnvironment("OMP_WAIT_POLICY=ACTIVE".into()));
        assert_eq!(wait_policy(env(&[("GOMP_SPINCOUNT", "10000")])), WaitPolicy::FromEnvironment("GOMP_SPINCOUNT=10000".into()));
        assert_eq!(
            wait_policy(env(&[("GOMP_SPINCOUNT", "5"), ("OMP_WAIT_POLICY", "PASSIVE")])),
            WaitPolicy::FromEnvironment("OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=5".into())
        );
        assert_eq!(wait_policy(env(&[("OMP_NUM_THREADS", "1")])), WaitPolicy::RuntimeDefault);
    }
}
