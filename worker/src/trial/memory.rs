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
use crate::tensor::{materialize, on_host, parameter_count};

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
    if !on_host::<B>(device) {
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
/// memory, or its cgroup's free memory where that is less (a container's
/// limit). `None` where the platform says nothing.
pub fn available_memory() -> Option<u64> {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    let host = Some(system.available_memory()).filter(|&b| b > 0);
    let cgroup = system.cgroup_limits().map(|c| c.free_memory);
    match (host, cgroup) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
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
    fn this_machine_reports_its_memory() {
        let bytes = available_memory().expect("Linux reports available memory");
        assert!(bytes > 1 << 20, "{bytes} bytes available");
    }
}
