//! glibc's allocator told to keep freed memory for the next batch instead of returning it.
//!
//! libtorch's CPU tensors come from `malloc`. A batch's activations are tens of MB each (an
//! EfficientNet-B0 expansion at 96 px and batch 128 is 56 MB in bf16), above glibc's largest
//! mmap threshold (32 MiB), so by default every such tensor is a fresh `mmap`, zero-filled page
//! by page on first touch and unmapped when freed: on a 2-core machine a quarter of `predict`'s
//! time went to the kernel's page faults (`perf`, B0 bf16 at 96 px over the stand-in's 4,137 eval
//! photos). Serving every allocation from the heap and never trimming it keeps those pages
//! mapped for the next batch, which asks for the same sizes; the cost is that the process keeps
//! its peak memory until it exits. PyTorch's CPU tuning guide gets the same by preloading
//! jemalloc or tcmalloc; glibc does it with three `mallopt` calls and no new dependency.
//!
//! A user's own `MALLOC_*_` tuning variables (glibc's) are left as they are: then nothing is set.

/// glibc's environment variables for the settings below: if the user set any, theirs stand.
pub const USER_VARS: [&str; 4] = ["MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"];

/// The heap's top is returned to the system only beyond this much free memory (bytes).
const TRIM_THRESHOLD: i32 = i32::MAX;
/// Extra memory taken each time the heap grows (bytes), so that growth is rare.
const TOP_PAD: i32 = 64 << 20;

/// Whether masklab should set the allocator: not when the user tuned it (`var` reads the
/// environment).
pub fn should_tune(var: impl Fn(&str) -> Option<String>) -> bool {
    USER_VARS.iter().all(|v| var(v).is_none())
}

/// Serves every allocation from the heap and keeps freed memory (see the module text); does
/// nothing when the user set glibc's variables, or off glibc. Call it first, before any thread.
pub fn keep_freed_memory() {
    if !should_tune(|v| std::env::var_os(v).map(|s| s.to_string_lossy().into_owned())) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; called before other threads start.
    unsafe {
        // No chunk is ever mmap'd on its own (the threshold is then moot)...
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // ...and freed memory stays in the heap.
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_own_allocator_settings_stand() {
        assert!(should_tune(|_| None));
        for var in USER_VARS {
            assert!(!should_tune(|v| (v == var).then(|| "0".to_string())), "{var} set by the user");
        }
        assert!(should_tune(|v| (v == "MALLOC_ARENA_MAX").then(|| "2".to_string())), "a variable masklab does not set");
    }
}
