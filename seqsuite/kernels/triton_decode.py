"""Triton decode step: one fused kernel updates the state in place and returns y.

    dt = softplus(dt + dt_bias);  state <- exp(dt A) state + dt B x;  y = sum_n C state + D x;
    y <- y silu(z)

One program per (batch, BD channels) holds a (BD, N) block of the state. The launch does no
allocation beyond the output, so it can be captured in a CUDA graph. A complex64 state (complex
A; B and C real or complex) runs `_decode_complex_kernel` on the tensors' real views, with
y = 2 Re(sum_n C state) as in the scan.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_complex import _cexp
from .triton_fwd import _softplus


@triton.jit
def _decode_in(x_ptr, dt_ptr, bias_ptr, pid_b, offs_d, dmask, s_xb, s_xd, s_tb, s_td,
               HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """x and dt (+ bias, softplus) of a program's BD channels, fp32."""
    x = tl.load(x_ptr + pid_b * s_xb + offs_d * s_xd, mask=dmask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + pid_b * s_tb + offs_d * s_td, mask=dmask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = _softplus(dt)
    return x, dt


@triton.jit
def _decode_out(y, x, D_ptr, z_ptr, y_ptr, pid_b, offs_d, dmask, dim, s_zb, s_zd,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """y + D x, gated by silu(z), stored in y's dtype."""
    if HAS_D:
        y += tl.load(D_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32) * x
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * s_zb + offs_d * s_zd, mask=dmask, other=0.0).to(tl.float32)
        y = y * z * tl.sigmoid(z)
    tl.store(y_ptr + pid_b * dim + offs_d, y.to(y_ptr.dtype.element_ty), mask=dmask)


@triton.jit
def _decode_kernel(
    state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
    dim, N, group_b, group_c,
    s_sb, s_sd, s_sn, s_xb, s_xd, s_tb, s_td, s_zb, s_zd, s_ad, s_an,
    sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
    BD: tl.constexpr, NP: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    dmask = offs_d < dim
    mask2 = dmask[:, None] & (offs_n[None, :] < N)
    x, dt = _decode_in(x_ptr, dt_ptr, bias_ptr, pid_b, offs_d, dmask, s_xb, s_xd, s_tb, s_td,
                       HAS_BIAS, SOFTPLUS)
    A = tl.load(A_ptr + offs_d[:, None] * s_ad + offs_n[None, :] * s_an, mask=mask2, other=0.0)
    gb = offs_d // group_b
    gc = offs_d // group_c
    Bt = tl.load(B_ptr + pid_b * sB_b + gb[:, None] * sB_g + offs_n[None, :] * sB_n,
                 mask=mask2, other=0.0).to(tl.float32)
    Ct = tl.load(C_ptr + pid_b * sC_b + gc[:, None] * sC_g + offs_n[None, :] * sC_n,
                 mask=mask2, other=0.0).to(tl.float32)
    sp = state_ptr + pid_b * s_sb + offs_d[:, None] * s_sd + offs_n[None, :] * s_sn
    s = tl.load(sp, mask=mask2, other=0.0).to(tl.float32)
    s = s * tl.exp(dt[:, None] * A.to(tl.float32)) + (dt * x)[:, None] * Bt
    tl.store(sp, s.to(state_ptr.dtype.element_ty), mask=mask2)
    y = tl.sum(s * Ct, axis=1)
    _decode_out(y, x, D_ptr, z_ptr, y_ptr, pid_b, offs_d, dmask, dim, s_zb, s_zd, HAS_D, HAS_Z)


@triton.jit
def _decode_complex_kernel(
    state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, y_ptr,
    dim, N, group_b, group_c,
    s_sb, s_sd, s_sn, s_xb, s_xd, s_tb, s_td, s_zb, s_zd, s_ad, s_an,
    sB_b, sB_g, sB_n, sC_b, sC_g, sC_n,
    BD: tl.constexpr, NP: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    B_CPLX: tl.constexpr, C_CPLX: tl.constexpr,
):
    """`_decode_kernel` for a complex state: state, A (and B, C when B_CPLX / C_CPLX) are the
    real views of complex tensors (strides in floats, the imaginary part one float after the
    real)."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    dmask = offs_d < dim
    mask2 = dmask[:, None] & (offs_n[None, :] < N)
    x, dt = _decode_in(x_ptr, dt_ptr, bias_ptr, pid_b, offs_d, dmask, s_xb, s_xd, s_tb, s_td,
                       HAS_BIAS, SOFTPLUS)
    pa = A_ptr + offs_d[:, None] * s_ad + offs_n[None, :] * s_an
    Ar = tl.load(pa, mask=mask2, other=0.0)
    Ai = tl.load(pa + 1, mask=mask2, other=0.0)
    gb = offs_d // group_b
    gc = offs_d // group_c
    pb = B_ptr + pid_b * sB_b + gb[:, None] * sB_g + offs_n[None, :] * sB_n
    pc = C_ptr + pid_b * sC_b + gc[:, None] * sC_g + offs_n[None, :] * sC_n
    Br = tl.load(pb, mask=mask2, other=0.0).to(tl.float32)
    Cr = tl.load(pc, mask=mask2, other=0.0).to(tl.float32)
    if B_CPLX:
        Bi = tl.load(pb + 1, mask=mask2, other=0.0).to(tl.float32)
    else:
        Bi = Br * 0.0
    if C_CPLX:
        Ci = tl.load(pc + 1, mask=mask2, other=0.0).to(tl.float32)
    else:
        Ci = Cr * 0.0
    sp = state_ptr + pid_b * s_sb + offs_d[:, None] * s_sd + offs_n[None, :] * s_sn
    sr = tl.load(sp, mask=mask2, other=0.0)
    si = tl.load(sp + 1, mask=mask2, other=0.0)
    ar, ai = _cexp(dt[:, None], Ar, Ai)
    dx = (dt * x)[:, None]
    nr = ar * sr - ai * si + dx * Br
    ni = ar * si + ai * sr + dx * Bi
    tl.store(sp, nr, mask=mask2)
    tl.store(sp + 1, ni, mask=mask2)
    y = 2.0 * tl.sum(Cr * nr - Ci * ni, axis=1)
    _decode_out(y, x, D_ptr, z_ptr, y_ptr, pid_b, offs_d, dmask, dim, s_zb, s_zd, HAS_D, HAS_Z)


def _step_bc(X: torch.Tensor, dim: int):
    """(tensor, group size, strides (batch, group, n)) for B/C of one step."""
    if X.dim() == 2:  # (batch, N): one group
        return dim, (X.stride(0), 0, X.stride(1))
    G = X.shape[1]
    return dim // G, (X.stride(0), X.stride(1), X.stride(2))


def _real_view(X: torch.Tensor):
    """A complex tensor as its real view (..., 2) without its last dimension: the same
    pointer, strides in floats; a real tensor as it is."""
    return torch.view_as_real(X)[..., 0] if X.is_complex() else X


def selective_state_update_triton(state, x, dt, A, B, C, D=None, z=None, dt_bias=None,
                                  dt_softplus=False, block_d: int = 16) -> torch.Tensor:
    """Launch the decode kernel; `state` (batch, dim, N) float32 or complex64 is updated in
    place (complex: A complex64, B and C real or complex64)."""
    batch, dim, N = state.shape
    D = D.contiguous() if D is not None else None
    dt_bias = dt_bias.contiguous() if dt_bias is not None else None
    y = torch.empty((batch, dim), dtype=x.dtype, device=x.device)
    cplx = state.is_complex()
    flags = {}
    if cplx:
        if not A.is_complex():
            A = A.to(torch.complex64)
        flags = dict(B_CPLX=B.is_complex(), C_CPLX=C.is_complex())
        state, A, B, C = (_real_view(t) for t in (state, A, B, C))
    gb, sb = _step_bc(B, dim)
    gc, sc = _step_bc(C, dim)
    NP = max(triton.next_power_of_2(N), 2)
    BD = min(block_d, triton.next_power_of_2(dim))
    dummy = x
    zz = z if z is not None else x
    grid = (batch, triton.cdiv(dim, BD))
    (_decode_complex_kernel if cplx else _decode_kernel)[grid](
        state, x, dt, A, B, C, D if D is not None else dummy, zz,
        dt_bias if dt_bias is not None else dummy, y,
        dim, N, gb, gc,
        state.stride(0), state.stride(1), state.stride(2), x.stride(0), x.stride(1),
        dt.stride(0), dt.stride(1), zz.stride(0), zz.stride(1), A.stride(0), A.stride(1),
        *sb, *sc,
        BD=BD, NP=NP, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=bool(dt_softplus), num_warps=4, **flags,
    )
    return y
