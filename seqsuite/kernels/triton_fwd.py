"""Triton forward selective scan (real A), chunk-parallel over the sequence.

Work is split into programs of BD channels x one chunk of the sequence; a chunk is a whole
number of time tiles of TL steps. Inside a tile, for each state n, the recurrence
h_t = a_t h_{t-1} + x_t is one `tl.associative_scan` over the TL axis of a (BD, TL) block.
The (batch, dim, L, N) state is never written: only the state at the start of every tile,
laid out (batch, n_tiles, N, dim) so that a program's BD channels are contiguous. That
buffer also carries the state from one tile to the next (each program reads back what it
wrote, after a block barrier), and the backward reads it.

Three launches when the sequence is split into several chunks:
  1. `_fwd_chunk_summary_kernel`: per chunk, the end state from a zero start (closed form,
     no scan) and the chunk's sum of dt;
  2. `_chunk_combine_kernel`: carries states across chunks (sequential over chunks only);
  3. `_fwd_kernel`: the scan proper from the right start state, writing y.
With one chunk (enough batch x channel programs to fill the GPU) only the third runs.
Exponentials are exp2 with A scaled by log2(e) (1.4426950408889634): one MUFU op per
(b, d, l, n) in the scan, plus one more in the summary pass when there are several chunks.
The per-state operands (A, B, C, carried state) of state n + 1 are loaded while state n is
scanned, and the next tile's inputs while this tile is.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _lin_combine(a1, b1, a2, b2):
    """Compose two steps of h -> a h + b (left earlier, right later)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    """softplus with torch's threshold (x > 20 -> x) and a small-x branch."""
    return tl.where(x > 20.0, x, tl.where(x < -15.0, tl.exp(x), tl.log(1.0 + tl.exp(x))))


@triton.jit
def _load_dt(dt_ptr, bias_ptr, offs_d, dmask, offs2, mask2, HAS_BIAS: tl.constexpr,
             SOFTPLUS: tl.constexpr):
    """Load delta for a (BD, TL) block, add the bias, apply softplus; 0 where masked.

    Returns (dt, raw) where raw is delta + bias before softplus (needed by the backward)."""
    raw = tl.load(dt_ptr + offs2, mask=mask2, other=0.0)
    return _make_dt(raw, bias_ptr, offs_d, dmask, mask2, HAS_BIAS, SOFTPLUS)


