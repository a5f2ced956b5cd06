//! Seeded synthetic datasets.
//!
//! Every generator is a pure function of its parameters and a seed: the
//! worker passes the trial seed, so the data of a trial is reproducible and
//! two configurations compared on the same seed see the same data.
//!
//! - [`fusion_classification`]: small sequence classification where fusion
//!   matters.
//! - [`synthetic_erc`]: IEMOCAP/MELD-shaped dialogues where context
//!   (emotional inertia) and fusion matter.
//! - [`synthetic_msa`]: MOSI/MOSEI-shaped sentiment regression with shared
//!   and modality-specific signal and unaligned lengths.
//!
//! Parameter structs deserialise from a sweep file's `[dataset]` table
//! (`deny_unknown_fields`; every field optional).

mod check;
mod erc;
mod fusion;
mod msa;

pub use check::{
    GENERATORS, KINDS, MAX_GENERATED_BYTES, check_dataset, empty_validation, labels, params,
};

pub use erc::{ErcParams, ErcPreset, IEMOCAP_FREQS, MELD_FREQS, synthetic_erc};
pub use fusion::{FusionParams, fusion_classification};
pub use msa::{MsaParams, MsaPreset, synthetic_msa};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Derives an independent RNG stream for one purpose (`stream`) of one seed.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
