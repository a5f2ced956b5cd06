//! `synthetic_erc`: dialogues for emotion recognition in conversation where
//! context and fusion both matter.
//!
//! Generative story, per dialogue:
//! * a length drawn from `min_len + Gamma(3, (mean_len − min_len)/3)`,
//!   clipped to `max_len` (IEMOCAP preset: 20–110, mean ≈ 48);
//! * 2 active speakers (up to 4 when `n_speakers > 2`), chosen from
//!   `0..n_speakers`; the first two turns go to different speakers and
//!   afterwards the floor changes hands with probability `turn_change`;
//! * emotions with context: a speaker keeps their previous emotion with
//!   probability `inertia` (emotional inertia), else adopts the previous
//!   utterance's emotion with probability `contagion`, else draws from
//!   `class_freqs` (IEMOCAP preset: the dataset's class frequencies);
//! * per-modality partial evidence: modality `m` shows class `c` with
//!   strength `visibility[m][c]`, and each class is weak (0.25) in one
//!   modality chosen by the seed, so no single modality identifies every
//!   class; a fraction `ambiguous` of utterances carries only 20 % of the
//!   signal, so their emotion must be inferred from context;
//! * features: `x_m = P_m · e_m + speaker offset + noise`, with `e_m` the
//!   noisy evidence vector over classes and `P_m` a fixed random projection
//!   `[dim, classes]`.
//!
//! The validation split is carved from the training dialogues with
//! [`carve_valid`] (`valid_rate`).

use rand::Rng;
use rand::seq::index::sample;
use rand_distr::{Distribution, Gamma, StandardNormal};
use serde::Deserialize;

use super::rng;
use crate::erc::{Dialogue, ErcDataset};
use crate::formats::carve_valid;
use crate::{DataError, Result};

/// IEMOCAP class frequencies (hap, sad, neu, ang, exc, fru), as hard-coded
/// in MM-DFN's `run_train_erc.py`.
pub const IEMOCAP_FREQS: [f64; 6] = [0.086747, 0.144406, 0.227883, 0.160585, 0.127711, 0.252668];
/// MELD class frequencies (neu, sur, fea, sad, joy, dis, ang).
pub const MELD_FREQS: [f64; 7] = [
    0.466751, 0.122094, 0.027753, 0.071544, 0.171743, 0.026401, 0.113714,
];

/// A named starting point for [`ErcParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErcPreset {
    /// 100/1582/342 dims, 6 classes, 2 speakers, 120 train (10 % carved to
    /// valid) + 31 test dialogues of 20–110 utterances (mean ≈ 48).
    Iemocap,
    /// 600/300/342 dims, 7 classes, 9 speakers, 1152 train (10 % to valid)
    /// + 280 test dialogues of 2–24 utterances (mean ≈ 9.6).
    Meld,
    /// 16/24/12 dims, 4 classes, 2 speakers, 40 + 10 dialogues of 6–20
    /// utterances: for tests and quick sweeps.
    #[default]
    Small,
}

/// Parameters of [`synthetic_erc`]: a `preset` plus optional overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErcParams {
    pub preset: ErcPreset,
    pub n_train: Option<usize>,
    pub n_test: Option<usize>,
    /// Fraction of training dialogues moved to `valid`.
    pub valid_rate: Option<f64>,
    /// `[text, audio, visual]` feature dims.
    pub dims: Option<[usize; 3]>,
    pub n_speakers: Option<usize>,
    /// Class frequencies (normalised); their count sets the class count.
    pub class_freqs: Option<Vec<f64>>,
    pub min_len: Option<usize>,
    pub max_len: Option<usize>,
    pub mean_len: Option<f64>,
    /// Probability that a speaker keeps their previous emotion.
    pub inertia: Option<f64>,
    /// Probability of adopting the previous utterance's emotion otherwise.
    pub contagion: Option<f64>,
    /// Probability that the next utterance is by a different speaker.
    pub turn_change: Option<f64>,
    /// Fraction of utterances whose own signal is weak.
    pub ambiguous: Option<f64>,
    /// Scale of the class evidence relative to unit evidence noise.
    pub signal: Option<f32>,
    /// Standard deviation of per-feature noise.
    pub noise: Option<f32>,
}

