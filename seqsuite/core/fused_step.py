"""The decoding step of a stack of Mamba-S6 residual layers as one kernel launch.

`step_layers(layers, x, states)` is what the backbones call: it runs the stack through
kernels/triton_mamba_step.py when it can, and the layers' own `step` otherwise (the reference,
and the path for S4, attention, Hyena, float64 or a state that is not stacked). The kernel
needs the layers' states stacked in one tensor per kind: `alloc_layer_states` allocates them
that way (each layer's dict holds views), and the backbones use it, so the two paths share the
same state and can alternate.

Stacked copies of the weights are cached on the layer list (core/derived.py) and refreshed in
place when a parameter changes, so a CUDA graph that captured them stays valid. SEQSUITE_FUSED_STEP=0 turns the fused path off (A/B timing), =1 forces it
(also on CPU tensors: tests, under TRITON_INTERPRET=1); the default uses it for CUDA tensors at
batch <= FUSED_MAX_BATCH (one program per sequence reads every weight, so at large batch the
batched matmuls of the per-layer path win; SEQSUITE_FUSED_MAX_BATCH overrides the bound) and
width d_model <= FUSED_MAX_D (SEQSUITE_FUSED_MAX_D), or any width where the split kernel runs
(small batch: kernels/triton_mamba_step.py split_programs).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .block import MambaBlock, Residual, RMSNorm, alloc_state
from .derived import DerivedTensors
from .s6 import S6

FUSED_MAX_BATCH = 256
FUSED_MAX_D = 128  # measured 2026-11-29 (benchmarks/decode_policy.py, RESULTS.md): wider stacks run faster per layer


def _mamba_s6(layer: nn.Module) -> MambaBlock | None:
    if isinstance(layer, Residual) and isinstance(layer.mixer, MambaBlock) and isinstance(layer.mixer.mixer, S6):
        return layer.mixer
    return None


def fusable(layers) -> bool:
    """Whether `layers` is a non-empty stack of Mamba-S6 residual layers of one shape."""
    blocks = [_mamba_s6(layer) for layer in layers]
    if not blocks or any(b is None for b in blocks):
        return False
    shape = lambda b: (b.in_proj.in_features, b.d_inner, b.d_conv, b.mixer.d_state, b.mixer.dt_rank)  # noqa: E731
    k = blocks[0].d_conv
    return all(shape(b) == shape(blocks[0]) for b in blocks) and k & (k - 1) == 0


def _mode() -> str:
    return os.environ.get("SEQSUITE_FUSED_STEP", "auto").strip().lower() or "auto"


def alloc_layer_states(layers, batch: int, device=None, dtype=None, max_len: int | None = None) -> list:
    """Per-layer states; for a fusable stack, views of stacked (layers, batch, ...) tensors."""
    if not fusable(layers) or dtype == torch.float64:
        return [alloc_state(layer, batch, device, dtype, max_len) for layer in layers]
    first = layers[0].mixer
    device = device or first.in_proj.weight.device
    conv = torch.zeros(len(layers), batch, first.d_inner, first.d_conv, device=device,
                       dtype=dtype or first.in_proj.weight.dtype)
    ssm = torch.zeros(len(layers), batch, first.d_inner, first.mixer.d_state, device=device, dtype=torch.float32)
    return [{"conv": conv[i], "ssm": ssm[i]} for i in range(len(layers))]


def _stacked_states(states: list):
    """(conv, ssm) stacked bases when every layer's state is view i of them, else None."""
    conv, ssm = states[0]["conv"]._base, states[0]["ssm"]._base
    if conv is None or ssm is None or conv.shape[0] != len(states) or ssm.shape[0] != len(states):
        return None
    if ssm.dtype != torch.float32 or not (conv.is_contiguous() and ssm.is_contiguous()):
        return None
    for i, st in enumerate(states):
        if st["conv"].data_ptr() != conv[i].data_ptr() or st["ssm"].data_ptr() != ssm[i].data_ptr():
            return None
    return conv, ssm


def _stack_params(layers):
    for layer in layers:
        b = layer.mixer
        yield from (layer.norm.weight, b.in_proj.weight, b.conv.weight, b.conv.bias, b.mixer.x_proj.weight,
                    b.mixer.dt_proj.weight, b.mixer.dt_proj.bias, b.mixer.A_log, b.mixer.D, b.out_proj.weight)


