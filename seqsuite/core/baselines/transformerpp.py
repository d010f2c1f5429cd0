"""Transformer++ baseline: RMSNorm, rotary positions, causal SDPA attention, SwiGLU MLP.

`TransformerBlock(d_model, ...)` is a pre-norm residual block usable wherever a Mamba block is:
    forward(x[B, L, d]) -> x[B, L, d]
    allocate_state(batch, device, dtype, max_len) -> {"k", "v", "pos"}
    step(x_t[B, d], state) -> y_t[B, d]      # writes the KV cache at state["pos"] in place
`pos` is an int64 tensor (not a Python int), so one decode step can be captured in a CUDA graph.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..block import RMSNorm


def _angle_dtype(dtype: torch.dtype) -> torch.dtype:
    """Rotary angles are computed in at least float32 (bf16 positions would be wrong)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype):
    """cos and sin of the rotary angles positions * base^(-2i/head_dim); shape (*positions, head_dim/2)."""
    adt = _angle_dtype(dtype)
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=adt) / head_dim)
    ang = positions.to(adt).unsqueeze(-1) * inv_freq
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of the last dim of x (..., head_dim) by the given angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary embeddings and a preallocated KV cache."""

    def __init__(self, d_model: int, n_heads: int, rope_base: float = 10000.0, max_len: int = 4096):
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into n_heads={n_heads} heads of even size")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.rope_base, self.max_len = rope_base, max_len
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x: torch.Tensor, positions: torch.Tensor):
        """Project x (B, L, d) to rotated q, k and v, each (B, H, L, head_dim)."""
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rotary_cos_sin(positions, self.head_dim, self.rope_base, q.dtype)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self._qkv(x, torch.arange(L, device=x.device))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, d))

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        """Zeroed KV caches (B, H, max_len, head_dim) and the next write position (int64 tensor)."""
        p = self.qkv.weight
        device, dtype = device or p.device, dtype or p.dtype
        max_len = max_len or self.max_len
        shape = (batch, self.n_heads, max_len, self.head_dim)
        return {
            "k": torch.zeros(shape, device=device, dtype=dtype),
            "v": torch.zeros(shape, device=device, dtype=dtype),
            "pos": torch.zeros((), device=device, dtype=torch.long),
        }

    def _check_room(self, state: dict, n: int) -> None:
        """Raise if n more positions do not fit in the cache (skipped while a CUDA graph captures)."""
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return
        max_len = state["k"].shape[2]
        if int(state["pos"]) + n > max_len:
            raise ValueError(
                f"KV cache full: {int(state['pos'])} + {n} positions > max_len={max_len}; "
                "allocate_state with a larger max_len"
            )

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One token (B, d) -> (B, d); writes k, v at state['pos'] and advances it, in place."""
        self._check_room(state, 1)
        pos = state["pos"]
        q, k, v = self._qkv(x_t.unsqueeze(1), pos.view(1))  # (B, H, 1, hd)
        state["k"].index_copy_(2, pos.view(1), k.to(state["k"].dtype))
        state["v"].index_copy_(2, pos.view(1), v.to(state["v"].dtype))
        visible = torch.arange(state["k"].shape[2], device=pos.device) <= pos
        y = F.scaled_dot_product_attention(
            q, state["k"].to(q.dtype), state["v"].to(q.dtype), attn_mask=visible.view(1, 1, 1, -1)
        )
        state["pos"].add_(1)
        return self.out_proj(y.reshape(x_t.shape[0], self.d_model))

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Parallel forward over a prompt x (B, L, d) that also fills an empty cache."""
        if int(state["pos"]) != 0:
            raise ValueError("prefill needs a fresh state (pos = 0)")
        self._check_room(state, x.shape[1])
        B, L, d = x.shape
        q, k, v = self._qkv(x, torch.arange(L, device=x.device))
        state["k"][:, :, :L].copy_(k)
        state["v"][:, :, :L].copy_(v)
        state["pos"].fill_(L)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, d))


class SwiGLU(nn.Module):
    """Gated MLP: W2 (silu(W1 x) * W3 x), hidden size mlp_ratio·d rounded up to a multiple of 8.

    mlp_ratio = 8/3 gives the parameters of a plain 4·d MLP (the LLaMA choice).
    """

    def __init__(self, d_model: int, mlp_ratio: float = 8 / 3):
        super().__init__()
        hidden = int(math.ceil(round(mlp_ratio * d_model, 6) / 8) * 8)
        self.in_proj = nn.Linear(d_model, 2 * hidden, bias=False)  # W1 and W3 stacked
        self.out_proj = nn.Linear(hidden, d_model, bias=False)  # W2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.in_proj(x).chunk(2, dim=-1)
        return self.out_proj(F.silu(a) * b)


class TransformerBlock(nn.Module):
    """Pre-norm Transformer++ block: x + attn(norm(x)), then + swiglu(norm(.)).

    n_heads defaults to d_model // 64 (at least 1). max_len is the default KV-cache length of
    allocate_state; parallel forward works at any length.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int | None = None,
        mlp_ratio: float = 8 / 3,
        max_len: int = 4096,
        rope_base: float = 10000.0,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        n_heads = n_heads or max(1, d_model // 64)
        self.norm1 = RMSNorm(d_model, norm_eps)
        self.attn = CausalSelfAttention(d_model, n_heads, rope_base, max_len)
        self.norm2 = RMSNorm(d_model, norm_eps)
        self.mlp = SwiGLU(d_model, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        """KV cache for recurrent decoding; see CausalSelfAttention.allocate_state."""
        return self.attn.allocate_state(batch, device, dtype, max_len)

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One token (B, d) -> (B, d), updating the KV cache in place."""
        x_t = x_t + self.attn.step(self.norm1(x_t), state)
        return x_t + self.mlp(self.norm2(x_t))

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Parallel forward over a prompt (B, L, d) that leaves `state` ready to step at position L."""
        x = x + self.attn.prefill(self.norm1(x), state)
        return x + self.mlp(self.norm2(x))
