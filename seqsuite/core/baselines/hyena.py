"""HyenaDNA baseline: the Hyena operator (implicit long convolution + gating) and its block.

Hyena of order N (HyenaDNA uses N = 2): project x to N+1 streams (x_0 … x_{N-1}, v), mix each
with a short causal depthwise conv, then for each of the N-1 long filters h_o:
    v <- v * x_{N-1-o};  v <- (h_o * v) + D_o v     (causal convolution, by FFT, padded to 2L)
and finally y = out_proj(v * x_0). The long filters are implicit: an MLP with sine activations
maps positional features (t/max_len, cos/sin of a few frequencies) of each lag t to a value per
channel, multiplied by an exponential decay window whose rate varies across channels.

Recurrent step: the gated inputs of each long conv are kept in a preallocated history buffer and
the output at t is a dot product of the history with the (cached) filter: O(max_len) per step,
with static shapes and an int64 position tensor, so a step can be captured in a CUDA graph.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Sin(nn.Module):
    """sin(freq * x) with a learnable frequency per feature."""

    def __init__(self, dim: int, freq: float = 10.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(freq)))
        self.freq._no_weight_decay = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Long filters h[o, c, t] for lags t < L, from an MLP over positional features and a decay window.

    The features depend on t / max_len only, so a filter value never depends on the input length.
    """

    def __init__(
        self,
        d_model: int,
        n_filters: int = 1,
        max_len: int = 4096,
        emb_dim: int = 5,
        filter_order: int = 64,
        n_hidden: int = 2,
        sin_freq: float = 10.0,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        decay_target: float = 1e-2,
    ):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim={emb_dim} must be odd and >= 3 (t plus cos/sin pairs)")
        self.d_model, self.n_filters, self.max_len, self.emb_dim = d_model, n_filters, max_len, emb_dim
        layers: list[nn.Module] = [nn.Linear(emb_dim, filter_order), Sin(filter_order, sin_freq)]
        for _ in range(n_hidden):
            layers += [nn.Linear(filter_order, filter_order), Sin(filter_order, sin_freq)]
        layers.append(nn.Linear(filter_order, n_filters * d_model, bias=False))
        self.mlp = nn.Sequential(*layers)
        for p in self.mlp.parameters():  # HyenaDNA trains the implicit filter without weight decay
            p._no_weight_decay = True
        # Decay rates per channel, from slow (reaches decay_target at slow_decay_pct·max_len) to fast.
        slow = -math.log(decay_target) / slow_decay_pct
        fast = -math.log(decay_target) / fast_decay_pct
        self.register_buffer("decay", torch.linspace(slow, fast, d_model), persistent=False)

    def features(self, L: int, device, dtype) -> torch.Tensor:
        """Positional features (L, emb_dim): t/max_len, then cos and -sin of f·2πt/max_len."""
        t = torch.arange(L, device=device, dtype=dtype)
        bands = (self.emb_dim - 1) // 2
        f = torch.linspace(1e-4, bands - 1, bands, device=device, dtype=dtype)
        w = 2 * math.pi * t.unsqueeze(-1) / self.max_len * f
        return torch.cat([(t / self.max_len).unsqueeze(-1), torch.cos(w), -torch.sin(w)], dim=-1)

    def forward(self, L: int) -> torch.Tensor:
        """Filters (n_filters, d_model, L)."""
        if L > self.max_len:
            raise ValueError(f"sequence length {L} > the Hyena filter's max_len={self.max_len}")
        w = self.mlp[0].weight
        z = self.features(L, w.device, w.dtype)
        h = self.mlp(z).view(L, self.n_filters, self.d_model).permute(1, 2, 0)
        t = torch.arange(L, device=w.device, dtype=w.dtype) / self.max_len
        return h * torch.exp(-t * self.decay.to(w.dtype).unsqueeze(-1))


