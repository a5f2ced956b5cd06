//! Per-epoch checkpoints: what an interrupted trial resumes from
//! (`[training] save = ["checkpoints"]`).
//!
//! After every epoch the plain strategy writes the trial's whole state — the
//! weights and the optimiser state (burn records, full precision), the RNG
//! positions, the epoch counter, the epoch selector and the predictions kept
//! so far — to `ARTIFACTS/checkpoints/<trial_id>/`. A trial that starts and
//! finds a checkpoint there (the same trial, leased again after its worker
//! died, drained or lost its lease) goes on from the epoch after it. Every
//! random draw of an epoch derives from the trial seed and the epoch number
//! ([`epoch_seed`]), so on the CPU a resumed trial ends bitwise equal to an
//! uninterrupted one.
//!
//! Layout: one directory per saved epoch (`epoch-<n>/state.json` and one
//! `<part>.bin` per record) and a `latest` file naming the newest, replaced
//! atomically (written aside, then renamed); older epochs are removed after.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::outcome::{Prediction, SelectorState};
use super::weights::Weights;

/// The selected epoch's weights in a checkpoint.
const BEST_WEIGHTS: &str = "best.safetensors";

/// A workload's state after an epoch: named binary parts (burn records of
/// the model and of each optimiser) and the rest as JSON (RNG positions,
/// counters).
#[derive(Debug, Clone, Default)]
pub struct WorkloadState {
    pub parts: Vec<(String, Vec<u8>)>,
    pub meta: serde_json::Value,
}

impl WorkloadState {
    /// The part named `name`.
    pub fn part(&self, name: &str) -> Result<&[u8], TrainError> {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| TrainError::Backend(format!("checkpoint lacks `{name}`")))
    }

    /// The meta field `key` as `T`.
    pub fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, TrainError> {
        serde_json::from_value(self.meta.get(key).cloned().unwrap_or_default())
            .map_err(|e| TrainError::Backend(format!("checkpoint field `{key}`: {e}")))
    }
}

/// The seed of epoch `epoch`'s random draws (dropout) of a trial with seed
/// `seed`: the backend is re-seeded with it when the epoch starts, so an
/// epoch's draws do not depend on how the trial got there.
pub fn epoch_seed(seed: u64, epoch: u32) -> u64 {
    // SplitMix64 of the pair.
    let mut z = seed ^ u64::from(epoch).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The epoch counter of a workload: [`EpochSeed::start`] re-seeds the
/// backend for the next epoch (see [`epoch_seed`]); a checkpoint keeps the
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSeed {
    pub seed: u64,
    /// Epochs started so far.
    pub started: u32,
}

impl EpochSeed {
    pub fn new(seed: u64) -> Self {
        Self { seed, started: 0 }
    }

    /// Starts the next epoch on the calling (training) thread: its dropout
    /// masks come from the seed, the epoch and the call
    /// ([`crate::tensor::draws`]), any other random draw of the backend
    /// from [`epoch_seed`] of it.
    pub fn start<B: Backend>(&mut self, device: &B::Device) {
        self.started += 1;
        B::seed(device, epoch_seed(self.seed, self.started));
        crate::tensor::draws::start_epoch(&[self.seed], self.started);
    }
}

/// The position of a ChaCha RNG, for a checkpoint (a `u128` as text).
pub fn rng_position(rng: &rand_chacha::ChaCha8Rng) -> String {
    rng.get_word_pos().to_string()
}

/// Moves `rng` (built afresh from its seed and stream) to a checkpoint's
/// [`rng_position`].
pub fn set_rng_position(
    rng: &mut rand_chacha::ChaCha8Rng,
    position: &str,
) -> Result<(), TrainError> {
    let pos: u128 = position
        .parse()
        .map_err(|e| TrainError::Backend(format!("checkpoint RNG position `{position}`: {e}")))?;
    rng.set_word_pos(pos);
    Ok(())
}

/// A burn record as bytes (bincode, full precision: f32 weights exactly).
pub fn record_bytes<B: Backend, R: Record<B>>(record: R) -> Result<Vec<u8>, TrainError> {
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(record, ())
        .map_err(|e| TrainError::Backend(format!("cannot record the state: {e}")))
}

/// A burn record from [`record_bytes`].
pub fn record_from<B: Backend, R: Record<B>>(
    bytes: &[u8],
    device: &B::Device,
) -> Result<R, TrainError> {
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes.to_vec(), device)
        .map_err(|e| TrainError::Backend(format!("cannot read a checkpoint record: {e}")))
}

/// The checkpoint state of a trainer made of a model, its optimisers
/// (`optim-<name>` parts), the RNGs it draws from (`rng-<name>`) and its
/// epoch counter: what every built-in workload saves.
pub fn save_trainer<B, M, O>(
    model: &M,
    optims: &[(&str, &O)],
    rngs: &[(&str, &rand_chacha::ChaCha8Rng)],
    epoch: &EpochSeed,
) -> Result<WorkloadState, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let mut parts = vec![(
        "model".to_string(),
        record_bytes::<B, _>(model.clone().into_record())?,
    )];
    for (name, o) in optims {
        parts.push((
            format!("optim-{name}"),
            record_bytes::<B, _>(o.to_record())?,
        ));
    }
    let mut meta = serde_json::Map::new();
    meta.insert("epoch".into(), epoch.started.into());
    for (name, r) in rngs {
        meta.insert(format!("rng-{name}"), rng_position(r).into());
    }
    Ok(WorkloadState {
        parts,
        meta: meta.into(),
    })
}

