//! `synthetic_msa`: MOSI/MOSEI-shaped sentiment regression.
//!
//! Each sample has a shared sentiment factor `s`, one private factor `p_m`
//! per modality and one nuisance factor `r_m` per modality, all N(0, 1). The
//! label is `y = 1.5·s + 0.6·p_text + 0.4·p_audio + 0.4·p_vision`, rounded
//! to a multiple of 1/3 (MOSI labels average three annotators on a 7-point
//! scale) and clipped to [-3, 3]. Modality `m` shows `(s, p_m, r_m)` through
//! a fixed random projection `[dim, 3]`, identical at every valid frame, plus
//! per-frame Gaussian noise: the shared part is visible everywhere, each
//! modality adds information the others lack, and averaging over time
//! recovers the evidence.
//!
//! Unaligned presets (`mosi`, `mosei`) draw `audio_lengths`/`vision_lengths`
//! uniformly in `[len/3, len]` and zero the padding frames, like MMSA's
//! unaligned files; `aligned = true` fills every frame and sets no lengths.
//! Text always fills its `len` frames.
//!
//! Memory: the MOSI preset is ≈ 110 M floats (440 MB), MOSEI ≈ 2 G floats;
//! override the counts or lengths for smaller runs.

use rand::Rng;
use rand_distr::StandardNormal;
use serde::Deserialize;

use super::rng;
use crate::seq::{Array3, SeqDataset, SeqSplit, Task};
use crate::{DataError, Result};

/// A named starting point for [`MsaParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsaPreset {
    /// text 50×768, audio 375×5, vision 500×20; 1284/229/686 samples.
    Mosi,
    /// text 50×768, audio 500×74, vision 500×35; 16326/1871/4659 samples.
    Mosei,
    /// text 8×16, audio 12×6, vision 10×8; 200/50/50 samples.
    #[default]
    Small,
}

/// Parameters of [`synthetic_msa`]: a `preset` plus optional overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MsaParams {
    pub preset: MsaPreset,
    pub n_train: Option<usize>,
    pub n_valid: Option<usize>,
    pub n_test: Option<usize>,
    /// `[len, dim]` of each modality.
    pub text: Option<[usize; 2]>,
    pub audio: Option<[usize; 2]>,
    pub vision: Option<[usize; 2]>,
    /// No padding and no lengths when true.
    pub aligned: Option<bool>,
    /// Standard deviation of per-frame noise.
    pub noise: Option<f32>,
}

#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    counts: [usize; 3],
    shapes: [[usize; 2]; 3],
    aligned: bool,
    noise: f32,
}

