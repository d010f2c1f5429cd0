"""A tiny self-contained model and task (noisy cycles) for tests and smoke runs of the loop."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ToyLM(nn.Module):
    """Embedding -> causal depthwise conv -> gated MLP with dropout -> logits. `gate` is a
    matrix flagged `_no_weight_decay`, to exercise the optimizer's parameter groups."""

    def __init__(self, vocab: int = 8, dim: int = 16, kernel: int = 6, dropout: float = 0.1):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim, padding=kernel - 1)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, vocab)
        self.gate = nn.Parameter(torch.zeros(dim, 2))
        self.gate._no_weight_decay = True

    def forward(self, tokens):
        x = self.emb(tokens)
        L = x.shape[1]
        x = x + self.conv(x.transpose(1, 2))[..., :L].transpose(1, 2)
        x = x + self.mlp(self.norm(x)) * (1 + self.gate[:, 0]) + self.gate[:, 1]
        return self.head(x)


class CycleTask:
    """Next-token prediction on noisy cycles: token t+1 = cycle[token t] with probability 0.9,
    else uniform. The cycle is fixed, so a small model learns it in a few dozen updates."""

    vocab_size = 8

    def __init__(self, nan_calls: set[int] | None = None):
        order = np.random.default_rng(1234).permutation(self.vocab_size)
        self.cycle = np.empty(self.vocab_size, dtype=np.int64)  # successor of each token
        self.cycle[order] = np.roll(order, -1)
        self.nan_calls = set(nan_calls or ())  # loss() calls that return NaN (guard tests)
        self.calls = 0

    def sample(self, split, rng, seq_len):
        seq = np.empty(seq_len + 1, dtype=np.int64)
        seq[0] = rng.integers(self.vocab_size)
        noise = rng.random(seq_len) >= 0.9
        jumps = rng.integers(0, self.vocab_size, size=seq_len)
        for t in range(seq_len):
            seq[t + 1] = jumps[t] if noise[t] else self.cycle[seq[t]]
        return {"tokens": seq[:-1], "targets": seq[1:]}

    def loss(self, model, batch):
        self.calls += 1
        logits = model(batch["tokens"])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten())
        if self.calls in self.nan_calls:
            loss = loss * float("nan")
        acc = (logits.argmax(-1) == batch["targets"]).float().mean()
        return loss, {"accuracy": float(acc)}
