"""Forward selective scan in Gluon (Triton's explicit-layout dialect): the CUDA forward kernel.

Why not plain Triton (triton_fwd.py): there the compiler picks the layouts, and every version
tried spent most of its instructions on shuffles (time across lanes) or on per-channel work
repeated in every lane (notes-kernels.md). Gluon states the layouts, so this kernel is built
around the cost of one (batch, dim, l, n) point:

* State layout [BD, NP]: a thread owns NS states of one channel, NL = NP / NS lanes share a
  channel, so a warp holds 32 / NL channels. Each time step is, per point, one FMUL
  (Δ·A·log2 e), one exp2, one FMUL (Δu·B), one FFMA (the recurrence) and one FFMA (C·h);
  y needs log2(NL) shuffles per channel and step, shared by the NS states.
* Per-channel, per-step work (softplus of Δ + bias, Δu, the D skip, the SiLU(z) gate, the
  bf16 loads and stores) is done once, in a tile layout [BD, TL] without repetition, and
  passes through shared memory: Δ and Δu in, y out. B and C tiles [TL, NP] are staged the
  same way, so a step reads its B and C rows as NS-wide vectors.
* Tiles are double-buffered: the next tile's inputs are loaded into registers while this
  one is scanned, and y of a tile is finished (D, gate, store) after the next tile's barrier,
  so each tile costs one CTA barrier.

Outputs are those of `_fwd_kernel`: y; the state at the start of every TL-step tile in hs
(batch, n_tiles, N, dim), read by the backward; at the end of L the last state. Sequences
split into chunks (to fill the GPU) start from h0, produced by `_fwd_chunk_summary_gluon`
and `triton_fwd._chunk_combine_kernel`.

Gluon kernels do not run under TRITON_INTERPRET, so this kernel is tested on the GPU only
(tests/test_kernels_gpu.py); the CPU tests cover the plain-Triton kernels, which compute the
same function.
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

LOG2E = gl.constexpr(1.4426950408889634)
LN2 = gl.constexpr(0.6931471805599453)


def tile_layout(rows: int, cols: int, warps: int) -> gl.BlockedLayout:
    """A blocked layout for a [rows, cols] tile with cols contiguous in memory, spread over
    `warps` warps with as little repetition as the shape allows."""
    per = max(1, rows * cols // (32 * warps))
    vec = max(1, min(cols, per, 8))
    tpw_c = max(1, min(32, cols // vec))
    tpw_r = 32 // tpw_c
    wr = max(1, min(warps, rows // tpw_r)) if rows >= tpw_r else 1
    while warps % wr:
        wr -= 1
    return gl.BlockedLayout([1, vec], [tpw_r, tpw_c], [wr, warps // wr], [1, 0])


def state_layout(ns: int, nl: int, warps: int) -> gl.BlockedLayout:
    """[BD, NP] state layout: NS states per thread, NL lanes per channel."""
    return gl.BlockedLayout([1, ns], [32 // nl, nl], [warps, 1], [1, 0])


@gluon.jit
def _load_t(smem, LIO: gl.constexpr):
    """A [TL, BD] shared tile read as [BD, TL] in the layout LIO."""
    LT: gl.constexpr = gl.BlockedLayout([LIO.size_per_thread[1], LIO.size_per_thread[0]],
                                        [LIO.threads_per_warp[1], LIO.threads_per_warp[0]],
                                        [LIO.warps_per_cta[1], LIO.warps_per_cta[0]], [0, 1])
    return gl.convert_layout(gl.permute(smem.load(LT), [1, 0]), LIO)


@gluon.jit
def _lg2(x):
    """log2 on the special-function unit (lg2.approx: about 2^-22 relative error)."""
    return gl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def _rcp(x):
    """1 / x on the special-function unit (rcp.approx.ftz: 1 ulp)."""
    return gl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def _silu_gate(y, z):
    """y * z * sigmoid(z)."""
    return y * z * _rcp(1.0 + gl.exp2(-LOG2E * z))


@gluon.jit
def _softplus_g(x):
    """softplus with torch's threshold (x > 20 -> x); exp(x) below -15, where 1 + e^x rounds."""
    e = gl.exp2(x * LOG2E)
    sp = _lg2(1.0 + e) * LN2
    return gl.where(x > 20.0, x, gl.where(x < -15.0, e, sp))


