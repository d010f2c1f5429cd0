"""Triton selective scan with a complex diagonal state (S4D-style complex A, B, C).

The function is the reference's (reference.py): per batch b, channel d and state n,

    a_t = exp(dt_t A),   h_t = a_t h_{t-1} + dt_t u_t B_t,   y_t = 2 Re(Σ_n C_t h_t) + D u_t,

then the SiLU(z) gate; each complex state stands for a conjugate pair. A is complex; B and C
may each be real or complex, time-varying (batch, N, L), grouped (batch, G, N, L) or
time-invariant (dim, N). Complex tensors enter the kernels as their real and imaginary planes
(fp32), so the custom ops below take real tensors only and autograd maps their gradients back
to the complex inputs.

Forward (`_cfwd_kernel`): a program takes BD channels of one chunk of a sequence and walks it
in tiles of TL steps; inside a tile each state's recurrence is one `tl.associative_scan` of
complex (a, x) pairs over the time axis. The state entering every tile is written to `hs`
(batch, n_tiles, 2, N, dim): it carries the state to the next tile (the program reads back
what it wrote, after a block barrier) and is what the backward reads.

Backward (`_cbwd_kernel`), with the gradient convention of PyTorch for complex tensors
(∂ℓ/∂Re + i ∂ℓ/∂Im): the adjoint of the state is the reverse scan

    G_t = 2 dy_t conj(C_t) + conj(a_{t+1}) G_{t+1},   dy = dout · silu(z)  (+ dlast at the end),

and with w_t = a_t h_{t-1} = h_t − x_t and q_t = G_t conj(w_t):

    dA += dt q,   d(dt) += Re(conj(A) q) + u Re(conj(B) G),   du += dt Re(conj(B) G),
    dB_t += dt u G,   dC_t += 2 dy conj(h_t)

(for a real B or C, the real part). Each tile recomputes its states from `hs` and runs the
reverse scan on the flipped tile with the carry conj(a_first) G_first handed from the tile
after it.

Chunks over L (`_chunks`: where batch × dim / BD programs would leave the GPU half empty):
the same kernels in SUMMARY mode give each chunk's end state from a zero start (forward) or
the adjoint it hands to the step before it from a zero carry (backward), and
`_ccombine_kernel` carries those across the chunks. The kernels run on CUDA and, under
TRITON_INTERPRET=1, on the CPU (tests).
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_bwd import _bwd_flush, _bwd_tile_in, _bwd_tile_out
from .triton_fwd import _flat_nd, _load_bc, _load_dt


@triton.jit
def _clin_combine(ar1, ai1, br1, bi1, ar2, ai2, br2, bi2):
    """Compose two steps of h -> a h + b with complex a, b (left earlier, right later)."""
    return (ar1 * ar2 - ai1 * ai2, ar1 * ai2 + ai1 * ar2,
            ar2 * br1 - ai2 * bi1 + br2, ar2 * bi1 + ai2 * br1 + bi2)


@triton.jit
def _cexp(dt, Ar, Ai):
    """exp(dt (Ar + i Ai)) elementwise (the operands broadcast): (real, imaginary)."""
    mag = tl.exp2(dt * (Ar * 1.4426950408889634))
    ang = dt * Ai
    return mag * tl.cos(ang), mag * tl.sin(ang)


@triton.jit
def _load_cbc(re_ptr, im_ptr, offs_d, dmask, offs_t, tmask, n, gbase, s_g, s_n, s_l,
              VARY: tl.constexpr, CPLX: tl.constexpr):
    """B or C of state n as (real, imaginary) (`_load_bc`'s shapes; 0 imaginary if real)."""
    re = _load_bc(re_ptr, offs_d, dmask, offs_t, tmask, n, gbase, s_g, s_n, s_l, VARY)
    if CPLX:
        im = _load_bc(im_ptr, offs_d, dmask, offs_t, tmask, n, gbase, s_g, s_n, s_l, VARY)
    else:
        im = re * 0.0
    return re, im


@triton.jit
def _program(dim, s_ub, s_ud, BD: tl.constexpr, TL: tl.constexpr):
    """A program's ids (channel block, chunk, batch (int64)), its channels and their mask,
    the tile's column index (1, TL) and the channels' row offsets (BD, 1) into u-like tensors."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    cols = tl.arange(0, TL)[None, :]
    return (pid_d, pid_c, pid_b, offs_d, offs_d < dim, cols,
            pid_b * s_ub + offs_d[:, None].to(tl.int64) * s_ud)


@triton.jit
def _cfwd_kernel(
    u_ptr, dt_ptr, z_ptr, Ar_ptr, Ai_ptr, Br_ptr, Bi_ptr, Cr_ptr, Ci_ptr, D_ptr, bias_ptr,
    y_ptr, h0_ptr, hs_ptr, last_ptr, yp_ptr, dtsum_ptr,
    dim, L, N, chunk_len, n_chunks, n_slots, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    BD: tl.constexpr, TL: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    B_CPLX: tl.constexpr, C_CPLX: tl.constexpr, SAVE_Y: tl.constexpr, SAVE: tl.constexpr,
    HAS_H0: tl.constexpr, SUMMARY: tl.constexpr,
):
    """Scan BD channels over one chunk of a sequence (program ids: channel block, chunk,
    batch) from its start state (h0 (batch, n_chunks, 2, N, dim) with HAS_H0, else zero).
    The state entering each tile goes to hs (batch, n_slots, 2, N, dim): with SAVE slot =
    the tile's index, for the backward; without, two slots a chunk used in turn. Outputs: y,
    at the end of L the last state (last: (batch, dim, N, 2), complex64's layout), with
    SAVE_Y y before the gate (yp). SUMMARY: only the chunk's end state from a zero start
    (into last_ptr as (batch, n_chunks, 2, N, dim)) and its sum of dt (dtsum (batch,
    n_chunks, dim))."""
    pid_d, pid_c, pid_b, offs_d, dmask, cols, base_u = _program(dim, s_ub, s_ud, BD, TL)
    gbB = pid_b * sB_b + ((pid_d * BD) // group_b) * sB_g
    gbC = pid_b * sC_b + ((pid_d * BD) // group_c) * sC_g
    hs_b = hs_ptr + pid_b * n_slots * 2 * N * dim + offs_d  # + ((slot * 2 + part) * N + n) * dim
    cst = (pid_b * n_chunks + pid_c) * 2 * N * dim + offs_d  # + (part * N + n) * dim
    t_start = pid_c * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    first_tile = pid_b * 0 + t_start // TL  # int64
    if SAVE:
        slot0 = first_tile
    else:
        slot0 = first_tile * 0 + pid_c * 2
    for n in range(N):  # the chunk's start state into its first tile's slot
        if HAS_H0:
            h0r = tl.load(h0_ptr + cst + n * dim, mask=dmask, other=0.0)
            h0i = tl.load(h0_ptr + cst + (N + n) * dim, mask=dmask, other=0.0)
        else:
            h0r = tl.zeros((BD,), dtype=tl.float32)
            h0i = h0r
        tl.store(hs_b + (slot0 * 2 * N + n) * dim, h0r, mask=dmask)
        tl.store(hs_b + ((slot0 * 2 + 1) * N + n) * dim, h0i, mask=dmask)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    dtot = tl.zeros((BD,), dtype=tl.float32)
    for t0 in range(t_start, t_end, TL):
        tile = pid_b * 0 + t0 // TL  # int64
        if SAVE:
            slot = tile
            nxt = tile + 1
        else:
            slot = pid_c * 2 + (tile - first_tile) % 2
            nxt = pid_c * 2 + (tile + 1 - first_tile) % 2
        offs_t = t0 + tl.arange(0, TL)
        tmask = offs_t < t_end
        mask2 = dmask[:, None] & tmask[None, :]
        offs2 = base_u + offs_t[None, :]
        dt, _ = _load_dt(dt_ptr, bias_ptr, offs_d, dmask, offs2, mask2, HAS_BIAS, SOFTPLUS)
        dtot += tl.sum(dt, axis=1)
        u = tl.load(u_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
        dtu = dt * u
        acc = tl.zeros((BD, TL), dtype=tl.float32)
        next_mask = dmask & (t0 + TL < t_end)
        if SUMMARY:
            end_mask = dmask & (t0 + TL >= t_end)
        else:
            end_mask = dmask & (t0 + TL >= L)
        tl.debug_barrier()  # the previous tile's end states are visible
        for n in range(N):
            Ar = tl.load(Ar_ptr + offs_d * s_ab + n * s_an, mask=dmask, other=0.0)
            Ai = tl.load(Ai_ptr + offs_d * s_ab + n * s_an, mask=dmask, other=0.0)
            Br, Bi = _load_cbc(Br_ptr, Bi_ptr, offs_d, dmask, offs_t, tmask, n, gbB, sB_g, sB_n,
                               sB_l, B_VARY, B_CPLX)
            pr = tl.load(hs_b + (slot * 2 * N + n) * dim, mask=dmask, other=0.0)
            pi = tl.load(hs_b + ((slot * 2 + 1) * N + n) * dim, mask=dmask, other=0.0)
            ar, ai = _cexp(dt, Ar[:, None], Ai[:, None])
            xr = dtu * Br
            xi = dtu * Bi
            first = cols == 0
            xr = tl.where(first, xr + ar * pr[:, None] - ai * pi[:, None], xr)
            xi = tl.where(first, xi + ar * pi[:, None] + ai * pr[:, None], xi)
            _, _, hr, hi = tl.associative_scan((ar, ai, xr, xi), 1, _clin_combine)
            if not SUMMARY:
                Cr, Ci = _load_cbc(Cr_ptr, Ci_ptr, offs_d, dmask, offs_t, tmask, n, gbC, sC_g,
                                   sC_n, sC_l, C_VARY, C_CPLX)
                acc += 2.0 * (Cr * hr - Ci * hi)
            # past the chunk: a = 1 and x = 0, so the last column holds the end state
            er = tl.sum(tl.where(cols == TL - 1, hr, 0.0), axis=1)
            ei = tl.sum(tl.where(cols == TL - 1, hi, 0.0), axis=1)
            tl.store(hs_b + (nxt * 2 * N + n) * dim, er, mask=next_mask)
            tl.store(hs_b + ((nxt * 2 + 1) * N + n) * dim, ei, mask=next_mask)
            if SUMMARY:
                tl.store(last_ptr + cst + n * dim, er, mask=end_mask)
                tl.store(last_ptr + cst + (N + n) * dim, ei, mask=end_mask)
            else:
                lp = last_ptr + ((pid_b * dim + offs_d) * N + n) * 2
                tl.store(lp, er, mask=end_mask)
                tl.store(lp + 1, ei, mask=end_mask)
        if not SUMMARY:
            if HAS_D:
                acc += Dv[:, None] * u
            if SAVE_Y:
                tl.store(yp_ptr + offs2, acc.to(yp_ptr.dtype.element_ty), mask=mask2)
            if HAS_Z:
                zz = tl.load(z_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
                acc = acc * zz * tl.sigmoid(zz)
            tl.store(y_ptr + offs2, acc.to(y_ptr.dtype.element_ty), mask=mask2)
    if SUMMARY:
        tl.store(dtsum_ptr + (pid_b * n_chunks + pid_c) * dim + offs_d, dtot, mask=dmask)


@triton.jit
def _ccombine_kernel(
    summ_ptr, dtsum_ptr, Ar_ptr, Ai_ptr, init_ptr, out_ptr,
    dim, N, n_chunks, s_ab, s_an,
    BLOCK: tl.constexpr, REVERSE: tl.constexpr, HAS_INIT: tl.constexpr,
):
    """Carry complex states across chunks: out[c] = the state entering chunk c, s <- exp(A
    dtsum[c]) s + summ[c]; REVERSE (the backward's adjoint, from the last chunk): out[c] =
    the adjoint entering chunk c from its end, s <- conj(exp(A dtsum[c])) s + summ[c].
    summ, out: (batch, n_chunks, 2, N, dim); dtsum (batch, n_chunks, dim); init (REVERSE:
    the last state's gradient as (batch, 2, N, dim))."""
    pid_b, offs, mask, n, d = _flat_nd(dim, N, BLOCK)
    Ar = tl.load(Ar_ptr + d * s_ab + n * s_an, mask=mask, other=0.0)
    Ai = tl.load(Ai_ptr + d * s_ab + n * s_an, mask=mask, other=0.0)
    if REVERSE:
        Ai = -Ai
    if HAS_INIT:
        sr = tl.load(init_ptr + pid_b * 2 * N * dim + offs, mask=mask, other=0.0)
        si = tl.load(init_ptr + pid_b * 2 * N * dim + N * dim + offs, mask=mask, other=0.0)
    else:
        sr = tl.zeros((BLOCK,), dtype=tl.float32)
        si = sr
    for i in range(n_chunks):
        if REVERSE:
            c = n_chunks - 1 - i
        else:
            c = i
        idx = (pid_b * n_chunks + c) * 2 * N * dim + offs
        tl.store(out_ptr + idx, sr, mask=mask)
        tl.store(out_ptr + idx + N * dim, si, mask=mask)
        dts = tl.load(dtsum_ptr + (pid_b * n_chunks + c) * dim + d, mask=mask, other=0.0)
        pr, pi = _cexp(dts, Ar, Ai)
        hr = tl.load(summ_ptr + idx, mask=mask, other=0.0)
        hi = tl.load(summ_ptr + idx + N * dim, mask=mask, other=0.0)
        sr, si = pr * sr - pi * si + hr, pr * si + pi * sr + hi


@triton.jit
def _cbwd_kernel(
    dout_ptr, u_ptr, dt_ptr, z_ptr, Ar_ptr, Ai_ptr, Br_ptr, Bi_ptr, Cr_ptr, Ci_ptr, D_ptr,
    bias_ptr, hs_ptr, r_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dtsum_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    sdB_p, sdB_b, sdB_g, sdB_n, sdC_p, sdC_b, sdC_g, sdC_n,
    BD: tl.constexpr, TL: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    B_CPLX: tl.constexpr, C_CPLX: tl.constexpr, SUMMARY: tl.constexpr,
):
    """Gradients for BD channels over one chunk (program ids: channel block, chunk, batch),
    tiles in reverse order. r (batch, n_chunks, 2, N, dim): the adjoint entering the chunk
    from its end, then the running carry. dA and time-invariant dB/dC: (batch, n_chunks, 2,
    N, dim) per-program sums (real, imaginary planes), zero on entry; time-varying dB/dC:
    fp32 planes (2, batch, G, N, L) (strides sd*_p, sd*_b, sd*_g, sd*_n; unit over L), added
    to with atomics. SUMMARY: only the adjoint, from a zero carry (r zero on entry): r ends
    as what the chunk hands to the step before it; and the chunk's sum of dt (dtsum)."""
    pid_d, pid_c, pid_b, offs_d, dmask, cols, base_u = _program(dim, s_ub, s_ud, BD, TL)
    gB = (pid_d * BD) // group_b
    gC = (pid_d * BD) // group_c
    gbB = pid_b * sB_b + gB * sB_g
    gbC = pid_b * sC_b + gC * sC_g
    hs_b = hs_ptr + pid_b * n_tiles * 2 * N * dim + offs_d
    prog = (pid_b * n_chunks + pid_c) * 2 * N * dim + offs_d  # + (part * N + n) * dim
    dD_acc = tl.zeros((BD,), dtype=tl.float32)
    dbias_acc = tl.zeros((BD,), dtype=tl.float32)
    dtot = tl.zeros((BD,), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    t_start = pid_c * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    n_t = (t_end - t_start + TL - 1) // TL
    for it in range(n_t):
        t0 = t_start + (n_t - 1 - it) * TL
        tile = pid_b * 0 + t0 // TL
        offs_t = t0 + tl.arange(0, TL)
        tmask = offs_t < t_end
        mask2 = dmask[:, None] & tmask[None, :]
        offs2 = base_u + offs_t[None, :]
        # a_{t+1} of the step after (0 past the chunk: its carry enters with r)
        nmask = dmask[:, None] & (offs_t[None, :] + 1 < t_end)
        dt, raw, dtn, u, dout, zz, sz, dy = _bwd_tile_in(
            dout_ptr, u_ptr, dt_ptr, z_ptr, bias_ptr, offs_d, dmask, offs2, mask2, nmask,
            HAS_Z, HAS_BIAS, SOFTPLUS)
        dtot += tl.sum(dt, axis=1)
        dtu = dt * u
        dtn_f = tl.flip(dtn, 1)
        dy2_f = tl.flip(2.0 * dy, 1)
        ddt = tl.zeros((BD, TL), dtype=tl.float32)
        du = tl.zeros((BD, TL), dtype=tl.float32)
        ypre = tl.zeros((BD, TL), dtype=tl.float32)
        first = cols == 0
        tl.debug_barrier()  # the previous tile's carries and partial sums are visible
        for n in range(N):
            Ar = tl.load(Ar_ptr + offs_d * s_ab + n * s_an, mask=dmask, other=0.0)
            Ai = tl.load(Ai_ptr + offs_d * s_ab + n * s_an, mask=dmask, other=0.0)
            Cr, Ci = _load_cbc(Cr_ptr, Ci_ptr, offs_d, dmask, offs_t, tmask, n, gbC, sC_g, sC_n,
                               sC_l, C_VARY, C_CPLX)
            rr = tl.load(r_ptr + prog + n * dim, mask=dmask, other=0.0)
            ri = tl.load(r_ptr + prog + (N + n) * dim, mask=dmask, other=0.0)
            ar, ai = _cexp(dt, Ar[:, None], Ai[:, None])
            # the adjoint, on the tile flipped along time: c = 2 dy conj(C), decay conj(a_{t+1})
            nr, ni = _cexp(dtn_f, Ar[:, None], Ai[:, None])
            if C_VARY:
                cr = tl.flip(Cr, 1) * dy2_f
                ci = -tl.flip(Ci, 1) * dy2_f
            else:
                cr = Cr * dy2_f
                ci = -Ci * dy2_f
            cr = tl.where(first, cr + rr[:, None], cr)
            ci = tl.where(first, ci + ri[:, None], ci)
            _, _, gfr, gfi = tl.associative_scan((nr, -ni, cr, ci), 1, _clin_combine)
            gr = tl.flip(gfr, 1)
            gi = tl.flip(gfi, 1)
            # the carry to the tile before: conj(a_first) G_first
            tl.store(r_ptr + prog + n * dim,
                     tl.sum(tl.where(first, ar * gr + ai * gi, 0.0), axis=1), mask=dmask)
            tl.store(r_ptr + prog + (N + n) * dim,
                     tl.sum(tl.where(first, ar * gi - ai * gr, 0.0), axis=1), mask=dmask)
            if not SUMMARY:
                # the states of the tile, from its start state
                Br, Bi = _load_cbc(Br_ptr, Bi_ptr, offs_d, dmask, offs_t, tmask, n, gbB, sB_g,
                                   sB_n, sB_l, B_VARY, B_CPLX)
                h0r = tl.load(hs_b + (tile * 2 * N + n) * dim, mask=dmask, other=0.0)
                h0i = tl.load(hs_b + ((tile * 2 + 1) * N + n) * dim, mask=dmask, other=0.0)
                xr = dtu * Br
                xi = dtu * Bi
                fr = tl.where(first, xr + ar * h0r[:, None] - ai * h0i[:, None], xr)
                fi = tl.where(first, xi + ar * h0i[:, None] + ai * h0r[:, None], xi)
                _, _, hr, hi = tl.associative_scan((ar, ai, fr, fi), 1, _clin_combine)
                ypre += 2.0 * (Cr * hr - Ci * hi)
                # q = G conj(h - x)
                wr = hr - xr
                wi = hi - xi
                qr = gr * wr + gi * wi
                qi = gi * wr - gr * wi
                gb = Br * gr + Bi * gi  # Re(conj(B) G)
                ddt += Ar[:, None] * qr + Ai[:, None] * qi + u * gb
                du += dt * gb
                pa = prog + n * dim
                tl.store(dA_ptr + pa, tl.load(dA_ptr + pa, mask=dmask, other=0.0)
                         + tl.sum(dt * qr, axis=1), mask=dmask)
                pa = prog + (N + n) * dim
                tl.store(dA_ptr + pa, tl.load(dA_ptr + pa, mask=dmask, other=0.0)
                         + tl.sum(dt * qi, axis=1), mask=dmask)
                # dB = dt u G, dC = 2 dy conj(h) (real parts for a real B or C)
                if B_VARY:
                    pB = dB_ptr + pid_b * sdB_b + gB * sdB_g + n * sdB_n + offs_t
                    tl.atomic_add(pB, tl.sum(tl.where(mask2, dtu * gr, 0.0), axis=0), mask=tmask,
                                  sem="relaxed")
                    if B_CPLX:
                        tl.atomic_add(pB + sdB_p, tl.sum(tl.where(mask2, dtu * gi, 0.0), axis=0),
                                      mask=tmask, sem="relaxed")
                else:
                    pa = prog + n * dim
                    tl.store(dB_ptr + pa, tl.load(dB_ptr + pa, mask=dmask, other=0.0)
                             + tl.sum(dtu * gr, axis=1), mask=dmask)
                    if B_CPLX:
                        pa = prog + (N + n) * dim
                        tl.store(dB_ptr + pa, tl.load(dB_ptr + pa, mask=dmask, other=0.0)
                                 + tl.sum(dtu * gi, axis=1), mask=dmask)
                if C_VARY:
                    pC = dC_ptr + pid_b * sdC_b + gC * sdC_g + n * sdC_n + offs_t
                    dy2 = 2.0 * dy
                    tl.atomic_add(pC, tl.sum(tl.where(mask2, dy2 * hr, 0.0), axis=0), mask=tmask,
                                  sem="relaxed")
                    if C_CPLX:
                        tl.atomic_add(pC + sdC_p, tl.sum(tl.where(mask2, -dy2 * hi, 0.0), axis=0),
                                      mask=tmask, sem="relaxed")
                else:
                    pa = prog + n * dim
                    tl.store(dC_ptr + pa, tl.load(dC_ptr + pa, mask=dmask, other=0.0)
                             + tl.sum(2.0 * dy * hr, axis=1), mask=dmask)
                    if C_CPLX:
                        pa = prog + (N + n) * dim
                        tl.store(dC_ptr + pa, tl.load(dC_ptr + pa, mask=dmask, other=0.0)
                                 - tl.sum(2.0 * dy * hi, axis=1), mask=dmask)
        if not SUMMARY:
            if not HAS_D:
                Dv = dD_acc
            dD_acc, dbias_acc = _bwd_tile_out(ypre, du, ddt, dy, dout, u, raw, zz, sz, Dv,
                                              dD_acc, dbias_acc, dz_ptr, ddt_ptr, du_ptr, offs2,
                                              mask2, HAS_D, HAS_Z, SOFTPLUS)
    if SUMMARY:
        tl.store(dtsum_ptr + (pid_b * n_chunks + pid_c) * dim + offs_d, dtot, mask=dmask)
    else:
        _bwd_flush(dD_ptr, dbias_ptr, offs_d, dmask, dD_acc, dbias_acc, HAS_D, HAS_BIAS)


_BLOCK = 256  # (state, channel) pairs a program of `_ccombine_kernel`


def _chunks(programs: int, warps: int, n_tiles: int, device: torch.device) -> tuple[int, int]:
    """(chunk length in tiles, chunks) of a complex scan: `triton_scan._n_chunks` (chunks until
    the grid has `warps_per_sm` warps an SM, or `chunk_tiles`), but one chunk where the grid
    has half of that already: a chunked pass scans every chunk twice (its summary first).
    Measured on the H200 (RESULTS.md 2026-11-30 04:15 UTC): (8, 1536, 2048, 16) in 2 chunks
    4.66 ms against 2.88 in one; (4, 128, 4096, 32) in 12 chunks 0.86 against 4.21."""
    from .triton_scan import _config, _n_chunks, _sm_count

    cfg = _config()
    if cfg.chunk_tiles <= 0 and device.type == "cuda" and \
            2 * programs * warps >= cfg.warps_per_sm * _sm_count(device):
        return n_tiles, 1
    return _n_chunks(cfg, programs, warps, n_tiles, device)


def _cplx_planes(X: Tensor):
    """(real, imaginary or None) of B or C: a complex tensor as fp32 planes (differentiable
    views made contiguous), a real one as it is."""
    if X.is_complex():
        return X.real.float().contiguous(), X.imag.float().contiguous()
    return X, None


def _shape(dim: int, groups: list[int]) -> tuple[int, int]:
    """(channels a program, warps a program): SEQSUITE_SCAN_COMPLEX="BD,warps" overrides the
    default (16, 4); BD is lowered to a power of two dividing every varying B/C group."""
    from .triton_scan import _block_d

    bd, warps = 16, 4
    env = os.environ.get("SEQSUITE_SCAN_COMPLEX")
    if env:
        bd, warps = (int(v) for v in env.split(","))
    return _block_d(bd, dim, groups), warps


def _plan(u: Tensor, Br: Tensor, Bi: Optional[Tensor], Cr: Tensor, Ci: Optional[Tensor],
          TL: int):
    """The launch plan both complex launchers share: B's and C's planes with their layout
    ((real, imaginary or None, varying, group size, strides) each, as `_bc_layout`), channels
    and warps a program, channel blocks, tiles, chunk length in tiles and chunks."""
    from .triton_scan import _bc_layout, _cdiv

    batch, dim, L = u.shape
    out = []
    for re, im in ((Br, Bi), (Cr, Ci)):
        re, vary, g, st = _bc_layout(re, dim)
        if im is not None:
            im = _bc_layout(im, dim)[0]
            assert im.stride() == re.stride()
        out.append((re, im, vary, g, st))
    BD, warps = _shape(dim, [g for _, _, v, g, _ in out if v])
    n_dblk = _cdiv(dim, BD)
    n_tiles = _cdiv(L, TL)
    ct, n_chunks = _chunks(batch * n_dblk, warps, n_tiles, u.device)
    return out[0], out[1], BD, warps, n_dblk, n_tiles, ct, n_chunks


@torch.library.custom_op("seqsuite::cscan_fwd", mutates_args=())
def cscan_fwd(
    u: Tensor, delta: Tensor, Ar: Tensor, Ai: Tensor, Br: Tensor, Bi: Optional[Tensor],
    Cr: Tensor, Ci: Optional[Tensor], D: Optional[Tensor], z: Optional[Tensor],
    delta_bias: Optional[Tensor], delta_softplus: bool, tile: int, save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Complex-state forward scan on real planes (A = Ar + i Ai; B = Br + i Bi, C likewise,
    real where Bi / Ci is None). Returns y (like u), the last state (batch, dim, N, 2) fp32
    (complex64's layout), the tile-start states (batch, n_tiles, 2, N, dim) fp32 for the
    backward (empty without `save`) and y before the gate (like u; empty without z or save)."""
    from .triton_scan import _cdiv, _contig, _opt

    u, delta, z, D, delta_bias = (_contig(t) for t in (u, delta, z, D, delta_bias))
    Ar, Ai = Ar.float().contiguous(), Ai.float().contiguous()
    batch, dim, L = u.shape
    N = Ar.shape[1]
    TL = tile
    (Br, Bi, b_vary, gb, sB), (Cr, Ci, c_vary, gc, sC), BD, warps, n_dblk, n_tiles, ct, \
        n_chunks = _plan(u, Br, Bi, Cr, Ci, TL)
    chunk_len = ct * TL
    f32 = dict(dtype=torch.float32, device=u.device)
    y = torch.empty_like(u)
    ypre = torch.empty_like(u) if z is not None and save else u.new_empty(0)
    last = torch.empty((batch, dim, N, 2), **f32)
    n_slots = n_tiles if save else 2 * n_chunks
    states = torch.empty((batch, n_slots, 2, N, dim), **f32)
    grid = (n_dblk, n_chunks, batch)
    common = (dim, L, N, chunk_len, n_chunks)
    strides = (gb, gc, u.stride(0), u.stride(1), Ar.stride(0), Ar.stride(1), *sB, *sC)
    consts = dict(BD=BD, TL=TL, HAS_D=D is not None, HAS_Z=z is not None,
                  HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus, B_VARY=b_vary,
                  C_VARY=c_vary, B_CPLX=Bi is not None, C_CPLX=Ci is not None, num_warps=warps)
    planes = (Ar, Ai, Br, _opt(Bi, Br), Cr, _opt(Ci, Cr), _opt(D, u), _opt(delta_bias, u))
    h0 = None
    if n_chunks > 1:  # the chunks' end states from zero, then the states entering them
        hsum = torch.empty((batch, n_chunks, 2, N, dim), **f32)
        dtsum = torch.empty((batch, n_chunks, dim), **f32)
        scratch = torch.empty((batch, 2 * n_chunks, 2, N, dim), **f32)
        _cfwd_kernel[grid](u, delta, _opt(z, u), *planes, y, hsum, scratch, hsum, y, dtsum,
                           *common, 2 * n_chunks, *strides, **consts, SAVE_Y=False,
                           SAVE=False, HAS_H0=False, SUMMARY=True)
        h0 = torch.empty_like(hsum)
        _ccombine_kernel[(_cdiv(N * dim, _BLOCK), batch)](
            hsum, dtsum, Ar, Ai, hsum, h0, dim, N, n_chunks, Ar.stride(0), Ar.stride(1),
            BLOCK=_BLOCK, REVERSE=False, HAS_INIT=False)
    _cfwd_kernel[grid](u, delta, _opt(z, u), *planes, y, _opt(h0, last), states, last,
                       ypre if ypre.numel() else y, last, *common, n_slots, *strides, **consts,
                       SAVE_Y=ypre.numel() > 0, SAVE=save, HAS_H0=h0 is not None, SUMMARY=False)
    if not save:
        states = states[:, :0]
    return y, last, states, ypre


@cscan_fwd.register_fake
def _(u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z, delta_bias, delta_softplus, tile, save):
    batch, dim, L = u.shape
    N = Ar.shape[1]
    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        u.new_empty((batch, dim, N, 2), dtype=torch.float32),
        u.new_empty((batch, -(-L // tile) if save else 0, 2, N, dim), dtype=torch.float32),
        torch.empty_like(u, memory_format=torch.contiguous_format) if z is not None and save
        else u.new_empty(0),
    )


@torch.library.custom_op("seqsuite::cscan_bwd", mutates_args=())
def cscan_bwd(
    dout: Tensor, dlast: Optional[Tensor], u: Tensor, delta: Tensor, Ar: Tensor, Ai: Tensor,
    Br: Tensor, Bi: Optional[Tensor], Cr: Tensor, Ci: Optional[Tensor], D: Optional[Tensor],
    z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool, states: Tensor,
    tile: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
           Tensor]:
    """Backward of `cscan_fwd`: du, ddelta, dAr, dAi, dBr, dBi, dCr, dCi, dD, dz, ddelta_bias
    (empty tensors for absent inputs). dlast: the last state's gradient (batch, dim, N, 2)."""
    from .triton_scan import _cdiv, _contig, _opt

    dout, u, delta, z, D, delta_bias = (_contig(t) for t in (dout, u, delta, z, D, delta_bias))
    Ar, Ai = Ar.float().contiguous(), Ai.float().contiguous()
    batch, dim, L = u.shape
    N = Ar.shape[1]
    TL = tile
    B_in, C_in = Br, Cr
    (Br, Bi, b_vary, gb, sB), (Cr, Ci, c_vary, gc, sC), BD, warps, n_dblk, n_tiles, ct, \
        n_chunks = _plan(u, Br, Bi, Cr, Ci, TL)
    chunk_len = ct * TL
    f32 = dict(dtype=torch.float32, device=u.device)
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else u.new_empty(0)
    part = (batch, n_chunks, 2, N, dim)  # per-program partial sums, reduced below
    dA = torch.zeros(part, **f32)
    init = dlast.float().permute(0, 3, 2, 1).contiguous() if dlast is not None else None

    def grad_buf(X, vary):
        """(buffer, strides (plane, batch, group, n)) of dB or dC."""
        if not vary:
            return torch.zeros(part, **f32), (0, 0, 0, 0)
        shape = X.shape if X.dim() == 4 else (X.shape[0], 1) + tuple(X.shape[1:])
        buf = torch.zeros((2,) + tuple(shape), **f32)
        return buf, (buf.stride(0), buf.stride(1), buf.stride(2), buf.stride(3))

    dB, sdB = grad_buf(B_in, b_vary)
    dC, sdC = grad_buf(C_in, c_vary)
    dD = torch.zeros((dim,), **f32)
    dbias = torch.zeros((dim,), **f32)
    grid = (n_dblk, n_chunks, batch)
    planes = (Ar, Ai, Br, _opt(Bi, Br), Cr, _opt(Ci, Cr), _opt(D, u), _opt(delta_bias, u))
    tail = (dim, L, N, chunk_len, n_chunks, n_tiles, gb, gc,
            u.stride(0), u.stride(1), Ar.stride(0), Ar.stride(1), *sB, *sC, *sdB, *sdC)
    consts = dict(BD=BD, TL=TL, HAS_D=D is not None, HAS_Z=z is not None,
                  HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus, B_VARY=b_vary,
                  C_VARY=c_vary, B_CPLX=Bi is not None, C_CPLX=Ci is not None, num_warps=warps)
    if n_chunks > 1:  # each chunk's adjoint from a zero carry, then the carries entering them
        rsum = torch.zeros(part, **f32)
        dtsum = torch.empty((batch, n_chunks, dim), **f32)
        _cbwd_kernel[grid](dout, u, delta, _opt(z, u), *planes, states, rsum,
                           du, ddelta, _opt(dz, u), dA, dB, dC, dD, dbias, dtsum, *tail,
                           **consts, SUMMARY=True)
        r = torch.empty(part, **f32)
        _ccombine_kernel[(_cdiv(N * dim, _BLOCK), batch)](
            rsum, dtsum, Ar, Ai, _opt(init, rsum), r, dim, N, n_chunks, Ar.stride(0),
            Ar.stride(1), BLOCK=_BLOCK, REVERSE=True, HAS_INIT=init is not None)
    else:
        r = init if init is not None else torch.zeros(part, **f32)
    _cbwd_kernel[grid](dout, u, delta, _opt(z, u), *planes, states, r,
                       du, ddelta, _opt(dz, u), dA, dB, dC, dD, dbias, dbias, *tail,
                       **consts, SUMMARY=False)
    dA = dA.sum((0, 1)).transpose(1, 2)  # (2, dim, N)

    def grads_of(buf, vary, X_in, cplx):
        if vary:
            g = buf if X_in.dim() == 4 else buf[:, :, 0]
        else:
            g = buf.sum((0, 1)).transpose(1, 2)  # (2, dim, N)
        # separate tensors: a custom op's outputs may not alias one another
        re = g[0].to(X_in.dtype, memory_format=torch.contiguous_format, copy=True)
        return re, (g[1].clone(memory_format=torch.contiguous_format) if cplx else u.new_empty(0))

    dBr, dBi = grads_of(dB, b_vary, B_in, Bi is not None)
    dCr, dCi = grads_of(dC, c_vary, C_in, Ci is not None)
    dAr, dAi = (dA[i].clone(memory_format=torch.contiguous_format) for i in (0, 1))
    return (du, ddelta, dAr, dAi, dBr, dBi, dCr, dCi,
            dD.to(D.dtype) if D is not None else u.new_empty(0), dz,
            dbias.to(delta_bias.dtype) if delta_bias is not None else u.new_empty(0))


@cscan_bwd.register_fake
def _(dout, dlast, u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z, delta_bias, delta_softplus, states,
      tile):
    empty = u.new_empty(0)
    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        torch.empty_like(delta, memory_format=torch.contiguous_format),
        Ar.new_empty(Ar.shape, dtype=torch.float32), Ar.new_empty(Ar.shape, dtype=torch.float32),
        Br.new_empty(Br.shape), Bi.new_empty(Bi.shape) if Bi is not None else empty,
        Cr.new_empty(Cr.shape), Ci.new_empty(Ci.shape) if Ci is not None else empty,
        torch.empty_like(D) if D is not None else empty,
        torch.empty_like(z, memory_format=torch.contiguous_format) if z is not None else empty,
        torch.empty_like(delta_bias) if delta_bias is not None else empty,
    )


_INPUTS = ("u", "delta", "Ar", "Ai", "Br", "Bi", "Cr", "Ci", "D", "z", "delta_bias")


def _setup_context(ctx, inputs, output):
    u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z, delta_bias, delta_softplus, tile, save = inputs
    ctx.save_for_backward(u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z, delta_bias, output[2])
    ctx.delta_softplus, ctx.tile = delta_softplus, tile


def _backward(ctx, dy, dlast, dstates, dypre):
    u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z, delta_bias, states = ctx.saved_tensors
    if dy is None:
        dy = torch.zeros_like(u)
    g = torch.ops.seqsuite.cscan_bwd(dy, dlast, u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z,
                                     delta_bias, ctx.delta_softplus, states, ctx.tile)
    given = (u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z, delta_bias)
    return tuple(gi if x is not None else None for gi, x in zip(g, given)) + (None, None, None)


torch.library.register_autograd("seqsuite::cscan_fwd", _backward, setup_context=_setup_context)


def selective_scan_complex_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                                  delta_softplus=False, return_last_state=False):
    """Complex-state selective scan through the Triton kernels (differentiable in every
    tensor; the last state is complex64)."""
    from .triton_scan import tile_for

    if A.is_complex():
        Ar, Ai = A.real.float(), A.imag.float()
    else:
        Ar, Ai = A.float(), torch.zeros_like(A, dtype=torch.float32)
    Br, Bi = _cplx_planes(B)
    Cr, Ci = _cplx_planes(C)
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias))
    y, last, _, _ = torch.ops.seqsuite.cscan_fwd(u, delta, Ar, Ai, Br, Bi, Cr, Ci, D, z,
                                                 delta_bias, bool(delta_softplus),
                                                 tile_for(A.shape[1]), save)
    if return_last_state:
        return y, torch.view_as_complex(last)
    return y