impl MsaParams {
    /// Checks the parameters (ranges, memory) without generating anything.
    pub(super) fn check(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    fn resolve(&self) -> Result<Spec> {
        let (name, counts, shapes) = match self.preset {
            MsaPreset::Mosi => (
                "synthetic-mosi",
                [1284, 229, 686],
                [[50, 768], [375, 5], [500, 20]],
            ),
            MsaPreset::Mosei => (
                "synthetic-mosei",
                [16326, 1871, 4659],
                [[50, 768], [500, 74], [500, 35]],
            ),
            MsaPreset::Small => (
                "synthetic-small-msa",
                [200, 50, 50],
                [[8, 16], [12, 6], [10, 8]],
            ),
        };
        let s = Spec {
            name,
            counts: [
                self.n_train.unwrap_or(counts[0]),
                self.n_valid.unwrap_or(counts[1]),
                self.n_test.unwrap_or(counts[2]),
            ],
            shapes: [
                self.text.unwrap_or(shapes[0]),
                self.audio.unwrap_or(shapes[1]),
                self.vision.unwrap_or(shapes[2]),
            ],
            aligned: self.aligned.unwrap_or(false),
            noise: self.noise.unwrap_or(1.0),
        };
        let bad = |key: &str, message: &str| {
            Err(DataError::Param {
                key: key.into(),
                message: message.into(),
            })
        };
        for (key, n) in ["n_train", "n_valid", "n_test"].into_iter().zip(s.counts) {
            if n == 0 {
                return bad(key, "every split needs at least one sample");
            }
        }
        for (key, [len, dim]) in ["text", "audio", "vision"].into_iter().zip(s.shapes) {
            if len == 0 || dim == 0 {
                return bad(key, "sequence length and dimension must be positive");
            }
        }
        if !(s.noise.is_finite() && s.noise >= 0.0) {
            return bad("noise", "must be a finite number >= 0");
        }
        let values = |[len, dim]: [usize; 2]| len.saturating_mul(dim);
        super::check::check_size(&[
            &[
                ("n_train", s.counts[0]),
                ("n_valid", s.counts[1]),
                ("n_test", s.counts[2]),
            ],
            &[
                ("text", values(s.shapes[0])),
                ("audio", values(s.shapes[1])),
                ("vision", values(s.shapes[2])),
            ],
        ])?;
        Ok(s)
    }
}

/// Label weights of `(s, p_text, p_audio, p_vision)`.
const WEIGHTS: [f32; 4] = [1.5, 0.6, 0.4, 0.4];

/// Generates the dataset for `seed`; a pure function of `params` and `seed`.
pub fn synthetic_msa(params: &MsaParams, seed: u64) -> Result<SeqDataset> {
    let s = params.resolve()?;
    let mut world = rng(seed, 21);
    // P_m: [dim, 3] over (shared, private, nuisance).
    let proj: Vec<Vec<f32>> = s
        .shapes
        .iter()
        .map(|&[_, dim]| {
            (0..dim * 3)
                .map(|_| world.sample::<f32, _>(StandardNormal) / 3f32.sqrt())
                .collect()
        })
        .collect();
    let split = |name: &str, n: usize, stream: u64| {
        let mut r = rng(seed, stream);
        let mut arrays: Vec<Array3> = s
            .shapes
            .iter()
            .map(|&[len, dim]| Array3::zeros([n, len, dim]))
            .collect();
        let mut labels = Vec::with_capacity(n);
        let mut lengths: [Vec<usize>; 2] = [Vec::with_capacity(n), Vec::with_capacity(n)];
        let mut base = Vec::new();
        for i in 0..n {
            let shared: f32 = r.sample(StandardNormal);
            let private: [f32; 3] = [
                r.sample(StandardNormal),
                r.sample(StandardNormal),
                r.sample(StandardNormal),
            ];
            let y = WEIGHTS[0] * shared
                + WEIGHTS[1] * private[0]
                + WEIGHTS[2] * private[1]
                + WEIGHTS[3] * private[2];
            labels.push(((y * 3.0).round() / 3.0).clamp(-3.0, 3.0));
            for (m, array) in arrays.iter_mut().enumerate() {
                let [_, len, dim] = array.shape;
                let nuisance: f32 = r.sample(StandardNormal);
                let z = [shared, private[m], nuisance];
                let p = &proj[m];
                base.clear();
                base.extend(
                    (0..dim).map(|d| p[d * 3] * z[0] + p[d * 3 + 1] * z[1] + p[d * 3 + 2] * z[2]),
                );
                let valid = if m == 0 || s.aligned {
                    len
                } else {
                    let lo = len.div_ceil(3).max(1);
                    let l = r.random_range(lo..=len);
                    lengths[m - 1].push(l);
                    l
                };
                let out = &mut array.data[i * len * dim..(i + 1) * len * dim];
                for (t, frame) in out.chunks_exact_mut(dim).enumerate().take(valid) {
                    let _ = t;
                    for (x, b) in frame.iter_mut().zip(&base) {
                        *x = b + s.noise * r.sample::<f32, _>(StandardNormal);
                    }
                }
            }
        }
        let vision = arrays.pop().unwrap_or_else(|| Array3::zeros([0, 0, 0]));
        let audio = arrays.pop().unwrap_or_else(|| Array3::zeros([0, 0, 0]));
        let text = arrays.pop().unwrap_or_else(|| Array3::zeros([0, 0, 0]));
        let [audio_lengths, vision_lengths] = lengths;
        SeqSplit {
            ids: (0..n).map(|i| format!("{name}-{i:05}")).collect(),
            text,
            audio,
            vision,
            audio_lengths: (!s.aligned).then_some(audio_lengths),
            vision_lengths: (!s.aligned).then_some(vision_lengths),
            labels,
        }
    };
    Ok(SeqDataset {
        name: s.name.to_string(),
        task: Task::Regression,
        train: split("train", s.counts[0], 22),
        valid: split("valid", s.counts[1], 23),
        test: split("test", s.counts[2], 24),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_preset_is_deterministic_with_lengths() {
        let p = MsaParams::default();
        let a = synthetic_msa(&p, 3).expect("gen");
        assert_eq!(a, synthetic_msa(&p, 3).expect("gen"));
        assert_ne!(
            a.train.labels,
            synthetic_msa(&p, 4).expect("gen").train.labels
        );
        assert_eq!(a.dims(), [16, 6, 8]);
        assert_eq!(a.lens(), [8, 12, 10]);
        assert_eq!((a.train.len(), a.valid.len(), a.test.len()), (200, 50, 50));
        let lengths = a.train.audio_lengths.as_ref().expect("lengths");
        for (i, &l) in lengths.iter().enumerate() {
            assert!((4..=12).contains(&l));
            let sample = a.train.audio.sample(i);
            assert!(sample[l * 6..].iter().all(|&x| x == 0.0), "padding is zero");
            assert!(sample[..l * 6].iter().any(|&x| x != 0.0));
        }
        for &y in &a.train.labels {
            assert!((-3.0..=3.0).contains(&y));
            assert!(
                ((y * 3.0).round() - y * 3.0).abs() < 1e-5,
                "multiple of 1/3: {y}"
            );
        }
    }

    #[test]
    fn features_carry_the_label() {
        // The time-averaged text features correlate with the label.
        let p = MsaParams {
            noise: Some(0.5),
            ..MsaParams::default()
        };
        let d = synthetic_msa(&p, 0).expect("gen");
        let [_, len, dim] = d.train.text.shape;
        // Least-squares-free check: the label is recoverable by the best
        // single projection direction; use the correlation of each feature
        // mean with the label and require a strong one.
        let best = (0..dim)
            .map(|k| {
                let xs: Vec<f64> = (0..d.train.len())
                    .map(|i| {
                        let s = d.train.text.sample(i);
                        (0..len).map(|t| f64::from(s[t * dim + k])).sum::<f64>() / len as f64
                    })
                    .collect();
                let ys: Vec<f64> = d.train.labels.iter().map(|&y| f64::from(y)).collect();
                crate::metrics::pearson(&ys, &xs).abs()
            })
            .fold(0.0, f64::max);
        assert!(best > 0.4, "best feature correlation {best}");
    }

    #[test]
    fn aligned_override_has_no_lengths() {
        let p: MsaParams = serde_json::from_str(
            r#"{"preset": "mosi", "n_train": 3, "n_valid": 1, "n_test": 1, "aligned": true,
                "text": [4, 8], "audio": [4, 5], "vision": [4, 20]}"#,
        )
        .expect("parse");
        let d = synthetic_msa(&p, 0).expect("gen");
        assert!(d.train.audio_lengths.is_none());
        assert_eq!(d.dims(), [8, 5, 20]);
        assert!(serde_json::from_str::<MsaParams>(r#"{"nope": 1}"#).is_err());
    }
}