@gluon.jit
def _stage_dt(dt_raw, u_raw, bias, tmask, HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr):
    """(Δ after bias and softplus, Δ·u) in fp32, zero past the chunk (a = 1, no input)."""
    dt = dt_raw.to(gl.float32)
    if HAS_BIAS:
        dt = dt + gl.expand_dims(bias, 1)
    if SOFTPLUS:
        dt = _softplus_g(dt)
    dt = gl.where(tmask, dt, 0.0)
    return dt, dt * u_raw.to(gl.float32)


@gluon.jit
def _step(h, A2, rows, t: gl.constexpr, LS: gl.constexpr, B_VARY: gl.constexpr,
          C_VARY: gl.constexpr):
    """One time step of the state tile: h <- exp2(Δ A log2 e) h + Δu B; returns (h, <h, C>)."""
    LD: gl.constexpr = gl.SliceLayout(1, LS)
    LN: gl.constexpr = gl.SliceLayout(0, LS)
    dt_t = gl.expand_dims(rows[0].index(t).load(LD), 1)
    du_t = gl.expand_dims(rows[1].index(t).load(LD), 1)
    if B_VARY:
        Bt = gl.expand_dims(rows[2].index(t).load(LN), 0)
    else:
        Bt = rows[2]
    if C_VARY:
        Ct = gl.expand_dims(rows[3].index(t).load(LN), 0)
    else:
        Ct = rows[3]
    h = gl.exp2(dt_t * A2) * h + du_t * Bt
    return h, gl.sum(h * Ct, axis=1)


@gluon.jit
def _steps2(h, A2, rows, t: gl.constexpr, LS: gl.constexpr, B_VARY: gl.constexpr,
            C_VARY: gl.constexpr):
    h, a = _step(h, A2, rows, t, LS, B_VARY, C_VARY)
    h, b = _step(h, A2, rows, t + 1, LS, B_VARY, C_VARY)
    return h, gl.join(a, b)


@gluon.jit
def _steps4(h, A2, rows, t: gl.constexpr, LS: gl.constexpr, B_VARY: gl.constexpr,
            C_VARY: gl.constexpr):
    h, a = _steps2(h, A2, rows, t, LS, B_VARY, C_VARY)
    h, b = _steps2(h, A2, rows, t + 2, LS, B_VARY, C_VARY)
    return h, gl.join(a, b)


@gluon.jit
def _steps8(h, A2, rows, t: gl.constexpr, LS: gl.constexpr, B_VARY: gl.constexpr,
            C_VARY: gl.constexpr):
    h, a = _steps4(h, A2, rows, t, LS, B_VARY, C_VARY)
    h, b = _steps4(h, A2, rows, t + 4, LS, B_VARY, C_VARY)
    return h, gl.join(a, b)


@gluon.jit
def _steps16(h, A2, rows, LS: gl.constexpr, B_VARY: gl.constexpr, C_VARY: gl.constexpr):
    """16 steps; y as a [BD, 16] tile held in registers (the per-step results are joined, so
    no shared-memory store sits between two steps)."""
    h, a = _steps8(h, A2, rows, 0, LS, B_VARY, C_VARY)
    h, b = _steps8(h, A2, rows, 8, LS, B_VARY, C_VARY)
    y = gl.join(a, b)  # [BD, 2, 2, 2, 2], index (i0, i1, i2, i3) = step i0 + 2 i1 + 4 i2 + 8 i3
    y = gl.reshape(gl.permute(y, [0, 4, 3, 2, 1]), [y.shape[0], 16])
    return h, y