def _stack_weights(layers) -> dict[str, torch.Tensor]:
    """The kernel's weights: each parameter of the layers stacked over layers, contiguous."""
    blocks = [(layer, layer.mixer) for layer in layers]
    new = {
        "norm": torch.stack([layer.norm.weight.float() for layer, _ in blocks]),
        "w_in": torch.stack([b.in_proj.weight for _, b in blocks]),
        "conv_w": torch.stack([b.conv.weight[:, 0, :] for _, b in blocks]),
        "conv_b": torch.stack([b.conv.bias for _, b in blocks]),
        "x_proj": torch.stack([b.mixer.x_proj.weight for _, b in blocks]),
        "dt_w": torch.stack([b.mixer.dt_proj.weight for _, b in blocks]),
        "dt_bias": torch.stack([b.mixer.dt_proj.bias.float() for _, b in blocks]),
        "A": torch.stack([-torch.exp(b.mixer.A_log.float()) for _, b in blocks]),
        "D": torch.stack([b.mixer.D.float() for _, b in blocks]),
        "w_out": torch.stack([b.out_proj.weight for _, b in blocks]),
    }
    return {k: v.contiguous() for k, v in new.items()}


class _FusedCache:
    """Per layer list: the stacked weights (refreshed in place when a parameter changes) and the
    kernels' work buffers by (name, shape, dtype, device), never replaced: a captured CUDA graph
    keeps pointing at the buffers it was captured with, whatever batch another decoder uses."""

    def __init__(self):
        self.weights = DerivedTensors()
        self.buffers: dict[tuple, torch.Tensor] = {}

    def buffer_fn(self, device):
        def get(name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
            key = (name, tuple(shape), dtype, device)
            if key not in self.buffers:
                self.buffers[key] = torch.zeros(shape, device=device, dtype=dtype)
            return self.buffers[key]
        return get


def _auto(layers, x: torch.Tensor, batch: int) -> bool:
    """The default policy on CUDA: batch <= FUSED_MAX_BATCH, and width <= FUSED_MAX_D unless the
    split kernel takes the stack (several programs per sequence: it beats the per-layer path at
    every width measured, 2026-11-29)."""
    from ..kernels.triton_mamba_step import split_programs

    d = x.shape[1]
    if not x.is_cuda or batch > int(os.environ.get("SEQSUITE_FUSED_MAX_BATCH", FUSED_MAX_BATCH)):
        return False
    return d <= int(os.environ.get("SEQSUITE_FUSED_MAX_D", FUSED_MAX_D)) or \
        split_programs(batch, d, layers[0].mixer.d_inner, x.device) > 0


def _fused_io() -> bool:
    return os.environ.get("SEQSUITE_FUSED_IO", "1").strip() != "0"


def step_layers(layers: nn.ModuleList, x: torch.Tensor, states: list, add: torch.Tensor | None = None,
                out: torch.Tensor | None = None, index: torch.Tensor | None = None,
                norm: nn.Module | None = None) -> torch.Tensor:
    """x (+ add) (batch, d) through every layer's recurrent step, fused into one kernel when
    possible; written into `out` (a row-strided view is fine) when given.

    `index` (batch,): x is an embedding table and the input is x[index]. `norm` (an RMSNorm):
    the result is norm(output). The fused kernel does both in the same launch (a model's
    embedding and final norm at batch 1 are launches of their own otherwise);
    SEQSUITE_FUSED_IO=0 leaves them to torch (A/B timing)."""
    mode = _mode()
    batch = x.shape[0] if index is None else index.shape[0]
    if mode != "0" and x.dtype != torch.float64 and fusable(layers) and (mode == "1" or _auto(layers, x, batch)):
        stacked = _stacked_states(states)
        if stacked is not None:
            from ..kernels.triton_mamba_step import mamba_stack_step_triton

            io = _fused_io()
            if index is not None and not io:
                x, index = F.embedding(index, x), None
            final = None
            if norm is not None and io and isinstance(norm, RMSNorm):
                final, norm = (norm.weight, norm.eps), None
            cache = layers.__dict__.setdefault("_fused_step_cache", _FusedCache())
            w = cache.weights.get(list(_stack_params(layers)), lambda: _stack_weights(layers), (x.device,))
            conv, ssm = stacked
            y = mamba_stack_step_triton(x, w, conv, ssm, layers[0].norm.eps, cache.buffer_fn(x.device),
                                        out=out, add=add, index=index, final_norm=final)
            return y if norm is None else norm(y)
    if index is not None:
        x = F.embedding(index, x)
    if add is not None:
        x = x + add
    for layer, st in zip(layers, states):
        x = layer.step(x, st)
    if norm is not None:
        x = norm(x)
    if out is not None:
        out.copy_(x)
        return out
    return x
