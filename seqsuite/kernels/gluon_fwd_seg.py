"""Forward selective scan in one pass of exps: time segments side by side in one program.

The chunked forward (gluon_fwd.py) fills the GPU on grids of few channels by splitting each
sequence into chunks, and pays for it with a second pass of exps: a chunk's start state
comes from a summary pass over the chunk before it. This kernel splits time inside a
program instead, at a scale where the exps can be kept:

* A program takes BD channels (16 at the default shape) over S segments of TL = 16 steps
  (one "super-tile" of S·TL steps per iteration). Thread (s, d, g) holds NS states of
  channel d in segment s: lanes are TS segments × BD channels, warps S / TS segments × G
  state groups (`seg_layout`).
* Pass A: each segment scans its 16 steps from a zero state and keeps its 16 · NS factors
  a = exp(Δ A) in registers (the one exp per point), with its end state hl and its Σ Δ
  (the segment's decay is exp(A Σ Δ), NS exps per 16 steps).
* Combine: the segments' (decay, end state) pairs are scanned over the TS lanes by shuffles
  and over the S / TS warps through shared memory; with the state entering the super-tile
  this gives each segment its start state, and the next super-tile's.
* Pass B: each segment runs h <- a h + Δu B again from its start state with the kept a's
  (no exp) and forms y = Σ C h; the start state is the tile-start state the backward reads.

Per point this issues one exp instead of two (the chunked forward's summary and main pass).
Staging (softplus, Δu, bf16 loads), the y finish (sum over the G groups, D skip, SiLU gate,
stores) and the shared layouts are those of gluon_fwd.py, with the tile's rows r = s·BD + d
standing for (segment, channel) where gluon_fwd.py has 32 channels.

Outputs are `_fwd_gluon_kernel`'s: y, the tile-start states hs (batch, n_tiles, N, dim) when
SAVE, the last state, and y before the gate at yp_ptr with SAVE and z. GPU only (Gluon);
tests/test_kernels_gpu.py compares it with the reference.
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from .gluon_fwd import (LOG2E, PAD_D, _finish_y, _ld, _softplus_g, _st, _all, bc_rows_layout,
                        y_parts_layout)


@gluon.constexpr_function
def seg_layout(S, TS, BD, G, NS):
    """State layout of [S, BD, G, NS]: lane = (s mod TS) · BD + d, warp = (s / TS, g)."""
    return gl.BlockedLayout([1, 1, 1, NS], [TS, BD, 1, 1], [S // TS, 1, G, 1], [3, 1, 0, 2])


@gluon.constexpr_function
def nd_layout(shape, warps, vec):
    """A blocked layout for a tile of the given shape (last dim contiguous in memory): vec
    elements a thread along the last dim, lanes from the last dim backwards, warps from the
    first dim forwards."""
    shape = [int(x) for x in shape]
    rank = len(shape)
    spt = [1] * rank
    spt[-1] = min(vec, shape[-1])
    tpw = [1] * rank
    left = 32
    for i in range(rank - 1, -1, -1):
        room = max(shape[i] // spt[i], 1)
        t = min(left, room)
        tpw[i] = t
        left //= t
    tpw[0] *= left  # replicate what is left over
    wpc = [1] * rank
    left = warps
    for i in range(rank):
        room = max(shape[i] // (spt[i] * tpw[i]), 1)
        w = min(left, room)
        wpc[i] = w
        left //= w
    wpc[0] *= left
    return gl.BlockedLayout(spt, tpw, wpc, list(range(rank - 1, -1, -1)))


@gluon.constexpr_function
def _log2(x):
    return int(x).bit_length() - 1


@gluon.constexpr_function
def _shfl_up_asm(k, one):
    """shfl.sync.up by k lanes; lanes below k get the identity (1.0 if one, else 0.0)."""
    ident = "0x3f800000" if one else "0x00000000"
    return ("{ .reg .pred p; shfl.sync.up.b32 $0|p, $1, " + str(k) + ", 0, -1; "
            "@!p mov.b32 $0, " + ident + "; }")


@gluon.jit
def _shfl_up(x, K: gl.constexpr, ONE: gl.constexpr):
    return gl.inline_asm_elementwise(_shfl_up_asm(K, ONE), "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.constexpr_function
def _shfl_last_asm(bd, ts):
    """shfl.sync.idx from lane (ts - 1)·bd + (lane mod bd)."""
    return ("{ .reg .u32 l; mov.u32 l, %laneid; and.b32 l, l, " + str(bd - 1) + "; "
            "add.u32 l, l, " + str((ts - 1) * bd) + "; shfl.sync.idx.b32 $0, $1, l, 0x1f, -1; }")


@gluon.jit
def _shfl_idx(x, BD: gl.constexpr, TS: gl.constexpr):
    return gl.inline_asm_elementwise(_shfl_last_asm(BD, TS), "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def _join16_3(p):
    """16 [S, BD, G] tensors (step order) joined as [G, S·BD, 16]."""
    a = gl.join(gl.join(gl.join(gl.join(p[0], p[1]), gl.join(p[2], p[3])),
                        gl.join(gl.join(p[4], p[5]), gl.join(p[6], p[7]))),
                gl.join(gl.join(gl.join(p[8], p[9]), gl.join(p[10], p[11])),
                        gl.join(gl.join(p[12], p[13]), gl.join(p[14], p[15]))))
    # [S, BD, G, 2, 2, 2, 2]: index (.., i0, i1, i2, i3) = step i0 + 2 i1 + 4 i2 + 8 i3
    a = gl.permute(a, [2, 0, 1, 6, 5, 4, 3])
    return gl.reshape(a, [a.shape[0], a.shape[1] * a.shape[2], 16])


@gluon.jit
def _fwd_seg_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    hs_ptr, last_ptr, yp_ptr,
    dim, L, N, n_tiles,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
    S: gl.constexpr, TS: gl.constexpr, BD: gl.constexpr, NP: gl.constexpr,
    L4: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
    SOFTPLUS: gl.constexpr, EVEN: gl.constexpr = False, SAVE: gl.constexpr = True,
):
    """One program: BD channels of one sequence (program ids: channel block, batch), over
    the whole of L in super-tiles of S·16 steps. B and C time-varying, one group ((batch, N,
    L) with strides sB_*, sC_*). EVEN: L a multiple of S·16, dim of BD, N a power of two."""
    TL: gl.constexpr = 16
    R: gl.constexpr = S * BD  # rows of the tile layout: r = s·BD + d
    ST: gl.constexpr = S * TL  # steps of a super-tile
    G: gl.constexpr = L4.warps_per_cta[2]
    NS: gl.constexpr = NP // G
    SAVE_Y: gl.constexpr = _all(SAVE, HAS_Z)
    pid_d = gl.program_id(0)
    pid_b = gl.program_id(1).to(gl.int64)
    d0 = pid_d * BD

    # state-layout indices [S, BD, G, NS]
    LSBG: gl.constexpr = gl.SliceLayout(3, L4)
    LSB: gl.constexpr = gl.SliceLayout(2, LSBG)
    LGN: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(1, L4))
    s_i = gl.arange(0, S, layout=gl.SliceLayout(1, LSB))
    d_i = gl.arange(0, BD, layout=gl.SliceLayout(0, LSB))
    s4 = gl.expand_dims(gl.expand_dims(gl.expand_dims(s_i, 1), 2), 3)
    d4 = d0 + gl.expand_dims(gl.expand_dims(gl.expand_dims(d_i, 0), 2), 3)
    g_i = gl.arange(0, G, layout=gl.SliceLayout(1, LGN))
    j_i = gl.arange(0, NS, layout=gl.SliceLayout(0, LGN))
    n2 = gl.expand_dims(g_i, 1) * NS + gl.expand_dims(j_i, 0)
    n4 = gl.expand_dims(gl.expand_dims(n2, 0), 1)
    m4 = (d4 < dim) & (n4 < N)  # [1, BD, G, NS]
    A2 = gl.load(A_ptr + d4 * s_ab + n4 * s_an, mask=m4, other=0.0).to(gl.float32) * LOG2E
    nd = n4 * dim + d4
    s_hi = s4 // TS

    # tile-layout indices: [R, TL] tiles of u, Δ, z, y; row r = s·BD + d, step s·TL + i
    io_r = gl.arange(0, R, layout=gl.SliceLayout(1, LIO))
    io_t = gl.arange(0, TL, layout=gl.SliceLayout(0, LIO))
    io_d = d0 + io_r % BD
    io_dm = gl.expand_dims(io_d < dim, 1)
    io_st = gl.expand_dims((io_r // BD) * TL, 1) + gl.expand_dims(io_t, 0)  # step in the tile
    # 64-bit bases as scalars, 32-bit offsets in the tiles (d < BD rows of s_ud, steps < L)
    io_b = pid_b * s_ub + d0.to(gl.int64) * s_ud
    u_ptr += io_b
    dt_ptr += io_b
    z_ptr += io_b
    y_ptr += io_b
    yp_ptr += io_b
    io_base = gl.expand_dims((io_r % BD) * s_ud, 1) + io_st
    if HAS_BIAS:
        bias = gl.load(bias_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32)
    else:
        bias = gl.zeros([R], gl.float32, gl.SliceLayout(1, LIO))
    if HAS_D:
        Dv = gl.expand_dims(gl.load(D_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32), 1)
    else:
        Dv = 0.0

    # B/C tiles [NP, ST] (a row per state, the super-tile's steps contiguous)
    bc_n = gl.arange(0, NP, layout=gl.SliceLayout(1, LBC))
    bc_t = gl.arange(0, ST, layout=gl.SliceLayout(0, LBC))
    bc_nm = gl.expand_dims(bc_n < N, 1)
    B_ptr += pid_b * sB_b
    C_ptr += pid_b * sC_b
    offB = gl.expand_dims(bc_n * sB_n, 1) + gl.expand_dims(bc_t * sB_l, 0)
    offC = gl.expand_dims(bc_n * sC_n, 1) + gl.expand_dims(bc_t * sC_l, 0)

    # shared memory: (Δ, Δu) rows [TL, R, 2] (padded as gluon_fwd's), B and C rows [TL, S, NP]
    # (padded), the G partial y [G, R, TL] (swizzled), the segment groups' (decay, end state)
    PD1: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * R, PAD_D]], [R, 2], [1, 0])
    PD3: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * R, PAD_D]], [TL, R, 2], [2, 1, 0])
    PD4: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * R, PAD_D]], [S, BD, 2], [2, 1, 0])
    dd_r = gl.allocate_shared_memory(gl.float32, [2 * TL, R, 2], PD1)
    dd = dd_r._reinterpret(gl.float32, [2, TL, R, 2], PD3)
    dd4 = dd_r._reinterpret(gl.float32, [2 * TL, S, BD, 2], PD4)
    PB3: gl.constexpr = bc_rows_layout(NP, [TL, S, NP])
    PB4: gl.constexpr = bc_rows_layout(NP, [S, G, NS])
    bs = gl.allocate_shared_memory(gl.float32, [2, TL, S, NP], PB3)
    cs = gl.allocate_shared_memory(gl.float32, [2, TL, S, NP], PB3)
    bs4 = bs._reinterpret(gl.float32, [2 * TL, S, G, NS], PB4)
    cs4 = cs._reinterpret(gl.float32, [2 * TL, S, G, NS], PB4)
    PY2: gl.constexpr = y_parts_layout(2)
    PY3: gl.constexpr = y_parts_layout(3)
    ys_r = gl.allocate_shared_memory(gl.float32, [2 * G, R, TL], PY2)
    ys = ys_r._reinterpret(gl.float32, [2, G, R, TL], PY3)
    S2: gl.constexpr = S // TS
    PA3: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])
    PA4: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [3, 2, 1, 0])
    agg = gl.allocate_shared_memory(gl.float32, [2, S, BD, G, NS], PA4)  # P, then hl
    agg_r = agg._reinterpret(gl.float32, [2 * S, BD, G, NS], PA3)

    # the load layout of a step's (Δ, Δu) rows: [S, BD, 2], split into two [S, BD]
    LDD: gl.constexpr = gl.BlockedLayout([1, 1, 2], [TS, BD, 1], [S // TS, 1, G], [1, 0, 2])
    LB3: gl.constexpr = gl.SliceLayout(1, L4)  # [S, G, NS]
    LAG: gl.constexpr = gl.SliceLayout(0, L4)  # [BD, G, NS]

    # registers of the super-tile to stage next (loaded one ahead)
    tm = io_dm & (io_st < L)
    dt_nx = _ld(dt_ptr + io_base, tm, False)
    u_nx = _ld(u_ptr + io_base, tm, False)
    bcm = bc_nm & gl.expand_dims(bc_t < L, 0)
    B_nx = _ld(B_ptr + offB, bcm, False)
    C_nx = _ld(C_ptr + offC, bcm, False)
    if HAS_Z:
        z_nx = _ld(z_ptr + io_base, tm, False)
    u_pv = gl.zeros([R, TL], gl.float32, LIO)
    z_pv = gl.zeros([R, TL], gl.float32, LIO)
    m_pv = tm & False
    carry = gl.zeros([S, BD, G, NS], gl.float32, L4)
    n_st = (L + ST - 1) // ST

    for it in range(0, n_st):
        buf = it % 2
        t0 = it * ST
        tm = io_dm & (t0 + io_st < L)
        u_c = u_nx.to(gl.float32)
        dtv = dt_nx.to(gl.float32)
        if HAS_BIAS:
            dtv = dtv + gl.expand_dims(bias, 1)
        if SOFTPLUS:
            dtv = _softplus_g(dtv)
        if not EVEN:
            dtv = gl.where(tm, dtv, 0.0)
        dd.index(buf).store(gl.permute(gl.join(dtv, dtv * u_c), [1, 0, 2]))
        bs.index(buf).store(gl.permute(gl.reshape(B_nx.to(gl.float32), [NP, S, TL]), [2, 1, 0]))
        cs.index(buf).store(gl.permute(gl.reshape(C_nx.to(gl.float32), [NP, S, TL]), [2, 1, 0]))
        if HAS_Z:
            z_c = z_nx.to(gl.float32)
        # prefetch the next super-tile
        t1 = t0 + ST
        tmn = io_dm & (t1 + io_st < L)
        if EVEN:  # past the end: the last super-tile again (loaded, not used)
            t1 = gl.minimum(t1, L - ST)
        dt_nx = _ld(dt_ptr + io_base + t1, tmn, EVEN)
        u_nx = _ld(u_ptr + io_base + t1, tmn, EVEN)
        bcm = bc_nm & gl.expand_dims(t1 + bc_t < L, 0)
        B_nx = _ld(B_ptr + offB + t1 * sB_l, bcm, EVEN)
        C_nx = _ld(C_ptr + offC + t1 * sC_l, bcm, EVEN)
        if HAS_Z:
            z_nx = _ld(z_ptr + io_base + t1, tmn, EVEN)
        gl.thread_barrier()
        if it > 0:
            _finish_y(ys_r, (1 - buf) * G, u_pv, z_pv, Dv, y_ptr, yp_ptr,
                      io_base + (t0 - ST), m_pv, G, TL, LIO, HAS_D, HAS_Z, EVEN, SAVE_Y)

        # pass A: each segment from zero, keeping exp(Δ A)
        hl = gl.zeros([S, BD, G, NS], gl.float32, L4)
        sdt = gl.zeros([S, BD], gl.float32, LSB)
        av = ()
        for i in gl.static_range(TL):
            dt_t, du_t = gl.split(dd4.index(buf * TL + i).load(LDD))
            dt_t = gl.convert_layout(dt_t, LSB, assert_trivial=True)
            du_t = gl.convert_layout(du_t, LSB, assert_trivial=True)
            sdt += dt_t
            dt4 = gl.expand_dims(gl.expand_dims(dt_t, 2), 3)
            du4 = gl.expand_dims(gl.expand_dims(du_t, 2), 3)
            Bt = gl.expand_dims(bs4.index(buf * TL + i).load(LB3), 1)
            a = gl.exp2(dt4 * A2)
            hl = gl.fma(a, hl, du4 * Bt)
            av = av + (a,)
        P = gl.exp2(gl.expand_dims(gl.expand_dims(sdt, 2), 3) * A2)

        # combine: inclusive scan of (P, hl) over the TS segments of the lanes
        for k in gl.static_range(_log2(TS)):
            Pp = _shfl_up(P, BD << k, True)
            hp = _shfl_up(hl, BD << k, False)
            hl = gl.fma(P, hp, hl)
            P = P * Pp
        # exclusive pair within the lanes (identity for s_lo = 0)
        Px = _shfl_up(P, BD, True)
        hx = _shfl_up(hl, BD, False)
        # the inclusive pairs to shared memory: a lane group's aggregate is its last lane's
        if S2 > 1:
            agg.index(0).store(P)
            agg.index(1).store(hl)
            gl.thread_barrier()
        # the state entering each lane group, and the next super-tile's
        c = carry
        cm = carry
        if S2 > 1:
            for sh in gl.static_range(S2):
                cm = gl.where(s_hi == sh, c, cm)
                Pa = gl.expand_dims(agg_r.index(sh * TS + TS - 1).load(LAG), 0)
                Ha = gl.expand_dims(agg_r.index(S + sh * TS + TS - 1).load(LAG), 0)
                c = gl.fma(Pa, c, Ha)
        else:  # the last lane's inclusive pair, from every lane
            c = gl.fma(_shfl_idx(P, BD, TS), c, _shfl_idx(hl, BD, TS))
        carry = c
        h = gl.fma(Px, cm, hx)
        if SAVE:  # the state entering each segment's tile, for the backward
            tile = it * S + s4
            if EVEN:
                gl.store(hs_ptr + (pid_b * n_tiles + tile) * N * dim + nd, h)
            else:
                gl.store(hs_ptr + (pid_b * n_tiles + tile) * N * dim + nd, h,
                         mask=m4 & (tile < n_tiles))

        # pass B: from the start state with the kept factors
        yl = ()
        for i in gl.static_range(TL):
            _, du_t = gl.split(dd4.index(buf * TL + i).load(LDD))
            du_t = gl.convert_layout(du_t, LSB, assert_trivial=True)
            du4 = gl.expand_dims(gl.expand_dims(du_t, 2), 3)
            Bt = gl.expand_dims(bs4.index(buf * TL + i).load(LB3), 1)
            Ct = gl.expand_dims(cs4.index(buf * TL + i).load(LB3), 1)
            h = gl.fma(av[i], h, du4 * Bt)
            yl = yl + (gl.sum(h * Ct, axis=3),)
        ys.index(buf).store(_join16_3(yl))
        u_pv = u_c
        if HAS_Z:
            z_pv = z_c
        m_pv = tm
    gl.thread_barrier()
    if n_st > 0:
        _finish_y(ys_r, ((n_st - 1) % 2) * G, u_pv, z_pv, Dv, y_ptr, yp_ptr,
                  io_base + (n_st - 1) * ST, m_pv, G, TL, LIO, HAS_D, HAS_Z, EVEN, SAVE_Y)
    gl.store(last_ptr + (pid_b * dim + d4) * N + n4 + s4 * 0, carry, mask=m4 & (s4 == 0))
