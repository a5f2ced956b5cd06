//! Datasets and evaluation metrics for sigsweep's workloads.
//!
//! Everything here is plain Rust over `Vec<f32>`: no tensor library, so the
//! readers, generators and metrics build and test in seconds and the worker
//! turns them into burn tensors at the edge.
//!
//! Layout:
//! - [`seq`]: sequence-level datasets (one sample = text/audio/vision sequences
//!   and a label), the shape of CMU-MOSI/MOSEI (MMSA files) and of the
//!   quickstart's synthetic task.
//! - [`erc`]: dialogue datasets for emotion recognition in conversation (one
//!   sample = a dialogue of utterances with speakers and emotion labels), the
//!   shape of the MMGCN/MM-DFN IEMOCAP, MELD and M3ED files.
//! - [`synthetic`]: seeded generators for both shapes.
//! - [`pickle`]: a safe reader for Python pickles of numpy arrays (protocols
//!   0–5, Python 2 and 3), the container of every published feature file.
//! - [`formats`]: loaders from those files into [`seq::SeqDataset`] and
//!   [`erc::ErcDataset`], format detection, and `inspect` summaries.
//! - [`folds`]: cross-validation folds (leave-one-session-out, seeded k-fold).
//! - [`DataError`] (`error.rs`): what went wrong, naming the file.
//! - [`metrics`]: accuracy/F1 (scikit-learn conventions) and the MMSA
//!   regression metrics, checked against `shared/golden/metrics.json`.

pub mod erc;
mod error;
pub mod folds;
pub mod formats;
pub mod metrics;
pub mod pickle;
pub mod seq;
pub mod synthetic;

pub use error::{DataError, Result};
