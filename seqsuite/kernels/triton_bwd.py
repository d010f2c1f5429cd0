"""Triton backward selective scan (real A), chunk-parallel over the sequence.

With the forward h_t = a_t h_{t-1} + x_t (a_t = exp(dt_t A), x_t = dt_t B_t u_t) and
y_t = sum_n C_t h_t + D u_t, out_t = y_t silu(z_t), the adjoint of the state is the reverse
scan g_t = C_t dy_t + a_{t+1} g_{t+1} with dy = dout silu(z). Then, per (t, n):
  dB_t += g dt u,   du += g dt B,   d(dt) += g (h_t - x_t) A + g B u,
  dA += g (h_t - x_t) dt,   dC_t += dy h_t      (a_t h_{t-1} = h_t - x_t)
Each tile recomputes its states from the tile-start state the forward saved, and runs the
reverse scan with the carry R = a_first g_first handed from the tile after it (kept in a
program-private (batch, n_chunks, N, dim) buffer, like the forward's states). Across chunks,
R is found by `_bwd_chunk_summary_kernel` (closed form per chunk) and the reverse
`_chunk_combine_kernel`. dA and time-invariant dB/dC are summed per program into
(batch, n_chunks, N, dim) fp32 buffers (reduced afterwards); dD and Δ-bias in registers then
fp32 atomics; time-varying dB/dC are reduced over the program's channels and added with fp32
atomics into (batch, G, N, L) buffers.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import _lin_combine, _load_bc, _load_dt


@triton.jit
def _bwd_chunk_summary_kernel(
    dout_ptr, z_ptr, dt_ptr, A_ptr, C_ptr, bias_ptr, rsum_ptr, dtsum_ptr,
    dim, L, N, chunk_len, n_chunks, group_c,
    s_ub, s_ud, s_ab, s_an, sC_b, sC_g, sC_n, sC_l,
    BD: tl.constexpr, TL: tl.constexpr,
    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, C_VARY: tl.constexpr,
):
    """Per chunk: R = sum_t (prod_{r<=t in chunk} a_r) C_t dy_t, the adjoint the chunk hands
    to the step before it when nothing comes from after it; and the chunk's sum of dt.
    rsum (batch, n_chunks, N, dim) must be zero on entry."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    dmask = offs_d < dim
    base_u = pid_b * s_ub + offs_d[:, None].to(tl.int64) * s_ud
    gbC = pid_b * sC_b + ((pid_d * BD) // group_c) * sC_g
    rrow = rsum_ptr + (pid_b * n_chunks + pid_c) * N * dim + offs_d
    t_start = pid_c * chunk_len
    t_len = L - t_start
    if t_len > chunk_len:
        t_len = chunk_len
    n_t = (t_len + TL - 1) // TL
    dtot = tl.zeros((BD,), dtype=tl.float32)
    for it in range(n_t):
        t0 = t_start + (n_t - 1 - it) * TL
        offs_t = t0 + tl.arange(0, TL)
        tmask = offs_t < L
        mask2 = dmask[:, None] & tmask[None, :]
        offs2 = base_u + offs_t[None, :]
        dt, _ = _load_dt(dt_ptr, bias_ptr, offs_d, dmask, offs2, mask2, HAS_BIAS, SOFTPLUS)
        dy = tl.load(dout_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(z_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
            dy = dy * zz * tl.sigmoid(zz)
        cum = tl.cumsum(dt, axis=1)
        tot = tl.sum(dt, axis=1)
        dtot += tot
        tl.debug_barrier()
        for n in range(N):
            A2 = tl.load(A_ptr + offs_d * s_ab + n * s_an, mask=dmask, other=0.0) * 1.4426950408889634
            Cn = _load_bc(C_ptr, offs_d, dmask, offs_t, tmask, n, gbC, sC_g, sC_n, sC_l, C_VARY)
            rl = tl.sum(tl.exp2(cum * A2[:, None]) * Cn * dy, axis=1)
            prev = tl.load(rrow + n * dim, mask=dmask, other=0.0)
            tl.store(rrow + n * dim, tl.exp2(tot * A2) * prev + rl, mask=dmask)
    tl.store(dtsum_ptr + (pid_b * n_chunks + pid_c) * dim + offs_d, dtot, mask=dmask)


@triton.jit
def _bwd_tile_in(dout_ptr, u_ptr, dt_ptr, z_ptr, bias_ptr, offs_d, dmask, offs2, mask2, nmask,
                 HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """A (BD, TL) tile's inputs for a backward: dt, delta + bias (raw), dt of the next step
    (0 where nmask is off), u, dout, z and sigmoid(z) (dout where there is no z), and
    dy = dout silu(z)."""
    dt, raw = _load_dt(dt_ptr, bias_ptr, offs_d, dmask, offs2, mask2, HAS_BIAS, SOFTPLUS)
    dtn, _ = _load_dt(dt_ptr, bias_ptr, offs_d, dmask, offs2 + 1, nmask, HAS_BIAS, SOFTPLUS)
    u = tl.load(u_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
    dout = tl.load(dout_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
    if HAS_Z:
        zz = tl.load(z_ptr + offs2, mask=mask2, other=0.0).to(tl.float32)
        sz = tl.sigmoid(zz)
        dy = dout * zz * sz
    else:
        zz = dout
        sz = dout
        dy = dout
    return dt, raw, dtn, u, dout, zz, sz, dy


@triton.jit
def _bwd_tile_out(ypre, du, ddt, dy, dout, u, raw, zz, sz, Dv, dD_acc, dbias_acc,
                  dz_ptr, ddt_ptr, du_ptr, offs2, mask2,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Finish a backward tile: the D skip's and the gate's terms, softplus's derivative, and
    the stores of dz, dΔ and du. Returns the running sums for dD and Δ-bias."""
    if HAS_D:
        ypre += Dv[:, None] * u
        du += Dv[:, None] * dy
        dD_acc += tl.sum(dy * u, axis=1)
    if HAS_Z:
        dz = dout * ypre * sz * (1.0 + zz * (1.0 - sz))
        tl.store(dz_ptr + offs2, dz.to(dz_ptr.dtype.element_ty), mask=mask2)
    if SOFTPLUS:
        ddt = ddt * tl.sigmoid(raw)
    ddt = tl.where(mask2, ddt, 0.0)
    dbias_acc += tl.sum(ddt, axis=1)
    tl.store(ddt_ptr + offs2, ddt.to(ddt_ptr.dtype.element_ty), mask=mask2)
    tl.store(du_ptr + offs2, du.to(du_ptr.dtype.element_ty), mask=mask2)
    return dD_acc, dbias_acc


@triton.jit
def _bwd_flush(dD_ptr, dbias_ptr, offs_d, dmask, dD_acc, dbias_acc, HAS_D: tl.constexpr,
               HAS_BIAS: tl.constexpr):
    """Add a program's sums for dD and Δ-bias to the outputs (fp32 atomics)."""
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=dmask, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=dmask, sem="relaxed")


@triton.jit
def _bwd_kernel(
    dout_ptr, u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
    hs_ptr, r_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    sdB_b, sdB_g, sdB_n, sdC_b, sdC_g, sdC_n,
    BD: tl.constexpr, TL: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, B_VARY: tl.constexpr, C_VARY: tl.constexpr,
    UNROLL: tl.constexpr,
):
    """Gradients for one chunk of BD channels, tiles in reverse order.

    r (batch, n_chunks, N, dim) holds the adjoint entering the chunk from its end and is the
    running carry; dA (and dB/dC when time-invariant) are (batch, n_chunks, N, dim) partial
    sums, zero on entry."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BD + tl.arange(0, BD)
    dmask = offs_d < dim
    cols = tl.arange(0, TL)[None, :]
    base_u = pid_b * s_ub + offs_d[:, None].to(tl.int64) * s_ud
    gB = (pid_d * BD) // group_b
    gC = (pid_d * BD) // group_c
    gbB = pid_b * sB_b + gB * sB_g
    gbC = pid_b * sC_b + gC * sC_g
    hs_b = hs_ptr + pid_b * n_tiles * N * dim + offs_d
    prog = (pid_b * n_chunks + pid_c) * N * dim + offs_d  # + n * dim: this program's slots
    dD_acc = tl.zeros((BD,), dtype=tl.float32)
    dbias_acc = tl.zeros((BD,), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    t_start = pid_c * chunk_len
    t_len = L - t_start
    if t_len > chunk_len:
        t_len = chunk_len
    n_t = (t_len + TL - 1) // TL
    for it in range(n_t):
        t0 = t_start + (n_t - 1 - it) * TL
        tile = pid_b * 0 + t0 // TL  # int64: (tile * N + n) * dim can pass 2^31
        offs_t = t0 + tl.arange(0, TL)
        tmask = offs_t < L
        mask2 = dmask[:, None] & tmask[None, :]
        offs2 = base_u + offs_t[None, :]
        # dt of the next step (a_{t+1} for the reverse scan); 0 past the end -> a = 1
        nmask = dmask[:, None] & (offs_t[None, :] + 1 < L)
        dt, raw, dtn, u, dout, zz, sz, dy = _bwd_tile_in(
            dout_ptr, u_ptr, dt_ptr, z_ptr, bias_ptr, offs_d, dmask, offs2, mask2, nmask,
            HAS_Z, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        # the adjoint runs backwards in time: its scan works on tiles flipped along time
        # (three cheap flips beat Triton's reverse scan, which is several times slower)
        dtn_f = tl.flip(dtn, 1)
        dy_f = tl.flip(dy, 1)
        ddt = tl.zeros((BD, TL), dtype=tl.float32)
        du = tl.zeros((BD, TL), dtype=tl.float32)
        ypre = tl.zeros((BD, TL), dtype=tl.float32)
        tl.debug_barrier()  # the previous tile's carries and partial sums are visible
        # the per-state operands of state n + 1 are loaded while state n is worked on
        A_n = tl.load(A_ptr + offs_d * s_ab, mask=dmask, other=0.0)
        B_n = _load_bc(B_ptr, offs_d, dmask, offs_t, tmask, 0, gbB, sB_g, sB_n, sB_l, B_VARY)
        C_n = _load_bc(C_ptr, offs_d, dmask, offs_t, tmask, 0, gbC, sC_g, sC_n, sC_l, C_VARY)
        h0 = tl.load(hs_b + tile * N * dim, mask=dmask, other=0.0)
        r = tl.load(r_ptr + prog, mask=dmask, other=0.0)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            nn = (n + 1) % N
            A_nx = tl.load(A_ptr + offs_d * s_ab + nn * s_an, mask=dmask, other=0.0)
            B_nx = _load_bc(B_ptr, offs_d, dmask, offs_t, tmask, nn, gbB, sB_g, sB_n, sB_l, B_VARY)
            C_nx = _load_bc(C_ptr, offs_d, dmask, offs_t, tmask, nn, gbC, sC_g, sC_n, sC_l, C_VARY)
            h0_nx = tl.load(hs_b + (tile * N + nn) * dim, mask=dmask, other=0.0)
            r_nx = tl.load(r_ptr + prog + nn * dim, mask=dmask, other=0.0)
            pa = tl.load(dA_ptr + prog + n * dim, mask=dmask, other=0.0)
            if not B_VARY:
                pb = tl.load(dB_ptr + prog + n * dim, mask=dmask, other=0.0)
            if not C_VARY:
                pc = tl.load(dC_ptr + prog + n * dim, mask=dmask, other=0.0)
            A2 = A_n * 1.4426950408889634
            a = tl.exp2(dt * A2[:, None])
            an_f = tl.exp2(dtn_f * A2[:, None])
            x = dtu * B_n
            xf = tl.where(cols == 0, x + a * h0[:, None], x)
            _, h = tl.associative_scan((a, xf), 1, _lin_combine)
            ypre += h * C_n
            if C_VARY:
                c_f = tl.flip(C_n, 1) * dy_f
            else:
                c_f = C_n * dy_f
            c_f = tl.where(cols == 0, c_f + r[:, None], c_f)
            _, g_f = tl.associative_scan((an_f, c_f), 1, _lin_combine)
            g = tl.flip(g_f, 1)
            newr = tl.sum(tl.where(cols == 0, a * g, 0.0), axis=1)
            tl.store(r_ptr + prog + n * dim, newr, mask=dmask)
            gh = g * (h - x)
            ddt += gh * A_n[:, None] + g * B_n * u
            du += g * dt * B_n
            tl.store(dA_ptr + prog + n * dim, pa + tl.sum(gh * dt, axis=1), mask=dmask)
            if B_VARY:
                dBn = tl.sum(tl.where(mask2, g * dtu, 0.0), axis=0)
                tl.atomic_add(dB_ptr + pid_b * sdB_b + gB * sdB_g + n * sdB_n + offs_t, dBn,
                              mask=tmask, sem="relaxed")
            else:
                tl.store(dB_ptr + prog + n * dim, pb + tl.sum(g * dtu, axis=1), mask=dmask)
            if C_VARY:
                dCn = tl.sum(tl.where(mask2, dy * h, 0.0), axis=0)
                tl.atomic_add(dC_ptr + pid_b * sdC_b + gC * sdC_g + n * sdC_n + offs_t, dCn,
                              mask=tmask, sem="relaxed")
            else:
                tl.store(dC_ptr + prog + n * dim, pc + tl.sum(dy * h, axis=1), mask=dmask)
            A_n, B_n, C_n, h0, r = A_nx, B_nx, C_nx, h0_nx, r_nx
        if not HAS_D:
            Dv = dD_acc
        dD_acc, dbias_acc = _bwd_tile_out(ypre, du, ddt, dy, dout, u, raw, zz, sz, Dv, dD_acc,
                                          dbias_acc, dz_ptr, ddt_ptr, du_ptr, offs2, mask2,
                                          HAS_D, HAS_Z, SOFTPLUS)
    _bwd_flush(dD_ptr, dbias_ptr, offs_d, dmask, dD_acc, dbias_acc, HAS_D, HAS_BIAS)


@triton.jit
def _sum_parts_kernel(x_ptr, out_ptr, K, M, BLOCK: tl.constexpr):
    """out[r, m] = sum over k < K of x[r, k, m], in out's dtype: the per-program partial sums
    of time-varying dB/dC (x: (rows, K, M) fp32, M = N x L), summed and cast in one pass (torch's
    sum then cast reads and writes the fp32 sums twice more)."""
    r = tl.program_id(1).to(tl.int64)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for k in range(K):
        acc += tl.load(x_ptr + (r * K + k) * M + offs, mask=mask, other=0.0)
    tl.store(out_ptr + r * M + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