/// [`ErcParams`] with the preset applied.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    name: &'static str,
    n_train: usize,
    n_test: usize,
    valid_rate: f64,
    dims: [usize; 3],
    n_speakers: usize,
    class_freqs: Vec<f64>,
    class_names: Vec<String>,
    min_len: usize,
    max_len: usize,
    mean_len: f64,
    inertia: f64,
    contagion: f64,
    turn_change: f64,
    ambiguous: f64,
    signal: f32,
    noise: f32,
}

fn bad<T>(key: &str, message: impl Into<String>) -> Result<T> {
    Err(DataError::Param {
        key: key.to_string(),
        message: message.into(),
    })
}

impl ErcParams {
    /// Checks the parameters (ranges, memory) without generating anything.
    pub(super) fn check(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    /// The number of classes the generator draws (its `class_freqs`).
    pub fn n_classes(&self) -> Result<usize> {
        Ok(self.resolve()?.class_freqs.len())
    }

    /// The fraction of training dialogues the generator moves to `valid`
    /// (the preset's unless `valid_rate` is set).
    pub fn resolved_valid_rate(&self) -> Result<f64> {
        Ok(self.resolve()?.valid_rate)
    }

    fn resolve(&self) -> Result<Spec> {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut s = match self.preset {
            ErcPreset::Iemocap => Spec {
                name: "synthetic-iemocap",
                n_train: 120,
                n_test: 31,
                valid_rate: 0.1,
                dims: [100, 1582, 342],
                n_speakers: 2,
                class_freqs: IEMOCAP_FREQS.to_vec(),
                class_names: names(&["hap", "sad", "neu", "ang", "exc", "fru"]),
                min_len: 20,
                max_len: 110,
                mean_len: 48.0,
                inertia: 0.6,
                contagion: 0.2,
                turn_change: 0.8,
                ambiguous: 0.3,
                signal: 1.5,
                noise: 1.0,
            },
            ErcPreset::Meld => Spec {
                name: "synthetic-meld",
                n_train: 1152,
                n_test: 280,
                valid_rate: 0.1,
                dims: [600, 300, 342],
                n_speakers: 9,
                class_freqs: MELD_FREQS.to_vec(),
                class_names: names(&["neu", "sur", "fea", "sad", "joy", "dis", "ang"]),
                min_len: 2,
                max_len: 24,
                mean_len: 9.6,
                inertia: 0.5,
                contagion: 0.2,
                turn_change: 0.7,
                ambiguous: 0.3,
                signal: 1.5,
                noise: 1.0,
            },
            ErcPreset::Small => Spec {
                name: "synthetic-small-erc",
                n_train: 40,
                n_test: 10,
                valid_rate: 0.2,
                dims: [16, 24, 12],
                n_speakers: 2,
                class_freqs: vec![0.35, 0.3, 0.2, 0.15],
                class_names: Vec::new(),
                min_len: 6,
                max_len: 20,
                mean_len: 12.0,
                inertia: 0.6,
                contagion: 0.2,
                turn_change: 0.8,
                ambiguous: 0.3,
                signal: 1.5,
                noise: 1.0,
            },
        };
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f.clone() { s.$f = v; })* };
        }
        set!(
            n_train,
            n_test,
            valid_rate,
            dims,
            n_speakers,
            min_len,
            max_len,
            mean_len,
            inertia,
            contagion,
            turn_change,
            ambiguous,
            signal,
            noise
        );
        if let Some(f) = &self.class_freqs {
            if f.len() != s.class_freqs.len() {
                s.class_names.clear();
            }
            s.class_freqs = f.clone();
        }
        if s.class_names.len() != s.class_freqs.len() {
            s.class_names = (0..s.class_freqs.len()).map(|c| format!("c{c}")).collect();
        }
        for (key, n) in [("n_train", s.n_train), ("n_test", s.n_test)] {
            if n == 0 {
                return bad(key, "need at least one dialogue per split");
            }
        }
        if !(0.0..1.0).contains(&s.valid_rate) {
            return bad("valid_rate", "must be in [0, 1)");
        }
        if s.dims.contains(&0) {
            return bad("dims", "feature dims must be positive");
        }
        if s.n_speakers < 2 {
            return bad("n_speakers", "need at least 2 speakers");
        }
        if s.class_freqs.len() < 2
            || s.class_freqs.iter().any(|f| !(f.is_finite() && *f >= 0.0))
            || s.class_freqs.iter().sum::<f64>() <= 0.0
        {
            return bad(
                "class_freqs",
                "need >= 2 non-negative frequencies with a positive sum",
            );
        }
        if s.class_freqs.len() > crate::metrics::MAX_CLASSES {
            return bad(
                "class_freqs",
                format!(
                    "{} classes, more than the {} a classification task may have",
                    s.class_freqs.len(),
                    crate::metrics::MAX_CLASSES
                ),
            );
        }
        if s.min_len < 2 || s.max_len < s.min_len {
            return bad("min_len/max_len", "need 2 <= min_len <= max_len");
        }
        if !(s.mean_len >= s.min_len as f64 && s.mean_len <= s.max_len as f64) {
            return bad("mean_len", "must lie in [min_len, max_len]");
        }
        for (key, p) in [
            ("inertia", s.inertia),
            ("contagion", s.contagion),
            ("turn_change", s.turn_change),
            ("ambiguous", s.ambiguous),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(key, "must be a probability in [0, 1]");
            }
        }
        if !(s.signal.is_finite() && s.signal >= 0.0 && s.noise.is_finite() && s.noise >= 0.0) {
            return bad("signal/noise", "must be finite and >= 0");
        }
        // Upper bound: every dialogue at max_len utterances.
        let dims = s.dims.iter().fold(0usize, |a, d| a.saturating_add(*d));
        super::check::check_size(&[
            &[("n_train", s.n_train), ("n_test", s.n_test)],
            &[("max_len", s.max_len)],
            &[("dims", dims)],
        ])?;
        Ok(s)
    }
}

