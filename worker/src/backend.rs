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

impl BackendKind {
    /// How this build computes on the backend, for a trial's record (what
    /// decides whether the same seed gives the same bits): on CUDA, burn's
    /// `cuda` feature brings burn-cuda without `autotune`, so every kernel
    /// choice is fixed at build time, and kernel fusion only with the
    /// `cuda-fusion` feature. `None` on the CPU, where the backend has no
    /// such choice.
    pub fn numerics(self) -> Option<&'static str> {
        match self {
            Self::Cpu => None,
            Self::Cuda if cfg!(feature = "cuda-fusion") => {
                Some("burn-cuda kernels fixed at build time (no autotune), kernel fusion on")
            }
            Self::Cuda => {
                Some("burn-cuda kernels fixed at build time (no autotune), no kernel fusion")
            }
        }
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
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // Probe for the driver library without initialising CUDA (burn-cuda
    // panics at first use when it is missing). SAFETY: this only tries to
    // dlopen the driver library under its usual names.
    #[allow(unsafe_code)]
    let probe = || unsafe { cudarc::driver::sys::is_culib_present() };
    *PRESENT.get_or_init(probe)
}

#[cfg(not(feature = "cuda"))]
fn cuda_available() -> Result<(), String> {
    Err("this sigsweep was built without CUDA support: rebuild with `cargo build --release --features cuda`".into())
}

/// CUDA device indices of this process's GPUs (see [`set_cuda_gpus`]);
/// empty = GPU `i` is device `i`.
static CUDA_ORDINALS: std::sync::RwLock<Vec<usize>> = std::sync::RwLock::new(Vec::new());

/// The CUDA device indices (in this process's view) of a worker's GPUs
/// `gpus`, given the process's `CUDA_VISIBLE_DEVICES` (`visible`):
/// - set with exactly one entry per GPU: the process sees exactly its GPUs
///   (the slot supervisor and Kubernetes' device plugin narrow it so), so
///   they are devices `0..n` in order, whatever their names;
/// - otherwise: the ordinals themselves (relative to the visible list, as
///   CUDA numbers devices) — an unsupervised worker with `--gpus 2,3`
///   trains on devices 2 and 3.
pub fn cuda_ordinals(gpus: &[u32], visible: Option<&str>) -> Vec<usize> {
    let narrowed = visible
        .and_then(|list| count_visible(list).ok())
        .is_some_and(|n| n as usize == gpus.len());
    if narrowed {
        (0..gpus.len()).collect()
    } else {
        gpus.iter().map(|&g| g as usize).collect()
    }
}

/// Records which CUDA devices this process trains on: a worker's GPU list
/// (`--gpus`), mapped by [`cuda_ordinals`] with this process's
/// `CUDA_VISIBLE_DEVICES`. Call once at start-up, before any training.
pub fn set_cuda_gpus(gpus: &[u32]) {
    let ordinals = cuda_ordinals(gpus, std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref());
    *CUDA_ORDINALS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = ordinals;
}

/// `CUDA_VISIBLE_DEVICES` for a training program that gets this process's
/// first `g` GPUs: their entries in this process's own
/// `CUDA_VISIBLE_DEVICES` (physical ids or UUIDs), or their ordinals when it
/// has none; empty (no GPU) for `g = 0`.
pub fn visible_devices(g: usize) -> String {
    let own = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let entries: Vec<String> = own
        .as_deref()
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    (0..g)
        .map(|i| {
            let o = cuda_ordinal(i);
            entries.get(o).cloned().unwrap_or_else(|| o.to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The CUDA device index of this process's `i`-th GPU (a single-GPU trial
/// uses `i = 0`; a data-parallel trial `0..g`).
pub fn cuda_ordinal(i: usize) -> usize {
    CUDA_ORDINALS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(i)
        .copied()
        .unwrap_or(i)
}

/// The burn device of this process's `i`-th GPU, or why there is none (no
/// driver; fewer devices than asked for). Trainers call this before any
/// CUDA work: burn-cuda panics where this returns an error.
#[cfg(feature = "cuda")]
pub fn cuda_device(i: usize) -> Result<burn::backend::cuda::CudaDevice, String> {
    use burn::tensor::backend::Backend;
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    cuda_available()?;
    let index = cuda_ordinal(i);
    let count = *COUNT.get_or_init(|| Cuda::device_count(0));
    if index >= count {
        return Err(format!(
            "GPU {i} of this worker is CUDA device {index}, but this process sees {count} device(s) (check --gpus, gpus_per_trial and CUDA_VISIBLE_DEVICES)"
        ));
    }
    Ok(burn::backend::cuda::CudaDevice { index })
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

/// burn's CPU backend keeps one process-wide RNG (seeded per trial), so
/// trials in one process run one at a time: every strategy holds this while
/// it seeds the backend and trains. Code that seeds it and builds models
/// outside the strategies (tests, benchmarks) must hold it too. It is not
/// reentrant: do not hold it around a strategy.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the process-wide training lock (see [`TRAINING`]).
pub fn training_guard() -> std::sync::MutexGuard<'static, ()> {
    TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::{count_visible, cuda_ordinals};

    #[test]
    fn gpus_map_to_cuda_devices() {
        // Unsupervised worker, nothing narrowed: the ordinals themselves.
        assert_eq!(cuda_ordinals(&[2, 3], None), vec![2, 3]);
        // A slot pinned to physical GPU 3: its only visible device.
        assert_eq!(cuda_ordinals(&[3], Some("3")), vec![0]);
        assert_eq!(cuda_ordinals(&[1], Some("GPU-5f3a")), vec![0]);
        // Narrowed to exactly the worker's GPUs (device plugin).
        assert_eq!(cuda_ordinals(&[0, 1], Some("4,5")), vec![0, 1]);
        // More visible than used: relative to the visible list.
        assert_eq!(cuda_ordinals(&[2, 3], Some("4,5,6,7")), vec![2, 3]);
        assert_eq!(cuda_ordinals(&[], None), Vec::<usize>::new());
    }

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