/// Restores what [`save_trainer`] saved: returns the model with the saved
/// weights and puts the optimisers, RNGs and epoch counter where they were.
pub fn restore_trainer<B, M, O>(
    state: &WorkloadState,
    model: M,
    optims: &mut [(&str, &mut O)],
    rngs: &mut [(&str, &mut rand_chacha::ChaCha8Rng)],
    epoch: &mut EpochSeed,
    device: &B::Device,
) -> Result<M, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B> + Clone,
{
    let model = model.load_record(record_from::<B, _>(state.part("model")?, device)?);
    for (name, o) in optims.iter_mut() {
        let record = record_from::<B, _>(state.part(&format!("optim-{name}"))?, device)?;
        **o = o.clone().load_record(record);
    }
    for (name, r) in rngs.iter_mut() {
        set_rng_position(r, &state.meta::<String>(&format!("rng-{name}"))?)?;
    }
    epoch.started = state.meta("epoch")?;
    Ok(model)
}

/// One saved epoch of a trial.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The last finished epoch.
    pub epoch: u32,
    pub selector: SelectorState,
    pub predictions: Option<Vec<Prediction>>,
    /// The selected epoch's weights kept so far (`best.safetensors`).
    pub weights: Option<Weights>,
    pub workload: WorkloadState,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    epoch: u32,
    selector: SelectorState,
    #[serde(default)]
    predictions: Option<Vec<Prediction>>,
    #[serde(default)]
    weights: bool,
    meta: serde_json::Value,
    parts: Vec<String>,
}

fn io(what: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Backend(format!("checkpoint {}: {e}", what.display()))
}

impl Checkpoint {
    /// Writes this checkpoint into `dir` (a trial's checkpoint directory)
    /// and makes it the one a restart reads.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let name = format!("epoch-{}", self.epoch);
        let target = dir.join(&name);
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
        for (part, bytes) in &self.workload.parts {
            let path = target.join(format!("{part}.bin"));
            std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        }
        let state = StateFile {
            epoch: self.epoch,
            selector: self.selector.clone(),
            predictions: self.predictions.clone(),
            weights: self.weights.is_some(),
            meta: self.workload.meta.clone(),
            parts: self.workload.parts.iter().map(|(n, _)| n.clone()).collect(),
        };
        if let Some(w) = &self.weights {
            let path = target.join(BEST_WEIGHTS);
            std::fs::write(&path, w.to_safetensors()?).map_err(|e| io(&path, e))?;
        }
        let path = target.join("state.json");
        let text = serde_json::to_vec(&state).map_err(|e| io(&path, e))?;
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        let latest = dir.join("latest");
        let aside = dir.join(".latest.tmp");
        std::fs::write(&aside, &name).map_err(|e| io(&aside, e))?;
        std::fs::rename(&aside, &latest).map_err(|e| io(&latest, e))?;
        // Older epochs are no longer needed.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let n = entry.file_name().to_string_lossy().to_string();
                if n.starts_with("epoch-") && n != name {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }

    /// The checkpoint `dir` holds, if any.
    pub fn load(dir: &Path) -> Result<Option<Self>, TrainError> {
        let latest = dir.join("latest");
        let name = match std::fs::read_to_string(&latest) {
            Ok(n) => n.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&latest, e)),
        };
        if !name.starts_with("epoch-") || name.contains(['/', '\\']) || name.contains("..") {
            return Err(io(&latest, format!("names `{name}`")));
        }
        let target: PathBuf = dir.join(&name);
        let path = target.join("state.json");
        let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let state: StateFile = serde_json::from_slice(&text).map_err(|e| io(&path, e))?;
        let mut parts = Vec::with_capacity(state.parts.len());
        for part in &state.parts {
            if !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(io(&path, format!("part `{part}`")));
            }
            let p = target.join(format!("{part}.bin"));
            parts.push((part.clone(), std::fs::read(&p).map_err(|e| io(&p, e))?));
        }
        let weights = if state.weights {
            let p = target.join(BEST_WEIGHTS);
            let bytes = std::fs::read(&p).map_err(|e| io(&p, e))?;
            Some(Weights::from_safetensors(&bytes)?)
        } else {
            None
        };
        Ok(Some(Self {
            epoch: state.epoch,
            weights,
            selector: state.selector,
            predictions: state.predictions,
            workload: WorkloadState {
                parts,
                meta: state.meta,
            },
        }))
    }

    /// Removes a trial's checkpoints (it finished).
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::epoch_seed;

    #[test]
    fn epoch_seeds_differ_by_epoch_and_seed() {
        assert_ne!(epoch_seed(1, 1), epoch_seed(1, 2));
        assert_ne!(epoch_seed(1, 1), epoch_seed(2, 1));
        assert_eq!(epoch_seed(7, 3), epoch_seed(7, 3));
    }
}
