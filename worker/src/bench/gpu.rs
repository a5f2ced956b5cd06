//! GPU utilisation and memory, sampled with `nvidia-smi` during a benchmark.

use crate::backend::BackendKind;

/// Samples `nvidia-smi` while alive (CUDA runs only).
pub(super) struct GpuSampler {
    child: std::process::Child,
}

impl GpuSampler {
    pub(super) fn start(backend: BackendKind) -> Option<Self> {
        if backend != BackendKind::Cuda {
            return None;
        }
        std::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
            .map(|child| Self { child })
    }

    /// Mean utilisation (%) and peak memory (MiB) over the samples.
    pub(super) fn stop(mut self) -> (Option<f64>, Option<f64>) {
        let _ = self.child.kill();
        let Ok(out) = self.child.wait_with_output() else {
            return (None, None);
        };
        let mut util = Vec::new();
        let mut mem: f64 = 0.0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut it = line.split(',').map(str::trim);
            if let (Some(u), Some(m)) = (it.next(), it.next())
                && let (Ok(u), Ok(m)) = (u.parse::<f64>(), m.parse::<f64>())
            {
                util.push(u);
                mem = mem.max(m);
            }
        }
        if util.is_empty() {
            return (None, None);
        }
        (
            Some(util.iter().sum::<f64>() / util.len() as f64),
            Some(mem),
        )
    }
}