struct World {
    /// `P_m`, `[dim, classes]` row-major.
    proj: Vec<Vec<f32>>,
    /// `visibility[m][c]`.
    visibility: Vec<Vec<f32>>,
    cumulative: Vec<f64>,
}

fn draw_class(rng: &mut impl Rng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(1.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .iter()
        .position(|&c| x < c)
        .unwrap_or(cumulative.len() - 1)
}

fn dialogue(s: &Spec, w: &World, rng: &mut impl Rng, id: String) -> Dialogue {
    let c = s.class_freqs.len();
    let excess = s.mean_len - s.min_len as f64;
    let len = if excess > 0.0 {
        let g = Gamma::new(3.0, excess / 3.0).map_or(0.0, |g| g.sample(rng));
        (s.min_len + g.round() as usize).min(s.max_len)
    } else {
        s.min_len
    };
    let n_active = if s.n_speakers > 2 {
        rng.random_range(2..=s.n_speakers.min(4))
    } else {
        2
    };
    let active: Vec<usize> = sample(rng, s.n_speakers, n_active).into_vec();
    // Per-dialogue speaker offsets, one vector per active speaker and modality.
    let offsets: Vec<Vec<Vec<f32>>> = (0..n_active)
        .map(|_| {
            s.dims
                .iter()
                .map(|&d| {
                    (0..d)
                        .map(|_| 0.3 * rng.sample::<f32, _>(StandardNormal))
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut speakers = Vec::with_capacity(len);
    let mut labels = Vec::with_capacity(len);
    let mut feats: [Vec<Vec<f32>>; 3] = Default::default();
    let mut last_of: Vec<Option<usize>> = vec![None; n_active];
    let mut cur = rng.random_range(0..n_active);
    for t in 0..len {
        if t > 0 && (t == 1 || rng.random::<f64>() < s.turn_change) {
            let step = rng.random_range(1..n_active);
            cur = (cur + step) % n_active;
        }
        let label = match last_of[cur] {
            Some(prev) if rng.random::<f64>() < s.inertia => prev,
            _ => match labels.last() {
                Some(&prev) if rng.random::<f64>() < s.contagion => prev,
                _ => draw_class(rng, &w.cumulative),
            },
        };
        last_of[cur] = Some(label);
        speakers.push(active[cur]);
        labels.push(label);
        let strength = if rng.random::<f64>() < s.ambiguous {
            0.2 * s.signal
        } else {
            s.signal
        };
        for (m, &dim) in s.dims.iter().enumerate() {
            let evidence: Vec<f32> = (0..c)
                .map(|k| {
                    let base = if k == label {
                        strength * w.visibility[m][k]
                    } else {
                        0.0
                    };
                    base + rng.sample::<f32, _>(StandardNormal)
                })
                .collect();
            let p = &w.proj[m];
            let off = &offsets[cur][m];
            let row: Vec<f32> = (0..dim)
                .map(|d| {
                    let signal: f32 = p[d * c..(d + 1) * c]
                        .iter()
                        .zip(&evidence)
                        .map(|(a, b)| a * b)
                        .sum();
                    signal + off[d] + s.noise * rng.sample::<f32, _>(StandardNormal)
                })
                .collect();
            feats[m].push(row);
        }
    }
    let [text, audio, visual] = feats;
    Dialogue {
        id,
        speakers,
        text,
        audio,
        visual,
        labels,
    }
}

/// Generates an ERC dataset; a pure function of `params` and `seed`.
pub fn synthetic_erc(params: &ErcParams, seed: u64) -> Result<ErcDataset> {
    let s = params.resolve()?;
    let c = s.class_freqs.len();
    let mut world_rng = rng(seed, 11);
    let proj = s
        .dims
        .iter()
        .map(|&dim| {
            let scale = 1.0 / (c as f32).sqrt();
            (0..dim * c)
                .map(|_| scale * world_rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect();
    let mut visibility = vec![vec![1.0f32; c]; 3];
    for k in 0..c {
        let weak: usize = world_rng.random_range(0..3);
        if let Some(v) = visibility.get_mut(weak).and_then(|row| row.get_mut(k)) {
            *v = 0.25;
        }
    }
    let mut acc = 0.0;
    let cumulative = s
        .class_freqs
        .iter()
        .map(|f| {
            acc += f;
            acc
        })
        .collect();
    let world = World {
        proj,
        visibility,
        cumulative,
    };
    let split = |name: &str, n: usize, stream: u64| {
        let mut r = rng(seed, stream);
        (0..n)
            .map(|i| dialogue(&s, &world, &mut r, format!("{name}-{i:04}")))
            .collect::<Vec<_>>()
    };
    let mut ds = ErcDataset {
        name: s.name.to_string(),
        dims: s.dims,
        n_classes: c,
        n_speakers: s.n_speakers,
        class_names: s.class_names.clone(),
        train: split("train", s.n_train, 12),
        valid: Vec::new(),
        test: split("test", s.n_test, 13),
    };
    carve_valid(&mut ds, s.valid_rate, seed)?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ErcParams {
        ErcParams::default()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = synthetic_erc(&small(), 1).expect("gen");
        assert_eq!(a, synthetic_erc(&small(), 1).expect("gen"));
        assert_ne!(
            a.train[0].text,
            synthetic_erc(&small(), 2).expect("gen").train[0].text
        );
        assert_eq!(a.train.len() + a.valid.len(), 40);
        assert_eq!(a.valid.len(), 8);
        assert_eq!(a.test.len(), 10);
        for d in a.train.iter().chain(&a.test) {
            assert!((6..=20).contains(&d.len()), "{}", d.len());
            assert_eq!(d.text[0].len(), 16);
            assert_eq!(d.audio[0].len(), 24);
            assert_eq!(d.visual[0].len(), 12);
            let mut sp = d.speakers.clone();
            sp.sort_unstable();
            sp.dedup();
            assert!(sp.len() >= 2, "at least two speakers");
            assert!(d.labels.iter().all(|&l| l < 4));
        }
    }

    #[test]
    fn iemocap_preset_shape_and_statistics() {
        // Small dims keep the test fast; lengths and classes are the preset's.
        let p = ErcParams {
            preset: ErcPreset::Iemocap,
            dims: Some([2, 2, 2]),
            n_train: Some(400),
            ..ErcParams::default()
        };
        let d = synthetic_erc(&p, 5).expect("gen");
        let all: Vec<&Dialogue> = d.train.iter().chain(&d.valid).chain(&d.test).collect();
        let n: usize = all.iter().map(|x| x.len()).sum();
        let mean = n as f64 / all.len() as f64;
        assert!((44.0..52.0).contains(&mean), "mean length {mean}");
        assert!(all.iter().all(|x| (20..=110).contains(&x.len())));
        let mut counts = [0usize; 6];
        for x in &all {
            for &l in &x.labels {
                counts[l] += 1;
            }
        }
        let freq: Vec<f64> = counts.iter().map(|&k| k as f64 / n as f64).collect();
        for (f, want) in freq.iter().zip(IEMOCAP_FREQS) {
            assert!((f - want).abs() < 0.05, "{freq:?}");
        }
        // Emotional inertia: a speaker's next label repeats far more often
        // than chance.
        let (mut same, mut total) = (0, 0);
        for x in &all {
            for t in 2..x.len() {
                if let Some(prev) = (0..t).rev().find(|&u| x.speakers[u] == x.speakers[t]) {
                    total += 1;
                    same += usize::from(x.labels[prev] == x.labels[t]);
                }
            }
        }
        assert!(same as f64 / total as f64 > 0.5);
        assert_eq!(d.class_names[5], "fru");
    }

    #[test]
    fn meld_preset_uses_several_speakers() {
        let p = ErcParams {
            preset: ErcPreset::Meld,
            dims: Some([3, 3, 3]),
            n_train: Some(50),
            n_test: Some(5),
            ..ErcParams::default()
        };
        let d = synthetic_erc(&p, 0).expect("gen");
        assert_eq!(d.n_classes, 7);
        assert!(d.train.iter().flat_map(|x| &x.speakers).any(|&s| s >= 2));
    }

    #[test]
    fn params_parse_and_validate() {
        let p: ErcParams =
            serde_json::from_str(r#"{"preset": "iemocap", "n_train": 10}"#).expect("parse");
        assert_eq!(p.preset, ErcPreset::Iemocap);
        assert!(serde_json::from_str::<ErcParams>(r#"{"bogus": 1}"#).is_err());
        let bad = ErcParams {
            inertia: Some(1.5),
            ..ErcParams::default()
        };
        let err = synthetic_erc(&bad, 0).expect_err("invalid");
        assert!(err.to_string().contains("inertia"), "{err}");
        let many = ErcParams {
            class_freqs: Some(vec![1.0; crate::metrics::MAX_CLASSES + 1]),
            ..ErcParams::default()
        };
        let err = many.check().expect_err("too many classes").to_string();
        assert!(
            err.contains("class_freqs") && err.contains("1001 classes, more than the 1000"),
            "{err}"
        );
    }
}
