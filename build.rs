//! Links libtorch so that `target/*/masklab` runs with no environment variables.
//!
//! torch-sys adds `-ltorch_cuda`, but the linker's default `--as-needed` drops it because no
//! symbol of ours refers to it; without it libtorch never registers its CUDA backend and
//! `Cuda::is_available()` is false even on a GPU machine. We re-add it inside
//! `--no-as-needed`, and set an rpath to libtorch's folder (the `.venv` torch install).
//!
//! It also compiles `csrc/c10d_shim.cpp`, masklab's C interface to libtorch's distributed engine
//! (c10d: TCPStore, Gloo, NCCL), the way torch-sys compiles its own wrapper (see `compile_c10d`),
//! and `csrc/autocast_shim.cpp`, autocast on the CPU as on CUDA (see `compile_autocast`).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = Path::new(&lib);
    compile_c10d(lib_dir);
    compile_autocast(lib_dir);
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

/// Compiles the c10d shim with torch-sys' flags (C++17, its `_GLIBCXX_USE_CXX11_ABI`, the wheel's
/// include folders). Gloo is always there (libtorch_cpu); the NCCL part (`csrc/c10d_nccl.cpp`)
/// only when libtorch has CUDA and the CUDA runtime, CRT, CCCL and NCCL headers are found,
/// so that a CPU-only libtorch still builds. `MASKLAB_NCCL=0` leaves NCCL out on purpose.
fn compile_c10d(lib_dir: &Path) {
    for file in ["c10d_shim.cpp", "c10d_shim.h", "c10d_nccl.cpp"] {
        println!("cargo:rerun-if-changed=csrc/{file}");
    }
    println!("cargo:rerun-if-changed=csrc/gloo_decl");
    println!("cargo:rerun-if-env-changed=MASKLAB_NCCL");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let torch = lib_dir.parent().unwrap_or(lib_dir);
    let include = torch.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include("csrc")
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-DUSE_C10D_GLOO")
        .file("csrc/c10d_shim.cpp");
    // The wheel ships ProcessGroupGloo.hpp but not gloo's headers: declarations of the names it uses.
    if !include.join("gloo/context.h").exists() {
        build.include("csrc/gloo_decl");
    }
    let nccl_wanted = std::env::var("MASKLAB_NCCL").map_or(true, |v| v != "0");
    if nccl_wanted && lib_dir.join("libtorch_cuda.so").exists() {
        match nccl_includes(torch) {
            Ok(dirs) => {
                build.includes(&dirs).flag("-DUSE_C10D_NCCL").flag("-DMASKLAB_C10D_NCCL").file("csrc/c10d_nccl.cpp");
                // c10::cuda::set_device lives in libc10_cuda, which torch-sys does not link itself.
                println!("cargo:rustc-link-lib=dylib=c10_cuda");
            }
            Err(missing) => {
                println!(
                    "cargo:warning=masklab builds without the NCCL backend: no {missing} beside libtorch \
                     (scripts/setup.sh installs the CUDA headers; MASKLAB_NCCL=0 silences this)"
                );
                // Build again once the headers are installed there.
                if let Some(nvidia) = torch.parent().map(|site| site.join("nvidia")).filter(|d| d.is_dir()) {
                    println!("cargo:rerun-if-changed={}", nvidia.display());
                }
            }
        }
    }
    build.compile("masklab_c10d");
}

/// Compiles `csrc/autocast_shim.cpp` (autocast on any device: CPU bf16 too) with torch-sys' flags.
fn compile_autocast(lib_dir: &Path) {
    println!("cargo:rerun-if-changed=csrc/autocast_shim.cpp");
    let include = lib_dir.parent().unwrap_or(lib_dir).join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/autocast_shim.cpp")
        .compile("masklab_autocast");
}

/// torch-sys' rule: asked from the .venv's python with LIBTORCH_USE_PYTORCH, else LIBTORCH_CXX11_ABI or 1.
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
        let answer = std::process::Command::new(python)
            .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string());
        if let Some(abi @ ("0" | "1")) = answer.as_deref() {
            return abi.to_string();
        }
    }
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string())
}

/// Include folders holding nccl.h and the CUDA headers that ProcessGroupNCCL.hpp needs: the pip
/// packages beside torch (nvidia/nccl, nvidia/cu13 or nvidia/cuda_runtime + cuda_cccl), else a
/// CUDA toolkit (CUDA_HOME, /usr/local/cuda). Err names the first header not found.
fn nccl_includes(torch: &Path) -> Result<Vec<PathBuf>, &'static str> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(site) = torch.parent() {
        let nvidia = site.join("nvidia");
        for sub in ["nccl/include", "cu13/include", "cu13/include/cccl", "cuda_runtime/include", "cuda_cccl/include", "cuda_nvcc/include"] {
            candidates.push(nvidia.join(sub));
        }
    }
    for root in [std::env::var("CUDA_HOME").ok(), Some("/usr/local/cuda".to_string())].into_iter().flatten() {
        candidates.push(Path::new(&root).join("include"));
        candidates.push(Path::new(&root).join("include/cccl"));
    }
    candidates.retain(|dir| dir.is_dir());
    for header in ["nccl.h", "cuda_runtime_api.h", "crt/host_defines.h", "nv/target"] {
        if !candidates.iter().any(|dir| dir.join(header).exists()) {
            return Err(header);
        }
    }
    Ok(candidates)
}
