"""Forward selective scan in Gluon (Triton's explicit-layout dialect): the CUDA forward kernel.

Why not plain Triton (triton_fwd.py): there the compiler picks the layouts, and every version
tried spent most of its instructions on shuffles (time across lanes) or on per-channel work
repeated in every lane (notes-kernels.md). Gluon states the layouts, so this kernel is built
around the cost of one (batch, dim, l, n) point:

* State layout [BD, W, NS] (`state_layout`): lane = channel (BD = 32 channels per program),
  warp w owns states w·NS … w·NS + NS − 1, NS of them in registers. Per point and time step:
  one FMUL (Δ·A·log2 e), one exp2, one FMUL and one FFMA (the recurrence h = a·h + Δu·B), one
  FFMA (C·h). No shuffles: a thread sums C·h over its NS states, and the W warps' partial y
  are added once per tile.
* Every lane of a warp reads the same B and C row (its warp's states) from shared memory, a
  broadcast; Δ and Δu of the 32 channels are one contiguous row. So a warp's time step costs
  four shared-memory wavefronts for 32 · NS points.
* Per-channel, per-step work (softplus of Δ + bias, Δu, the D skip, the SiLU(z) gate, bf16
  loads and stores) is done once, in the tile layout LIO ([BD, TL] over all the program's
  threads, no repetition), and passes through shared memory: Δ and Δu in (rows padded by 2
  floats: the transposed stores are free of bank conflicts), the W partial y out (rows
  XOR-swizzled: `y_parts_layout`).
* Tiles are double-buffered: the next tile's inputs are loaded into registers while this one
  is scanned, and y of a tile is finished (sum over warps, D, gate, store) after the next
  tile's barrier. The compiler's barrier analysis works per allocation and cannot tell the
  two halves of a buffer apart, so it adds a second CTA barrier per tile before the y store;
  one allocation per half (the loop unrolled by two) removed it but ran slower (row 5 of
  DESIGN §7 0.316 -> 0.370 ms; benchmarks/notes-kernels.md), so it stays.

Outputs are those of `_fwd_kernel`: y; the state at the start of every TL-step tile in hs
(batch, n_tiles, N, dim), read by the backward; at the end of L the last state; with a
backward to come and z, y before the gate. Sequences split into chunks (to fill the GPU)
start from h0, produced by this kernel's SUMMARY mode and `triton_fwd._chunk_combine_kernel`
(three launches), or, in one launch, by `_fwd_lookback_kernel`: summaries and main passes as
ticketed programs of one grid, each main pass taking its start state from the one before.

Gluon kernels do not run under TRITON_INTERPRET, so these kernels are tested on the GPU only
(tests/test_kernels_gpu.py); the CPU tests cover the plain-Triton kernels, which compute the
same function.
"""
from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

LOG2E = gl.constexpr(1.4426950408889634)
LN2 = gl.constexpr(0.6931471805599453)
PAD_D = gl.constexpr(2)  # floats after each [BD, 2] row of the (Δ, Δu) buffer
# floats after each [NP] row of the B and C buffers: the tile layout's transposed stores put
# the even steps of a warp in one bank group (rows of 16 floats: 8-way conflicts at N = 16);
# with 4 floats more they spread over 16 banks (2-way), and rows stay 16-byte aligned
PAD_BC = gl.constexpr(4)


@gluon.constexpr_function
def bc_rows_layout(NP, shape):
    """The shared layout of the B and C rows ([NP] floats and PAD_BC of padding a row) for
    a view of the given shape: [TL, NP] as staged, [W, NS] as the state layout reads a row."""
    return gl.PaddedSharedLayout.with_identity_for([[NP, PAD_BC]], shape,
                                                   list(range(len(shape) - 1, -1, -1)))


@gluon.constexpr_function
def y_parts_layout(rank):
    """The shared layout (rank 2: [BD, TL], rank 3: [W, BD, TL]) of the warps' partial sums
    per (channel, step): y in the forward; y, Σ g B and Σ g (h − x) A in the backward. Stored
    lane = channel, 16 bytes at a time (TL = 16 floats a row: 4 units of 16 bytes), and read
    in the tile layout (8 bytes a thread at 8 warps, 16 at 4 and 2). With rows of 16 floats
    two rows span the 32 banks, so 8 lanes storing unit j of rows r … r + 7 hit one bank
    group 4 times; XOR-ing the unit index with (row / 2) mod 4 spreads them over all 8 groups,
    and the tile layout's reads (2 or 4 rows a quarter-warp) stay conflict-free too. Padded
    rows (20 floats) served the stores but made the 8-warp reads 3 wavefronts instead of 2
    and the 2-warp reads 2-way conflicted (ncu, benchmarks/RESULTS.md)."""
    return gl.SwizzledSharedLayout(4, 2, 4, list(range(rank - 1, -1, -1)))


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


