"""Backward selective scan in Gluon: the CUDA backward kernel (the layout of gluon_fwd.py).

With the forward h_t = a_t h_{t-1} + x_t (a_t = exp(Δ_t A), x_t = Δ_t u_t B_t) and
y_t = Σ_n C_t h_t + D u_t, out_t = y_t silu(z_t), the adjoint of the state runs backwards:
g_t = C_t dy_t + R, R <- a_t g_t (dy = dout silu(z)). Per point (d, t, n), with
a_t h_{t-1} = h_t − x_t:
  dA += g (h_t − x_t) Δ_t,   dΔ_t += g (h_t − x_t) A + g B_t u_t,   du_t += g B_t Δ_t,
  dB_t += g Δ_t u_t (summed over channels),   dC_t += dy_t h_t (summed over channels).

Layout (gluon_fwd.py): lane = channel (32 per program), warp = NS states; a program holds
GS = W x NS states (16 at most) at a time, and N > GS runs as NG = N / GS groups one after the
other over each staged tile (steps 2-3 per group; the sums over states add up over the groups
in registers). One program walks its chunk's tiles of TL = 16 steps from the last to the
first:
1. Staging: Δ (softplus), Δu and dy of the tile, computed once per (channel, step) in the
   tile layout, go to shared memory as (Δ, Δu) pair rows and dy rows (an 8-byte and a 4-byte
   read per step; the summaries stage (Δ, dy) pairs alone); B and C rows as in the forward.
2. Recompute: the 16 states h_t of the tile from the tile-start state the forward saved
   (H_ASYNC, the default: copied two tiles ahead by cp.async into one of RING = 3 shared
   slots, so no register holds it and no load is waited for at the tile's start; otherwise
   loaded into registers; IN_ASYNC, also the default: Δ, u, dout and z the same way);
   dy_t h_t for dC; without HAS_YP, this thread's part of Σ_n C_t h_t (y, for dz; with
   HAS_YP the forward saved y before the gate and it is read with the tile instead).
3. Reverse: g, dA, and this thread's parts of Σ_n g (h − x) A and Σ_n g B (for dΔ and du);
   g Δu for dB.
   dC_t = Σ_d dy_t h_t and dB_t = Σ_d g Δu (sums over the channels = lanes) are done for all
   16 steps at once by a butterfly reduce-scatter (`_lane_sums16`): 31 shuffles per state
   and tile instead of 5 per step, and lane l ends with the sums of step l >> 1.
4. Finish (tile layout, after a barrier): the warps' parts summed; du, dΔ (through softplus),
   dz (from the saved or recomputed y) written; dD and dΔ-bias summed per channel (one
   atomic add per program at the end).
The per-(channel, step) sums over states go through shared memory once per tile, like y in
the forward (a buffer per sum, since the compiler's barrier analysis is per buffer: two with
HAS_YP, three without). With REEXP the reverse pass recomputes exp(ΔA) (`_ex2_mul`) instead
of keeping step 2's 16 x NS values in registers: no spills at N = 16, fewer at N = 64; the
launcher turns it on where it measured faster (`triton_scan.reexp_bwd`). Time-varying dB and
dC are written per program as (batch, programs over dim, N, L) partial sums and reduced by
the launcher (no atomics); dA and time-invariant dB/dC as (batch, n_chunks, N, dim). Chunks
start from the adjoint R that this kernel's SUMMARY mode (run on sub-chunks) and the reverse
chunk combine hand them.

Gluon does not run under TRITON_INTERPRET: tested on the GPU (tests/test_kernels_gpu.py).
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy

from .gluon_fwd import (LN2, LOG2E, _all, _bc_tile, _exp2_fma, _io_index, _join16, _ld,
                        _packs, _pair_layout, _pair_offsets, _rcp, _rcp_fma, _softplus_g, _st,
                        _state_index, _tile_ptrs, _to_f32, bc_rows_layout, y_parts_layout)

# Staged rows: (Δ, Δu) pairs [BD, 2] (the summary: (Δ, dy)) and dy [BD], padded so that the
# tile layout's transposed stores are free of bank conflicts (`_pad_pairs`), 34 floats a dy row
PAD_Q = gl.constexpr(2)


@gluon.constexpr_function
def _pad_pairs(W):
    """Floats of padding after each 64-float (Δ, ·) pair row, for W warps. 8 warps (the main
    pass: a warp stores 4 channels x 8 step pairs): 4 (68-float rows, 2 wavefronts per 64-bit
    store, the least; ncu). 2 or 4 warps (the summaries: a half-warp stores 8 or 4 channels
    of steps 8 or 4 apart): 68-float rows put those steps on the same banks (544 and 272
    floats apart, 0 and 16 mod 32), 4 wavefronts a store (ncu, row 3's summary: 21 of its 42
    million store wavefronts were conflicts); 66-float rows put them 16 and 8 banks apart."""
    return 4 if W >= 8 else 2


# slots of the cp.async ring of tile-start states and input tiles (H_ASYNC, IN_ASYNC): the
# tile being read and the two copied ahead of it
RING = gl.constexpr(3)


@gluon.jit
def _row(dd, dq, i, L3: gl.constexpr, SUMMARY: gl.constexpr):
    """(Δ, Δu, dy) of step row i as [BD, 1, 1] tensors of the state layout: one 8-byte read
    of the pair row and one 4-byte read of the dy row. SUMMARY: the pair row is (Δ, dy), and
    dy also stands in for Δu (which the summary does not use)."""
    W: gl.constexpr = L3.warps_per_cta[1]
    LD: gl.constexpr = gl.SliceLayout(1, gl.SliceLayout(2, L3))
    L2: gl.constexpr = gl.BlockedLayout([1, 2], [32, 1], [1, W], [1, 0])
    dt, x = gl.split(dd.index(i).load(L2))
    dt = gl.expand_dims(gl.expand_dims(gl.convert_layout(dt, LD, assert_trivial=True), 1), 2)
    x = gl.expand_dims(gl.expand_dims(gl.convert_layout(x, LD, assert_trivial=True), 1), 2)
    if SUMMARY:
        return dt, x, x
    else:
        dy = gl.expand_dims(gl.expand_dims(dq.index(i).load(LD), 1), 2)
        return dt, x, dy


@gluon.constexpr_function
def _bfly_asm(m):
    return f"shfl.sync.bfly.b32 $0, $1, {m}, 0x1f, -1;"


@gluon.jit
def _bfly(x, M: gl.constexpr):
    """x from the lane whose id differs in the bits M (shfl.sync.bfly over the full warp)."""
    return gl.inline_asm_elementwise(_bfly_asm(M), "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def _halve(v, lane, M: gl.constexpr, K: gl.constexpr):
    """One level of a butterfly reduce-scatter over the lanes: of the pairs (v[i], v[i+K/2]),
    a lane keeps the half its bit M selects and adds the other lane's copy of it."""
    out = ()
    hi = (lane & M) != 0
    for i in gl.static_range(K // 2):
        keep = gl.where(hi, v[i + K // 2], v[i])
        send = gl.where(hi, v[i], v[i + K // 2])
        out = out + (keep + _bfly(send, M),)
    return out


@gluon.jit
def _lane_sums16(v, lane):
    """16 [BD = 32, W, NS] tensors (one per step) summed over the 32 lanes (channels) by a
    reduce-scatter: 31 shuffles per state for all 16 steps instead of 80. Returns one tensor:
    lane l holds the sums of step l >> 1 (lanes l and l ^ 1 alike)."""
    v = _halve(v, lane, 16, 16)
    v = _halve(v, lane, 8, 8)
    v = _halve(v, lane, 4, 4)
    v = _halve(v, lane, 2, 2)
    return v[0] + _bfly(v[0], 1)


@gluon.jit
def _store_lane_sums16(v, row3, lane3, n3, N, t0, t_end, EVEN: gl.constexpr):
    """`_lane_sums16` of v stored at row3 + t0 + step: the even lanes store (lanes l and
    l ^ 1 hold the same step), masked past N and the chunk unless EVEN. row3: the states'
    rows of dB or dC, n3: their state indices."""
    st3 = lane3 >> 1
    mask = (lane3 & 1) == 0
    if not EVEN:
        mask = mask & (n3 < N) & (t0 + st3 < t_end)
    gl.store(row3 + t0 + st3, _lane_sums16(v, lane3), mask=mask)


@gluon.jit
def _ex2_mul(x, y):
    """exp2(x * y) as one inline-PTX block: the compiler cannot merge it with the same exp
    computed earlier, so the backward recomputes exp(ΔA) in its reverse pass (two cheap
    instructions) instead of holding 16 x NS of them in registers."""
    return gl.inline_asm_elementwise(
        "{ .reg .f32 t; mul.ftz.f32 t, $1, $2; ex2.approx.ftz.f32 $0, t; }", "=r,r,r", [x, y],
        dtype=gl.float32, is_pure=True, pack=1)


@gluon.jit
def _bc_row(src, i, VARY: gl.constexpr, L3: gl.constexpr):
    if VARY:
        return gl.expand_dims(src.index(i).load(gl.SliceLayout(0, L3)), 0)
    else:
        return src


@gluon.jit
def _sum_rows(sr, first, W: gl.constexpr, LIO: gl.constexpr):
    v = sr.index(first).load(LIO)
    for w in gl.static_range(1, W):
        v += sr.index(first + w).load(LIO)
    return v


@gluon.jit
def _h_copy(hsm, slot, row, ms, gstride, NG: gl.constexpr, EVEN: gl.constexpr):
    """cp.async of one tile's start state (NG groups of [BD, W, NS] at row + g x gstride) into
    slot `slot` of hsm (the caller commits the group)."""
    for gi in gl.static_range(NG):
        if EVEN:
            async_copy.async_copy_global_to_shared(hsm.index(slot * NG + gi), row + gi * gstride)
        else:
            async_copy.async_copy_global_to_shared(hsm.index(slot * NG + gi), row + gi * gstride,
                                                   mask=ms[gi])


@gluon.jit
def _h_load(row, ms, gstride, NG: gl.constexpr, EVEN: gl.constexpr):
    """One tile's start state into registers: NG groups of [BD, W, NS] at row + g x gstride,
    as a tuple (the register paths beside `_h_copy`)."""
    h = ()
    for gi in gl.static_range(NG):
        h = h + (_ld(row + gi * gstride, ms[gi], EVEN),)
    return h


@gluon.constexpr_function
def _in_shape(pk, BD, TL):
    return [int(RING), int(BD), int(TL) // 2 if pk else int(TL)]


@gluon.constexpr_function
def _in_dtype(pk, ty):
    return gl.int32 if pk else ty


@gluon.jit
def _in_copy(sm, slot, ptr, off, off2, t, PK: gl.constexpr):
    """cp.async of the [BD, TL] input tile at step t into slot `slot` of sm: as int32 pairs
    with PK (every copy 4 bytes), else element by element (`_tile_ptrs`)."""
    async_copy.async_copy_global_to_shared(sm.index(slot), _tile_ptrs(ptr, off, off2, t, PK))


@gluon.jit
def _in_copies(dt_sm, u_sm, o_sm, z_sm, y_sm, slot, dt_ptr, u_ptr, dout_ptr, z_ptr, yp_ptr,
               off, off2, t, PK_DT: gl.constexpr, PK_U: gl.constexpr, PK_O: gl.constexpr,
               PK_Z: gl.constexpr, PK_Y: gl.constexpr, HAS_Z: gl.constexpr,
               HAS_YP: gl.constexpr):
    """`_in_copy` of the Δ, u, dout (and z, and the saved y) tiles at step t (the caller
    commits)."""
    _in_copy(dt_sm, slot, dt_ptr, off, off2, t, PK_DT)
    _in_copy(u_sm, slot, u_ptr, off, off2, t, PK_U)
    _in_copy(o_sm, slot, dout_ptr, off, off2, t, PK_O)
    if HAS_Z:
        _in_copy(z_sm, slot, z_ptr, off, off2, t, PK_Z)
    if HAS_YP:
        _in_copy(y_sm, slot, yp_ptr, off, off2, t, PK_Y)


@gluon.jit
def _in_read(sm, slot, LIO: gl.constexpr, PK: gl.constexpr):
    """The input tile copied into slot `slot` of sm, as fp32 in the tile layout (`_to_f32`)."""
    if PK:
        x = sm.index(slot).load(_pair_layout(LIO))
    else:
        x = sm.index(slot).load(LIO)
    return _to_f32(x, LIO, PK)


@gluon.jit
def _bwd_gluon_kernel(
    dout_ptr, u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
    hs_ptr, r_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, yp_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, n_dblk, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    BD: gl.constexpr, NP: gl.constexpr, TL: gl.constexpr,
    L3: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
    SOFTPLUS: gl.constexpr, B_VARY: gl.constexpr, C_VARY: gl.constexpr,
    HAS_R: gl.constexpr, SUMMARY: gl.constexpr, REEXP: gl.constexpr = True,
    EVEN: gl.constexpr = False, H_ASYNC: gl.constexpr = False, IN_ASYNC: gl.constexpr = False,
    HAS_YP: gl.constexpr = False,
):
    """Gradients for one chunk of BD = 32 channels (see the module docstring for outputs).
    SUMMARY: only the chunk's summary for the reverse chunk combine, the adjoint it hands to
    the step before it when nothing comes from after it (R after its first step, into dA_ptr
    as (batch, n_chunks, N, dim)) and its sum of Δ (into dD_ptr as (batch, n_chunks, dim));
    u, B, the saved states and the other outputs are not read. EVEN: L a multiple of TL, dim
    of BD and N a power of two (no masks)."""
    W: gl.constexpr = gl.num_warps()
    NS: gl.constexpr = L3.size_per_thread[2]
    GS: gl.constexpr = W * NS   # states held at a time (one group)
    NG: gl.constexpr = NP // GS  # groups, run one after the other over each staged tile
    # y (before the gate) is needed for dz only; HAS_YP: the forward saved it (yp_ptr, y's
    # dtype), so it is read, not recomputed (no Σ C h, no warps' parts through shared memory)
    NEED_Y: gl.constexpr = _all(HAS_Z, not HAS_YP, not SUMMARY)
    YP: gl.constexpr = _all(HAS_Z, HAS_YP, not SUMMARY)

    pid_d = gl.program_id(0)
    pid_c = gl.program_id(1)
    pid_b = gl.program_id(2).to(gl.int64)
    d0 = pid_d * BD

    d3, n3, m3 = _state_index(d0, dim, N, BD, L3)
    lane3 = d3 - d0      # = the lane
    nd = n3 * dim + d3
    prog = (pid_b * n_chunks + pid_c) * N * dim + nd  # this program's (n, d) slots
    zero3 = gl.zeros([BD, W, NS], gl.float32, L3)
    # per group: mask, A, A log2 e, the adjoint R carried between tiles, dA (and the
    # time-invariant B, C with their gradients)
    ms = ()
    A2s = ()
    Rs = ()
    dAs = ()
    Bcs = ()
    dBs = ()
    Ccs = ()
    dCs = ()
    for gi in gl.static_range(NG):
        mg = m3 & (n3 + gi * GS < N)
        ms = ms + (mg,)
        Ag = gl.load(A_ptr + d3 * s_ab + (n3 + gi * GS) * s_an, mask=mg, other=0.0).to(gl.float32)
        A2s = A2s + (Ag * LOG2E,)
        if HAS_R:
            Rs = Rs + (gl.load(r_ptr + prog + gi * GS * dim, mask=mg, other=0.0),)
        else:
            Rs = Rs + (zero3,)
        dAs = dAs + (zero3,)
        if not B_VARY:
            Bcs = Bcs + (gl.load(B_ptr + d3 * sB_g + (n3 + gi * GS) * sB_n, mask=mg,
                                 other=0.0).to(gl.float32),)
            dBs = dBs + (zero3,)
        if not C_VARY:
            Ccs = Ccs + (gl.load(C_ptr + d3 * sC_g + (n3 + gi * GS) * sC_n, mask=mg,
                                 other=0.0).to(gl.float32),)
            dCs = dCs + (zero3,)
    # time-varying dB, dC: rows of this program's partial sums (batch, programs over dim, N, L)
    if B_VARY and not SUMMARY:
        dB_row3 = dB_ptr + ((pid_b * n_dblk + pid_d) * N + n3) * L  # + group + t
    if C_VARY and not SUMMARY:
        dC_row3 = dC_ptr + ((pid_b * n_dblk + pid_d) * N + n3) * L

    io_d, io_t, io_dm, io_base = _io_index(pid_b, d0, dim, s_ub, s_ud, BD, TL, LIO)
    if HAS_BIAS:
        bias = gl.expand_dims(gl.load(bias_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32), 1)
    if HAS_D:
        Dv = gl.expand_dims(gl.load(D_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32), 1)
    dD_acc = gl.zeros([BD, TL], gl.float32, LIO)
    dbias_acc = gl.zeros([BD, TL], gl.float32, LIO)

    bc_t, bc_nm, offB = _bc_tile(pid_b, d0, N, sB_b, sB_g, sB_n, sB_l, group_b, NP, TL, LBC)
    _, _, offC = _bc_tile(pid_b, d0, N, sC_b, sC_g, sC_n, sC_l, group_c, NP, TL, LBC)

    # shared buffers: (Δ, Δu) and dy rows; B and C rows; the warps' parts of three sums
    PAD_R: gl.constexpr = _pad_pairs(W)
    PR1: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * BD, PAD_R]], [BD, 2], [1, 0])
    PR2: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * BD, PAD_R]], [TL, BD, 2], [2, 1, 0])
    dd = gl.allocate_shared_memory(gl.float32, [TL, BD, 2], PR1)
    dd3 = dd._reinterpret(gl.float32, [TL, BD, 2], PR2)
    if SUMMARY:
        dq = dd  # not read
    else:
        PQ1: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[BD, PAD_Q]], [BD], [0])
        PQ2: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[BD, PAD_Q]], [TL, BD], [1, 0])
        dq = gl.allocate_shared_memory(gl.float32, [TL, BD], PQ1)
        dq2 = dq._reinterpret(gl.float32, [TL, BD], PQ2)
    # B and C rows [TL, NP], read as [TL * NG, W, NS]: row t * NG + g = step t, group g
    # (padded: `bc_rows_layout`)
    PB2: gl.constexpr = bc_rows_layout(NP, [TL, NP])
    PB3: gl.constexpr = bc_rows_layout(NP, [W, NS])
    if B_VARY and not SUMMARY:
        bs = gl.allocate_shared_memory(gl.float32, [TL, NP], PB2)
        srcB = bs._reinterpret(gl.float32, [TL * NG, W, NS], PB3)
    if C_VARY:
        cs = gl.allocate_shared_memory(gl.float32, [TL, NP], PB2)
        srcC = cs._reinterpret(gl.float32, [TL * NG, W, NS], PB3)
    # the warps' partial sums [W, BD, TL] (`y_parts_layout`)
    PY2: gl.constexpr = y_parts_layout(2)
    PY3: gl.constexpr = y_parts_layout(3)
    if not SUMMARY:
        # the warps' parts of y, Σ g B and Σ g (h-x) A: three buffers, not one, since the
        # compiler's barrier analysis is per buffer (one buffer: a barrier between the stores)
        if NEED_Y:
            sy = gl.allocate_shared_memory(gl.float32, [W, BD, TL], PY2)
            sy3 = sy._reinterpret(gl.float32, [W, BD, TL], PY3)
        s1b = gl.allocate_shared_memory(gl.float32, [W, BD, TL], PY2)
        s2b = gl.allocate_shared_memory(gl.float32, [W, BD, TL], PY2)
        s1b3 = s1b._reinterpret(gl.float32, [W, BD, TL], PY3)
        s2b3 = s2b._reinterpret(gl.float32, [W, BD, TL], PY3)

    t_start = pid_c * chunk_len
    t_end = gl.minimum(t_start + chunk_len, L)
    tile0 = t_start // TL
    tile1 = (t_end + TL - 1) // TL

    # registers of the tile to stage next (loaded one tile ahead; tiles run backwards)
    tn = (tile1 - 1) * TL
    tm = io_dm & gl.expand_dims(tn + io_t < t_end, 0)
    # and the state the forward saved at the start of that tile, per group. Without H_ASYNC:
    # loaded at the tile's start, the first step waited for it (9 % of the stall samples of
    # row 3's main pass, ncu), so it is loaded a tile ahead (H_AHEAD), but not on chunked
    # grids without REEXP (254 registers; an incoming adjoint R stands for chunked): there it
    # made rows 3 and 4 10 % slower (RESULTS.md, 2026-11-29 21:04 UTC), and the tile loads it
    # before its staging.
    hs_row = hs_ptr + pid_b * n_tiles * N * dim + nd
    H_ASYNC_: gl.constexpr = H_ASYNC and not SUMMARY
    H_AHEAD: gl.constexpr = (REEXP or not HAS_R) and not SUMMARY and not H_ASYNC
    h_nx = ()
    if H_ASYNC_:
        # H_ASYNC: copied two tiles ahead into shared memory (cp.async, no registers held),
        # RING slots of [NG, BD, W, NS], lanes contiguous; each thread reads back only what
        # it copied. Issued at the end of a tile, not among the staging's exps (there ptxas
        # put a prefetch load and an exp on one scoreboard: the exp's use waited for memory)
        HSL: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0, 1, 2])
        hsm = gl.allocate_shared_memory(gl.float32, [RING * NG, BD, W, NS], HSL)
    # IN_ASYNC (EVEN only): Δ, u, dout and z arrive the same way, in commit groups of their
    # own (bf16 as int32 pairs: 4-byte copies), instead of as register prefetches: ptxas put the
    # prefetch of Δ on a scoreboard that the recompute's first steps wait on (5 % of row 3's
    # stall samples, ncu): copied after the first barrier of the tile before last (the
    # states at the end of it, as without IN_ASYNC), waited for before the second barrier
    # of the tile before.
    IA: gl.constexpr = IN_ASYNC and H_ASYNC_ and EVEN
    if IA:
        PK_DT: gl.constexpr = _packs(dt_ptr.dtype.element_ty, LIO, True)
        PK_U: gl.constexpr = _packs(u_ptr.dtype.element_ty, LIO, True)
        PK_O: gl.constexpr = _packs(dout_ptr.dtype.element_ty, LIO, True)
        PK_Z: gl.constexpr = _packs(z_ptr.dtype.element_ty, LIO, HAS_Z)
        PK_Y: gl.constexpr = _packs(yp_ptr.dtype.element_ty, LIO, YP)
        io_p = _pair_offsets(pid_b * s_ub, io_d, s_ud, TL, LIO)
        ISL: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
        dt_sm = gl.allocate_shared_memory(_in_dtype(PK_DT, dt_ptr.dtype.element_ty),
                                          _in_shape(PK_DT, BD, TL), ISL)
        u_sm = gl.allocate_shared_memory(_in_dtype(PK_U, u_ptr.dtype.element_ty),
                                         _in_shape(PK_U, BD, TL), ISL)
        o_sm = gl.allocate_shared_memory(_in_dtype(PK_O, dout_ptr.dtype.element_ty),
                                         _in_shape(PK_O, BD, TL), ISL)
        if HAS_Z:
            z_sm = gl.allocate_shared_memory(_in_dtype(PK_Z, z_ptr.dtype.element_ty),
                                             _in_shape(PK_Z, BD, TL), ISL)
        else:
            z_sm = o_sm  # a stand-in `_in_copies` takes and does not copy into
        if YP:
            y_sm = gl.allocate_shared_memory(_in_dtype(PK_Y, yp_ptr.dtype.element_ty),
                                             _in_shape(PK_Y, BD, TL), ISL)
        else:
            y_sm = o_sm  # likewise
    if H_ASYNC_:
        # commit groups in the order the loop issues them: (inputs of tile j with IA,) start
        # state of tile j, for j = the first two tiles
        for sl in gl.static_range(RING - 1):
            ti = gl.maximum(tile1 - 1 - sl, tile0)
            if IA:  # the inputs a group of their own, as in the loop (the waits count groups)
                _in_copies(dt_sm, u_sm, o_sm, z_sm, y_sm, sl, dt_ptr, u_ptr, dout_ptr, z_ptr,
                           yp_ptr, io_base, io_p, ti * TL, PK_DT, PK_U, PK_O, PK_Z, PK_Y, HAS_Z,
                           YP)
                async_copy.commit_group()
            _h_copy(hsm, sl, hs_row + ti * N * dim, ms, GS * dim, NG, EVEN)
            async_copy.commit_group()
        if IA:
            async_copy.wait_group(3)  # the first tile's inputs (3 later groups in flight)
            gl.thread_barrier()
    if H_AHEAD:
        h_nx = _h_load(hs_row + (tile1 - 1) * N * dim, ms, GS * dim, NG, EVEN)
    if not IA:
        dt_nx = gl.load(dt_ptr + io_base + tn, mask=tm, other=0.0)
        if not SUMMARY:
            u_nx = gl.load(u_ptr + io_base + tn, mask=tm, other=0.0)
        o_nx = gl.load(dout_ptr + io_base + tn, mask=tm, other=0.0)
        if HAS_Z:
            z_nx = gl.load(z_ptr + io_base + tn, mask=tm, other=0.0)
        if YP:
            y_nx = gl.load(yp_ptr + io_base + tn, mask=tm, other=0.0)
    bcm = bc_nm & gl.expand_dims(tn + bc_t < t_end, 0)
    if B_VARY and not SUMMARY:
        B_nx = gl.load(B_ptr + offB + tn * sB_l, mask=bcm, other=0.0)
    if C_VARY:
        C_nx = gl.load(C_ptr + offC + tn * sC_l, mask=bcm, other=0.0)

    for k in range(0, tile1 - tile0):
        it = tile1 - 1 - k
        t0 = it * TL
        tm = io_dm & gl.expand_dims(t0 + io_t < t_end, 0)
        if not H_AHEAD and not H_ASYNC_ and not SUMMARY:
            # the tile's start state, loaded before the staging so that its latency overlaps it
            h_top = _h_load(hs_row + it * N * dim, ms, GS * dim, NG, EVEN)
        # 1. staging (tile layout): Δ, its softplus slope, Δu, dy
        if IA:
            raw = _in_read(dt_sm, k % RING, LIO, PK_DT)
        else:
            raw = dt_nx.to(gl.float32)
        if HAS_BIAS:
            raw = raw + bias
        # the summary is bound by the exp unit: its per-(channel, step) exps and 1 / x run
        # on the FMA pipes
        if SOFTPLUS:
            dt = _softplus_g(raw, SUMMARY)
            slope = _rcp(1.0 + gl.exp2(-LOG2E * raw))  # sigmoid(raw) = d softplus / d raw
        else:
            dt = raw
        if not EVEN:
            dt = gl.where(tm, dt, 0.0)
        if SUMMARY:
            dbias_acc += dt
        else:
            if IA:
                u = _in_read(u_sm, k % RING, LIO, PK_U)
            else:
                u = u_nx.to(gl.float32)
        if IA:
            dout = _in_read(o_sm, k % RING, LIO, PK_O)
        else:
            dout = o_nx.to(gl.float32)
        if HAS_Z:
            if IA:
                z = _in_read(z_sm, k % RING, LIO, PK_Z)
            else:
                z = z_nx.to(gl.float32)
            if SUMMARY:
                sz = _rcp_fma(1.0 + _exp2_fma(-LOG2E * z))
            else:
                sz = _rcp(1.0 + gl.exp2(-LOG2E * z))
            dy = dout * z * sz
            if YP:
                if IA:
                    ysv = _in_read(y_sm, k % RING, LIO, PK_Y)
                else:
                    ysv = y_nx.to(gl.float32)
        else:
            dy = dout
        if SUMMARY:
            dd3.store(gl.permute(gl.join(dt, dy), [1, 0, 2]))
        else:
            dd3.store(gl.permute(gl.join(dt, dt * u), [1, 0, 2]))
            dq2.store(gl.permute(dy, [1, 0]))
        if B_VARY and not SUMMARY:
            bs.store(gl.permute(B_nx.to(gl.float32), [1, 0]))
        if C_VARY:
            cs.store(gl.permute(C_nx.to(gl.float32), [1, 0]))
        # prefetch the tile before this one
        tp = t0 - TL
        tmp = io_dm & gl.expand_dims((tp + io_t >= t_start) & (tp + io_t < t_end), 0)
        if EVEN:  # before the start: the first tile again (loaded, not used)
            tp = gl.maximum(tp, 0)
        if not IA:
            dt_nx = _ld(dt_ptr + io_base + tp, tmp, EVEN)
            if not SUMMARY:
                u_nx = _ld(u_ptr + io_base + tp, tmp, EVEN)
            o_nx = _ld(dout_ptr + io_base + tp, tmp, EVEN)
            if HAS_Z:
                z_nx = _ld(z_ptr + io_base + tp, tmp, EVEN)
            if YP:
                y_nx = _ld(yp_ptr + io_base + tp, tmp, EVEN)
        bcm = bc_nm & gl.expand_dims((tp + bc_t >= t_start) & (tp + bc_t < t_end), 0)
        if B_VARY and not SUMMARY:
            B_nx = _ld(B_ptr + offB + tp * sB_l, bcm, EVEN)
        if C_VARY:
            C_nx = _ld(C_ptr + offC + tp * sC_l, bcm, EVEN)
        h_cur = h_nx
        if H_AHEAD:
            ip = gl.maximum(it - 1, tile0)  # before the first tile: the first again (unused)
            h_nx = _h_load(hs_row + ip * N * dim, ms, GS * dim, NG, EVEN)
        if H_ASYNC_:  # this tile's start state (later groups may be in flight), before the
            # barrier: after it the compiler would add one
            if IA:
                async_copy.wait_group(2)
            else:
                async_copy.wait_group(1)
        gl.thread_barrier()
        if IA:  # the inputs of the tile after next (after the barrier: the staging above read
            # this buffer, and the compiler would add one before the copy)
            _in_copies(dt_sm, u_sm, o_sm, z_sm, y_sm, (k + RING - 1) % RING, dt_ptr, u_ptr,
                       dout_ptr, z_ptr, yp_ptr, io_base, io_p,
                       gl.maximum(it - (RING - 1), tile0) * TL, PK_DT, PK_U, PK_O, PK_Z, PK_Y,
                       HAS_Z, YP)
            async_copy.commit_group()
        if SUMMARY:
            Rn = ()
            for gi in gl.static_range(NG):
                R = Rs[gi]
                for kk in gl.static_range(TL):
                    dt_t, du_t, dy_t = _row(dd, dq, TL - 1 - kk, L3, SUMMARY)
                    if C_VARY:
                        Ct = _bc_row(srcC, (TL - 1 - kk) * NG + gi, True, L3)
                    else:
                        Ct = Ccs[gi]
                    R = gl.exp2(dt_t * A2s[gi]) * gl.fma(Ct, dy_t, R)
                Rn = Rn + (R,)
            Rs = Rn
            gl.thread_barrier()  # the next tile's staging overwrites dd
        else:
            # 2.-3. per group of GS states: recompute the tile's states, dC, this thread's
            # part of y; the adjoint backwards through the tile. The per-step sums over
            # states (y, Σ g B, Σ g (h - x) A) add up over the groups in registers.
            Rn = ()
            dAn = ()
            dBn = ()
            dCn = ()
            for gi in gl.static_range(NG):
                mg = ms[gi]
                A2g = A2s[gi]
                R = Rs[gi]
                dA_acc = dAs[gi]
                if not B_VARY:
                    srcB = Bcs[gi]
                    dB_acc = dBs[gi]
                if not C_VARY:
                    srcC = Ccs[gi]
                    dC_acc = dCs[gi]
                if H_ASYNC_:
                    h = hsm.index((k % RING) * NG + gi).load(L3)
                    if not EVEN:  # masked slots were not written
                        h = gl.where(mg, h, 0.0)
                elif H_AHEAD:
                    h = h_cur[gi]
                else:
                    h = h_top[gi]
                hl = ()
                ylg = ()
                cl = ()
                rw = ()  # the step's rows, exp and Δu B, kept for the reverse (not re-read)
                for t in gl.static_range(TL):
                    dt_t, du_t, dy_t = _row(dd, dq, t, L3, SUMMARY)
                    Bt = _bc_row(srcB, t * NG + gi, B_VARY, L3)
                    Ct = _bc_row(srcC, t * NG + gi, C_VARY, L3)
                    a_t = gl.exp2(dt_t * A2g)
                    x_t = du_t * Bt
                    rw = rw + ((dt_t, du_t, dy_t, Bt, Ct, a_t, x_t),)
                    h = gl.fma(a_t, h, x_t)
                    hl = hl + (h,)
                    if NEED_Y:
                        yt = gl.sum(h * Ct, axis=2)
                        if gi > 0:
                            yt = yt + yl[t]
                        ylg = ylg + (yt,)
                    if C_VARY:
                        cl = cl + (dy_t * h,)
                    else:
                        dC_acc = gl.fma(dy_t, h, dC_acc)
                yl = ylg
                if C_VARY:  # dC_t = sum over channels of dy_t h_t
                    _store_lane_sums16(cl, dC_row3 + gi * GS * L, lane3, n3 + gi * GS, N, t0,
                                       t_end, EVEN)
                s1g = ()
                s2g = ()
                bl = ()
                for kk in gl.static_range(TL):
                    dt_t, du_t, dy_t, Bt, Ct, a_t, x_t = rw[TL - 1 - kk]
                    g = gl.fma(Ct, dy_t, R)
                    gh = g * (hl[TL - 1 - kk] - x_t)   # g a_t h_{t-1}
                    dA_acc = gl.fma(gh, dt_t, dA_acc)
                    s1 = gl.sum(g * Bt, axis=2)
                    s2 = gl.sum(gh * A2s[gi], axis=2)  # log2 e x Σ g (h - x) A
                    if gi > 0:
                        s1 = s1 + s1l[TL - 1 - kk]
                        s2 = s2 + s2l[TL - 1 - kk]
                    s1g = (s1,) + s1g
                    s2g = (s2,) + s2g
                    if B_VARY:
                        bl = (g * du_t,) + bl
                    else:
                        dB_acc = gl.fma(g, du_t, dB_acc)
                    if REEXP:
                        R = _ex2_mul(dt_t, A2g) * g  # recomputed, not held from step 2.
                    else:
                        R = a_t * g  # step 2.'s, held
                s1l = s1g
                s2l = s2g
                if B_VARY:  # dB_t = sum over channels of g Δ_t u_t
                    _store_lane_sums16(bl, dB_row3 + gi * GS * L, lane3, n3 + gi * GS, N, t0,
                                       t_end, EVEN)
                Rn = Rn + (R,)
                dAn = dAn + (dA_acc,)
                if not B_VARY:
                    dBn = dBn + (dB_acc,)
                if not C_VARY:
                    dCn = dCn + (dC_acc,)
            Rs = Rn
            dAs = dAn
            dBs = dBn
            dCs = dCn
            if NEED_Y:
                sy3.store(_join16(yl))
            s1b3.store(_join16(s1l))
            s2b3.store(_join16(s2l))
            if IA:  # the next tile's inputs (two later groups may be in flight)
                async_copy.wait_group(2)
            gl.thread_barrier()

            # 4. finish the tile (tile layout)
            if NEED_Y:
                ypre = _sum_rows(sy, 0, W, LIO)
                if HAS_D:
                    ypre += Dv * u
            elif YP:
                ypre = ysv
            s1 = _sum_rows(s1b, 0, W, LIO)
            s2 = _sum_rows(s2b, 0, W, LIO)
            du = s1 * dt
            if HAS_D:
                du += Dv * dy
                dD_acc += dy * u
            ddt = s2 * LN2 + s1 * u
            if SOFTPLUS:
                ddt = ddt * slope
            if not EVEN:
                ddt = gl.where(tm, ddt, 0.0)
            dbias_acc += ddt
            offs = io_base + t0
            _st(du_ptr + offs, du.to(du_ptr.dtype.element_ty), tm, EVEN)
            _st(ddt_ptr + offs, ddt.to(ddt_ptr.dtype.element_ty), tm, EVEN)
            if HAS_Z:
                dz = dout * ypre * sz * (1.0 + z * (1.0 - sz))
                _st(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), tm, EVEN)
            if H_ASYNC_:  # the start state of the tile after next (the first again at the
                # end)
                _h_copy(hsm, (k + RING - 1) % RING,
                        hs_row + gl.maximum(it - (RING - 1), tile0) * N * dim, ms, GS * dim, NG,
                        EVEN)
                async_copy.commit_group()

    for gi in gl.static_range(NG):
        off = prog + gi * GS * dim
        if SUMMARY:
            gl.store(dA_ptr + off, Rs[gi], mask=ms[gi])
        else:
            gl.store(dA_ptr + off, dAs[gi], mask=ms[gi])
            if not B_VARY:
                gl.store(dB_ptr + off, dBs[gi], mask=ms[gi])
            if not C_VARY:
                gl.store(dC_ptr + off, dCs[gi], mask=ms[gi])
    if SUMMARY:
        gl.store(dD_ptr + (pid_b * n_chunks + pid_c) * dim + io_d, gl.sum(dbias_acc, axis=1),
                 mask=io_d < dim)
    else:
        if HAS_D:
            gl.atomic_add(dD_ptr + io_d, gl.sum(dD_acc, axis=1), mask=io_d < dim, sem="relaxed")
        if HAS_BIAS:
            gl.atomic_add(dbias_ptr + io_d, gl.sum(dbias_acc, axis=1), mask=io_d < dim,
                          sem="relaxed")
