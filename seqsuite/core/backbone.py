"""Backbones: an isotropic stack of residual layers, and a causal U-Net with pooling (SaShiMi layout).

Both map (batch, L, d_model) → (batch, L, d_model) in parallel, and step one position at a time
with `allocate_state` / `step`, giving the same outputs.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .block import can_prefill, make_layer
from .fused_step import alloc_layer_states, step_layers
from .config import ModelConfig


def _overlap_inner() -> bool:
    """SEQSUITE_OVERLAP_INNER=0 steps a U-Net's inner levels on the main stream (A/B timing)."""
    return os.environ.get("SEQSUITE_OVERLAP_INNER", "1").strip() != "0"


_SIDE_STREAMS: dict = {}


def _side_stream(device, depth: int):
    """The side stream of the U-Net levels at `depth` on `device`, shared by every model (sharing
    only orders their work, it cannot race)."""
    key = (torch.device(device), depth)
    if key not in _SIDE_STREAMS:
        _SIDE_STREAMS[key] = torch.cuda.Stream(device=key[0])
    return _SIDE_STREAMS[key]


def _run_layers(owner: nn.Module, layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Apply layers in order; with `owner.grad_checkpointing` set (see set_grad_checkpointing)
    and gradients on, each layer's activations are recomputed in the backward instead of kept,
    so memory holds one residual stream per layer plus one layer's internals."""
    if getattr(owner, "grad_checkpointing", False) and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        for layer in layers:
            x = checkpoint(layer, x, use_reentrant=False)
        return x
    for layer in layers:
        x = layer(x)
    return x


def set_grad_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn per-layer activation checkpointing on or off in every backbone inside `model`;
    returns how many backbone stages were switched (0: the model has none)."""
    n = 0
    for m in model.modules():
        if isinstance(m, (Isotropic, UNetLevel)):
            m.grad_checkpointing = bool(enabled)
            n += 1
    return n


class Isotropic(nn.Module):
    """n residual layers of one type at one width."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(make_layer(cfg.layer, cfg.d_model, cfg) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_layers(self, self.layers, x)

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        return {"layers": alloc_layer_states(self.layers, batch, device, dtype, max_len)}

    def step(self, x: torch.Tensor, state: dict, index: torch.Tensor | None = None,
             norm: nn.Module | None = None) -> torch.Tensor:
        """One recurrent step; `index`: x is an embedding table and x[index] the input; `norm`
        applied to the output (see fused_step.step_layers, which fuses both)."""
        return step_layers(self.layers, x, state["layers"], index=index, norm=norm)

    def can_prefill(self) -> bool:
        return all(can_prefill(layer) for layer in self.layers)

    def prefill(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        """Parallel pass over a prompt (batch, L, d) from a fresh state; the state is left as
        L calls of step() would leave it."""
        for layer, st in zip(self.layers, state["layers"]):
            x = layer.prefill(x, st)
        return x


class DownPool(nn.Module):
    """Pool by p: reshape p consecutive steps into one vector, then a linear map to d_out."""

    def __init__(self, d_in: int, d_out: int, p: int):
        super().__init__()
        self.p = p
        self.linear = nn.Linear(d_in * p, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, L, d = x.shape
        return self.linear(x.reshape(b, L // self.p, self.p * d))


class UpPool(nn.Module):
    """Unpool by p: a linear map to p vectors of d_out, shifted one pooled step later (causal)."""

    def __init__(self, d_in: int, d_out: int, p: int):
        super().__init__()
        self.p, self.d_out = p, d_out
        self.linear = nn.Linear(d_in, d_out * p)

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) → (..., p, d_out): the p outputs produced by one pooled step."""
        return self.linear(x).unflatten(-1, (self.p, self.d_out))

    def expand_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`expand` of x (batch, d_in) written into out (batch, p, d_out), with no temporary
        (for recurrent steps: an out= product records no gradient)."""
        torch.addmm(self.linear.bias, x, self.linear.weight.t(), out=out.view(x.shape[0], -1))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, Lp, _ = x.shape
        y = self.expand(x)  # (b, Lp, p, d_out)
        y = F.pad(y[:, :-1], (0, 0, 0, 0, 1, 0))  # output of pooled step j feeds steps of block j+1
        return y.reshape(b, Lp * self.p, self.d_out)


class UNetLevel(nn.Module):
    """One resolution of the U-Net: n layers down, pool, the inner level, unpool, skip, n layers up.

    The innermost level (no pooling left) is the centre: n layers only.
    """

    def __init__(self, cfg: ModelConfig, depth: int, d: int):
        super().__init__()
        kind = cfg.outer if depth == 0 else cfg.inner
        self.depth, self.d = depth, d
        self.is_centre = depth == len(cfg.pool)
        self._pending = False  # an inner step runs on the side stream, not yet joined
        self.down = nn.ModuleList(make_layer(kind, d, cfg) for _ in range(cfg.n_layers))
        if not self.is_centre:
            p, d_in = cfg.pool[depth], d * cfg.pool_expand
            self.p = p
            self.pool = DownPool(d, d_in, p)
            self.inner = UNetLevel(cfg, depth + 1, d_in)
            self.unpool = UpPool(d_in, d, p)
            self.up = nn.ModuleList(make_layer(kind, d, cfg) for _ in range(cfg.n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_layers(self, self.down, x)
        if self.is_centre:
            return x
        skip = x
        x = self.unpool(self.inner(self.pool(x))) + skip
        return _run_layers(self, self.up, x)

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        st = {"down": alloc_layer_states(self.down, batch, device, dtype, max_len)}
        if not self.is_centre:
            ref = self.pool.linear.weight
            device, wdt = device or ref.device, dtype or ref.dtype
            st["pool_buf"] = torch.zeros(batch, self.p, self.d, device=device, dtype=wdt)
            st["up_buf"] = torch.zeros(batch, self.p, self.d, device=device, dtype=wdt)
            st["pooled"] = torch.zeros(batch, self.pool.linear.out_features, device=device, dtype=wdt)
            inner_len = None if max_len is None else -(-max_len // self.p)
            st["inner"] = self.inner.allocate_state(batch, device, dtype, inner_len)
            st["up"] = alloc_layer_states(self.up, batch, device, dtype, max_len)
        return st

    def step(self, x: torch.Tensor, state: dict, t: int, index: torch.Tensor | None = None,
             norm: nn.Module | None = None) -> torch.Tensor:
        """One step of this level at its own time index t (the caller runs it only when due).

        On CUDA the inner level runs on a side stream (`_fork_inner`): its output is first read
        one step later, so it overlaps this level's up layers, the head and the next step's down
        layers, on SMs that a small batch leaves idle. `index` and `norm` (the root level of a
        language model): x is an embedding table and x[index] the input; `norm` is applied to
        the output (fused into the first and last stack kernels where they run)."""
        if self.is_centre:
            return step_layers(self.down, x, state["down"], index=index, norm=norm)
        slot = t % self.p
        x = step_layers(self.down, x, state["down"], out=state["pool_buf"][:, slot], index=index)
        self._join_self()  # up_buf below was written by the previous pooled step's inner level
        up = state["up_buf"][:, slot]
        if slot < self.p - 1:
            return step_layers(self.up, x, state["up"], add=up, norm=norm)
        # a pooled step is complete: run the inner level once; it overwrites up_buf
        if x.is_cuda and _overlap_inner():
            inner_out = self._fork_inner(state, t)
            x = step_layers(self.up, x, state["up"], add=up, norm=norm)
            self._unpool_after(state, inner_out)
            return x
        up = up.clone()
        pooled = self.pool.linear(state["pool_buf"].flatten(1))
        inner_out = self.inner.step(pooled, state["inner"], t // self.p)
        state["up_buf"].copy_(self.unpool.expand(inner_out))
        return step_layers(self.up, x, state["up"], add=up, norm=norm)

    def _fork_inner(self, state: dict, t: int) -> torch.Tensor:
        """The inner level's step on this level's side stream; returns its output (on that
        stream). It reads only buffers that the main stream leaves alone until `join_inner` (the
        pooled input is copied out of pool_buf first, since the next step overwrites slot 0)."""
        device = state["pool_buf"].device
        main, side = torch.cuda.current_stream(device), _side_stream(device, self.depth)
        lin = self.pool.linear
        torch.addmm(lin.bias, state["pool_buf"].flatten(1), lin.weight.t(), out=state["pooled"])
        side.wait_stream(main)
        with torch.cuda.stream(side):
            inner_out = self.inner.step(state["pooled"], state["inner"], t // self.p)
        self._pending = device
        return inner_out

    def _unpool_after(self, state: dict, inner_out: torch.Tensor) -> None:
        """Unpool the forked inner output into up_buf on the side stream, once the main stream
        has enqueued everything that reads the old up_buf (this step's up layers): no copy of
        up_buf on the main stream, and the side stream rarely waits (the up layers take less
        time than the inner level)."""
        device = state["up_buf"].device
        side = _side_stream(device, self.depth)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            self.unpool.expand_into(inner_out, state["up_buf"])

    def _join_self(self) -> None:
        if self._pending:
            torch.cuda.current_stream(self._pending).wait_stream(_side_stream(self._pending, self.depth))
            self._pending = False

    def join_inner(self) -> None:
        """Make the current stream wait for every forked inner step of this level and the levels
        inside it (each level joins only its own inner level when it reads up_buf). Decoders call
        it at the end of every captured graph: a capture must not end with work left on a side
        stream."""
        if not self.is_centre:
            self._join_self()
            self.inner.join_inner()


class UNet(nn.Module):
    """Causal U-Net backbone. Lengths that are not a multiple of the total pooling are padded at
    the end (causality makes the padding invisible to earlier outputs) and cropped back."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.total_pool = 1
        for p in cfg.pool:
            self.total_pool *= p
        self.root = UNetLevel(cfg, 0, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        pad = (-L) % self.total_pool
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        return self.root(x)[:, :L]

    def allocate_state(self, batch: int, device=None, dtype=None, max_len: int | None = None) -> dict:
        return {"t": 0, "root": self.root.allocate_state(batch, device, dtype, max_len)}

    def step(self, x: torch.Tensor, state: dict, index: torch.Tensor | None = None,
             norm: nn.Module | None = None) -> torch.Tensor:
        """One recurrent step; `index` and `norm` as in UNetLevel.step."""
        y = self.root.step(x, state["root"], state["t"], index=index, norm=norm)
        state["t"] += 1
        if y.is_cuda and not torch.cuda.is_current_stream_capturing():
            # eager steps leave no work on the side streams: the state's tensors are the main
            # stream's, and the caching allocator would hand their memory to the next allocation
            # once the caller drops them while a forked inner step still writes it (captured
            # decoders join at the end of each graph instead, see core/generate.py)
            self.root.join_inner()
        return y

    def join_inner(self) -> None:
        """Wait for inner levels still running on side streams (see UNetLevel.step)."""
        self.root.join_inner()


def build_backbone(cfg: ModelConfig) -> nn.Module:
    return Isotropic(cfg) if cfg.arch == "isotropic" else UNet(cfg)
