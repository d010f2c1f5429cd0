"""Models over a backbone: a token language model (with recurrent generation) and a sequence
classifier (mean pooling)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import build_backbone
from .block import RMSNorm
from .config import ModelConfig


class LMModel(nn.Module):
    """tokens (batch, L) → next-token logits (batch, L, vocab)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.backbone = build_backbone(cfg)
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embedding.weight
        _init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.backbone(self.embedding(tokens))))

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        """Recurrent state for `batch` sequences; `max_len` bounds the positions that
        attention/Hyena layers must cache (default: the config's max_len)."""
        return self.backbone.allocate_state(batch, device, dtype, max_len)

    def step(self, token: torch.Tensor, state: dict) -> torch.Tensor:
        """token (batch,) → logits (batch, vocab) for the next position; state updated in place.
        The embedding lookup and the final norm go to the backbone, whose first and last fused
        stack kernels do them (core/fused_step.py step_layers)."""
        return self.head(self.backbone.step(self.embedding.weight, state, index=token, norm=self.norm))

    def step_hidden(self, token: torch.Tensor, state: dict) -> torch.Tensor:
        """`step` up to the backbone's output (batch, d_model), before the final norm and head
        (decoders fuse those with sampling)."""
        return self.backbone.step(self.embedding(token), state)

    def can_prefill(self) -> bool:
        """True when prefill() is available (isotropic stacks of S6, attention or Hyena layers)."""
        return getattr(self.backbone, "can_prefill", lambda: False)()

    def prefill(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        """tokens (batch, L) → logits (batch, vocab) for position L, filling a fresh `state` in one
        parallel pass, as L calls of step() would (see can_prefill)."""
        if not self.can_prefill():
            raise NotImplementedError("this model has no parallel prefill; feed the prompt with step()")
        h = self.backbone.prefill(self.embedding(tokens), state)
        return self.head(self.norm(h[:, -1]))

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, temperature: float = 1.0, top_p: float = 1.0,
                 top_k: int = 0, generator: torch.Generator | None = None, progress=None,
                 cache: dict | None = None) -> torch.Tensor:
        """Sample n tokens after `prompt` (batch, Lp) with the recurrent step; returns (batch, Lp + n).
        `cache`: a dict kept across calls to reuse the state and its CUDA graphs (core/generate.py)."""
        from .generate import generate

        return generate(self, prompt, n, temperature=temperature, top_p=top_p, top_k=top_k,
                        generator=generator, progress=progress, cache=cache)


class ClassifierModel(nn.Module):
    """tokens (batch, L) → class logits (batch, n_classes), by mean pooling over positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.backbone = build_backbone(cfg)
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        _init_weights(self)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.backbone(self.embedding(tokens))).mean(dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))


def _init_weights(model: nn.Module) -> None:
    """GPT-style init: normal(0, 0.02) embeddings, and out-projections scaled by 1/sqrt(2·layers)."""
    nn.init.normal_(model.embedding.weight, std=0.02)
    n_res = sum(1 for name, _ in model.named_modules() if name.endswith("out_proj"))
    for name, p in model.named_parameters():
        if name.endswith("out_proj.weight"):
            nn.init.normal_(p, std=0.02 / max(1, n_res) ** 0.5)


def build_model(cfg: ModelConfig) -> nn.Module:
    return LMModel(cfg) if cfg.task == "lm" else ClassifierModel(cfg)
