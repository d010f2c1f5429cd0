"""Triton forward selective scan (real A), sequential in time inside a chunk: an alternative
to the tile kernel of triton_fwd.py (`_fwd_kernel`), chosen with SEQSUITE_SCAN_FWD=seq or
ScanConfig.fwd = "seq". EXPERIMENTAL: correct (same tests as the tile kernel), not yet timed
on a GPU.

Why: the tile kernel runs one `tl.associative_scan` per state over a (BD, TL) block, so every
(b, d, l, n) point costs shuffle levels and a cross-lane reduction for the carried state; ncu
puts it at 57% issue use and 23% occupancy, bound by dependent latency (notes-kernels.md).
Here a program owns BD channels x all N states of a chunk, the state h (BD, N) stays in
registers, and each time step is h = exp(Δ A) h + Δ u B; y = <h, C> + D u, gated by SiLU(z).
The recurrence itself is one FMA per (d, n) on the critical path; the exps, the loads of the
next steps and the C-contraction are independent of it, and the TL steps of a tile are
unrolled so the compiler can overlap them. The per-step loads of u, Δ, z (one element per
channel, stride L apart) are served from L1/L2 after the first step of each 32-byte sector.

Outputs are identical in layout to `_fwd_kernel` (y; the state at the start of every TL-step
tile in hs (batch, n_tiles, N, dim); the last state), so the same backward and chunk
summary / combine kernels are used.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import _softplus


@triton.jit
def _fwd_seq_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    h0_ptr, hs_ptr, last_ptr, yp_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    BD: tl.constexpr, NP: tl.constexpr, TL: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    HAS_H0: tl.constexpr, SAVE_Y: tl.constexpr = False,
):
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    dmask = offs_d < dim
    offs_n = tl.arange(0, NP)
    nmask = offs_n < N
    m2 = dmask[:, None] & nmask[None, :]
    A2 = tl.load(A_ptr + offs_d[:, None] * s_ab + offs_n[None, :] * s_an, mask=m2, other=0.0)
    A2 = A2.to(tl.float32) * 1.4426950408889634
    # (n, d) offsets of the (batch, *, N, dim) state buffers: contiguous along the channels
    nd = offs_n[None, :] * dim + offs_d[:, None]
    hs_b = hs_ptr + pid_b * n_tiles * N * dim
    if HAS_H0:
        h = tl.load(h0_ptr + (pid_b * n_chunks + pid_c) * N * dim + nd, mask=m2, other=0.0)
    else:
        h = tl.zeros((BD, NP), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    base_u = pid_b * s_ub + offs_d.to(tl.int64) * s_ud
    gbB = pid_b * sB_b + ((pid_d * BD) // group_b) * sB_g
    gbC = pid_b * sC_b + ((pid_d * BD) // group_c) * sC_g
    if not B_VARY:
        Bc = tl.load(B_ptr + offs_d[:, None] * sB_g + offs_n[None, :] * sB_n, mask=m2, other=0.0).to(tl.float32)
    if not C_VARY:
        Cc = tl.load(C_ptr + offs_d[:, None] * sC_g + offs_n[None, :] * sC_n, mask=m2, other=0.0).to(tl.float32)
    t_start = pid_c * chunk_len
    t_end = t_start + chunk_len
    if t_end > L:
        t_end = L
    for t0 in range(t_start, t_end, TL):
        tile = pid_b * 0 + t0 // TL  # int64
        tl.store(hs_b + tile * N * dim + nd, h, mask=m2)
        for i in tl.static_range(TL):
            t = t0 + i
            ok = t < t_end
            lm = dmask & ok
            u = tl.load(u_ptr + base_u + t, mask=lm, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + base_u + t, mask=lm, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(lm, dt, 0.0)  # past the chunk: exp(0) = 1 and no input, h unchanged
            if B_VARY:
                Bt = tl.load(B_ptr + gbB + offs_n * sB_n + t * sB_l, mask=nmask & ok, other=0.0)
                Bt = Bt.to(tl.float32)[None, :]
            else:
                Bt = Bc
            if C_VARY:
                Ct = tl.load(C_ptr + gbC + offs_n * sC_n + t * sC_l, mask=nmask & ok, other=0.0)
                Ct = Ct.to(tl.float32)[None, :]
            else:
                Ct = Cc
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt
            y = tl.sum(h * Ct, axis=1)
            if HAS_D:
                y += Dv * u
            if SAVE_Y:  # y before the gate, for the backward's dz
                tl.store(yp_ptr + base_u + t, y.to(yp_ptr.dtype.element_ty), mask=lm)
            if HAS_Z:
                zz = tl.load(z_ptr + base_u + t, mask=lm, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(y_ptr + base_u + t, y.to(y_ptr.dtype.element_ty), mask=lm)
    if t_end == L:
        tl.store(last_ptr + (pid_b * dim + offs_d[:, None]) * N + offs_n[None, :], h, mask=m2)
