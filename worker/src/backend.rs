//! burn backends.
//!
//! The CPU backend (ndarray) is always built; the CUDA backend only with the
//! `cuda` feature. burn is pinned to 0.21: burn-cuda 0.22+ pulls a crate that
//! downloads LLVM during the build and cannot build offline, while 0.21
//! builds without a CUDA toolkit and loads the driver at run time.

use std::fmt;
use std::str::FromStr;

/// The CPU training backend.
pub type Cpu = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

/// The CUDA training backend.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Autodiff<burn::backend::Cuda<f32>>;

/// Which backend a worker trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    #[default]
    Cpu,
    Cuda,
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(format!("unknown backend `{other}`: expected cpu or cuda")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

/// Checks that a backend can be used here; a clear message when not.
pub fn check_available(kind: BackendKind) -> Result<(), String> {
    match kind {
        BackendKind::Cpu => Ok(()),
        BackendKind::Cuda => cuda_available(),
    }
}

#[cfg(feature = "cuda")]
fn cuda_available() -> Result<(), String> {
    if cudarc_present() {
        Ok(())
    } else {
        Err("the cuda backend was asked for, but no CUDA driver (libcuda.so) was found on this machine".into())
    }
}

#[cfg(feature = "cuda")]
fn cudarc_present() -> bool {
    // Probe for the driver library without initialising CUDA (burn-cuda
    // panics at first use when it is missing).
    ["libcuda.so.1", "libcuda.so"].iter().any(|name| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ldconfig -p 2>/dev/null | grep -q '{name}'"))
            .status()
            .is_ok_and(|s| s.success())
    }) || std::path::Path::new("/usr/lib/x86_64-linux-gnu/libcuda.so.1").exists()
        || std::path::Path::new("/usr/local/nvidia/lib64/libcuda.so.1").exists()
}

#[cfg(not(feature = "cuda"))]
fn cuda_available() -> Result<(), String> {
    Err("this sigsweep was built without CUDA support: rebuild with `cargo build --release --features cuda`".into())
}

/// Sets the number of compute threads of the CPU backend (rayon and the
/// matrix-multiplication pool). Call once, before any training.
pub fn set_cpu_threads(threads: usize) {
    // matrixmultiply sizes its pool from MATMUL_NUM_THREADS (default 1);
    // rayon's global pool is set here.
    let _ = rayon_pool(threads.max(1));
}

fn rayon_pool(threads: usize) -> Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| e.to_string())
}
