//! Dialogue datasets for emotion recognition in conversation (ERC).

/// One dialogue: utterances in order, each with a speaker, three modality
/// feature vectors and an emotion label.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialogue {
    pub id: String,
    /// Speaker index of each utterance, `0..n_speakers`.
    pub speakers: Vec<usize>,
    /// Per-utterance feature vectors, `[n_utterances][dim]`.
    pub text: Vec<Vec<f32>>,
    pub audio: Vec<Vec<f32>>,
    pub visual: Vec<Vec<f32>>,
    /// Emotion class of each utterance, `0..n_classes`.
    pub labels: Vec<usize>,
}

impl Dialogue {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// An ERC dataset with train/valid/test dialogues.
#[derive(Debug, Clone, PartialEq)]
pub struct ErcDataset {
    pub name: String,
    /// Feature dimensions `[text, audio, visual]`.
    pub dims: [usize; 3],
    pub n_classes: usize,
    pub n_speakers: usize,
    pub class_names: Vec<String>,
    pub train: Vec<Dialogue>,
    pub valid: Vec<Dialogue>,
    pub test: Vec<Dialogue>,
}
