"""MM-DFN (Hu et al., "MM-DFN: Multimodal Dynamic Fusion Network for Emotion
Recognition in Conversations", ICASSP 2022) in PyTorch, inference only,
written for sigsweep's tests from the paper and from the parameter names
and shapes of the published model's `state_dict()` (github
zerohd4869/MM-DFN, IEMOCAP script: GDF graph, concat fusion, speaker
weights 3-0-1, `reason_flag`). No code of that repository is used here.

The module tree carries MM-DFN's names, so a weights file that
`load_state_dict(strict=True)` accepts here has every tensor MM-DFN's own
model has, with its shape. Modules MM-DFN builds but never calls in this
configuration (`att_model`, `gatedatt`, the embeddings, `a_fc`…) are here
with their shapes, and unused.

The forward pass follows the paper's equations as MM-DFN runs them:
modality projections, a bidirectional GRU over the padded (not packed)
dialogues for text, a shared bidirectional GRU over each speaker's own
utterances added with weights γ = (γ_a, γ_v, γ_l), the multimodal graph
(intra-modal edges between the utterances of a dialogue, inter-modal edges
between the nodes of one utterance, weights 1 − arccos(0.99999·cos)/π,
symmetric normalisation), the graph-based dynamic fusion layers (an LSTM
gate across layers, GCNII-style propagation with θ_k = ln(λ/k + 1)), and
the classifier over [x ‖ H_K] of the three modalities.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Holder(nn.Module):
    """A named container (for modules that only hold parameters)."""


class GraphConvolution(nn.Module):
    """One propagation layer: weight `[2·hidden, hidden]` (input-major)."""

    def __init__(self, hidden):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2 * hidden, hidden))
        nn.init.uniform_(self.weight, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))

    def forward(self, h, adj, h0, alpha, theta):
        s = adj @ h
        mixed = torch.cat([s, h0], dim=1) @ self.weight
        return theta * mixed + (1 - theta) * ((1 - alpha) * s + alpha * h0)


class GraphNet(nn.Module):
    """The dynamic-fusion graph network (`graph_model.graph_net`)."""

    def __init__(self, d_in, hidden, layers):
        super().__init__()
        self.convs = nn.ModuleList([GraphConvolution(hidden) for _ in range(layers)])
        self.fcs = nn.ModuleList([nn.Linear(d_in, hidden)])
        self.rnn = nn.LSTM(hidden, hidden, 1)

    def forward(self, x, adj, alpha, lamda):
        h0 = F.relu(self.fcs[0](x))
        layer, state = h0, None
        for k, conv in enumerate(self.convs, start=1):
            q = layer
            gated, state = self.rnn(q.unsqueeze(0), state)
            theta = math.log(lamda / k + 1)
            layer = F.relu(conv(gated.squeeze(0), adj, h0, alpha, theta)) + q
        return torch.cat([x, layer], dim=-1)


class MMDFN(nn.Module):
    def __init__(self, dims=(100, 1582, 342), n_classes=6, n_speakers=2, hidden=200,
                 graph_hidden=100, layers=16, gammas=(3.0, 0.0, 1.0), alpha=0.2, lamda=0.5):
        super().__init__()
        d_t, d_a, d_v = dims
        h, g = hidden, graph_hidden
        self.gammas, self.alpha, self.lamda = gammas, alpha, lamda
        self.linear_a = nn.Linear(d_a, h)
        self.linear_v = nn.Linear(d_v, h)
        self.linear_l = nn.Linear(d_t, h)
        self.lstm_l = nn.GRU(h, h // 2, num_layers=2, bidirectional=True)
        self.rnn_parties = nn.GRU(h, h // 2, num_layers=2, bidirectional=True)
        # Built by MM-DFN, not called by its GDF forward.
        self.att_model = Holder()
        self.att_model.scalar = nn.Linear(h, 200, bias=False)
        self.att_model.matchatt = Holder()
        self.att_model.matchatt.transform = nn.Linear(h, h)
        self.att_model.simpleatt = Holder()
        self.att_model.simpleatt.scalar = nn.Linear(h, 1, bias=False)
        self.att_model.att = Holder()
        self.att_model.att.weight = nn.Parameter(torch.zeros(2 * h))
        for name in ("w_k", "w_q", "proj"):
            setattr(self.att_model.att, name, nn.Linear(h, h))
        self.graph_model = Holder()
        self.graph_model.graph_net = GraphNet(h, g, layers)
        for name in ("a_fc", "v_fc", "l_fc"):
            setattr(self.graph_model, name, nn.Linear(h, h))
        self.graph_model.feature_fc = nn.Linear(3 * (h + g), g)
        self.graph_model.final_fc = nn.Linear(g, n_classes)
        self.graph_model.modal_embeddings = nn.Embedding(3, h)
        for name in ("speaker_embeddings", "a_spk_embs", "v_spk_embs", "l_spk_embs"):
            setattr(self.graph_model, name, nn.Embedding(n_speakers, h))
        self.gatedatt = Holder()
        for name in ("transform_l", "transform_v", "transform_a"):
            setattr(self.gatedatt, name, nn.Linear(h + g, g))
        for name in ("transform_av", "transform_al", "transform_vl"):
            setattr(self.gatedatt, name, nn.Linear(3 * (h + g), 1))
        # Used.
        self.smax_fc = nn.Linear(3 * (h + g), n_classes)

    def parties(self, u, speakers, lengths):
        """Each speaker's own utterances through `rnn_parties`, zero-padded
        to the batch's length, and put back in dialogue order."""
        T, B, H = u.shape
        seqs, places = [], []
        for b, n in enumerate(lengths):
            for p in sorted(set(speakers[b][:n])):
                idx = [t for t in range(n) if speakers[b][t] == p]
                x = u.new_zeros(T, H)
                x[: len(idx)] = u[idx, b]
                seqs.append(x)
                places.append((b, idx))
        out, _ = self.rnn_parties(torch.stack(seqs, dim=1))
        back = u.new_zeros(T, B, out.shape[-1])
        for j, (b, idx) in enumerate(places):
            back[idx, b] = out[: len(idx), j]
        return back

    @staticmethod
    def similarity(x, y):
        cos = F.cosine_similarity(x, y, dim=-1, eps=0.0)
        return 1 - torch.acos(cos * 0.99999) / math.pi

    def adjacency(self, feats, lengths):
        n = feats[0].shape[0]
        a = feats[0].new_zeros(3 * n, 3 * n)
        start = 0
        for length in lengths:
            r = torch.arange(start, start + length, device=a.device)
            for m in range(3):
                x = feats[m][r]
                a[(m * n + r)[:, None], (m * n + r)[None, :]] = self.similarity(
                    x[:, None, :], x[None, :, :])
                for k in range(3):
                    if k != m:
                        a[m * n + r, k * n + r] = self.similarity(x, feats[k][r])
            start += length
        d = a.sum(1).pow(-0.5)
        return d[:, None] * a * d[None, :]

    def forward(self, text, audio, visual, speakers, lengths):
        """`text`/`audio`/`visual`: `[T, B, d]` zero-padded; `speakers[b][t]`
        a speaker index; returns the log-probabilities `[N, C]` of the
        utterances, dialogue by dialogue."""
        u_a, u_v, u_l = self.linear_a(audio), self.linear_v(visual), self.linear_l(text)
        e_l, _ = self.lstm_l(u_l)
        e = [u_a, u_v, e_l]
        for m, (u, gamma) in enumerate(zip((u_a, u_v, u_l), self.gammas)):
            if gamma != 0:
                e[m] = e[m] + gamma * self.parties(u, speakers, lengths)
        flat = [torch.cat([x[:n, b] for b, n in enumerate(lengths)]) for x in e]
        adj = self.adjacency(flat, lengths)
        h = self.graph_model.graph_net(torch.cat(flat), adj, self.alpha, self.lamda)
        n = flat[0].shape[0]
        fused = torch.cat([h[:n], h[n:2 * n], h[2 * n:]], dim=-1)
        return F.log_softmax(self.smax_fc(F.relu(fused)), dim=-1)
