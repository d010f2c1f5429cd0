"""The Mamba block (in-projection, causal conv, SiLU, SSM mixer, gate, out-projection) and the
pre-norm residual layer that wraps any mixer type. `make_layer` is the registry of layer types."""
from __future__ import annotations

import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .s4 import S4
from .s6 import S6


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.weight._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm: torch's fused RMSNorm kernel on CUDA where available; statistics in fp32
        if x.dtype in (torch.float16, torch.bfloat16):
            return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class MambaBlock(nn.Module):
    """Mamba mixer: x → in_proj → (x, z); x → causal depthwise conv → SiLU → SSM(x) · SiLU(z) → out_proj."""

    def __init__(self, d_model: int, mixer: str = "s6", expand: int = 2, d_conv: int = 4, **ssm):
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_conv = d_inner, d_conv
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        if mixer == "s6":
            self.mixer = S6(d_inner, **{k: ssm[k] for k in ("d_state", "dt_rank", "dt_min", "dt_max") if k in ssm})
        elif mixer == "s4":
            self.mixer = S4(d_inner, **{k: ssm[k] for k in ("d_state", "mode", "init", "dt_min", "dt_max", "backend") if k in ssm})
        else:
            raise ValueError(f"unknown Mamba mixer {mixer!r}: use s6 or s4")
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        u, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)  # (batch, d_inner, L) each
        u = F.silu(self.conv(u)[..., :L])
        return self.out_proj(self.mixer(u, z).transpose(1, 2))

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        """Conv window and SSM state; `max_len` is accepted for a uniform layer API (unused:
        the state of a Mamba block does not grow with the sequence)."""
        device = device or self.in_proj.weight.device
        conv = torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype or self.in_proj.weight.dtype)
        return {"conv": conv, **self.mixer.allocate_state(batch, device, dtype)}

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """forward() over a prompt (batch, L, d) from a fresh state, leaving the conv window
        and the SSM state as L calls of step() would (S6 mixers; S4 has no prefill)."""
        if not hasattr(self.mixer, "prefill"):
            raise NotImplementedError(f"{type(self.mixer).__name__} mixer has no prefill")
        L = x.shape[1]
        u, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)
        tail = u[..., -self.d_conv:]
        state["conv"].zero_()
        state["conv"][..., self.d_conv - tail.shape[-1]:] = tail
        u = F.silu(self.conv(u)[..., :L])
        return self.out_proj(self.mixer.prefill(u, z, state).transpose(1, 2))

    def step(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (batch, d_inner)
        conv = state["conv"]
        window = torch.cat([conv[..., 1:], u.to(conv.dtype).unsqueeze(-1)], dim=-1)
        conv.copy_(window)
        # the depthwise conv at one position: (d, batch, K) @ (d, K, 1) + bias, one launch
        w = self.conv.weight.to(conv.dtype).transpose(1, 2)
        u = torch.baddbmm(self.conv.bias.to(conv.dtype)[:, None, None], window.transpose(0, 1), w)
        u = F.silu(u[..., 0].t())
        return self.out_proj(self.mixer.step(u, z, state))


def alloc_state(layer: nn.Module, batch: int, device=None, dtype=None, max_len: int | None = None):
    """layer.allocate_state, passing `max_len` (positions the state must hold: KV caches,
    long-convolution histories) only to layers that take it."""
    if max_len is not None and "max_len" in inspect.signature(layer.allocate_state).parameters:
        return layer.allocate_state(batch, device, dtype, max_len=max_len)
    return layer.allocate_state(batch, device, dtype)


class Residual(nn.Module):
    """Pre-norm residual layer: x + mixer(RMSNorm(x))."""

    def __init__(self, d_model: int, mixer: nn.Module):
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        return alloc_state(self.mixer, batch, device, dtype, max_len)

    def step(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return x + self.mixer.step(self.norm(x), state)

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        return x + self.mixer.prefill(self.norm(x), state)


def can_prefill(layer: nn.Module) -> bool:
    """Whether a layer fills its recurrent state from a parallel pass over a prompt."""
    if isinstance(layer, Residual):
        layer = layer.mixer
        if isinstance(layer, MambaBlock):
            return hasattr(layer.mixer, "prefill")
    return hasattr(layer, "prefill")


def make_layer(kind: str, d_model: int, cfg: ModelConfig) -> nn.Module:
    """One residual layer of the given type (s6 | s4 | attn | hyena) at width d_model."""
    if kind == "s6":
        mixer = MambaBlock(d_model, "s6", cfg.expand, cfg.d_conv, d_state=cfg.d_state, dt_rank=cfg.dt_rank,
                           dt_min=cfg.dt_min, dt_max=cfg.dt_max)
        return Residual(d_model, mixer)
    if kind == "s4":
        mixer = MambaBlock(d_model, "s4", cfg.expand, cfg.d_conv, d_state=cfg.s4_d_state, mode=cfg.s4_mode,
                           init=cfg.s4_init, dt_min=cfg.dt_min, dt_max=cfg.dt_max, backend=cfg.s4_backend)
        return Residual(d_model, mixer)
    if kind == "attn":
        from .baselines import make_attention_layer

        return make_attention_layer(d_model, cfg)
    if kind == "hyena":
        from .baselines import make_hyena_layer

        return make_hyena_layer(d_model, cfg)
    raise ValueError(f"unknown layer type {kind!r}")
