"""Selective-scan kernels: `selective_scan` and `selective_state_update`, with dispatch.

Backends (DESIGN §3):
* "triton": the fused GPU kernels, chosen for CUDA tensors: the scan's forward and backward
  in Gluon (gluon_fwd.py, gluon_bwd.py; Triton's explicit-layout dialect) with plain-Triton
  kernels for the shapes those do not take (triton_fwd.py, triton_bwd.py; triton_scan.py
  says which runs), complex states in plain Triton (triton_complex.py), and the decode
  kernels (triton_decode.py, triton_mamba_step.py). On CPU tensors only the plain-Triton
  kernels run, under TRITON_INTERPRET=1 (tests).
* "cpu": a sequential recurrence with a hand-written backward (cpu_scan.py), chosen for real
  CPU tensors; tens of times faster than the closed-form reference for training.
* "reference": the plain-PyTorch definition in reference.py (the ground truth), used for
  complex A/B/C on CPU and on request.
Override with SEQSUITE_SCAN_BACKEND=reference|cpu|triton|auto.

Cases the Triton path does not cover go to the reference even when "triton" is chosen:
float64 inputs (the kernels compute in float32), and in `selective_state_update` a state that
is neither float32 nor complex64. Complex A/B/C (S4D-style complex states) run in
triton_complex.py's kernels. `backend_for(...)` says which backend a call would use.
"""
from __future__ import annotations

import os

import torch

from .cpu_scan import selective_scan_cpu
from .reference import selective_scan_ref, selective_state_update_ref

__all__ = ["selective_scan", "selective_state_update", "backend_for"]

_BACKENDS = ("auto", "reference", "cpu", "triton")


def _chosen(device: torch.device) -> str:
    name = os.environ.get("SEQSUITE_SCAN_BACKEND", "auto").strip().lower() or "auto"
    if name not in _BACKENDS:
        raise ValueError(f"SEQSUITE_SCAN_BACKEND={name!r}: use one of {', '.join(_BACKENDS)}")
    if name == "auto":
        return "triton" if device.type == "cuda" else "cpu"
    if name == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("SEQSUITE_SCAN_BACKEND=triton on CPU tensors needs TRITON_INTERPRET=1")
    return name


def _any_complex(*tensors: torch.Tensor) -> bool:
    return any(t.is_complex() for t in tensors)


def backend_for(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> str:
    """The backend `selective_scan` uses for these inputs ("triton", "cpu" or "reference")."""
    name = _chosen(u.device)
    if name == "cpu" and _any_complex(A, B, C):
        return "reference"
    if name in ("triton", "cpu") and u.dtype == torch.float64:
        return "reference"
    return name


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False):
    """y = selective scan of u (batch, dim, L); see docs/ARCHITECTURE.md "Kernels".

    Returns y in u's dtype, and the last state (batch, dim, N) when `return_last_state`.
    Differentiable in every tensor argument on both backends."""
    backend = backend_for(u, A, B, C)
    if backend == "triton" and _any_complex(A, B, C):
        from .triton_complex import selective_scan_complex_triton

        return selective_scan_complex_triton(u, delta, A, B, C, D, z, delta_bias,
                                             delta_softplus, return_last_state)
    if backend == "triton":
        from .triton_scan import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                     return_last_state)
    if backend == "cpu":
        return selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state)
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              return_last_state)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                           dt_softplus=False):
    """One recurrent step; `state` (batch, dim, N) is updated in place; returns y (batch, dim).

    B, C: (batch, N) or (batch, G, N); a time-invariant (dim, N) B is passed as
    B.expand(batch, dim, N). The Triton kernels handle float32 real and complex64 states."""
    name = _chosen(state.device)
    if state.dtype == torch.float32:  # a real state: real A, B, C
        kernel_takes = not _any_complex(A, B, C)
    else:  # a complex64 state: A complex64 or float32; B, C anything but complex128
        kernel_takes = (state.dtype == torch.complex64
                        and A.dtype in (torch.complex64, torch.float32)
                        and torch.complex128 not in (B.dtype, C.dtype))
    if name == "triton" and kernel_takes:
        from .triton_decode import selective_state_update_triton

        return selective_state_update_triton(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return selective_state_update_ref(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