def state_layout(ns: int, warps: int) -> gl.BlockedLayout:
    """[BD = 32, W, NS] state layout: lane = channel, warp = group of NS states."""
    return gl.BlockedLayout([1, 1, ns], [32, 1, 1], [1, warps, 1], [2, 1, 0])


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
def _tanh(x):
    """tanh on the special-function unit (tanh.approx: about 2^-11 relative error)."""
    return gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=gl.float32,
                                     is_pure=True, pack=1)


@gluon.jit
def _silu_gate(y, z, FAST: gl.constexpr):
    """y * z * sigmoid(z). FAST (for 16-bit outputs, whose rounding is 2^-9): sigmoid(z) =
    (1 + tanh(z / 2)) / 2, one special-function op instead of two."""
    if FAST:
        return y * z * (0.5 + 0.5 * _tanh(0.5 * z))
    else:
        return y * z * _rcp(1.0 + gl.exp2(-LOG2E * z))


@gluon.jit
def _exp2_fma(x):
    """2^x on the FMA pipes, not the special-function unit (about 13 instructions): for the
    per-(channel, step) exps of the backward's chunk summaries, bound by that unit (the
    forward's summary measured slower with it: 180 against 173 µs on row 4, ncu). x is
    clamped to [-125, 125]; 2^x = 2^j 2^f with j = round(x) (by adding 1.5 x 2^23) and
    |f| <= 1/2, 2^f by a degree-6 polynomial (Chebyshev fit, 8e-8 relative error in fp32),
    and j added to the exponent bits."""
    x = gl.minimum(gl.maximum(x, -125.0), 125.0)
    t = x + 12582912.0
    f = x - (t - 12582912.0)
    p = gl.fma(f, 1.5469732e-4, 1.3400433e-3)
    p = gl.fma(p, f, 9.6180253e-3)
    p = gl.fma(p, f, 5.5503272e-2)
    p = gl.fma(p, f, 0.24022651)
    p = gl.fma(p, f, 0.69314718)
    p = gl.fma(p, f, 1.0)
    j = t.to(gl.int32, bitcast=True) << 23  # the low bits of t hold j (two's complement)
    return (p.to(gl.int32, bitcast=True) + j).to(gl.float32, bitcast=True)


@gluon.jit
def _rcp_fma(y):
    """1 / y for y >= 1 on the FMA pipes: an integer first guess (12 % error) and three
    Newton steps (7 instructions, about 1 ulp)."""
    r = (0x7EF311C3 - y.to(gl.int32, bitcast=True)).to(gl.float32, bitcast=True)
    for _ in gl.static_range(3):
        r = gl.fma(r, gl.fma(-y, r, 1.0), r)
    return r


@gluon.jit
def _softplus_g(x, FMA: gl.constexpr = False):
    """softplus with torch's threshold (x > 20 -> x); exp(x) below -15, where 1 + e^x rounds.
    FMA: the exp on the FMA pipes (`_exp2_fma`); the log stays on the special-function unit."""
    if FMA:
        e = _exp2_fma(x * LOG2E)
    else:
        e = gl.exp2(x * LOG2E)
    sp = _lg2(1.0 + e) * LN2
    return gl.where(x > 20.0, x, gl.where(x < -15.0, e, sp))


@gluon.jit
def _ld(ptr, mask, EVEN: gl.constexpr):
    """A load, masked unless EVEN (whole tiles, whole channel blocks, N a power of two)."""
    if EVEN:
        return gl.load(ptr)
    else:
        return gl.load(ptr, mask=mask, other=0.0)


@gluon.jit
def _st(ptr, v, mask, EVEN: gl.constexpr):
    """A store, masked unless EVEN."""
    if EVEN:
        gl.store(ptr, v)
    else:
        gl.store(ptr, v, mask=mask)


@gluon.constexpr_function
def _packs(ty, layout, even):
    """Whether a bf16 [rows, cols] tile (cols contiguous) of the tile layout `layout` is
    loaded as int32 pairs (`_ld_tile`): in the EVEN variant, with an even number of columns
    per thread (fp16 tiles, not yet run on a GPU this way, load as before). Loaded as 16-bit
    values, the compiler keeps one per register across the loop
    and unpacks them right after the load, in the iteration that issued it: the unpack then
    waits for the load (ncu: a PRMT after the prefetch drew 19 % of the stall samples of
    row 4's forward); pairs stay packed until `_to_f32` in the next iteration."""
    return bool(even) and ty == gl.bfloat16 and layout.size_per_thread[1] % 2 == 0