def fft_causal_conv(v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal convolution y[..., t] = sum_{s<=t} h[..., t-s] v[..., s] by FFT of size 2L.

    v: (B, d, L); h: (d, L). Half-precision inputs are computed in float32.
    """
    L = v.shape[-1]
    cdt = torch.float64 if v.dtype == torch.float64 else torch.float32
    vf = torch.fft.rfft(v.to(cdt), n=2 * L)
    hf = torch.fft.rfft(h.to(cdt), n=2 * L)
    return torch.fft.irfft(vf * hf, n=2 * L)[..., :L].to(v.dtype)


class HyenaOperator(nn.Module):
    """The Hyena mixer (B, L, d) -> (B, L, d); see the module docstring."""

    def __init__(
        self,
        d_model: int,
        max_len: int = 4096,
        order: int = 2,
        filter_order: int = 64,
        emb_dim: int = 5,
        short_filter: int = 3,
        sin_freq: float = 10.0,
    ):
        super().__init__()
        if order < 2:
            raise ValueError(f"Hyena order must be >= 2, got {order}")
        self.d_model, self.max_len, self.order, self.short_filter = d_model, max_len, order, short_filter
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.short_conv = nn.Conv1d(width, width, short_filter, groups=width, padding=short_filter - 1)
        self.filter = ImplicitFilter(d_model, order - 1, max_len, emb_dim, filter_order, sin_freq=sin_freq)
        self.filter_bias = nn.Parameter(torch.randn(order - 1, d_model))  # the D skip of each long conv
        self.filter_bias._no_weight_decay = True
        self.out_proj = nn.Linear(d_model, d_model)

    def _streams(self, u: torch.Tensor) -> list[torch.Tensor]:
        """Split the short-conv output (B, (order+1)d, ...) into [x_0, ..., x_{order-1}, v]."""
        return list(u.split(self.d_model, dim=1))

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """x (B, L, d) -> (B, L, d). With a fresh `state`, also fills it (see prefill)."""
        B, L, _ = x.shape
        u_in = self.in_proj(x).transpose(1, 2)  # (B, (order+1)d, L)
        streams = self._streams(self.short_conv(u_in)[..., :L])
        h = self.filter(L)
        v = streams[-1]
        for o in range(self.order - 1):
            v = v * streams[self.order - 1 - o]
            if state is not None:
                state["history"][o, :, :, :L].copy_(v)
            v = fft_causal_conv(v, h[o]) + self.filter_bias[o].unsqueeze(-1) * v
        if state is not None:
            k = self.short_filter - 1
            tail = F.pad(u_in, (k, 0))[..., -k:] if k else u_in[..., :0]
            state["conv"].copy_(tail)
            state["pos"].fill_(L)
        y = v * streams[0]
        return self.out_proj(y.transpose(1, 2))

    @torch.no_grad()
    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        """Zeroed short-conv and long-conv histories, the cached filters and the position (int64).

        The filters are computed once here from the current weights; allocate a new state after
        changing them.
        """
        p = self.in_proj.weight
        device, dtype = device or p.device, dtype or p.dtype
        max_len = max_len or self.max_len
        width = (self.order + 1) * self.d_model
        return {
            "conv": torch.zeros(batch, width, self.short_filter - 1, device=device, dtype=dtype),
            "history": torch.zeros(self.order - 1, batch, self.d_model, max_len, device=device, dtype=dtype),
            "filter": self.filter(max_len).to(device=device, dtype=dtype),
            "lags": torch.arange(max_len, device=device, dtype=torch.long),
            "pos": torch.zeros((), device=device, dtype=torch.long),
        }

    def _check_room(self, state: dict, n: int) -> None:
        """Raise if n more positions do not fit in the history (skipped while a CUDA graph captures)."""
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return
        max_len = state["history"].shape[-1]
        if int(state["pos"]) + n > max_len:
            raise ValueError(
                f"Hyena history full: {int(state['pos'])} + {n} positions > max_len={max_len}; "
                "allocate_state with a larger max_len"
            )

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One position (B, d) -> (B, d); updates the histories and the position in place."""
        self._check_room(state, 1)
        pos = state["pos"]
        u_new = self.in_proj(x_t)  # (B, width)
        window = torch.cat([state["conv"], u_new.unsqueeze(-1).to(state["conv"].dtype)], dim=-1)
        u = (window.to(u_new.dtype) * self.short_conv.weight.squeeze(1)).sum(-1) + self.short_conv.bias
        state["conv"].copy_(window[..., 1:])
        streams = self._streams(u)
        # filter value at lag (pos - s) for every history slot s, zero for s > pos
        lag = pos - state["lags"]
        valid = lag >= 0
        v = streams[-1]
        for o in range(self.order - 1):
            v = v * streams[self.order - 1 - o]
            hist = state["history"][o]
            hist.index_copy_(-1, pos.view(1), v.unsqueeze(-1).to(hist.dtype))
            h_t = state["filter"][o].index_select(-1, lag.clamp(min=0)) * valid
            v = (hist * h_t).sum(-1).to(v.dtype) + self.filter_bias[o] * v
        state["pos"].add_(1)
        return self.out_proj(v * streams[0])

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Parallel forward over a prompt (B, L, d) that leaves a fresh `state` ready at position L."""
        if int(state["pos"]) != 0:
            raise ValueError("prefill needs a fresh state (pos = 0)")
        self._check_room(state, x.shape[1])
        return self.forward(x, state)


class MLP(nn.Module):
    """Two-layer GELU MLP with hidden size mlp_ratio·d."""

    def __init__(self, d_model: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(mlp_ratio * d_model)
        self.in_proj = nn.Linear(d_model, hidden)
        self.out_proj = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.gelu(self.in_proj(x), approximate="tanh"))


class HyenaBlock(nn.Module):
    """Pre-norm HyenaDNA block: x + hyena(norm(x)), then + mlp(norm(.)) (LayerNorm, GELU MLP).

    max_len bounds the sequence length (the implicit filter is defined on t / max_len).
    """

    def __init__(
        self,
        d_model: int,
        max_len: int = 4096,
        order: int = 2,
        filter_order: int = 64,
        emb_dim: int = 5,
        short_filter: int = 3,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=norm_eps)
        self.mixer = HyenaOperator(d_model, max_len, order, filter_order, emb_dim, short_filter)
        self.norm2 = nn.LayerNorm(d_model, eps=norm_eps)
        self.mlp = MLP(d_model, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        """Recurrent state of the Hyena mixer; see HyenaOperator.allocate_state."""
        return self.mixer.allocate_state(batch, device, dtype, max_len)

    def step(self, x_t: torch.Tensor, state: dict) -> torch.Tensor:
        """One position (B, d) -> (B, d), updating `state` in place."""
        x_t = x_t + self.mixer.step(self.norm1(x_t), state)
        return x_t + self.mlp(self.norm2(x_t))

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Parallel forward over a prompt that leaves `state` ready to step at position L."""
        x = x + self.mixer.prefill(self.norm1(x), state)
        return x + self.mlp(self.norm2(x))