@gluon.jit
def _fwd_gluon_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    h0_ptr, hs_ptr, last_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    BD: gl.constexpr, NP: gl.constexpr, TL: gl.constexpr,
    LS: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
    SOFTPLUS: gl.constexpr, B_VARY: gl.constexpr, C_VARY: gl.constexpr,
    HAS_H0: gl.constexpr,
):
    LD: gl.constexpr = gl.SliceLayout(1, LS)    # [BD] of the state layout
    LN: gl.constexpr = gl.SliceLayout(0, LS)    # [NP] of the state layout
    LIOD: gl.constexpr = gl.SliceLayout(1, LIO)
    LIOT: gl.constexpr = gl.SliceLayout(0, LIO)
    SH3: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
    SH1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])

    pid_d = gl.program_id(0)
    pid_c = gl.program_id(1)
    pid_b = gl.program_id(2).to(gl.int64)
    d0 = pid_d * BD

    # state-layout indices
    offs_d = d0 + gl.arange(0, BD, layout=LD)
    offs_n = gl.arange(0, NP, layout=LN)
    dmask = offs_d < dim
    m2 = gl.expand_dims(dmask, 1) & gl.expand_dims(offs_n < N, 0)
    A2 = gl.load(A_ptr + gl.expand_dims(offs_d, 1) * s_ab + gl.expand_dims(offs_n, 0) * s_an,
                 mask=m2, other=0.0).to(gl.float32) * LOG2E
    nd = gl.expand_dims(offs_n, 0) * dim + gl.expand_dims(offs_d, 1)  # (n, d) of state buffers
    hs_b = hs_ptr + pid_b * n_tiles * N * dim
    if HAS_H0:
        h = gl.load(h0_ptr + (pid_b * n_chunks + pid_c) * N * dim + nd, mask=m2, other=0.0)
    else:
        h = gl.zeros([BD, NP], gl.float32, LS)
    if not B_VARY:
        Bc = gl.load(B_ptr + gl.expand_dims(offs_d, 1) * sB_g + gl.expand_dims(offs_n, 0) * sB_n,
                     mask=m2, other=0.0).to(gl.float32)
    if not C_VARY:
        Cc = gl.load(C_ptr + gl.expand_dims(offs_d, 1) * sC_g + gl.expand_dims(offs_n, 0) * sC_n,
                     mask=m2, other=0.0).to(gl.float32)

    # io-layout indices ([BD, TL] tiles of u, Δ, z, y)
    io_d = d0 + gl.arange(0, BD, layout=LIOD)
    io_t = gl.arange(0, TL, layout=LIOT)
    io_dm = gl.expand_dims(io_d < dim, 1)
    io_base = pid_b * s_ub + gl.expand_dims(io_d.to(gl.int64) * s_ud, 1) + gl.expand_dims(io_t, 0)
    if HAS_BIAS:
        bias = gl.load(bias_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32)
    else:
        bias = gl.zeros([BD], gl.float32, LIOD)
    if HAS_D:
        Dv = gl.expand_dims(gl.load(D_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32), 1)

    # B/C tiles [NP, TL]
    bc_n = gl.arange(0, NP, layout=gl.SliceLayout(1, LBC))
    bc_t = gl.arange(0, TL, layout=gl.SliceLayout(0, LBC))
    bc_nm = gl.expand_dims(bc_n < N, 1)
    offB = pid_b * sB_b + (d0 // group_b) * sB_g + gl.expand_dims(bc_n, 1) * sB_n + gl.expand_dims(bc_t, 0) * sB_l
    offC = pid_b * sC_b + (d0 // group_c) * sC_g + gl.expand_dims(bc_n, 1) * sC_n + gl.expand_dims(bc_t, 0) * sC_l

    dts = gl.allocate_shared_memory(gl.float32, [2, TL, BD], SH3)
    dus = gl.allocate_shared_memory(gl.float32, [2, TL, BD], SH3)
    ys = gl.allocate_shared_memory(gl.float32, [2, TL, BD], SH3)
    if B_VARY:
        bs = gl.allocate_shared_memory(gl.float32, [2, TL, NP], SH3)
    if C_VARY:
        cs = gl.allocate_shared_memory(gl.float32, [2, TL, NP], SH3)

    t_start = pid_c * chunk_len
    t_end = gl.minimum(t_start + chunk_len, L)
    tile0 = t_start // TL
    tile1 = (t_end + TL - 1) // TL

    # registers of the tile to stage next (loaded one tile ahead)
    tm = io_dm & gl.expand_dims(t_start + io_t < t_end, 0)
    dt_nx = gl.load(dt_ptr + io_base + t_start, mask=tm, other=0.0)
    u_nx = gl.load(u_ptr + io_base + t_start, mask=tm, other=0.0)
    if HAS_Z:
        z_nx = gl.load(z_ptr + io_base + t_start, mask=tm, other=0.0)
    if B_VARY:
        B_nx = gl.load(B_ptr + offB + t_start * sB_l, mask=bc_nm & gl.expand_dims(t_start + bc_t < t_end, 0), other=0.0)
    if C_VARY:
        C_nx = gl.load(C_ptr + offC + t_start * sC_l, mask=bc_nm & gl.expand_dims(t_start + bc_t < t_end, 0), other=0.0)
    # the previous tile's y is finished one iteration late (after this tile's barrier)
    u_pv = gl.zeros([BD, TL], gl.float32, LIO)
    z_pv = gl.zeros([BD, TL], gl.float32, LIO)
    m_pv = tm & False

    for it in range(tile0, tile1):
        buf = (it - tile0) % 2
        t0 = it * TL
        tm = io_dm & gl.expand_dims(t0 + io_t < t_end, 0)
        dt_c, du_c = _stage_dt(dt_nx, u_nx, bias, tm, HAS_BIAS, SOFTPLUS)
        dts.index(buf).store(gl.permute(dt_c, [1, 0]))
        dus.index(buf).store(gl.permute(du_c, [1, 0]))
        if B_VARY:
            bs.index(buf).store(gl.permute(B_nx.to(gl.float32), [1, 0]))
        if C_VARY:
            cs.index(buf).store(gl.permute(C_nx.to(gl.float32), [1, 0]))
        u_c = u_nx.to(gl.float32)
        if HAS_Z:
            z_c = z_nx.to(gl.float32)
        # prefetch the next tile
        t1 = t0 + TL
        tmn = io_dm & gl.expand_dims(t1 + io_t < t_end, 0)
        dt_nx = gl.load(dt_ptr + io_base + t1, mask=tmn, other=0.0)
        u_nx = gl.load(u_ptr + io_base + t1, mask=tmn, other=0.0)
        if HAS_Z:
            z_nx = gl.load(z_ptr + io_base + t1, mask=tmn, other=0.0)
        bcm = bc_nm & gl.expand_dims(t1 + bc_t < t_end, 0)
        if B_VARY:
            B_nx = gl.load(B_ptr + offB + t1 * sB_l, mask=bcm, other=0.0)
        if C_VARY:
            C_nx = gl.load(C_ptr + offC + t1 * sC_l, mask=bcm, other=0.0)
        gl.thread_barrier()
        # finish the previous tile's y
        if it > tile0:
            yv = _load_t(ys.index(1 - buf), LIO)
            if HAS_D:
                yv += Dv * u_pv
            if HAS_Z:
                yv = _silu_gate(yv, z_pv)
            gl.store(y_ptr + io_base + (t0 - TL), yv.to(y_ptr.dtype.element_ty), mask=m_pv)
        # the state entering this tile, for the backward
        gl.store(hs_b + it * N * dim + nd, h, mask=m2)
        rows = (dts.index(buf)._reinterpret(gl.float32, [TL, BD], SH1),
                dus.index(buf)._reinterpret(gl.float32, [TL, BD], SH1))
        if B_VARY:
            rows = rows + (bs.index(buf)._reinterpret(gl.float32, [TL, NP], SH1),)
        else:
            rows = rows + (Bc,)
        if C_VARY:
            rows = rows + (cs.index(buf)._reinterpret(gl.float32, [TL, NP], SH1),)
        else:
            rows = rows + (Cc,)
        h, yt = _steps16(h, A2, rows, LS, B_VARY, C_VARY)
        ys.index(buf).store(gl.permute(gl.convert_layout(yt, LIO), [1, 0]))
        u_pv = u_c
        if HAS_Z:
            z_pv = z_c
        m_pv = tm
    gl.thread_barrier()
    if tile1 > tile0:
        yv = _load_t(ys.index((tile1 - 1 - tile0) % 2), LIO)
        if HAS_D:
            yv += Dv * u_pv
        if HAS_Z:
            yv = _silu_gate(yv, z_pv)
        gl.store(y_ptr + io_base + (tile1 - 1) * TL, yv.to(y_ptr.dtype.element_ty), mask=m_pv)
    if t_end == L:
        gl.store(last_ptr + (pid_b * dim + gl.expand_dims(offs_d, 1)) * N + gl.expand_dims(offs_n, 0),
                 h, mask=m2)


@gluon.jit
def _fwd_chunk_summary_gluon(
    u_ptr, dt_ptr, A_ptr, B_ptr, bias_ptr, hsum_ptr, dtsum_ptr,
    dim, L, N, chunk_len, n_chunks, group_size,
    s_ub, s_ud, s_ab, s_an, sB_b, sB_g, sB_n, sB_l,
    BD: gl.constexpr, NP: gl.constexpr, TL: gl.constexpr,
    LS: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr, B_VARY: gl.constexpr,
):
    """Per chunk: the end state from a zero start and the sum of Δ (the outputs of
    `_fwd_chunk_summary_kernel`), by the same staged recurrence as `_fwd_gluon_kernel`."""
    LD: gl.constexpr = gl.SliceLayout(1, LS)
    LN: gl.constexpr = gl.SliceLayout(0, LS)
    LIOD: gl.constexpr = gl.SliceLayout(1, LIO)
    LIOT: gl.constexpr = gl.SliceLayout(0, LIO)
    SH3: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
    SH1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])

    pid_d = gl.program_id(0)
    pid_c = gl.program_id(1)
    pid_b = gl.program_id(2).to(gl.int64)
    d0 = pid_d * BD
    offs_d = d0 + gl.arange(0, BD, layout=LD)
    offs_n = gl.arange(0, NP, layout=LN)
    dmask = offs_d < dim
    m2 = gl.expand_dims(dmask, 1) & gl.expand_dims(offs_n < N, 0)
    A2 = gl.load(A_ptr + gl.expand_dims(offs_d, 1) * s_ab + gl.expand_dims(offs_n, 0) * s_an,
                 mask=m2, other=0.0).to(gl.float32) * LOG2E
    nd = gl.expand_dims(offs_n, 0) * dim + gl.expand_dims(offs_d, 1)
    h = gl.zeros([BD, NP], gl.float32, LS)
    if not B_VARY:
        Bc = gl.load(B_ptr + gl.expand_dims(offs_d, 1) * sB_g + gl.expand_dims(offs_n, 0) * sB_n,
                     mask=m2, other=0.0).to(gl.float32)

    io_d = d0 + gl.arange(0, BD, layout=LIOD)
    io_t = gl.arange(0, TL, layout=LIOT)
    io_dm = gl.expand_dims(io_d < dim, 1)
    io_base = pid_b * s_ub + gl.expand_dims(io_d.to(gl.int64) * s_ud, 1) + gl.expand_dims(io_t, 0)
    if HAS_BIAS:
        bias = gl.load(bias_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32)
    else:
        bias = gl.zeros([BD], gl.float32, LIOD)
    bc_n = gl.arange(0, NP, layout=gl.SliceLayout(1, LBC))
    bc_t = gl.arange(0, TL, layout=gl.SliceLayout(0, LBC))
    bc_nm = gl.expand_dims(bc_n < N, 1)
    offB = pid_b * sB_b + (d0 // group_size) * sB_g + gl.expand_dims(bc_n, 1) * sB_n + gl.expand_dims(bc_t, 0) * sB_l

    dts = gl.allocate_shared_memory(gl.float32, [2, TL, BD], SH3)
    dus = gl.allocate_shared_memory(gl.float32, [2, TL, BD], SH3)
    if B_VARY:
        bs = gl.allocate_shared_memory(gl.float32, [2, TL, NP], SH3)

    t_start = pid_c * chunk_len
    t_end = gl.minimum(t_start + chunk_len, L)
    tile0 = t_start // TL
    tile1 = (t_end + TL - 1) // TL
    tm = io_dm & gl.expand_dims(t_start + io_t < t_end, 0)
    dt_nx = gl.load(dt_ptr + io_base + t_start, mask=tm, other=0.0)
    u_nx = gl.load(u_ptr + io_base + t_start, mask=tm, other=0.0)
    if B_VARY:
        B_nx = gl.load(B_ptr + offB + t_start * sB_l, mask=bc_nm & gl.expand_dims(t_start + bc_t < t_end, 0), other=0.0)
    dtot = gl.zeros([BD, TL], gl.float32, LIO)
    for it in range(tile0, tile1):
        buf = (it - tile0) % 2
        t0 = it * TL
        tm = io_dm & gl.expand_dims(t0 + io_t < t_end, 0)
        dt_c, du_c = _stage_dt(dt_nx, u_nx, bias, tm, HAS_BIAS, SOFTPLUS)
        dtot += dt_c
        dts.index(buf).store(gl.permute(dt_c, [1, 0]))
        dus.index(buf).store(gl.permute(du_c, [1, 0]))
        if B_VARY:
            bs.index(buf).store(gl.permute(B_nx.to(gl.float32), [1, 0]))
        t1 = t0 + TL
        tmn = io_dm & gl.expand_dims(t1 + io_t < t_end, 0)
        dt_nx = gl.load(dt_ptr + io_base + t1, mask=tmn, other=0.0)
        u_nx = gl.load(u_ptr + io_base + t1, mask=tmn, other=0.0)
        if B_VARY:
            B_nx = gl.load(B_ptr + offB + t1 * sB_l, mask=bc_nm & gl.expand_dims(t1 + bc_t < t_end, 0), other=0.0)
        gl.thread_barrier()
        dtb = dts.index(buf)._reinterpret(gl.float32, [TL, BD], SH1)
        dub = dus.index(buf)._reinterpret(gl.float32, [TL, BD], SH1)
        for t in gl.static_range(TL):
            dt_t = gl.expand_dims(dtb.index(t).load(LD), 1)
            du_t = gl.expand_dims(dub.index(t).load(LD), 1)
            if B_VARY:
                Bt = gl.expand_dims(bs.index(buf)._reinterpret(gl.float32, [TL, NP], SH1).index(t).load(LN), 0)
            else:
                Bt = Bc
            h = gl.exp2(dt_t * A2) * h + du_t * Bt
    gl.store(hsum_ptr + (pid_b * n_chunks + pid_c) * N * dim + nd, h, mask=m2)
    gl.store(dtsum_ptr + (pid_b * n_chunks + pid_c) * dim + io_d, gl.sum(dtot, axis=1), mask=io_d < dim)