@gluon.constexpr_function
def _pair_layout(layout):
    """`layout` with half the columns per thread: the int32 pairs of a 16-bit tile."""
    return gl.BlockedLayout([layout.size_per_thread[0], layout.size_per_thread[1] // 2],
                            layout.threads_per_warp, layout.warps_per_cta, layout.order)


@gluon.jit
def _pair_offsets(base, rows, s_r, C: gl.constexpr, L: gl.constexpr):
    """int32 offsets [R, C / 2] of the element pairs of a 16-bit tile whose element offsets
    are base + rows * s_r + column (base and s_r even), in `_pair_layout(L)`."""
    LP: gl.constexpr = _pair_layout(L)
    r = gl.convert_layout(rows, gl.SliceLayout(1, LP))
    j = gl.arange(0, C // 2, layout=gl.SliceLayout(0, LP))
    return base // 2 + gl.expand_dims(r.to(gl.int64) * (s_r // 2), 1) + gl.expand_dims(j, 0)


@gluon.jit
def _tile_ptrs(ptr, off, off2, t, PK: gl.constexpr):
    """Pointers to the tile at step t (element offsets off + t): with PK to its int32 pairs
    (pair offsets off2)."""
    if PK:
        return ptr.to(gl.pointer_type(gl.int32), bitcast=True) + off2 + t // 2
    else:
        return ptr + off + t


@gluon.jit
def _ld_tile(ptr, off, off2, t, mask, EVEN: gl.constexpr, PK: gl.constexpr):
    """The tile at step t (`_tile_ptrs`): as int32 pairs with PK, else as `_ld`."""
    if PK:
        return gl.load(_tile_ptrs(ptr, off, off2, t, True))
    else:
        return _ld(_tile_ptrs(ptr, off, off2, t, False), mask, EVEN)


@gluon.jit
def _to_f32(x, L: gl.constexpr, PK: gl.constexpr):
    """A tile from `_ld_tile` as fp32 in layout L (with PK bf16 pairs: a bf16 is the top
    half of an fp32)."""
    if PK:
        lo = (x << 16).to(gl.float32, bitcast=True)
        hi = (x & -65536).to(gl.float32, bitcast=True)
        v = gl.join(lo, hi)
        v = gl.reshape(v, [v.shape[0], 2 * v.shape[1]])
        return gl.convert_layout(v, L, assert_trivial=True)
    else:
        return x.to(gl.float32)


@gluon.jit
def _state_index(d0, dim, N, BD: gl.constexpr, L3: gl.constexpr):
    """Channel d (the lane), state n = w * NS + s and their mask, as [BD, W, NS] tensors of
    the state layout L3."""
    W: gl.constexpr = L3.warps_per_cta[1]
    NS: gl.constexpr = L3.size_per_thread[2]
    LDW: gl.constexpr = gl.SliceLayout(2, L3)
    offs_d = d0 + gl.arange(0, BD, layout=gl.SliceLayout(1, LDW))
    d3 = gl.expand_dims(gl.expand_dims(offs_d, 1), 2)
    w3 = gl.expand_dims(gl.expand_dims(gl.arange(0, W, layout=gl.SliceLayout(0, LDW)), 0), 2)
    LS: gl.constexpr = gl.SliceLayout(0, gl.SliceLayout(0, L3))
    s3 = gl.expand_dims(gl.expand_dims(gl.arange(0, NS, layout=LS), 0), 0)
    n3 = w3 * NS + s3
    return d3, n3, (d3 < dim) & (n3 < N)


@gluon.jit
def _io_index(pid_b, d0, dim, s_ub, s_ud, BD: gl.constexpr, TL: gl.constexpr,
              LIO: gl.constexpr):
    """Channels io_d [BD], steps io_t [TL], the channel mask [BD, 1] and the element offsets
    (without the tile's first step) [BD, TL] of the tile layout LIO."""
    io_d = d0 + gl.arange(0, BD, layout=gl.SliceLayout(1, LIO))
    io_t = gl.arange(0, TL, layout=gl.SliceLayout(0, LIO))
    io_base = pid_b * s_ub + gl.expand_dims(io_d.to(gl.int64) * s_ud, 1) + gl.expand_dims(io_t, 0)
    return io_d, io_t, gl.expand_dims(io_d < dim, 1), io_base


@gluon.jit
def _bc_tile(pid_b, d0, N, s_b, s_g, s_n, s_l, group, NP: gl.constexpr, TL: gl.constexpr,
             LBC: gl.constexpr):
    """Steps [TL], the state mask [NP, 1] and the offsets (without the tile's first step)
    [NP, TL] of a B or C tile of this program's group, in the layout LBC."""
    bc_n = gl.arange(0, NP, layout=gl.SliceLayout(1, LBC))
    bc_t = gl.arange(0, TL, layout=gl.SliceLayout(0, LBC))
    off = (pid_b * s_b + (d0 // group) * s_g + gl.expand_dims(bc_n, 1) * s_n
           + gl.expand_dims(bc_t, 0) * s_l)
    return bc_t, gl.expand_dims(bc_n < N, 1), off


@gluon.jit
def _stage(dt, u, bias, tmask, dd, buf, BD: gl.constexpr,
           HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr, EVEN: gl.constexpr):
    """Δ (after bias and softplus) and Δu of a [BD, TL] tile (dt, u: fp32, as loaded) into
    the shared buffer, as [TL, BD, 2] rows (one 8-byte read per channel and step); zero past
    the chunk (a = 1, no input)."""
    if HAS_BIAS:
        dt = dt + gl.expand_dims(bias, 1)
    if SOFTPLUS:
        dt = _softplus_g(dt)
    if not EVEN:
        dt = gl.where(tmask, dt, 0.0)
    dd.index(buf).store(gl.permute(gl.join(dt, dt * u), [1, 0, 2]))
    return dt


@gluon.jit
def _step(h, A2, rows, i, L3: gl.constexpr, BD: gl.constexpr, B_VARY: gl.constexpr,
          C_VARY: gl.constexpr, WITH_Y: gl.constexpr):
    """One time step (row i of the staged buffers): h <- exp2(Δ A log2 e) h + Δu B; with
    WITH_Y also this thread's part of y, sum over its states of C h ([BD, W])."""
    LDW: gl.constexpr = gl.SliceLayout(2, L3)
    LD: gl.constexpr = gl.SliceLayout(1, LDW)
    LWN: gl.constexpr = gl.SliceLayout(0, L3)
    W: gl.constexpr = L3.warps_per_cta[1]
    L2: gl.constexpr = gl.BlockedLayout([1, 2], [32, 1], [1, W], [1, 0])
    dt_t, du_t = gl.split(rows[0].index(i).load(L2))
    dt_t = gl.expand_dims(gl.expand_dims(gl.convert_layout(dt_t, LD, assert_trivial=True), 1), 2)
    du_t = gl.expand_dims(gl.expand_dims(gl.convert_layout(du_t, LD, assert_trivial=True), 1), 2)
    if B_VARY:
        Bt = gl.expand_dims(rows[1].index(i).load(LWN), 0)
    else:
        Bt = rows[1]
    # one dependent FMA per step on h's chain (Δu·B is computed off it)
    h = gl.fma(gl.exp2(dt_t * A2), h, du_t * Bt)
    if WITH_Y:
        if C_VARY:
            Ct = gl.expand_dims(rows[2].index(i).load(LWN), 0)
        else:
            Ct = rows[2]
        y = gl.sum(h * Ct, axis=2)
    else:
        y = 0.0
    return h, y


@gluon.jit
def _join16(p):
    """16 [BD, W] tensors (step order) joined as [W, BD, 16]."""
    a = gl.join(gl.join(gl.join(gl.join(p[0], p[1]), gl.join(p[2], p[3])),
                        gl.join(gl.join(p[4], p[5]), gl.join(p[6], p[7]))),
                gl.join(gl.join(gl.join(p[8], p[9]), gl.join(p[10], p[11])),
                        gl.join(gl.join(p[12], p[13]), gl.join(p[14], p[15]))))
    # [BD, W, 2, 2, 2, 2]: index (.., i0, i1, i2, i3) = step i0 + 2 i1 + 4 i2 + 8 i3
    return gl.reshape(gl.permute(a, [1, 0, 5, 4, 3, 2]), [a.shape[1], a.shape[0], 16])


@gluon.jit
def _steps16(h, A2, rows, i, L3: gl.constexpr, BD: gl.constexpr, B_VARY: gl.constexpr,
             C_VARY: gl.constexpr, WITH_Y: gl.constexpr):
    """16 steps from row i; with WITH_Y the per-thread parts of y as [W, BD, 16], held in
    registers (the per-step results are joined: no shared-memory store between steps)."""
    yl = ()
    for t in gl.static_range(16):
        h, y = _step(h, A2, rows, i + t, L3, BD, B_VARY, C_VARY, WITH_Y)
        yl = yl + (y,)
    if WITH_Y:
        return h, _join16(yl)
    else:
        return h, 0.0


@gluon.constexpr_function
def _all(*flags):
    """Whether every flag is set (a constexpr)."""
    return all(bool(f) for f in flags)


@gluon.jit
def _finish_y(ys_r, first, u, z, Dv, y_ptr, yp_ptr, offs, mask, W: gl.constexpr,
              TL: gl.constexpr, LIO: gl.constexpr, HAS_D: gl.constexpr, HAS_Z: gl.constexpr,
              EVEN: gl.constexpr, SAVE_Y: gl.constexpr):
    """y of one tile: the W warps' parts (rows first … first + W - 1 of ys_r) summed, D skip,
    SiLU(z) gate, stored in y's dtype. SAVE_Y: y before the gate also stored at yp_ptr (for
    the backward's dz)."""
    yv = ys_r.index(first).load(LIO)
    for w in gl.static_range(1, W):
        yv += ys_r.index(first + w).load(LIO)
    if HAS_D:
        yv += Dv * u
    if SAVE_Y:
        _st(yp_ptr + offs, yv.to(yp_ptr.dtype.element_ty), mask, EVEN)
    if HAS_Z:
        yv = _silu_gate(yv, z, y_ptr.dtype.element_ty != gl.float32)
    _st(y_ptr + offs, yv.to(y_ptr.dtype.element_ty), mask, EVEN)


@gluon.jit
def _fwd_chunk(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    h0_ptr, hs_ptr, last_ptr, yp_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    pid_d, pid_c, pid_b, h_reg,
    BD: gl.constexpr, NP: gl.constexpr, TL: gl.constexpr,
    L3: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
    SOFTPLUS: gl.constexpr, B_VARY: gl.constexpr, C_VARY: gl.constexpr,
    HAS_H0: gl.constexpr, SUMMARY: gl.constexpr, EVEN: gl.constexpr,
    SAVE: gl.constexpr, PACK: gl.constexpr, H_REG: gl.constexpr,
):
    """`_fwd_gluon_kernel`'s work for the program (pid_d, pid_c, pid_b) (pid_b int64);
    H_REG: the chunk starts from h_reg (the state layout) instead of h0_ptr or zero."""
    W: gl.constexpr = gl.num_warps()
    SAVE_Y: gl.constexpr = _all(SAVE, HAS_Z, not SUMMARY)
    NS: gl.constexpr = NP // W

    d0 = pid_d * BD

    d3, n3, m3 = _state_index(d0, dim, N, BD, L3)
    A2 = gl.load(A_ptr + d3 * s_ab + n3 * s_an, mask=m3, other=0.0).to(gl.float32) * LOG2E
    nd = n3 * dim + d3  # (n, d) offsets of the (batch, *, N, dim) state buffers
    if H_REG:
        h = h_reg
    elif HAS_H0:
        h = gl.load(h0_ptr + (pid_b * n_chunks + pid_c) * N * dim + nd, mask=m3, other=0.0)
    else:
        h = gl.zeros([BD, W, NS], gl.float32, L3)
    if not B_VARY:
        Bc = gl.load(B_ptr + d3 * sB_g + n3 * sB_n, mask=m3, other=0.0).to(gl.float32)
    if not C_VARY:
        Cc = gl.load(C_ptr + d3 * sC_g + n3 * sC_n, mask=m3, other=0.0).to(gl.float32)

    # tile-layout indices ([BD, TL] tiles of u, Δ, z, y)
    io_d, io_t, io_dm, io_base = _io_index(pid_b, d0, dim, s_ub, s_ud, BD, TL, LIO)
    if HAS_BIAS:
        bias = gl.load(bias_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32)
    else:
        bias = gl.zeros([BD], gl.float32, gl.SliceLayout(1, LIO))
    if HAS_D:
        Dv = gl.expand_dims(gl.load(D_ptr + io_d, mask=io_d < dim, other=0.0).to(gl.float32), 1)
    else:
        Dv = 0.0

    # B/C tiles [NP, TL]
    bc_t, bc_nm, offB = _bc_tile(pid_b, d0, N, sB_b, sB_g, sB_n, sB_l, group_b, NP, TL, LBC)
    _, _, offC = _bc_tile(pid_b, d0, N, sC_b, sC_g, sC_n, sC_l, group_c, NP, TL, LBC)
    # bf16 tiles loaded as int32 pairs (`_packs`; PACK: the launcher found every 16-bit
    # tensor 4-byte aligned with even strides)
    PK_DT: gl.constexpr = _packs(dt_ptr.dtype.element_ty, LIO, EVEN and PACK)
    PK_U: gl.constexpr = _packs(u_ptr.dtype.element_ty, LIO, EVEN and PACK)
    PK_Z: gl.constexpr = _packs(z_ptr.dtype.element_ty, LIO, EVEN and PACK and HAS_Z)
    PK_B: gl.constexpr = _packs(B_ptr.dtype.element_ty, LBC, EVEN and PACK and B_VARY)
    PK_C: gl.constexpr = _packs(C_ptr.dtype.element_ty, LBC, EVEN and PACK and C_VARY)
    io_p = io_base
    if PK_DT or PK_U or PK_Z:
        io_p = _pair_offsets(pid_b * s_ub, io_d, s_ud, TL, LIO)
    bc_n = gl.arange(0, NP, layout=gl.SliceLayout(1, LBC))
    offB2 = offB
    if PK_B:
        offB2 = _pair_offsets(pid_b * sB_b + (d0 // group_b) * sB_g, bc_n, sB_n, TL, LBC)
    offC2 = offC
    if PK_C:
        offC2 = _pair_offsets(pid_b * sC_b + (d0 // group_c) * sC_g, bc_n, sC_n, TL, LBC)

    # (Δ, Δu) rows [BD, 2]: PAD_D floats after every row (the transposed stores of the
    # staging are then free of bank conflicts)
    PD1: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * BD, PAD_D]], [BD, 2], [1, 0])
    PD2: gl.constexpr = gl.PaddedSharedLayout.with_identity_for([[2 * BD, PAD_D]], [TL, BD, 2], [2, 1, 0])
    dd_r = gl.allocate_shared_memory(gl.float32, [2 * TL, BD, 2], PD1)
    dd = dd_r._reinterpret(gl.float32, [2, TL, BD, 2], PD2)
    rows = (dd_r,)
    PB2: gl.constexpr = bc_rows_layout(NP, [TL, NP])
    PB3: gl.constexpr = bc_rows_layout(NP, [W, NS])
    if B_VARY:
        bs = gl.allocate_shared_memory(gl.float32, [2, TL, NP], PB2)
        rows = rows + (bs._reinterpret(gl.float32, [2 * TL, W, NS], PB3),)
    else:
        rows = rows + (Bc,)
    if not SUMMARY:
        # the W partial y of a tile (`y_parts_layout`)
        PY2: gl.constexpr = y_parts_layout(2)
        PY3: gl.constexpr = y_parts_layout(3)
        ys_r = gl.allocate_shared_memory(gl.float32, [2 * W, BD, TL], PY2)
        ys = ys_r._reinterpret(gl.float32, [2, W, BD, TL], PY3)
        if C_VARY:
            cs = gl.allocate_shared_memory(gl.float32, [2, TL, NP], PB2)
            rows = rows + (cs._reinterpret(gl.float32, [2 * TL, W, NS], PB3),)
        else:
            rows = rows + (Cc,)

    t_start = pid_c * chunk_len
    t_end = gl.minimum(t_start + chunk_len, L)
    tile0 = t_start // TL
    tile1 = (t_end + TL - 1) // TL

    # registers of the tile to stage next (loaded one tile ahead)
    tm = io_dm & gl.expand_dims(t_start + io_t < t_end, 0)
    dt_nx = _ld_tile(dt_ptr, io_base, io_p, t_start, tm, False, PK_DT)
    u_nx = _ld_tile(u_ptr, io_base, io_p, t_start, tm, False, PK_U)
    bcm = bc_nm & gl.expand_dims(t_start + bc_t < t_end, 0)
    if B_VARY:
        B_nx = _ld_tile(B_ptr, offB, offB2, t_start * sB_l, bcm, False, PK_B)
    if not SUMMARY:
        if HAS_Z:
            z_nx = _ld_tile(z_ptr, io_base, io_p, t_start, tm, False, PK_Z)
        if C_VARY:
            C_nx = _ld_tile(C_ptr, offC, offC2, t_start * sC_l, bcm, False, PK_C)
    # the previous tile's y is finished one iteration late (after this tile's barrier)
    u_pv = gl.zeros([BD, TL], gl.float32, LIO)
    z_pv = gl.zeros([BD, TL], gl.float32, LIO)
    m_pv = tm & False
    dtot = gl.zeros([BD, TL], gl.float32, LIO)

    for it in range(tile0, tile1):
        buf = (it - tile0) % 2
        t0 = it * TL
        tm = io_dm & gl.expand_dims(t0 + io_t < t_end, 0)
        u_c = _to_f32(u_nx, LIO, PK_U)
        dt_c = _stage(_to_f32(dt_nx, LIO, PK_DT), u_c, bias, tm, dd, buf, BD, HAS_BIAS,
                      SOFTPLUS, EVEN)
        if B_VARY:
            bs.index(buf).store(gl.permute(_to_f32(B_nx, LBC, PK_B), [1, 0]))
        if SUMMARY:
            dtot += dt_c
        else:
            if C_VARY:
                cs.index(buf).store(gl.permute(_to_f32(C_nx, LBC, PK_C), [1, 0]))
            if HAS_Z:
                z_c = _to_f32(z_nx, LIO, PK_Z)
        # prefetch the next tile
        t1 = t0 + TL
        tmn = io_dm & gl.expand_dims(t1 + io_t < t_end, 0)
        if EVEN:  # past the end: the last tile again (loaded, not used)
            t1 = gl.minimum(t1, L - TL)
        dt_nx = _ld_tile(dt_ptr, io_base, io_p, t1, tmn, EVEN, PK_DT)
        u_nx = _ld_tile(u_ptr, io_base, io_p, t1, tmn, EVEN, PK_U)
        bcm = bc_nm & gl.expand_dims(t1 + bc_t < t_end, 0)
        if B_VARY:
            B_nx = _ld_tile(B_ptr, offB, offB2, t1 * sB_l, bcm, EVEN, PK_B)
        if not SUMMARY:
            if HAS_Z:
                z_nx = _ld_tile(z_ptr, io_base, io_p, t1, tmn, EVEN, PK_Z)
            if C_VARY:
                C_nx = _ld_tile(C_ptr, offC, offC2, t1 * sC_l, bcm, EVEN, PK_C)
        gl.thread_barrier()
        if not SUMMARY:
            if it > tile0:
                _finish_y(ys_r, (1 - buf) * W, u_pv, z_pv, Dv, y_ptr, yp_ptr,
                          io_base + (t0 - TL), m_pv, W, TL, LIO, HAS_D, HAS_Z, EVEN, SAVE_Y)
            if SAVE:  # the state entering this tile, for the backward
                _st(hs_ptr + (pid_b * n_tiles + it) * N * dim + nd, h, m3, EVEN)
        h, yt = _steps16(h, A2, rows, buf * TL, L3, BD, B_VARY, C_VARY, not SUMMARY)
        if not SUMMARY:
            ys.index(buf).store(yt)
            u_pv = u_c
            if HAS_Z:
                z_pv = z_c
            m_pv = tm
    if SUMMARY:
        gl.store(h0_ptr + (pid_b * n_chunks + pid_c) * N * dim + nd, h, mask=m3)
        gl.store(last_ptr + (pid_b * n_chunks + pid_c) * dim + io_d, gl.sum(dtot, axis=1),
                 mask=io_d < dim)
    else:
        gl.thread_barrier()
        if tile1 > tile0:
            _finish_y(ys_r, ((tile1 - 1 - tile0) % 2) * W, u_pv, z_pv, Dv, y_ptr, yp_ptr,
                      io_base + (tile1 - 1) * TL, m_pv, W, TL, LIO, HAS_D, HAS_Z, EVEN, SAVE_Y)
        if t_end == L:
            gl.store(last_ptr + (pid_b * dim + d3) * N + n3, h, mask=m3)


@gluon.jit
def _fwd_gluon_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    h0_ptr, hs_ptr, last_ptr, yp_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    BD: gl.constexpr, NP: gl.constexpr, TL: gl.constexpr,
    L3: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
    SOFTPLUS: gl.constexpr, B_VARY: gl.constexpr, C_VARY: gl.constexpr,
    HAS_H0: gl.constexpr, SUMMARY: gl.constexpr, EVEN: gl.constexpr = False,
    SAVE: gl.constexpr = True, PACK: gl.constexpr = False,
):
    """Scan one chunk of BD = 32 channels. SUMMARY: only the chunk's end state from a zero
    start (into h0_ptr as hsum (batch, n_chunks, N, dim)) and its sum of Δ (into last_ptr
    as dtsum (batch, n_chunks, dim)); no y, no tile states. EVEN: L a multiple of TL, dim of
    BD and N a power of two, so that no load or store needs a mask. SAVE=False (no backward
    will run): the tile states are not stored; with SAVE and z, y before the gate is stored
    at yp_ptr too (the backward reads it for dz instead of recomputing Σ C h)."""
    pid_d = gl.program_id(0)
    pid_c = gl.program_id(1)
    pid_b = gl.program_id(2).to(gl.int64)
    _fwd_chunk(u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
               h0_ptr, hs_ptr, last_ptr, yp_ptr,
               dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
               s_ub, s_ud, s_ab, s_an,
               sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
               pid_d, pid_c, pid_b, 0.0,
               BD, NP, TL, L3, LIO, LBC, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, B_VARY, C_VARY,
               HAS_H0, SUMMARY, EVEN, SAVE, PACK, False)


@gluon.jit
def _spin(flag_ptr):
    """Wait until the flag at flag_ptr is set (acquire: what its writer stored before it is
    visible to this program after the barrier)."""
    f = gl.atomic_add(flag_ptr, 0, sem="acquire", scope="gpu")
    while f == 0:
        f = gl.atomic_add(flag_ptr, 0, sem="acquire", scope="gpu")
    gl.thread_barrier()


@gluon.jit
def _publish(flag_ptr):
    """Set the flag at flag_ptr after this program's stores (release, after a barrier)."""
    gl.thread_barrier()
    gl.atomic_xchg(flag_ptr, 1, sem="release", scope="gpu")


@gluon.jit
def _fwd_lookback_kernel(
    u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
    hsum_ptr, hs_ptr, last_ptr, yp_ptr, dtsum_ptr, incl_ptr, flag_ptr,
    dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
    s_ub, s_ud, s_ab, s_an,
    sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
    n_dblk, batch, lead,
    BD: gl.constexpr, NP: gl.constexpr, TL: gl.constexpr,
    L3: gl.constexpr, LIO: gl.constexpr, LBC: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr,
    SOFTPLUS: gl.constexpr, B_VARY: gl.constexpr, C_VARY: gl.constexpr,
    EVEN: gl.constexpr = False, SAVE: gl.constexpr = True, PACK: gl.constexpr = False,
):
    """The chunked forward in one launch: each program takes a ticket (an atomic counter at
    flag_ptr) and runs either a chunk's summary (its end state from zero into hsum, its sum
    of Δ into dtsum; then a flag) or a chunk's main pass. Tickets run in rounds j = 0, 1, …:
    the summaries of chunk j (j < n_chunks - 1), then the main passes of chunk j - lead, so a
    main pass finds the summaries it needs long done and summaries share the SMs with main
    passes. A main pass of chunk c starts from the state its predecessor published (the
    inclusive state at the end of chunk c - 1), and publishes its own end state (from its
    start state and its chunk's summary) before it scans. Waits are only on earlier tickets
    (which have started), so the grid cannot deadlock. flag_ptr: [ticket, summary flags
    (batch, n_chunks, n_dblk), inclusive flags (the same)], zeroed by the launcher."""
    W: gl.constexpr = gl.num_warps()
    NS: gl.constexpr = NP // W
    P = n_dblk * batch
    t = gl.atomic_add(flag_ptr, 1, sem="relaxed", scope="gpu")
    n1 = gl.minimum(lead, n_chunks - 1)  # rounds of summaries only
    m = gl.maximum(n_chunks - 1 - lead, 0)  # rounds of both
    is_s = t < n1 * P
    c = t // P
    q = t % P
    t2 = t - n1 * P
    if t2 >= 0:
        if t2 < 2 * m * P:
            r = t2 // (2 * P)
            w = t2 % (2 * P)
            is_s = w < P
            c = gl.where(is_s, lead + r, r)
            q = gl.where(is_s, w, w - P)
        else:
            t3 = t2 - 2 * m * P
            is_s = t3 < 0  # a main pass (always False; a bool tensor like the other branch's)
            c = m + t3 // P
            q = t3 % P
    pid_d = q % n_dblk
    pid_b = (q // n_dblk).to(gl.int64)
    flags_s = flag_ptr + 1
    flags_i = flag_ptr + 1 + batch * n_chunks * n_dblk
    slot = (pid_b * n_chunks + c) * n_dblk + pid_d
    if is_s:
        _fwd_chunk(u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
                   hsum_ptr, hs_ptr, dtsum_ptr, yp_ptr,
                   dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
                   s_ub, s_ud, s_ab, s_an,
                   sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
                   pid_d, c, pid_b, 0.0,
                   BD, NP, TL, L3, LIO, LBC, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, B_VARY,
                   C_VARY, False, True, EVEN, SAVE, PACK, False)
        _publish(flags_s + slot)
    else:
        d0 = pid_d * BD
        d3, n3, m3 = _state_index(d0, dim, N, BD, L3)
        nd = n3 * dim + d3
        h = gl.zeros([BD, W, NS], gl.float32, L3)
        if c > 0:  # the state at the end of chunk c - 1, published by its main pass
            _spin(flags_i + slot - n_dblk)
            h = gl.load(incl_ptr + (pid_b * n_chunks + c - 1) * N * dim + nd, mask=m3,
                        other=0.0, cache_modifier=".cg")
        if c < n_chunks - 1:  # this chunk's end state, for the main pass of chunk c + 1
            _spin(flags_s + slot)
            base = (pid_b * n_chunks + c) * N * dim + nd
            agg = gl.load(hsum_ptr + base, mask=m3, other=0.0, cache_modifier=".cg")
            dts = gl.load(dtsum_ptr + (pid_b * n_chunks + c) * dim + d3, mask=m3, other=0.0,
                          cache_modifier=".cg")
            A2 = gl.load(A_ptr + d3 * s_ab + n3 * s_an, mask=m3, other=0.0).to(gl.float32)
            gl.store(incl_ptr + base, gl.exp2(dts * A2 * LOG2E) * h + agg, mask=m3)
            _publish(flags_i + slot)
        _fwd_chunk(u_ptr, dt_ptr, z_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr,
                   hsum_ptr, hs_ptr, last_ptr, yp_ptr,
                   dim, L, N, chunk_len, n_chunks, n_tiles, group_b, group_c,
                   s_ub, s_ud, s_ab, s_an,
                   sB_b, sB_g, sB_n, sB_l, sC_b, sC_g, sC_n, sC_l,
                   pid_d, c, pid_b, h,
                   BD, NP, TL, L3, LIO, LBC, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, B_VARY,
                   C_VARY, False, False, EVEN, SAVE, PACK, True)
