//! `fusion`: a small multimodal classification task where fusion matters.
//!
//! Each sample has a latent evidence vector per modality, `u_m ∈ R^C`
//! (C = classes), drawn from N(0, 1). The label is `argmax_c Σ_m u_m[c]`: no
//! single modality determines it, so a model that fuses all three modalities
//! beats any unimodal one. Modality `m` shows `u_m` through a fixed random
//! projection `P_m` (per dataset seed) at every time step, plus Gaussian noise
//! whose scale is `noise`; averaging over time recovers the evidence.

use rand::Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use serde::Deserialize;

use super::rng;
use crate::seq::{Array3, SeqDataset, SeqSplit, Task};
use crate::{DataError, Result};

/// Parameters of [`fusion_classification`]; the sweep file's `[dataset]`
/// table (minus `kind`/`generator`) deserialises into this.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionParams {
    pub n_train: usize,
    pub n_valid: usize,
    pub n_test: usize,
    pub classes: usize,
    /// `[len, dim]` of the text, audio and vision sequences.
    pub text: [usize; 2],
    pub audio: [usize; 2],
    pub vision: [usize; 2],
    /// Standard deviation of the per-frame noise.
    pub noise: f32,
    /// Fraction of training labels replaced by a random class.
    pub label_noise: f32,
}

impl Default for FusionParams {
    fn default() -> Self {
        Self {
            n_train: 600,
            n_valid: 200,
            n_test: 200,
            classes: 3,
            text: [8, 16],
            audio: [12, 8],
            vision: [12, 8],
            noise: 1.0,
            label_noise: 0.0,
        }
    }
}

