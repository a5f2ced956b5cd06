//! Whether a trial's model fits in this machine's memory, decided before
//! the model takes any.
//!
//! A model's size follows the sweep's widths (the schema bounds each, up to
//! 8 192) and the dataset's feature dims (only the file bounds them): MMIC
//! with `hidden = 8192` has billions of parameters, and an ERC file of two
//! utterances with 10⁷-dim text features makes its input projection 10⁷ ×
//! 200. Training such a model on the CPU would have the kernel kill the
//! worker process (or Rust abort it on a failed allocation) with nothing
//! said about why. burn initialises parameters lazily, so their count is
//! known from their shapes before any is drawn ([`parameter_count`]); a
//! model whose parameters, gradients and optimiser moments alone exceed the
//! memory available fails its trial here, saying how large it is and why.
//!
//! The check is a lower bound (activations come on top), so it never
//! refuses a model that could train. It applies to the CPU backend, whose
//! tensors live in this process; a GPU's memory is the device's business
//! (an out-of-memory there fails the trial as a backend error).

use burn::module::Module;
use burn::prelude::Backend;

use super::error::TrainError;
use crate::tensor::{materialize, on_ndarray, parameter_count};

/// Bytes one parameter takes while it trains, at least: its `f32` value, its
/// gradient and the optimiser's two moments (Adam, AdamW).
pub const TRAINING_BYTES_PER_PARAMETER: u64 = 16;

/// Draws every parameter of `model` ([`materialize`]) once it is known to
/// fit: on the CPU backend, a model whose training state alone
/// ([`TRAINING_BYTES_PER_PARAMETER`] per parameter) exceeds the memory
/// available fails with [`TrainError::Memory`] before anything is
/// allocated. `dims` are the dataset's feature dims (text, audio, visual),
/// which size the model's input layers: the message names them.
pub fn materialize_within_memory<B: Backend, M: Module<B>>(
    model: &M,
    device: &B::Device,
    dims: [usize; 3],
) -> Result<(), TrainError> {
    check_within_memory::<B, M>(model, device, 1, dims)?;
    materialize::<B, M>(model);
    Ok(())
}

/// Checks, without drawing any parameter, that `copies` models like
/// `model` (the seeds of a fused group) fit in the memory available, on
/// the CPU backend (see [`materialize_within_memory`]). `dims` are the
/// dataset's feature dims (text, audio, visual), named in the message.
pub fn check_within_memory<B: Backend, M: Module<B>>(
    model: &M,
    device: &B::Device,
    copies: usize,
    dims: [usize; 3],
) -> Result<(), TrainError> {
    if !on_ndarray::<B>(device) {
        return Ok(());
    }
    let parameters = parameter_count::<B, M>(model).saturating_mul(copies as u64);
    let inputs = format!(
        "text {}, audio {}, visual {}{}",
        dims[0],
        dims[1],
        dims[2],
        if copies > 1 {
            format!("; {copies} seeds fused")
        } else {
            String::new()
        }
    );
    check_fits(parameters, available_memory(), &inputs)
}

/// Whether a model of `parameters` can train in `available` bytes (`None`:
/// unknown, not checked).
pub fn check_fits(parameters: u64, available: Option<u64>, inputs: &str) -> Result<(), TrainError> {
    let Some(available) = available else {
        return Ok(());
    };
    let needed = parameters.saturating_mul(TRAINING_BYTES_PER_PARAMETER);
    if needed <= available {
        return Ok(());
    }
    Err(TrainError::Memory(format!(
        "the model has {parameters} parameters, at least {} with their gradients and \
         optimiser state, and this machine has {} available; its widths come from the \
         trial's parameters and its input layers from the dataset's feature dims ({inputs})",
        gib(needed),
        gib(available),
    )))
}

/// Memory this process can still take, in bytes: the system's available
/// memory (sysinfo: `MemAvailable`, free memory plus the cache the kernel
/// can drop), or what the process's cgroup still allows where that is
/// less (a container's limit, [`cgroup_room`]). `None` where the platform says nothing.
pub fn available_memory() -> Option<u64> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let host = Some(system.available_memory()).filter(|&b| b > 0);
    match (host, cgroup_room()) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
}

