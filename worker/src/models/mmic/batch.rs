//! Host-side batch layout: padded time-major text, flattened utterances,
//! per-speaker gather indices and the graph mask, all precomputed on the
//! CPU once per batch.

use std::collections::BTreeMap;

use sigsweep_data::erc::Dialogue;

/// A batch of dialogues in the layouts the network consumes. Utterances
/// are flattened dialogue by dialogue (`N` = total utterances).
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub n: usize,
    pub b: usize,
    pub t_max: usize,
    pub dims: [usize; 3],
    /// `[T, B, Dt]` zero-padded text, time-major.
    pub text_tm: Vec<f32>,
    /// Per timestep: `None` if every dialogue is that long, else `[B]` flags.
    pub text_masks: Vec<Option<Vec<f32>>>,
    /// Row `t·B + b` of the time-major output for every utterance, `[N]`.
    pub text_valid: Vec<i64>,
    /// `[N, D]` features.
    pub text: Vec<f32>,
    pub audio: Vec<f32>,
    pub visual: Vec<f32>,
    pub dialogue_of: Vec<usize>,
    pub labels: Vec<usize>,
    /// Per-speaker sequences (one per dialogue and speaker present), left-packed.
    pub q: usize,
    /// Per step `s`: utterance index of every sequence `[Q]` (`N` = padding).
    pub party_steps: Vec<Vec<i64>>,
    pub party_masks: Vec<Option<Vec<f32>>>,
    /// For every utterance, its (step, sequence) as `(s, q)`.
    pub party_pos: Vec<(usize, usize)>,
}

impl HostBatch {
    pub fn new(dialogues: &[&Dialogue], dims: [usize; 3]) -> Self {
        let b = dialogues.len();
        let t_max = dialogues.iter().map(|d| d.len()).max().unwrap_or(0);
        let n: usize = dialogues.iter().map(|d| d.len()).sum();
        let [dt, da, dv] = dims;
        let mut text_tm = vec![0f32; t_max * b * dt];
        let mut text = Vec::with_capacity(n * dt);
        let mut audio = Vec::with_capacity(n * da);
        let mut visual = Vec::with_capacity(n * dv);
        let mut text_valid = Vec::with_capacity(n);
        let mut dialogue_of = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        // (dialogue, speaker) -> sequence index, in order of first appearance.
        let mut seqs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut seq_items: Vec<Vec<usize>> = Vec::new();
        let mut party_pos = Vec::with_capacity(n);
        for (bi, d) in dialogues.iter().enumerate() {
            for t in 0..d.len() {
                let u = labels.len();
                let off = (t * b + bi) * dt;
                text_tm[off..off + dt].copy_from_slice(&d.text[t]);
                text.extend_from_slice(&d.text[t]);
                audio.extend_from_slice(&d.audio[t]);
                visual.extend_from_slice(&d.visual[t]);
                text_valid.push((t * b + bi) as i64);
                dialogue_of.push(bi);
                labels.push(d.labels[t]);
                let next = seqs.len();
                let q = *seqs.entry((bi, d.speakers[t])).or_insert(next);
                if q == seq_items.len() {
                    seq_items.push(Vec::new());
                }
                party_pos.push((seq_items[q].len(), q));
                seq_items[q].push(u);
            }
        }
        let text_masks = (0..t_max)
            .map(|t| {
                if dialogues.iter().all(|d| d.len() > t) {
                    None
                } else {
                    Some(
                        dialogues
                            .iter()
                            .map(|d| if d.len() > t { 1.0 } else { 0.0 })
                            .collect(),
                    )
                }
            })
            .collect();
        let q = seq_items.len();
        let l = seq_items.iter().map(Vec::len).max().unwrap_or(0);
        let party_steps = (0..l)
            .map(|s| {
                seq_items
                    .iter()
                    .map(|it| it.get(s).map_or(n as i64, |&u| u as i64))
                    .collect()
            })
            .collect();
        let party_masks = (0..l)
            .map(|s| {
                if seq_items.iter().all(|it| it.len() > s) {
                    None
                } else {
                    Some(
                        seq_items
                            .iter()
                            .map(|it| if it.len() > s { 1.0 } else { 0.0 })
                            .collect(),
                    )
                }
            })
            .collect();
        Self {
            n,
            b,
            t_max,
            dims,
            text_tm,
            text_masks,
            text_valid,
            text,
            audio,
            visual,
            dialogue_of,
            labels,
            q,
            party_steps,
            party_masks,
            party_pos,
        }
    }

    /// MM-DFN's unpacked recurrences: the text and speaker sequences run
    /// `len` steps (at least this batch's longest dialogue) through their
    /// padding, as PyTorch's `nn.GRU` runs on a padded tensor without
    /// packing, so the backward direction starts at the padded end. The
    /// text's padding steps hold zero features (the text projection makes
    /// them its bias, as MM-DFN's `linear_l` does); a speaker's padding steps
    /// are zero vectors (MM-DFN's `U_parties_`).
    pub fn unpacked(mut self, len: usize) -> Self {
        let len = len.max(self.t_max);
        let (b, dt) = (self.b, self.dims[0]);
        self.text_tm.resize(len * b * dt, 0.0);
        self.t_max = len;
        self.text_masks = vec![None; len];
        let pad = self.n as i64;
        self.party_steps.resize(len, vec![pad; self.q]);
        self.party_masks = vec![None; len];
        self
    }
}