@triton.jit
def _make_dt(raw, bias_ptr, offs_d, dmask, mask2, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt from loaded delta values: + bias, softplus, 0 where masked. Returns (dt, raw + bias)."""
    raw = raw.to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
        raw = raw + bias[:, None]
    if SOFTPLUS:
        dt = _softplus(raw)
    else:
        dt = raw
    dt = tl.where(mask2, dt, 0.0)
    return dt, raw


@triton.jit
def _load_bc(ptr, offs_d, dmask, offs_t, tmask, n, gbase, s_g, s_n, s_l,
             VARY: tl.constexpr):
    """B or C for state n: a (1, TL) row (time-varying; gbase = batch/group offset) or a
    (BD, 1) column (time-invariant (dim, N); s_g = stride over channels)."""
    if VARY:
        v = tl.load(ptr + gbase + n * s_n + offs_t * s_l, mask=tmask, other=0.0)
        return v.to(tl.float32)[None, :]
    else:
        v = tl.load(ptr + offs_d * s_g + n * s_n, mask=dmask, other=0.0)
        return v.to(tl.float32)[:, None]


@triton.jit
def _fwd_chunk_summary_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, hsum_ptr, dtsum_ptr,
    dim, L, N, chunk_len, n_chunks, group_size,
    s_ub, s_ud, s_ab, s_an, sB_b, sB_g, sB_n, sB_l,
    BD: tl.constexpr, TL: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr,
):
    """Per chunk: end state from a zero start (closed form per tile, no scan) and the sum of
    dt. hsum (batch, n_chunks, N, dim) must be zero on entry; it is also the running state."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    dmask = offs_d < dim
    base_u = pid_b * s_ub + offs_d[:, None].to(tl.int64) * s_ud
    gbase = pid_b * sB_b + ((pid_d * BD) // group_size) * sB_g
    hrow = hsum_ptr + (pid_b * n_chunks + pid_c) * N * dim + offs_d
    t_start = pid_c * chunk_len
    t_end = t_start + chunk_len
    if t_end > L:
        t_end = L
    dtot = tl.zeros((BD,), dtype=tl.float32)
    for t0 in range(t_start, t_end, TL):
        offs_t = t0 + tl.arange(0, TL)
        tmask = offs_t < L
        mask2 = dmask[:, None] & tmask[None, :]
        offs2 = base_u + offs_t[None, :]
        dt, _ = _load_dt(dt_ptr, bias_ptr, offs_d, dmask, offs2, mask2, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
        dtu = dt * u
        tot = tl.sum(dt, axis=1)
        rest = tot[:, None] - tl.cumsum(dt, axis=1)  # sum of dt after step t within the tile
        dtot += tot
        tl.debug_barrier()
        A_n = tl.load(A_ptr + offs_d * s_ab, mask=dmask, other=0.0)
        B_n = _load_bc(B_ptr, offs_d, dmask, offs_t, tmask, 0, gbase, sB_g, sB_n, sB_l, B_VARY)
        prev = tl.load(hrow, mask=dmask, other=0.0)
        for n in range(N):
            nn = (n + 1) % N  # operands of the next state load while this one is summed
            A_nx = tl.load(A_ptr + offs_d * s_ab + nn * s_an, mask=dmask, other=0.0)
            B_nx = _load_bc(B_ptr, offs_d, dmask, offs_t, tmask, nn, gbase, sB_g, sB_n, sB_l, B_VARY)
            prev_nx = tl.load(hrow + nn * dim, mask=dmask, other=0.0)
            A2 = A_n * 1.4426950408889634
            hl = tl.sum(tl.exp2(rest * A2[:, None]) * dtu * B_n, axis=1)
            tl.store(hrow + n * dim, tl.exp2(tot * A2) * prev + hl, mask=dmask)
            A_n, B_n, prev = A_nx, B_nx, prev_nx
    tl.store(dtsum_ptr + (pid_b * n_chunks + pid_c) * dim + offs_d, dtot, mask=dmask)


@triton.jit
def _flat_nd(dim, N, BLOCK: tl.constexpr):
    """A combine program's batch (program id 1, int64), its flat (n, d) offsets (n · dim + d;
    program id 0 picks the block), their mask, n and d."""
    pid_b = tl.program_id(1).to(tl.int64)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return pid_b, offs, offs < dim * N, offs // dim, offs % dim


@triton.jit
def _chunk_combine_kernel(
    summ_ptr, dtsum_ptr, A_ptr, init_ptr, out_ptr,
    dim, N, n_chunks, s_ab, s_an,
    BLOCK: tl.constexpr, REVERSE: tl.constexpr, HAS_INIT: tl.constexpr, CPT: tl.constexpr,
):
    """Carry states across chunks: out[c] = state entering chunk c (forward) or, REVERSE,
    the adjoint entering it from the end; s <- exp(A * dtsum[c]) * s + summ[c].
    summ, out: (batch, n_chunks, N, dim); dtsum: (batch, n_chunks, dim); init: (batch, dim, N)."""
    pid_b, offs, mask, n, d = _flat_nd(dim, N, BLOCK)
    A2 = tl.load(A_ptr + d * s_ab + n * s_an, mask=mask, other=0.0) * 1.4426950408889634
    if HAS_INIT:
        s = tl.load(init_ptr + pid_b * dim * N + d * N + n, mask=mask, other=0.0).to(tl.float32)
    else:
        s = tl.zeros((BLOCK,), dtype=tl.float32)
    # CPT chunks at a time: their loads are issued together, then the CPT dependent steps
    # run (one load latency per CPT chunks, not per chunk: the loop is latency-bound)
    for i0 in range(0, n_chunks, CPT):
        idxs = ()
        oks = ()
        decays = ()
        adds = ()
        for j in tl.static_range(CPT):
            i = i0 + j
            if REVERSE:
                c = n_chunks - 1 - i
            else:
                c = i
            ok = mask & (i < n_chunks)
            idx = (pid_b * n_chunks + c) * N * dim + offs
            dts = tl.load(dtsum_ptr + (pid_b * n_chunks + c) * dim + d, mask=ok, other=0.0)
            idxs = idxs + (idx,)
            oks = oks + (ok,)
            decays = decays + (tl.exp2(dts * A2),)
            adds = adds + (tl.load(summ_ptr + idx, mask=ok, other=0.0),)
        for j in tl.static_range(CPT):
            tl.store(out_ptr + idxs[j], s, mask=oks[j])
            s = decays[j] * s + adds[j]


@triton.jit
def _fwd_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    h0_ptr, hs_ptr, last_ptr, yp_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    BD: tl.constexpr, TL: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    HAS_H0: tl.constexpr, UNROLL: tl.constexpr, SAVE_Y: tl.constexpr = False,
):
    """Scan one chunk of BD channels from its start state; write y, the state at the start
    of every tile (hs: (batch, n_tiles, N, dim)), and at the end of L the last state; with
    SAVE_Y also y before the SiLU(z) gate (yp)."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    dmask = offs_d < dim
    cols = tl.arange(0, TL)[None, :]
    base_u = pid_b * s_ub + offs_d[:, None].to(tl.int64) * s_ud
    gbB = pid_b * sB_b + ((pid_d * BD) // group_b) * sB_g
    gbC = pid_b * sC_b + ((pid_d * BD) // group_c) * sC_g
    hs_b = hs_ptr + pid_b * n_tiles * N * dim + offs_d  # + (tile * N + n) * dim
    t_start = pid_c * chunk_len
    t_end = t_start + chunk_len
    if t_end > L:
        t_end = L
    first = pid_b * 0 + t_start // TL  # int64
    for n in range(N):  # the chunk's start state goes to its first tile's slot
        if HAS_H0:
            h0 = tl.load(h0_ptr + ((pid_b * n_chunks + pid_c) * N + n) * dim + offs_d,
                         mask=dmask, other=0.0)
        else:
            h0 = tl.zeros((BD,), dtype=tl.float32)
        tl.store(hs_b + (first * N + n) * dim, h0, mask=dmask)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    # the next tile's delta, u and z are loaded while this tile is scanned
    offs_t = t_start + tl.arange(0, TL)
    mask2 = dmask[:, None] & (offs_t < L)[None, :]
    dt_nx = tl.load(dt_ptr + base_u + offs_t[None, :], mask=mask2, other=0.0)
    u_nx = tl.load(u_ptr + base_u + offs_t[None, :], mask=mask2, other=0.0)
    if HAS_Z:
        z_nx = tl.load(z_ptr + base_u + offs_t[None, :], mask=mask2, other=0.0)
    for t0 in range(t_start, t_end, TL):
        tile = pid_b * 0 + t0 // TL  # int64: (tile * N + n) * dim can pass 2^31
        offs_t = t0 + tl.arange(0, TL)
        tmask = offs_t < L
        mask2 = dmask[:, None] & tmask[None, :]
        offs2 = base_u + offs_t[None, :]
        dt_raw = dt_nx
        u = u_nx.to(tl.float32)
        if HAS_Z:
            zz = z_nx.to(tl.float32)
        mask_nx = dmask[:, None] & (offs_t + TL < L)[None, :]
        dt_nx = tl.load(dt_ptr + offs2 + TL, mask=mask_nx, other=0.0)
        u_nx = tl.load(u_ptr + offs2 + TL, mask=mask_nx, other=0.0)
        if HAS_Z:
            z_nx = tl.load(z_ptr + offs2 + TL, mask=mask_nx, other=0.0)
        dt, _ = _make_dt(dt_raw, bias_ptr, offs_d, dmask, mask2, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        acc = tl.zeros((BD, TL), dtype=tl.float32)
        next_mask = dmask & (t0 + TL < t_end)   # the next tile is in this chunk
        last_mask = dmask & (t0 + TL >= L)      # this tile ends the sequence
        tl.debug_barrier()  # the previous tile's end states are visible
        # the per-state operands of state n + 1 are loaded while state n is scanned
        A_n = tl.load(A_ptr + offs_d * s_ab, mask=dmask, other=0.0)
        B_n = _load_bc(B_ptr, offs_d, dmask, offs_t, tmask, 0, gbB, sB_g, sB_n, sB_l, B_VARY)
        C_n = _load_bc(C_ptr, offs_d, dmask, offs_t, tmask, 0, gbC, sC_g, sC_n, sC_l, C_VARY)
        prev = tl.load(hs_b + tile * N * dim, mask=dmask, other=0.0)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            nn = (n + 1) % N
            A_nx = tl.load(A_ptr + offs_d * s_ab + nn * s_an, mask=dmask, other=0.0)
            B_nx = _load_bc(B_ptr, offs_d, dmask, offs_t, tmask, nn, gbB, sB_g, sB_n, sB_l, B_VARY)
            C_nx = _load_bc(C_ptr, offs_d, dmask, offs_t, tmask, nn, gbC, sC_g, sC_n, sC_l, C_VARY)
            prev_nx = tl.load(hs_b + (tile * N + nn) * dim, mask=dmask, other=0.0)
            a = tl.exp2(dt * (A_n * 1.4426950408889634)[:, None])
            x = dtu * B_n
            x = tl.where(cols == 0, x + a * prev[:, None], x)
            _, h = tl.associative_scan((a, x), 1, _lin_combine)
            acc += h * C_n
            # past L: a = 1 and x = 0, so the last column holds the state at the last valid step
            end = tl.sum(tl.where(cols == TL - 1, h, 0.0), axis=1)
            tl.store(hs_b + ((tile + 1) * N + n) * dim, end, mask=next_mask)
            tl.store(last_ptr + (pid_b * dim + offs_d) * N + n, end, mask=last_mask)
            A_n, B_n, C_n, prev = A_nx, B_nx, C_nx, prev_nx
        if HAS_D:
            acc += Dv[:, None] * u
        if SAVE_Y:  # y before the gate, for the backward's dz
            tl.store(yp_ptr + offs2, acc.to(yp_ptr.dtype.element_ty), mask=mask2)
        if HAS_Z:
            acc = acc * zz * tl.sigmoid(zz)
        tl.store(y_ptr + offs2, acc.to(y_ptr.dtype.element_ty), mask=mask2)