/// What the cgroup of this process still allows, where it has a memory
/// limit (cgroup v2, or v1's memory controller). sysinfo's cgroup figure
/// counts the cgroup's page cache as used, so a container that has read
/// its dataset files would look full; here the cache the kernel reclaims
/// first (inactive file pages) is not counted, as Kubernetes counts a
/// container's working set.
fn cgroup_room() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = std::path::Path::new("/sys/fs/cgroup");
    let read = |dir: &std::path::Path, name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let under = |base: &std::path::Path, path: &str| base.join(path.trim().trim_start_matches('/'));
    // v2: one line `0::/path`.
    if let Some(path) = cgroups.lines().find_map(|l| l.strip_prefix("0::")) {
        let dir = under(root, path);
        if let (Some(max), Some(current), Some(stat)) = (
            read(&dir, "memory.max"),
            read(&dir, "memory.current"),
            read(&dir, "memory.stat"),
        ) {
            return room(&max, &current, &stat, "inactive_file");
        }
    }
    // v1: `N:memory:/path` (or `N:…,memory,…:/path`).
    let path = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })?;
    let dir = under(&root.join("memory"), path);
    room(
        &read(&dir, "memory.limit_in_bytes")?,
        &read(&dir, "memory.usage_in_bytes")?,
        &read(&dir, "memory.stat")?,
        "total_inactive_file",
    )
}

/// A cgroup's room from its limit, its usage and its `memory.stat` (whose
/// `inactive` line counts reclaimable page cache): the limit less what it
/// holds besides that cache. `None` without a limit (v2's `max`) or for
/// unreadable numbers; v1's "no limit" is a huge number, which the host's
/// figure then undercuts.
fn room(limit: &str, usage: &str, stat: &str, inactive: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    let usage: u64 = usage.trim().parse().ok()?;
    let cache = stat
        .lines()
        .find_map(|l| l.strip_prefix(inactive)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some(limit.saturating_sub(usage.saturating_sub(cache)))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_fits_up_to_the_memory_available() {
        let gib = 1u64 << 30;
        assert!(check_fits(gib / 16, Some(gib), "text 100").is_ok());
        assert!(check_fits(1, None, "text 100").is_ok());
        let err = check_fits(gib / 16 + 1, Some(gib), "text 100, audio 4").unwrap_err();
        assert!(
            !err.is_deterministic(),
            "another machine may have the memory"
        );
        let msg = err.to_string();
        for part in [
            "not enough memory",
            "67108865 parameters",
            "at least 1.0 GiB",
            "1.0 GiB available",
            "(text 100, audio 4)",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg:?}");
        }
        // A count past u64 bytes saturates rather than wrapping to a small number.
        assert!(check_fits(u64::MAX / 2, Some(u64::MAX - 1), "").is_err());
    }

    #[test]
    fn a_cgroups_page_cache_is_room() {
        let v2 = "anon 1000\nfile 5000\nactive_file 1000\ninactive_file 4000\n";
        assert_eq!(room("10000\n", "6000\n", v2, "inactive_file"), Some(8000));
        assert_eq!(
            room("max\n", "6000\n", v2, "inactive_file"),
            None,
            "no limit"
        );
        assert_eq!(
            room("10000", "12000", "inactive_file 1000", "inactive_file"),
            Some(0)
        );
        assert_eq!(room("10000", "3000", "", "inactive_file"), Some(7000));
        // v1 names the hierarchy's total; its own `inactive_file` is not it.
        let v1 = "inactive_file 10\ntotal_inactive_file 4000\n";
        assert_eq!(room("10000", "6000", v1, "total_inactive_file"), Some(8000));
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let bytes = available_memory().expect("Linux reports available memory");
        assert!(bytes > 1 << 20, "{bytes} bytes available");
    }
}
