//! Links libtorch so that `target/*/masklab` runs with no environment variables.
//!
//! torch-sys adds `-ltorch_cuda`, but the linker's default `--as-needed` drops it because no
//! symbol of ours refers to it; without it libtorch never registers its CUDA backend and
//! `Cuda::is_available()` is false even on a GPU machine. We re-add it inside
//! `--no-as-needed`, and set an rpath to libtorch's folder (the `.venv` torch install).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = Path::new(&lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // The wheel's torch/version.py names the exact build (e.g. 2.11.0+cu130): report it in --version.
    let version = std::fs::read_to_string(lib_dir.join("../version.py"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string()))
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MASKLAB_LIBTORCH_VERSION={version}");
}
