"""Selective scan for CPU training: a sequential recurrence with a hand-written backward.

Same function as `reference.selective_scan_ref` (real A only; complex A stays on the
reference), but organised like the GPU kernel instead of the closed form: the state is
carried step by step through a chunk of T steps with one fused multiply-add per step, only
the chunk-boundary states are kept for the backward, and the backward recomputes each
chunk's states and runs the adjoint recurrence in reverse

    g_t = ∂y_t/∂h_t + exp(dt_{t+1} A) g_{t+1},

from which every gradient follows by vectorised products over the chunk. Work is
O(batch · dim · L · N) (the closed form is O(… · T)), and memory is
O(batch · dim · T · N) per chunk plus the boundary states. On a 2-core CPU this is tens of
times faster than the closed form for training shapes, which is what makes CPU training of
the small presets practical.

Internal layout per chunk: (T, batch, G, dim/G, N), so one time step is a contiguous slice
and grouped B/C broadcast over the channels of their group.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CPU_CHUNK = 64


def _bc5(X: torch.Tensor, dim: int) -> tuple[torch.Tensor, int]:
    """B or C as a 5-D (L|1, batch|1, G|1, 1|dim, N) float32 tensor, and the group count."""
    X = X.float()
    if X.dim() == 2:  # (dim, N) time-invariant
        return X[None, None, None], 1
    if X.dim() == 3:  # (batch, N, L)
        return X.permute(2, 0, 1)[:, :, None, None, :], 1
    if X.dim() == 4:  # (batch, G, N, L)
        G = X.shape[1]
        if dim % G:
            raise ValueError(f"dim {dim} is not divisible by the number of groups {G}")
        return X.permute(3, 0, 1, 2)[:, :, :, None, :], G
    raise ValueError(f"B/C must be 2-D, 3-D or 4-D, got shape {tuple(X.shape)}")


def _fit_invariant(X5: torch.Tensor, X: torch.Tensor, G: int) -> torch.Tensor:
    """A time-invariant (dim, N) B/C laid out over the (G, dim/G) channel split."""
    if X.dim() != 2:
        return X5
    d, N = X.shape
    return X5.reshape(1, 1, G, d // G, N)


def _un_bc5(g5: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of `_bc5` for a gradient laid out like the 5-D view."""
    if like.dim() == 2:
        return g5.reshape(like.shape)
    if like.dim() == 3:
        return g5[:, :, 0, 0, :].permute(1, 2, 0)
    return g5[:, :, :, 0, :].permute(1, 2, 3, 0)