impl FusionParams {
    pub(super) fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: &str| {
            Err(DataError::Param {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        for (key, n) in [
            ("n_train", self.n_train),
            ("n_valid", self.n_valid),
            ("n_test", self.n_test),
        ] {
            if n == 0 {
                return bad(key, "every split needs at least one sample");
            }
        }
        if !(2..=crate::metrics::MAX_CLASSES).contains(&self.classes) {
            return bad(
                "classes",
                &format!(
                    "need 2 to {} classes (the most a classification task may have), got {}",
                    crate::metrics::MAX_CLASSES,
                    self.classes
                ),
            );
        }
        for (key, shape) in [
            ("text", self.text),
            ("audio", self.audio),
            ("vision", self.vision),
        ] {
            if shape[0] == 0 || shape[1] == 0 {
                return bad(key, "sequence length and dimension must be positive");
            }
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad("noise", "must be a finite number >= 0");
        }
        if !(0.0..=1.0).contains(&self.label_noise) {
            return bad("label_noise", "must be in [0, 1]");
        }
        let values = |[len, dim]: [usize; 2]| len.saturating_mul(dim);
        super::check::check_size(&[
            &[
                ("n_train", self.n_train),
                ("n_valid", self.n_valid),
                ("n_test", self.n_test),
            ],
            &[
                ("text", values(self.text)),
                ("audio", values(self.audio)),
                ("vision", values(self.vision)),
            ],
        ])
    }
}

/// Generates the dataset for `seed`.
pub fn fusion_classification(params: &FusionParams, seed: u64) -> Result<SeqDataset> {
    params.validate()?;
    let c = params.classes;
    let shapes = [params.text, params.audio, params.vision];
    // Projections P_m: [dim, C], fixed by the seed.
    let mut proj_rng = rng(seed, 1);
    let projections: Vec<Vec<f32>> = shapes
        .iter()
        .map(|&[_, dim]| {
            let scale = 1.0 / (c as f32).sqrt();
            (0..dim * c)
                .map(|_| scale * proj_rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect();
    let noise =
        Normal::new(0.0f32, params.noise.max(f32::MIN_POSITIVE)).map_err(|e| DataError::Param {
            key: "noise".into(),
            message: e.to_string(),
        })?;

    let split = |name: &str, n: usize, stream: u64, label_noise: f32| {
        let mut rng = rng(seed, stream);
        let mut arrays: Vec<Array3> = shapes
            .iter()
            .map(|&[len, dim]| Array3::zeros([n, len, dim]))
            .collect();
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let evidence: Vec<Vec<f32>> = (0..3)
                .map(|_| (0..c).map(|_| rng.sample(StandardNormal)).collect())
                .collect();
            let mut label = (0..c)
                .max_by(|&a, &b| {
                    let sa: f32 = evidence.iter().map(|u| u[a]).sum();
                    let sb: f32 = evidence.iter().map(|u| u[b]).sum();
                    sa.total_cmp(&sb)
                })
                .unwrap_or(0);
            if label_noise > 0.0 && rng.random::<f32>() < label_noise {
                label = rng.random_range(0..c);
            }
            labels.push(label as f32);
            for (m, array) in arrays.iter_mut().enumerate() {
                let [_, len, dim] = array.shape;
                let p = &projections[m];
                let base = i * len * dim;
                // `P_m u_m`, the same at every step.
                let signal: Vec<f32> = (0..dim)
                    .map(|d| (0..c).map(|k| p[d * c + k] * evidence[m][k]).sum())
                    .collect();
                for t in 0..len {
                    for (d, signal) in signal.iter().enumerate() {
                        let value = signal
                            + if params.noise > 0.0 {
                                noise.sample(&mut rng)
                            } else {
                                0.0
                            };
                        array.data[base + t * dim + d] = value;
                    }
                }
            }
        }
        let vision = arrays.pop().unwrap_or_else(|| Array3::zeros([0, 0, 0]));
        let audio = arrays.pop().unwrap_or_else(|| Array3::zeros([0, 0, 0]));
        let text = arrays.pop().unwrap_or_else(|| Array3::zeros([0, 0, 0]));
        SeqSplit {
            ids: (0..n).map(|i| format!("{name}-{i}")).collect(),
            text,
            audio,
            vision,
            audio_lengths: None,
            vision_lengths: None,
            labels,
        }
    };

    Ok(SeqDataset {
        name: "synthetic-fusion".to_string(),
        task: Task::Classification { n_classes: c },
        train: split("train", params.n_train, 2, params.label_noise),
        valid: split("valid", params.n_valid, 3, 0.0),
        test: split("test", params.n_test, 4, 0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let p = FusionParams {
            n_train: 20,
            n_valid: 5,
            n_test: 5,
            ..FusionParams::default()
        };
        let a = fusion_classification(&p, 7).expect("generate");
        let b = fusion_classification(&p, 7).expect("generate");
        let c = fusion_classification(&p, 8).expect("generate");
        assert_eq!(a, b);
        assert_ne!(a.train.text.data, c.train.text.data);
        assert_eq!(a.train.text.shape, [20, 8, 16]);
        assert_eq!(a.dims(), [16, 8, 8]);
    }

    #[test]
    fn labels_cover_all_classes() {
        let p = FusionParams {
            n_train: 2000,
            noise: 0.0,
            ..FusionParams::default()
        };
        let d = fusion_classification(&p, 1).expect("generate");
        let mut counts = [0usize; 3];
        for &l in &d.train.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n > 400), "{counts:?}");
    }

    #[test]
    fn rejects_bad_params() {
        let p = FusionParams {
            classes: 1,
            ..FusionParams::default()
        };
        let err = fusion_classification(&p, 0).expect_err("must fail");
        assert!(err.to_string().contains("classes"), "{err}");
        // A label space past MAX_CLASSES is refused before anything is drawn
        // (100 000 classes took minutes per sample and a per-class metric each).
        let p = FusionParams {
            classes: crate::metrics::MAX_CLASSES + 1,
            ..FusionParams::default()
        };
        let err = p.validate().expect_err("must fail").to_string();
        assert!(err.contains("need 2 to 1000 classes"), "{err}");
        let p = FusionParams {
            classes: crate::metrics::MAX_CLASSES,
            n_train: 4,
            n_valid: 2,
            n_test: 2,
            ..FusionParams::default()
        };
        assert!(fusion_classification(&p, 0).is_ok());
    }
}
