//! Sequence-level datasets: each sample carries a text, an audio and a vision
//! sequence (`[len, dim]` each) and one label.

use serde::Serialize;

/// A dense `[n, len, dim]` array in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array3 {
    pub shape: [usize; 3],
    pub data: Vec<f32>,
}

impl Array3 {
    pub fn zeros(shape: [usize; 3]) -> Self {
        Self {
            shape,
            data: vec![0.0; shape[0] * shape[1] * shape[2]],
        }
    }

    /// The `[len, dim]` slice of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let stride = self.shape[1] * self.shape[2];
        &self.data[i * stride..(i + 1) * stride]
    }

    /// Copies the samples at `indices` into a new array (a batch).
    pub fn gather(&self, indices: &[usize]) -> Array3 {
        let stride = self.shape[1] * self.shape[2];
        let mut data = Vec::with_capacity(indices.len() * stride);
        for &i in indices {
            data.extend_from_slice(self.sample(i));
        }
        Array3 {
            shape: [indices.len(), self.shape[1], self.shape[2]],
            data,
        }
    }
}

/// What the label of a sample means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Task {
    /// Labels are class indices `0..n_classes` stored as `f32`.
    Classification { n_classes: usize },
    /// Labels are real-valued (e.g. sentiment in [-3, 3]).
    Regression,
}

/// One split (train, valid or test) of a sequence dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqSplit {
    pub ids: Vec<String>,
    pub text: Array3,
    pub audio: Array3,
    pub vision: Array3,
    /// True (unpadded) lengths when the source has them (MMSA unaligned files).
    pub audio_lengths: Option<Vec<usize>>,
    pub vision_lengths: Option<Vec<usize>>,
    pub labels: Vec<f32>,
}

impl SeqSplit {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A sequence dataset with its three splits.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqDataset {
    pub name: String,
    pub task: Task,
    pub train: SeqSplit,
    pub valid: SeqSplit,
    pub test: SeqSplit,
}

impl SeqDataset {
    /// Feature dimensions `[text, audio, vision]`.
    pub fn dims(&self) -> [usize; 3] {
        [
            self.train.text.shape[2],
            self.train.audio.shape[2],
            self.train.vision.shape[2],
        ]
    }

    /// Sequence lengths `[text, audio, vision]`.
    pub fn lens(&self) -> [usize; 3] {
        [
            self.train.text.shape[1],
            self.train.audio.shape[1],
            self.train.vision.shape[1],
        ]
    }
}