def _reduce_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum x over the dims where `shape` has size 1 (broadcast inverse), keeping dims."""
    dims = [i for i, (a, b) in enumerate(zip(x.shape, shape)) if b == 1 and a != 1]
    return x.sum(dims, keepdim=True) if dims else x


def _tchunk(x: torch.Tensor, lo: int, hi: int, G: int) -> torch.Tensor:
    """(batch, dim, L) → (T, batch, G, dim/G, 1) for steps [lo, hi)."""
    b, d, _ = x.shape
    return x[:, :, lo:hi].permute(2, 0, 1).reshape(hi - lo, b, G, d // G, 1)


def _bslice(X5: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    return X5[lo:hi] if X5.shape[0] > 1 else X5


def _layout(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor):
    """B, C in the 5-D chunk layout, the group count G, channels per group and A as (G, dg, N)."""
    d = u.shape[1]
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError("B and C must have the same number of groups")
    B5, Gb = _bc5(B, d)
    C5, Gc = _bc5(C, d)
    G = max(Gb, Gc)
    B5, C5 = _fit_invariant(B5, B, G), _fit_invariant(C5, C, G)
    return B5, C5, G, d // G, A.reshape(G, d // G, A.shape[-1])


class _ScanCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dt, u, A, B, C, h0, chunk):
        b, d, L = u.shape
        N = A.shape[-1]
        B5, C5, G, dg, A3 = _layout(u, A, B, C)
        h = (h0.reshape(b, G, dg, N).clone() if h0 is not None
             else u.new_zeros(b, G, dg, N))
        y = u.new_empty(b, d, L)
        starts = []
        for lo in range(0, L, chunk):
            hi = min(lo + chunk, L)
            T = hi - lo
            starts.append(h.clone())
            dt_c = _tchunk(dt, lo, hi, G)
            dA = torch.exp(dt_c * A3)
            dBu = (dt_c * _tchunk(u, lo, hi, G)) * _bslice(B5, lo, hi)
            H = torch.empty(T, b, G, dg, N)
            for i in range(T):
                torch.addcmul(dBu[i], dA[i], h, out=H[i])
                h = H[i]
            y_c = (H * _bslice(C5, lo, hi)).sum(-1)  # (T, b, G, dg)
            y[:, :, lo:hi] = y_c.reshape(T, b, d).permute(1, 2, 0)
            h = h.clone()
        ctx.save_for_backward(dt, u, A, B, C, torch.stack(starts))
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        return y, h.reshape(b, d, N)

    @staticmethod
    def backward(ctx, gy, ghlast):
        dt, u, A, B, C, starts = ctx.saved_tensors
        chunk = ctx.chunk
        b, d, L = u.shape
        N = A.shape[-1]
        B5, C5, G, dg, A3 = _layout(u, A, B, C)
        gy = gy.float() if gy is not None else u.new_zeros(b, d, L)
        carry = (ghlast.float().reshape(b, G, dg, N).clone() if ghlast is not None
                 else u.new_zeros(b, G, dg, N))
        g_dt = torch.empty_like(dt)
        g_u = torch.empty_like(u)
        g_A = torch.zeros(G, dg, N)
        g_B5 = torch.zeros_like(B5) if B5.shape[0] == 1 else torch.zeros(B5.shape)
        g_C5 = torch.zeros_like(C5) if C5.shape[0] == 1 else torch.zeros(C5.shape)
        los = list(range(0, L, chunk))
        for k in reversed(range(len(los))):
            lo = los[k]
            hi = min(lo + chunk, L)
            T = hi - lo
            h0 = starts[k]
            dt_c = _tchunk(dt, lo, hi, G)
            u_c = _tchunk(u, lo, hi, G)
            dA = torch.exp(dt_c * A3)
            dtu = dt_c * u_c
            Bc = _bslice(B5, lo, hi)
            Cc = _bslice(C5, lo, hi)
            dBu = dtu * Bc
            H = torch.empty(T, b, G, dg, N)
            h = h0
            for i in range(T):
                torch.addcmul(dBu[i], dA[i], h, out=H[i])
                h = H[i]
            gy_c = _tchunk(gy, lo, hi, G)  # (T, b, G, dg, 1)
            gC = _reduce_to(gy_c * H, Cc.shape)
            if C5.shape[0] == 1:
                g_C5 += gC
            else:
                g_C5[lo:hi] = gC
            gH = gy_c * Cc  # (T, b, G, dg, N); becomes the full adjoint below
            gH = gH.expand(T, b, G, dg, N).contiguous()
            for i in range(T - 1, -1, -1):
                gH[i] += carry
                carry = gH[i] * dA[i]
            Hprev = torch.cat([h0[None], H[:-1]], 0)
            s = gH * Hprev * dA  # ∂/∂(dt·A)
            g_dt_c = (s * A3).sum(-1, keepdim=True)
            g_A += (s * dt_c).sum((0, 1))
            g_dtu = (gH * Bc).sum(-1, keepdim=True)
            gB = _reduce_to(gH * dtu, Bc.shape)
            if B5.shape[0] == 1:
                g_B5 += gB
            else:
                g_B5[lo:hi] = gB
            g_dt_c = g_dt_c + g_dtu * u_c
            g_u_c = g_dtu * dt_c
            g_dt[:, :, lo:hi] = g_dt_c.reshape(T, b, d).permute(1, 2, 0)
            g_u[:, :, lo:hi] = g_u_c.reshape(T, b, d).permute(1, 2, 0)
        g_h0 = carry.reshape(b, d, N) if ctx.has_h0 else None
        return (g_dt, g_u, g_A.reshape(d, N), _un_bc5(g_B5, B), _un_bc5(g_C5, C), g_h0, None)


def selective_scan_cpu(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
):
    """`selective_scan_ref` with a sequential forward and hand-written backward (real A, fp32
    state). Same arguments and results; differentiable in every tensor argument."""
    if A.is_complex() or B.is_complex() or C.is_complex():
        raise ValueError("selective_scan_cpu handles real A/B/C; use selective_scan_ref")
    uf = u.float()
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    h0 = initial_state.float() if initial_state is not None else None
    y, h = _ScanCPU.apply(dt.contiguous(), uf.contiguous(), A.float(), B.float(), C.float(), h0,
                          int(chunk_size or CPU_CHUNK))
    if D is not None:
        y = y + D.float()[:, None] * uf
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(u.dtype)
    return (y, h) if return_last_state else y
