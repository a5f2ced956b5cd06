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

/// How many CUDA devices this process may use (`--gpus all`): the entries
/// of `CUDA_VISIBLE_DEVICES` when it is set (Kubernetes' device plugin and
/// the worker's slot supervisor set it), else the GPUs `nvidia-smi -L`
/// lists, else the driver's count (this last one opens a CUDA context on
/// GPU 0).
pub fn visible_gpus() -> Result<u32, String> {
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return count_visible(&list);
    }
    if let Ok(out) = std::process::Command::new("nvidia-smi").arg("-L").output()
        && out.status.success()
    {
        let n = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("GPU "))
            .count();
        if n > 0 {
            return Ok(n as u32);
        }
    }
    driver_gpu_count()
}

/// The devices named by a `CUDA_VISIBLE_DEVICES` value.
pub fn count_visible(list: &str) -> Result<u32, String> {
    let n = list
        .split(',')
        .map(str::trim)
        .take_while(|s| !s.is_empty() && !s.starts_with('-'))
        .count();
    if n == 0 {
        Err(format!(
            "CUDA_VISIBLE_DEVICES=`{list}` hides every GPU: set it to the GPUs to use, or pass --gpus"
        ))
    } else {
        Ok(n as u32)
    }
}

#[cfg(feature = "cuda")]
fn driver_gpu_count() -> Result<u32, String> {
    use burn::tensor::backend::Backend;
    cuda_available()?;
    match Cuda::device_count(0) {
        0 => Err("the CUDA driver reports no GPU".into()),
        n => Ok(n as u32),
    }
}

#[cfg(not(feature = "cuda"))]
fn driver_gpu_count() -> Result<u32, String> {
    cuda_available().map(|()| 0)
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

#[cfg(test)]
mod tests {
    use super::count_visible;

    #[test]
    fn cuda_visible_devices_is_counted_like_the_driver_does() {
        assert_eq!(count_visible("0"), Ok(1));
        assert_eq!(count_visible("2,3"), Ok(2));
        assert_eq!(count_visible("GPU-8f6c,GPU-1a2b"), Ok(2));
        // The driver stops at the first invalid entry.
        assert_eq!(count_visible("1,-1,2"), Ok(1));
        assert!(count_visible("").is_err());
        assert!(count_visible("-1").is_err());
    }
}
