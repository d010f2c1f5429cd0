"""Launchers for the Triton selective scan, registered as torch custom ops with autograd.

`scan_fwd` / `scan_bwd` (torch.ops.seqsuite.scan_fwd / scan_bwd) take the public arguments
of `selective_scan` for real A. Which kernels run:

* Forward: on CUDA the Gluon kernel (gluon_fwd.py; `gluon_plan` picks states per thread and
  chunks); under TRITON_INTERPRET (the CPU tests), or where its 32-channel programs would
  straddle a B/C group, the plain-Triton tile kernel (triton_fwd.py). SEQSUITE_SCAN_FWD=
  auto|gluon|tile|seq overrides (seq: the experimental triton_fwd_seq.py).
* Backward: on CUDA the Gluon kernel (gluon_bwd.py) for N <= 64 (`gluon_bwd_plan` splits
  small grids into chunks), else the tile kernel (triton_bwd.py).
  SEQSUITE_SCAN_BWD=auto|gluon|tile overrides.
Both directions keep the same saved-state format (the state at the start of every 16-step
tile), so any forward pairs with any backward.

Tunables live in `CONFIG` (a plain dataclass). Environment overrides for benchmark sweeps:
SEQSUITE_SCAN_CFG="bd_fwd,bd_bwd,tile,warps_fwd,warps_bwd[,warps_per_sm[,unroll]]" (tile
kernels), SEQSUITE_SCAN_SEQ="bd,warps,warps_per_sm" (seq kernel),
SEQSUITE_SCAN_GLUON="ns,min_warps_per_sm[,ns_chunked,chunk_warps_per_sm[,maxnreg[,lookback[,
lead]]]]" (Gluon forward), SEQSUITE_SCAN_BWD_GLUON="ns,programs_per_sm[,summary_programs_per_sm[,maxnreg[,
reexp[,ns_summary[,async_h[,async_in[,ypre]]]]]]]" (Gluon backward), SEQSUITE_SCAN_EVEN=0|1
(both Gluon kernels' unmasked variant), SEQSUITE_SCAN_FASTLAUNCH=0|1 (`_launch`).
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, replace
from typing import Optional

import torch
import triton
from torch import Tensor
from triton import knobs

from .triton_bwd import _bwd_chunk_summary_kernel, _bwd_kernel, _sum_parts_kernel
from .triton_fwd import _chunk_combine_kernel, _fwd_chunk_summary_kernel, _fwd_kernel
from .triton_fwd_seq import _fwd_seq_kernel


@dataclass
class ScanConfig:
    bd_fwd: int = 16       # channels per forward program (upper bound)
    bd_bwd: int = 16       # channels per backward program (upper bound)
    tile: int = 16         # time steps per tile; also the spacing of the saved states
    warps_fwd: int = 1
    warps_bwd: int = 1
    warps_per_sm: int = 24  # split sequences into chunks until the grid has this many warps/SM
    chunk_tiles: int = 0   # tiles per chunk; 0 = pick from warps_per_sm
    unroll: int = 1        # unroll factor of the loop over states in the main kernels
    fwd: str = "auto"      # forward kernel: "gluon" (gluon_fwd.py; the CUDA default), "tile"
                           # (triton_fwd.py; the default elsewhere) or "seq" (triton_fwd_seq.py)
    bd_seq: int = 32       # "seq": channels per program (one per lane at 1 warp)
    warps_seq: int = 1
    warps_per_sm_seq: int = 8
    # "gluon" (measured on the H200, benchmarks/RESULTS.md): sequences are split into chunks
    # only when the grid has fewer than min_warps_per_sm_gluon warps per SM, and then into
    # enough chunks for chunk_warps_per_sm_gluon (the summary pass costs less than idle SMs);
    # states per thread: ns_gluon (one warp per NS states, at most 16 warps), ns_chunked_gluon
    # when chunked, and at least N / 8 (N = 64: 8 warps of 8 states beat 16 warps of 4)
    ns_gluon: int = 4
    ns_chunked_gluon: int = 8
    min_warps_per_sm_gluon: int = 6
    chunk_warps_per_sm_gluon: int = 48
    # the chunked forward in one launch (`gluon_fwd._fwd_lookback_kernel`: ticketed programs,
    # chunk summaries and main passes interleaved, start states by look-back), summaries
    # `lookback_lead_gluon` chunks ahead of the main passes, instead of three (summaries,
    # combine, main pass): 0 never, 2 always, 1 where a chunk has at least 32 programs
    # (batch x 32-channel blocks). Measured (RESULTS.md 2026-11-30 02:00 UTC): row 4 of
    # DESIGN §7 (64 a chunk) 0.415 -> 0.391 ms at lead 16 (0.400 at 8 and 32, 0.466 at 0);
    # row 3 (8 a chunk, 395 chunks: each main pass waits on the one before) 3.24 -> 3.81 ms
    lookback_gluon: int = 1
    lookback_lead_gluon: int = 16
    maxnreg_gluon: int = 0  # 0: 128 at 8+ warps, else ptxas chooses
    bwd: str = "auto"      # backward kernel: "gluon" (gluon_bwd.py; CUDA, N <= 64) or "tile"
    ns_bwd_gluon: int = 2  # "gluon" backward: states per thread (N / NS warps)
    # "gluon" backward: grids of fewer programs than this many per SM are split into chunks
    # (2: row 4 of DESIGN §7 1.52x the reference against 1.45x at 1, rows 3 and 1 alike or
    # better; RESULTS.md 2026-11-29 15:34 UTC); the chunks' summaries (the same kernel,
    # SUMMARY, 40 registers) run on sub-chunks until that grid has summary_programs_per_sm
    # programs per SM (row 4: the summary over 2 chunks took 0.50 of 1.79 ms, 8 warps per SM)
    programs_per_sm_bwd_gluon: int = 2
    # the summaries hold ns_summary_bwd_gluon states per thread (8: 2-warp programs; the
    # 8-warp shape of the main pass made every warp re-read the tile's Δ and dy rows, and
    # the summary of row 3 ran 3.1 ms bound by shared memory, ncu 2026-11-29 18:45 UTC), and
    # run until their grid has summary_programs_per_sm programs per SM (24 x 2 warps)
    ns_summary_bwd_gluon: int = 8
    summary_programs_per_sm_bwd_gluon: int = 24
    maxnreg_bwd_gluon: int = 0  # 0: ptxas chooses (255 at N = 16: one 8-warp CTA per SM)
    # the reverse pass recomputes exp(ΔA) instead of holding step 2.'s (gluon_bwd.py, REEXP):
    # 0 never, 2 always, 1 on unchunked grids with N <= 16 (measured, RESULTS.md 2026-11-29
    # 17:02 UTC: rows 1, 2 and 5 of DESIGN §7 6-7 % faster, the chunked rows 3 and 4 3 %
    # slower, row 6 (N = 64) within 1 %)
    reexp_bwd_gluon: int = 1
    # the main pass copies each tile's start state two tiles ahead into shared memory
    # (cp.async, gluon_bwd.py H_ASYNC) instead of loading it into registers: 0 never, 2
    # always, 1 where registers allowed the load a tile ahead (REEXP, or unchunked).
    # Measured (RESULTS.md 2026-11-29 22:28 UTC): always is fastest on every row of DESIGN
    # §7 (row 3 9.53 -> 9.22 ms, row 6 3.02 -> 2.89 ms)
    async_h_bwd_gluon: int = 2
    # 1: with it, Δ, u, dout and z arrive by cp.async too (IN_ASYNC; the EVEN variant with
    # bf16 or fp32 inputs that `gluon_pack` allows, at most 8 warps) instead of as register
    # prefetches; 0: register prefetches. Measured at a88b168 (RESULTS.md 2026-11-29 23:35
    # UTC, after its first-tile race was fixed): rows 1, 2, 3, 5, 6 of DESIGN §7 0.5-6 %
    # faster (row 3 9.21 -> 9.17 ms, row 6 2.89 -> 2.72 ms), row 4 within 0.5 %
    async_in_bwd_gluon: int = 1
    # 1: the backward reads y before the gate (for dz) from the forward's save (`scan_fwd`'s
    # fourth output) instead of recomputing Σ C h; 0: recomputes it
    ypre_bwd_gluon: int = 1
    # both Gluon kernels: the unmasked variant where a call fits it (`gluon_even`); 0 never
    # (SEQSUITE_SCAN_EVEN=0)
    even_gluon: int = 1
    # launch the Gluon kernels through `_launch`'s cache of compiled kernels (0: through
    # Triton's dispatcher every call; SEQSUITE_SCAN_FASTLAUNCH=0)
    fast_launch: int = 1


CONFIG = ScanConfig()


_ENV_KEYS = ("SEQSUITE_SCAN_CFG", "SEQSUITE_SCAN_BWD", "SEQSUITE_SCAN_BWD_GLUON",
             "SEQSUITE_SCAN_FWD", "SEQSUITE_SCAN_SEQ", "SEQSUITE_SCAN_EVEN",
             "SEQSUITE_SCAN_FASTLAUNCH", "SEQSUITE_SCAN_GLUON")
_ENV_KEYS_B = tuple(k.encode() for k in _ENV_KEYS)
_CONFIG_CACHE: dict = {}


def _config() -> ScanConfig:
    """CONFIG with the environment's overrides (cached per CONFIG's values and the
    environment; tests change CONFIG's fields in place)."""
    if torch.compiler.is_compiling():  # dynamo traces the plain version
        return _config_from_env()
    env = getattr(os.environ, "_data", None)  # CPython's raw mapping: 8 lookups in < 1 µs
    if isinstance(env, dict) and os.name == "posix":
        vals = tuple(env.get(k) for k in _ENV_KEYS_B)
    else:
        vals = tuple(os.environ.get(k) for k in _ENV_KEYS)
    key = (id(CONFIG), tuple(CONFIG.__dict__.values()), vals)
    hit = _CONFIG_CACHE.get(key)
    if hit is not None and hit[0] is CONFIG:
        return hit[1]
    cfg = _config_from_env()
    _CONFIG_CACHE[key] = (CONFIG, cfg)
    return cfg


def _config_from_env() -> ScanConfig:
    cfg = CONFIG
    env = os.environ.get("SEQSUITE_SCAN_CFG")
    if env:
        v = [int(x) for x in env.split(",")]
        wps = v[5] if len(v) > 5 else cfg.warps_per_sm
        unroll = v[6] if len(v) > 6 else cfg.unroll
        cfg = replace(cfg, bd_fwd=v[0], bd_bwd=v[1], tile=v[2], warps_fwd=v[3], warps_bwd=v[4],
                      warps_per_sm=wps, unroll=unroll)
    bkind = os.environ.get("SEQSUITE_SCAN_BWD")
    if bkind:
        if bkind not in ("auto", "tile", "gluon"):
            raise ValueError(f"SEQSUITE_SCAN_BWD={bkind!r}: use auto, gluon or tile")
        cfg = replace(cfg, bwd=bkind)
    bg = os.environ.get("SEQSUITE_SCAN_BWD_GLUON")
    if bg:
        v = [int(x) for x in bg.split(",")]
        cfg = replace(cfg, **dict(zip(("ns_bwd_gluon", "programs_per_sm_bwd_gluon",
                                       "summary_programs_per_sm_bwd_gluon",
                                       "maxnreg_bwd_gluon", "reexp_bwd_gluon",
                                       "ns_summary_bwd_gluon", "async_h_bwd_gluon",
                                       "async_in_bwd_gluon", "ypre_bwd_gluon"), v)))
    kind = os.environ.get("SEQSUITE_SCAN_FWD")
    if kind:
        if kind not in ("auto", "tile", "seq", "gluon"):
            raise ValueError(f"SEQSUITE_SCAN_FWD={kind!r}: use auto, gluon, tile or seq")
        cfg = replace(cfg, fwd=kind)
    seq = os.environ.get("SEQSUITE_SCAN_SEQ")
    if seq:
        v = [int(x) for x in seq.split(",")]
        cfg = replace(cfg, bd_seq=v[0], warps_seq=v[1] if len(v) > 1 else cfg.warps_seq,
                      warps_per_sm_seq=v[2] if len(v) > 2 else cfg.warps_per_sm_seq)
    even = os.environ.get("SEQSUITE_SCAN_EVEN")
    if even:
        cfg = replace(cfg, even_gluon=int(even))
    fast = os.environ.get("SEQSUITE_SCAN_FASTLAUNCH")
    if fast:
        cfg = replace(cfg, fast_launch=int(fast))
    gl_env = os.environ.get("SEQSUITE_SCAN_GLUON")
    if gl_env:
        v = [int(x) for x in gl_env.split(",")]
        names = ("ns_gluon", "min_warps_per_sm_gluon", "ns_chunked_gluon",
                 "chunk_warps_per_sm_gluon", "maxnreg_gluon", "lookback_gluon",
                 "lookback_lead_gluon")
        cfg = replace(cfg, **dict(zip(names, v)))
    return cfg


def _fwd_kind(cfg: ScanConfig, device: torch.device) -> str:
    """The forward kernel for a call: "auto" is Gluon on CUDA (compute capability 8+; Gluon
    does not run under TRITON_INTERPRET) and the plain-Triton tile kernel elsewhere."""
    if cfg.fwd != "auto":
        return cfg.fwd
    if device.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1" \
            and torch.cuda.get_device_capability(device)[0] >= 8:
        return "gluon"
    return "tile"


def _bwd_kind(cfg: ScanConfig, device: torch.device) -> str:
    if cfg.bwd != "auto":
        return cfg.bwd
    return "gluon" if _fwd_kind(replace(cfg, fwd="auto"), device) == "gluon" else "tile"


def tile_for(N: int) -> int:
    """Tile length (time steps) of the kernels and of the saved states' spacing."""
    return max(_config().tile, 16)


def _bc_layout(X: Tensor, dim: int):
    """(tensor, varying, group size, strides (batch, group|channel, n, l)) for B or C."""
    if X.dim() == 2:  # (dim, N) time-invariant
        return X, False, 1, (0, X.stride(0), X.stride(1), 0)
    if X.stride(-1) != 1:
        X = X.contiguous()
    if X.dim() == 3:  # (batch, N, L): one group
        return X, True, dim, (X.stride(0), 0, X.stride(1), 1)
    G = X.shape[1]
    if dim % G:
        raise ValueError(f"dim {dim} is not divisible by the number of groups {G}")
    return X, True, dim // G, (X.stride(0), X.stride(1), X.stride(2), 1)


def _block_d(target: int, dim: int, groups: list[int]) -> int:
    """Largest power of two <= target that divides every varying group size (and <= dim)."""
    bd = min(target, _pow2(dim))
    for g in groups:
        bd = min(bd, g & -g)  # lowest set bit: largest power of two dividing g
    return max(bd, 1)


def _n_chunks(cfg: ScanConfig, programs: int, warps: int, n_tiles: int,
              device: torch.device) -> tuple[int, int]:
    """(chunk length in tiles, number of chunks) so that the grid has enough warps."""
    if cfg.chunk_tiles > 0:
        ct = cfg.chunk_tiles
    else:
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
        want = cfg.warps_per_sm * sms
        have = max(programs * warps, 1)
        nc = max(1, min(n_tiles, math.ceil(want / have))) if have < want else 1
        ct = math.ceil(n_tiles / nc)
    return ct, math.ceil(n_tiles / ct)


def _opt(t: Optional[Tensor], like: Tensor) -> Tensor:
    return t if t is not None else like


def _contig(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else (t if t.stride(-1) == 1 and t.is_contiguous() else t.contiguous())


def _cdiv(a: int, b: int) -> int:
    """ceil(a / b) in plain Python (triton.cdiv goes through Triton's constexpr-function
    wrapper: about 3 µs of host time per call, eight per forward)."""
    return -(-a // b)


def _pow2(n: int) -> int:
    """The smallest power of two >= n (>= 1), in plain Python (see `_cdiv`)."""
    return 1 << max(n - 1, 0).bit_length()


_LAUNCH_CACHE: dict = {}


def _spec(a):
    """What Triton specialises a runtime argument on: a tensor's dtype and 16-byte alignment,
    an int's being 1, a multiple of 16 or beyond 32 bits."""
    if type(a) is int:
        return a if a < 2 else (a & 15 == 0, a < (1 << 31))
    if isinstance(a, Tensor):
        return a.dtype, a.data_ptr() & 15 == 0
    return a


def _launch(fast: bool, fn, grid, args: tuple, key, consts: dict) -> None:
    """fn[grid](*args, **consts). Triton's dispatcher binds and specialises every argument
    and hashes the constexprs (Gluon layouts among them) on every call. With `fast`, the
    compiled kernel
    is kept under (fn, key, the arguments' specialisation) and launched directly; `key` must
    stand for everything in `consts` (which holds the constexprs and launch options). The
    first call of each key goes through the dispatcher (and compiles). Measured on the H200
    machine: the backward's host time per call 10-45 % lower, the forward's within that
    host's noise (benchmarks/probe_launch.py)."""
    if not fast:
        fn[grid](*args, **consts)
        return
    ck = (fn, key, args[0].device, tuple(_spec(a) for a in args))
    hit = _LAUNCH_CACHE.get(ck)
    if hit is None:
        k = fn[grid](*args, **consts)
        k = k.result() if hasattr(k, "result") else k
        tail = tuple(consts[p.name] if p.name in consts else p.default
                     for p in fn.params[len(args):])
        _LAUNCH_CACHE[ck] = (k, tail)
        return
    k, tail = hit
    full = args + tail
    stream = torch.cuda.current_stream().cuda_stream
    g = tuple(grid) + (1,) * (3 - len(grid))
    k.run(g[0], g[1], g[2], stream, k.function, k.packed_metadata,
          k.launch_metadata(g, stream, *full), knobs.runtime.launch_enter_hook,
          knobs.runtime.launch_exit_hook, *full)


_COMBINE_BLOCK = 256  # (state, channel) pairs per program of the chunk combine
_SUM_PARTS_BLOCK = 2048  # (state, step) pairs per program of `sum_parts`


def sum_parts_fits(rows: int, M: int, sms: int) -> bool:
    """Whether `sum_parts` has programs enough (4 per SM) to beat torch's sum then cast. Each
    program sums its block over the P / G partial sums one after the other, so small grids
    lose: at 864ae9e (RESULTS.md, 2026-11-29 21:15 UTC) rows 3 and 4 of DESIGN §7 (8,192 and
    2,048 programs) gained (backward 9.68 -> 9.62 and 1.33 -> 1.30 ms), rows 1, 2 and 5 (128,
    256 and 64 programs, 48-128 partial sums) lost 3-18 %."""
    return rows * _cdiv(M, _SUM_PARTS_BLOCK) >= 4 * sms


def sum_parts(X: Tensor, G: int, dtype: torch.dtype, fast: bool = True) -> Tensor:
    """(batch, G, N, L) in `dtype` from the partial sums X (batch, P, N, L) fp32 of P programs,
    P / G consecutive ones per group: X.view(batch, G, P // G, N, L).sum(2).to(dtype) in one
    pass (`_sum_parts_kernel`)."""
    batch, P, N, L = X.shape
    out = torch.empty((batch, G, N, L), dtype=dtype, device=X.device)
    M = N * L
    _launch(fast, _sum_parts_kernel, (_cdiv(M, _SUM_PARTS_BLOCK), batch * G),
            (X, out, P // G, M), ("sum_parts",), dict(BLOCK=_SUM_PARTS_BLOCK, num_warps=4))
    return out


def _carry(summ: Tensor, dtsum: Tensor, A: Tensor, init: Optional[Tensor],
           reverse: bool, fast: bool = False) -> Tensor:
    """The state (forward) or adjoint (reverse) entering each chunk, from the chunks' own
    summaries: `_chunk_combine_kernel` over (batch, n_chunks, N, dim)."""
    batch, n_chunks, N, dim = summ.shape
    out = torch.empty_like(summ)
    has_init = init is not None
    _launch(fast, _chunk_combine_kernel, (_cdiv(dim * N, _COMBINE_BLOCK), batch),
            (summ, dtsum, A, _opt(init, summ), out, dim, N, n_chunks, A.stride(0), A.stride(1)),
            (reverse, has_init), _combine_consts(reverse, has_init))
    return out


@functools.lru_cache(maxsize=None)
def _combine_consts(reverse: bool, has_init: bool) -> dict:
    return dict(BLOCK=_COMBINE_BLOCK, REVERSE=reverse, HAS_INIT=has_init, CPT=8, num_warps=4)


def _bwd_carry(cfg: ScanConfig, dout, u, delta, A, C, z, delta_bias, delta_softplus, c_vary,
               gc, sC, BD: int, chunk_len: int, n_chunks: int, TL: int,
               dlast: Optional[Tensor]) -> Optional[Tensor]:
    """The adjoint entering each chunk from its end, (batch, n_chunks, N, dim) fp32 (the
    chunks' summaries by `_bwd_chunk_summary_kernel` with BD channels per program, carried
    backwards from dlast); None when there is one chunk and no dlast."""
    if n_chunks == 1 and dlast is None:
        return None
    batch, dim, L = u.shape
    N = A.shape[1]
    f32 = dict(dtype=torch.float32, device=u.device)
    rsum = torch.zeros((batch, n_chunks, N, dim), **f32)
    dtsum = torch.zeros((batch, n_chunks, dim), **f32)
    if n_chunks > 1:
        _bwd_chunk_summary_kernel[(_cdiv(dim, BD), n_chunks, batch)](
            dout, _opt(z, u), delta, A, C, _opt(delta_bias, u), rsum, dtsum,
            dim, L, N, chunk_len, n_chunks, gc,
            u.stride(0), u.stride(1), A.stride(0), A.stride(1), *sC,
            BD=BD, TL=TL, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=delta_softplus, C_VARY=c_vary, num_warps=cfg.warps_bwd,
        )
    dl = dlast.float().contiguous() if dlast is not None else None
    return _carry(rsum, dtsum, A, dl, reverse=True)


@torch.library.custom_op("seqsuite::scan_fwd", mutates_args=())
def scan_fwd(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
    z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool, tile: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward scan. Returns y (like u), last state (batch, dim, N) fp32, tile-start states
    (batch, ceil(L / tile), N, dim) fp32 for the backward, and y before the SiLU(z) gate (like
    u; empty without z) for the backward's dz."""
    return scan_fwd_impl(u, delta, A, B, C, D, z, delta_bias, delta_softplus, tile)


def scan_fwd_impl(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool, tile: int,
                  save_states: bool = True):
    """The forward scan (`scan_fwd`'s body, also called directly by the eager autograd path).
    save_states=False (no backward will run): the Gluon forward skips the tile-start states
    and returns an empty (batch, 0, N, dim) tensor in their place, and every kernel skips y
    before the gate (empty)."""
    cfg = _config()
    u, delta, z, D, delta_bias = (_contig(t) for t in (u, delta, z, D, delta_bias))
    kind = _fwd_kind(cfg, u.device)
    if kind == "gluon":
        out = _scan_fwd_gluon(cfg, u, delta, A, B, C, D, z, delta_bias, delta_softplus, tile,
                              save_states)
        if out is not None:
            return out
    batch, dim, L = u.shape
    N = A.shape[1]
    TL = tile
    B, b_vary, gb, sB = _bc_layout(B, dim)
    C, c_vary, gc, sC = _bc_layout(C, dim)
    seq = kind == "seq"
    groups = [g for g, v in ((gb, b_vary), (gc, c_vary)) if v]
    BD = _block_d(cfg.bd_seq if seq else cfg.bd_fwd, dim, groups)
    n_dblk = _cdiv(dim, BD)
    n_tiles = _cdiv(L, TL)
    warps = cfg.warps_seq if seq else cfg.warps_fwd
    ct, n_chunks = _n_chunks(replace(cfg, warps_per_sm=cfg.warps_per_sm_seq) if seq else cfg,
                             batch * n_dblk, warps, n_tiles, u.device)
    chunk_len = ct * TL
    y = torch.empty_like(u)
    ypre = _ypre(u, z, save_states)
    last = torch.empty((batch, dim, N), dtype=torch.float32, device=u.device)
    states = torch.empty((batch, n_tiles, N, dim), dtype=torch.float32, device=u.device)
    grid = (n_dblk, n_chunks, batch)
    h0 = None
    if n_chunks > 1:
        hsum = torch.zeros((batch, n_chunks, N, dim), dtype=torch.float32, device=u.device)
        dtsum = torch.empty((batch, n_chunks, dim), dtype=torch.float32, device=u.device)
        _fwd_chunk_summary_kernel[grid](
            u, delta, A, B, _opt(delta_bias, u), hsum, dtsum,
            dim, L, N, chunk_len, n_chunks, gb,
            u.stride(0), u.stride(1), A.stride(0), A.stride(1), *sB,
            BD=BD, TL=TL, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus,
            B_VARY=b_vary, num_warps=cfg.warps_fwd,
        )
        h0 = _carry(hsum, dtsum, A, None, reverse=False)
    # the two forward kernels take the same arguments but for their own tunables
    kernel, own = ((_fwd_seq_kernel, dict(NP=_pow2(N))) if seq
                   else (_fwd_kernel, dict(UNROLL=cfg.unroll)))
    kernel[grid](
        u, delta, _opt(z, u), A, B, C, _opt(D, u), _opt(delta_bias, u), y,
        _opt(h0, last), states, last, ypre if ypre.numel() else y,
        dim, L, N, chunk_len, n_chunks, n_tiles, gb, gc,
        u.stride(0), u.stride(1), A.stride(0), A.stride(1), *sB, *sC,
        BD=BD, TL=TL, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus, B_VARY=b_vary,
        C_VARY=c_vary, HAS_H0=h0 is not None, SAVE_Y=ypre.numel() > 0, num_warps=warps, **own,
    )
    return y, last, states, ypre


def use_lookback(cfg: ScanConfig, programs: int) -> bool:
    """Whether a chunked Gluon forward with `programs` programs a chunk runs in one launch
    (`lookback_gluon`)."""
    lb = cfg.lookback_gluon
    return lb == 2 or (lb == 1 and programs >= 32)


def _ypre(u: Tensor, z: Optional[Tensor], save: bool) -> Tensor:
    """The buffer of y before the SiLU(z) gate that a training forward keeps for the
    backward's dz (like u; empty without z or without a backward to come)."""
    return torch.empty_like(u) if z is not None and save else u.new_empty(0)


def _gluon_shape(ns: int, N: int):
    """(NP, NS, warps) of the Gluon forward for N states: warps x NS = NP states."""
    NP = _pow2(N)
    NS = max(min(NP, ns), NP // 8, 1)
    return NP, NS, max(NP // NS, 1)


def gluon_plan(cfg: ScanConfig, batch: int, dim: int, L: int, N: int, sms: int):
    """(NS, warps, chunk length in tiles, chunks) of the Gluon forward for a call."""
    n_dblk = _cdiv(dim, 32)
    n_tiles = _cdiv(L, 16)
    _, NS, warps = _gluon_shape(cfg.ns_gluon, N)
    if batch * n_dblk * warps >= cfg.min_warps_per_sm_gluon * sms or n_tiles == 1:
        return NS, warps, n_tiles, 1
    _, NS, warps = _gluon_shape(cfg.ns_chunked_gluon, N)
    want = cfg.chunk_warps_per_sm_gluon * sms
    nc = max(1, min(n_tiles, math.ceil(want / (batch * n_dblk * warps))))
    ct = math.ceil(n_tiles / nc)
    return NS, warps, ct, math.ceil(n_tiles / ct)


@functools.lru_cache(maxsize=None)
def gluon_consts(NS: int, warps: int, NP: int, TL: int, has_d: bool, has_z: bool,
                 has_bias: bool, softplus: bool, b_vary: bool, c_vary: bool,
                 even: bool = False) -> dict:
    """The constexpr arguments both Gluon kernels take: 32 channels per program, NS states per
    thread over `warps` warps (NP states in all), TL-step tiles, and the call's options.
    even (`gluon_even`): no load or store needs a mask. Cached: the caller must not change
    the dict."""
    from . import gluon_fwd as G

    return dict(BD=32, NP=NP, TL=TL, L3=G.state_layout(NS, warps),
                LIO=G.tile_layout(32, TL, warps), LBC=G.tile_layout(NP, TL, warps),
                HAS_D=has_d, HAS_Z=has_z, HAS_BIAS=has_bias, SOFTPLUS=softplus,
                B_VARY=b_vary, C_VARY=c_vary, EVEN=even)


def gluon_key(NS: int, warps: int, NP: int, TL: int, D, z, delta_bias, delta_softplus,
              b_vary: bool, c_vary: bool, even: bool) -> tuple:
    """`gluon_consts`' arguments for a call of either Gluon kernel (the start of the keys
    under which `_launch` keeps their compiled kernels)."""
    return (NS, warps, NP, TL, D is not None, z is not None, delta_bias is not None,
            bool(delta_softplus), b_vary, c_vary, even)


def gluon_even(cfg: ScanConfig, dim: int, L: int, N: int, TL: int) -> bool:
    """Whether a call fits the Gluon kernels' EVEN variant: L a multiple of the tile, dim of the
    32 channels of a program and N a power of two, so that no load or store is masked (the
    tile loop has 7 % fewer instructions; at N = 64 the backward spills less). `even_gluon`
    = 0 turns it off."""
    return bool(cfg.even_gluon) and L % TL == 0 and dim % 32 == 0 and N == _pow2(N)


def gluon_pack(even: bool, *tensors) -> bool:
    """Whether the EVEN variant may load the 16-bit tiles of these tensors (u, Δ, z and
    time-varying B, C; None skipped) as int32 pairs (`gluon_fwd._packs`): each 4-byte aligned
    with even strides but the last (unit) one."""
    if not even:
        return False
    for t in tensors:
        if t is not None and t.element_size() == 2 and (
                t.data_ptr() % 4 or any(st % 2 for st in t.stride()[:-1])):
            return False
    return True


def gluon_fwd_maxnreg(cfg: ScanConfig, warps: int, chunked: bool) -> int:
    """Register cap of the Gluon forward (0: none). 8+ warps (N >= 64): ptxas takes 174
    registers unasked; capped at 128 the N = 64 row of DESIGN §7 ran 8% faster (RESULTS.md,
    2026-11-29 14:29 UTC). Chunked (2 warps of 8 states at N = 16): 142 registers unasked,
    7 programs per SM; capped at 128 (8 programs) row 4 ran 0.416 against 0.433 ms (RESULTS.md,
    2026-11-29 20:53 UTC). 4 warps unchunked are best uncapped."""
    return cfg.maxnreg_gluon or (128 if warps >= 8 or chunked else 0)


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _gluon_bc(B: Tensor, C: Tensor, dim: int, TL: int):
    """`_bc_layout` of B and C for the Gluon kernels (32-channel programs, 16-step tiles), or
    None where they do not apply: another tile, or a B/C group a program would straddle."""
    Bl, Cl = _bc_layout(B, dim), _bc_layout(C, dim)
    if TL != 16 or any(g % 32 for _, v, g, _ in (Bl, Cl) if v and g < dim):
        return None
    return Bl, Cl


def _scan_fwd_gluon(cfg, u, delta, A, B, C, D, z, delta_bias, delta_softplus, TL,
                    save_states: bool = True):
    """The Gluon forward (gluon_fwd.py), or None where its 32-channel programs would straddle
    a B/C group."""
    from . import gluon_fwd as G

    batch, dim, L = u.shape
    N = A.shape[1]
    bc = _gluon_bc(B, C, dim, TL)
    if bc is None:
        return None
    (B, b_vary, gb, sB), (C, c_vary, gc, sC) = bc
    BD = 32
    sms = _sm_count(u.device)
    NS, warps, ct, n_chunks = gluon_plan(cfg, batch, dim, L, N, sms)
    NP = NS * warps
    n_dblk = _cdiv(dim, BD)
    n_tiles = _cdiv(L, TL)
    chunk_len = ct * TL
    even = gluon_even(cfg, dim, L, N, TL)
    ckey = gluon_key(NS, warps, NP, TL, D, z, delta_bias, delta_softplus, b_vary, c_vary,
                     even) + (
        gluon_pack(even, u, delta, z, B if b_vary else None, C if c_vary else None),
        gluon_fwd_maxnreg(cfg, warps, n_chunks > 1))
    fast = bool(cfg.fast_launch)
    y = torch.empty_like(u)
    ypre = _ypre(u, z, save_states)
    last = torch.empty((batch, dim, N), dtype=torch.float32, device=u.device)
    states = torch.empty((batch, n_tiles if save_states else 0, N, dim), dtype=torch.float32,
                         device=u.device)
    hs = states if save_states else last
    grid = (n_dblk, n_chunks, batch)
    h0 = None
    strides = (u.stride(0), u.stride(1), A.stride(0), A.stride(1), *sB, *sC)
    bias = _opt(delta_bias, u)
    yp = ypre if ypre.numel() else y  # where the kernels may store y before the gate
    if n_chunks > 1:
        # the chunks' summaries: end states from zero and sums of Δ
        hsum = torch.empty((batch, n_chunks, N, dim), dtype=torch.float32, device=u.device)
        dtsum = torch.empty((batch, n_chunks, dim), dtype=torch.float32, device=u.device)
    if n_chunks > 1 and use_lookback(cfg, batch * n_dblk):
        incl = torch.empty_like(hsum)
        flags = torch.zeros(1 + 2 * batch * n_chunks * n_dblk, dtype=torch.int32,
                            device=u.device)
        P = n_dblk * batch
        _launch(fast, G._fwd_lookback_kernel, ((2 * n_chunks - 1) * P,),
                (u, delta, _opt(z, u), A, B, C, _opt(D, u), bias, y, hsum, hs, last, yp,
                 dtsum, incl, flags,
                 dim, L, N, chunk_len, n_chunks, n_tiles, gb, gc, *strides,
                 n_dblk, batch, cfg.lookback_lead_gluon),
                (ckey, "lookback", save_states), _fwd_base_consts(ckey, save_states))
        return y, last, states, ypre
    if n_chunks > 1:
        # the summaries of every chunk but the last (no chunk starts after it; the combine
        # reads its slot but stores nothing from it)
        _launch(fast, G._fwd_gluon_kernel, (n_dblk, n_chunks - 1, batch),
                (u, delta, u, A, B, C, u, bias, y, hsum, hs, dtsum, y,
                 dim, L, N, chunk_len, n_chunks, n_tiles, gb, gc, *strides),
                (ckey, False, True, True), _fwd_consts(ckey, False, True, True))
        h0 = _carry(hsum, dtsum, A, None, reverse=False, fast=fast)
    has_h0 = h0 is not None
    _launch(fast, G._fwd_gluon_kernel, grid,
            (u, delta, _opt(z, u), A, B, C, _opt(D, u), bias, y, _opt(h0, last), hs, last, yp,
             dim, L, N, chunk_len, n_chunks, n_tiles, gb, gc, *strides),
            (ckey, has_h0, False, save_states), _fwd_consts(ckey, has_h0, False, save_states))
    return y, last, states, ypre


@functools.lru_cache(maxsize=None)
def _fwd_base_consts(ckey: tuple, save: bool) -> dict:
    """The constexprs and launch options both Gluon forward kernels take (ckey: see
    `_scan_fwd_gluon`); as they are, `_fwd_lookback_kernel`'s. Cached: the caller must not
    change the dict."""
    *gk, pack, maxnreg = ckey
    d = dict(gluon_consts(*gk), PACK=pack, SAVE=save, num_warps=ckey[1])
    if maxnreg:
        d["maxnreg"] = maxnreg
    return d


@functools.lru_cache(maxsize=None)
def _fwd_consts(ckey: tuple, has_h0: bool, summary: bool, save: bool) -> dict:
    """`_fwd_gluon_kernel`'s constexprs and launch options for `_launch`."""
    return dict(_fwd_base_consts(ckey, save), HAS_H0=has_h0, SUMMARY=summary)


@scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, tile):
    batch, dim, L = u.shape
    N = A.shape[1]
    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        u.new_empty((batch, dim, N), dtype=torch.float32),
        u.new_empty((batch, (L + tile - 1) // tile, N, dim), dtype=torch.float32),
        torch.empty_like(u, memory_format=torch.contiguous_format) if z is not None
        else u.new_empty(0),
    )


@torch.library.custom_op("seqsuite::scan_bwd", mutates_args=())
def scan_bwd(
    dout: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Optional[Tensor], z: Optional[Tensor], delta_bias: Optional[Tensor],
    delta_softplus: bool, states: Tensor, dlast: Optional[Tensor], tile: int,
    ypre: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward scan. Returns du, ddelta, dA, dB, dC, dD, dz, ddelta_bias (empty tensors
    for absent optional inputs). ypre: the forward's y before the gate (`scan_fwd`'s fourth
    output), which the Gluon backward reads for dz instead of recomputing it."""
    return scan_bwd_impl(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, states,
                         dlast, tile, ypre)


def scan_bwd_impl(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool, states,
                  dlast, tile: int, ypre: Optional[Tensor] = None):
    """The backward scan (`scan_bwd`'s body, also called directly by the eager autograd
    path)."""
    cfg = _config()
    dout, u, delta, z, D, delta_bias = (_contig(t) for t in (dout, u, delta, z, D, delta_bias))
    if _bwd_kind(cfg, u.device) == "gluon":
        out = _scan_bwd_gluon(cfg, dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              states, dlast, tile, ypre)
        if out is not None:
            return out
    batch, dim, L = u.shape
    N = A.shape[1]
    TL = tile
    B_in, C_in = B, C
    B, b_vary, gb, sB = _bc_layout(B, dim)
    C, c_vary, gc, sC = _bc_layout(C, dim)
    BD = _block_d(cfg.bd_bwd, dim, [g for g, v in ((gb, b_vary), (gc, c_vary)) if v])
    n_dblk = _cdiv(dim, BD)
    n_tiles = _cdiv(L, TL)
    ct, n_chunks = _n_chunks(cfg, batch * n_dblk, cfg.warps_bwd, n_tiles, u.device)
    chunk_len = ct * TL
    grid = (n_dblk, n_chunks, batch)
    f32 = dict(dtype=torch.float32, device=u.device)
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else u.new_empty(0)
    part = (batch, n_chunks, N, dim)  # per-program partial sums, reduced below
    dA_part = torch.zeros(part, **f32)
    dB = torch.zeros(B.shape if b_vary else part, **f32)
    dC = torch.zeros(C.shape if c_vary else part, **f32)
    dD = torch.zeros((dim,), **f32)
    dbias = torch.zeros((dim,), **f32)

    def dstrides(X, vary):
        if not vary:
            return (0, 0, 0)
        if X.dim() == 3:
            return (X.stride(0), 0, X.stride(1))
        return (X.stride(0), X.stride(1), X.stride(2))

    r = _bwd_carry(cfg, dout, u, delta, A, C, z, delta_bias, delta_softplus, c_vary, gc, sC,
                   BD, chunk_len, n_chunks, TL, dlast)
    if r is None:
        r = torch.zeros(part, **f32)
    _bwd_kernel[grid](
        dout, u, delta, _opt(z, u), A, B, C, _opt(D, u), _opt(delta_bias, u),
        states, r,
        du, ddelta, dz if z is not None else du, dA_part, dB, dC, dD, dbias,
        dim, L, N, chunk_len, n_chunks, n_tiles, gb, gc,
        u.stride(0), u.stride(1), A.stride(0), A.stride(1), *sB, *sC,
        *dstrides(dB, b_vary), *dstrides(dC, c_vary),
        BD=BD, TL=TL, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus, B_VARY=b_vary,
        C_VARY=c_vary, UNROLL=cfg.unroll, num_warps=cfg.warps_bwd,
    )
    dA = dA_part.sum((0, 1)).t().contiguous()
    if not b_vary:
        dB = dB.sum((0, 1)).t().contiguous()
    if not c_vary:
        dC = dC.sum((0, 1)).t().contiguous()
    return (
        du, ddelta, dA.to(A.dtype), dB.to(B_in.dtype), dC.to(C_in.dtype),
        dD.to(D.dtype) if D is not None else u.new_empty(0),
        dz,
        dbias.to(delta_bias.dtype) if delta_bias is not None else u.new_empty(0),
    )


def gluon_bwd_plan(cfg: ScanConfig, batch: int, dim: int, L: int, N: int, sms: int):
    """(NS, warps, chunk length in tiles, chunks, summary sub-chunk length in tiles) of the
    Gluon backward, or None where the tile backward runs instead (N > 64). Programs hold
    16 states at a time (NS per thread, 16 / NS warps) and run N > 16 as groups of 16 over
    each staged tile. A grid of fewer
    programs than programs_per_sm x SMs is split into as many chunks as fit in that many
    programs (whole waves: one 8-warp CTA fits an SM). The chunk summaries run on sub-chunks
    (a chunk = a whole number of them) until their grid has summary_programs_per_sm programs
    per SM."""
    if N > 64:
        return None
    NP = _pow2(N)
    NS = min(NP, cfg.ns_bwd_gluon)
    W = max(min(NP, 16) // NS, 1)
    n_tiles = _cdiv(L, 16)
    programs = batch * _cdiv(dim, 32)
    want = cfg.programs_per_sm_bwd_gluon * sms
    nc = 1 if programs >= want else max(1, min(n_tiles, want // programs))
    ct = math.ceil(n_tiles / nc)
    if nc == 1:
        return NS, W, ct, 1, ct
    k = max(1, min(ct, math.ceil(cfg.summary_programs_per_sm_bwd_gluon * sms / (programs * nc))))
    cs = math.ceil(ct / k)
    ct = cs * math.ceil(ct / cs)
    return NS, W, ct, math.ceil(n_tiles / ct), cs


@functools.lru_cache(maxsize=None)
def _bwd_consts(ckey: tuple, has_r: bool, summary: bool, reexp: bool, maxnreg: int,
                h_async: bool = False, in_async: bool = False, has_yp: bool = False) -> dict:
    """The Gluon backward's constexprs and launch options for `_launch` (ckey: see
    `_scan_bwd_gluon`)."""
    d = dict(gluon_consts(*ckey), HAS_R=has_r, SUMMARY=summary, REEXP=reexp,
             H_ASYNC=h_async, IN_ASYNC=in_async, HAS_YP=has_yp, num_warps=ckey[1])
    if maxnreg:
        d["maxnreg"] = maxnreg
    return d


def gluon_bwd_summary_shape(cfg: ScanConfig, NS: int, warps: int, NP: int) -> tuple[int, int]:
    """(states per thread, warps) of the Gluon backward's chunk summaries: the main pass's
    group of NS x warps states held by fewer warps (ns_summary_bwd_gluon states per thread),
    so that fewer warps re-read each staged row."""
    NSs = min(NP, max(cfg.ns_summary_bwd_gluon, NS))
    return NSs, max(warps * NS // NSs, 1)


def reexp_bwd(cfg: ScanConfig, n_chunks: int, N: int) -> bool:
    """Whether the Gluon backward recomputes exp(ΔA) in its reverse pass (`reexp_bwd_gluon`)."""
    r = cfg.reexp_bwd_gluon
    return r == 2 or (r == 1 and n_chunks == 1 and N <= 16)


def async_h_bwd(cfg: ScanConfig, reexp: bool, has_r: bool) -> bool:
    """Whether the Gluon backward's main pass copies the tile-start states by cp.async
    (`async_h_bwd_gluon`)."""
    a = cfg.async_h_bwd_gluon
    return a == 2 or (a == 1 and (reexp or not has_r))


def async_in_bwd(cfg: ScanConfig, h_async: bool, even: bool, warps: int, *tiles) -> bool:
    """Whether the Gluon backward's main pass copies its Δ, u, dout and z tiles by cp.async
    (`async_in_bwd_gluon`): with the tile-start states copied so, in the EVEN variant, at most
    8 warps (2+ values a thread in the tile layout) and each tile bf16 (4-byte aligned pairs,
    `gluon_pack`) or fp32: every copy is 4 bytes or more."""
    return bool(cfg.async_in_bwd_gluon and h_async and warps <= 8
                and all(t.dtype in (torch.bfloat16, torch.float32) for t in tiles if t is not None)
                and gluon_pack(even, *tiles))  # False unless even


def _scan_bwd_gluon(cfg, dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, states,
                    dlast, TL, ypre=None):
    """The Gluon backward (gluon_bwd.py), or None where it does not apply (N > 64, a tile
    other than 16, B/C groups its 32-channel programs would straddle)."""
    from . import gluon_bwd as GB

    batch, dim, L = u.shape
    N = A.shape[1]
    B_in, C_in = B, C
    bc = _gluon_bc(B, C, dim, TL)
    if bc is None:
        return None
    (B, b_vary, gb, sB), (C, c_vary, gc, sC) = bc
    BD = 32
    sms = _sm_count(u.device)
    plan = gluon_bwd_plan(cfg, batch, dim, L, N, sms)
    if plan is None:
        return None
    NS, warps, ct, n_chunks, cs = plan
    NP = _pow2(N)
    n_dblk = _cdiv(dim, BD)
    n_tiles = _cdiv(L, TL)
    chunk_len = ct * TL
    f32 = dict(dtype=torch.float32, device=u.device)
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else u.new_empty(0)
    part = (batch, n_chunks, N, dim)
    dA_part = torch.empty(part, **f32)
    GBn = B.shape[1] if B.dim() == 4 else 1
    GCn = C.shape[1] if C.dim() == 4 else 1
    dB = torch.empty((batch, n_dblk, N, L) if b_vary else part, **f32)
    dC = torch.empty((batch, n_dblk, N, L) if c_vary else part, **f32)
    dD = torch.zeros((dim,), **f32)
    dbias = torch.zeros((dim,), **f32)
    grid = (n_dblk, n_chunks, batch)
    strides = (u.stride(0), u.stride(1), A.stride(0), A.stride(1), *sB, *sC)
    dims = (dim, L, N, chunk_len, n_chunks, n_tiles, n_dblk, gb, gc, *strides)
    ckey = gluon_key(NS, warps, NP, TL, D, z, delta_bias, delta_softplus, b_vary, c_vary,
                     gluon_even(cfg, dim, L, N, TL))
    fast = bool(cfg.fast_launch)
    zz, bias = _opt(z, u), _opt(delta_bias, u)
    r = None
    if n_chunks > 1:
        # the summaries of sub-chunks of cs tiles (the same kernel, SUMMARY), carried
        # backwards; chunk c takes the adjoint entering its last sub-chunk from the end
        n_sub = _cdiv(n_tiles, cs)
        rsum = torch.empty((batch, n_sub, N, dim), **f32)
        dtsum = torch.empty((batch, n_sub, dim), **f32)
        skey = (gluon_bwd_summary_shape(cfg, NS, warps, NP) + ckey[2:], False, True, True, 0)
        _launch(fast, GB._bwd_gluon_kernel, (n_dblk, n_sub, batch),
                (dout, u, delta, zz, A, B, C, u, bias, states, rsum,
                 du, ddelta, du, rsum, dB, dC, dtsum, dbias, u,
                 dim, L, N, cs * TL, n_sub, n_tiles, n_dblk, gb, gc, *strides),
                skey, _bwd_consts(*skey))
        r = _carry(rsum, dtsum, A, dlast.float().contiguous() if dlast is not None else None,
                   reverse=True, fast=fast)
        k = ct // cs
        last_sub = torch.arange(n_chunks, device=u.device) * k + (k - 1)
        r = r.index_select(1, last_sub.clamp_max(n_sub - 1)).contiguous()
    elif dlast is not None:
        r = dlast.float().transpose(1, 2).unsqueeze(1).contiguous()  # (batch, 1, N, dim)
    reexp = reexp_bwd(cfg, n_chunks, N)
    h_async = async_h_bwd(cfg, reexp, r is not None)
    # y before the gate from the forward (dz), where it kept it in the layout of u
    has_yp = bool(cfg.ypre_bwd_gluon) and z is not None and ypre is not None and (
        ypre.shape == u.shape and ypre.dtype == u.dtype and ypre.stride() == u.stride())
    mkey = (ckey, r is not None, False, reexp, cfg.maxnreg_bwd_gluon, h_async,
            async_in_bwd(cfg, h_async, ckey[-1], warps, dout, u, delta, z,
                         ypre if has_yp else None), has_yp)
    _launch(fast, GB._bwd_gluon_kernel, grid,
            (dout, u, delta, zz, A, B, C, _opt(D, u), bias, states, _opt(r, dA_part),
             du, ddelta, dz if z is not None else du, dA_part, dB, dC, dD, dbias,
             ypre if has_yp else u, *dims),
            mkey, _bwd_consts(*mkey))
    dA = dA_part.sum((0, 1)).t().contiguous()

    def reduce_bc(X, vary, G, X_in):
        if not vary:
            return X.sum((0, 1)).t().contiguous().to(X_in.dtype)
        if sum_parts_fits(batch * G, N * L, sms):
            X = sum_parts(X, G, X_in.dtype, fast)
        else:
            X = X.view(batch, G, n_dblk // G, N, L).sum(2)
        return X.view(X_in.shape).to(X_in.dtype)
    return (
        du, ddelta, dA.to(A.dtype), reduce_bc(dB, b_vary, GBn, B_in),
        reduce_bc(dC, c_vary, GCn, C_in),
        dD.to(D.dtype) if D is not None else u.new_empty(0),
        dz,
        dbias.to(delta_bias.dtype) if delta_bias is not None else u.new_empty(0),
    )


@scan_bwd.register_fake
def _(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, states, dlast, tile,
      ypre=None):
    return (
        torch.empty_like(u, memory_format=torch.contiguous_format),
        torch.empty_like(delta, memory_format=torch.contiguous_format),
        torch.empty_like(A, memory_format=torch.contiguous_format),
        B.new_empty(B.shape), C.new_empty(C.shape),
        torch.empty_like(D) if D is not None else u.new_empty(0),
        torch.empty_like(z, memory_format=torch.contiguous_format) if z is not None else u.new_empty(0),
        torch.empty_like(delta_bias) if delta_bias is not None else u.new_empty(0),
    )


def _save(ctx, inputs, states, ypre) -> None:
    """Keep what the backward needs: the forward's 10 inputs, its tile states and y before
    the gate."""
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, tile = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, ypre)
    ctx.delta_softplus, ctx.tile = delta_softplus, tile


def _grads(ctx, bwd, dy, dlast) -> tuple:
    """The gradients of the forward's 10 inputs from what `_save` kept, by `bwd` (the custom
    op or `scan_bwd_impl`); None for absent optional inputs and the two flags."""
    u, delta, A, B, C, D, z, delta_bias, states, ypre = ctx.saved_tensors
    du, ddelta, dA, dB, dC, dD, dz, dbias = bwd(
        dy, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, states, dlast, ctx.tile,
        ypre if ypre.numel() else None)
    return (
        du, ddelta, dA, dB, dC,
        dD if D is not None else None,
        dz if z is not None else None,
        dbias if delta_bias is not None else None,
        None, None,
    )


def _setup_context(ctx, inputs, output):
    _save(ctx, inputs, output[2], output[3])


def _backward(ctx, dy, dlast, dstates, dypre):
    return _grads(ctx, torch.ops.seqsuite.scan_bwd, dy, dlast)


torch.library.register_autograd("seqsuite::scan_fwd", _backward, setup_context=_setup_context)


class _Scan(torch.autograd.Function):
    """The eager path: the same forward and backward as the custom ops, called directly
    (torch.compile keeps the ops). On the H200 machine's host the two paths measured alike
    within that host's noise (200-400 µs per forward call either way, benchmarks/
    probe_launch.py, RESULTS.md 2026-11-29 17:58 UTC); what the direct path adds is the
    inference forward of `selective_scan_triton`."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, tile):
        inputs = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, tile)
        y, last, states, ypre = scan_fwd_impl(*inputs)
        _save(ctx, inputs, states, ypre)
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        if dy is None:
            dy = torch.zeros_like(ctx.saved_tensors[0])
        return _grads(ctx, scan_bwd_impl, dy, dlast)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False):
    """Real-A selective scan through the Triton kernels (differentiable). Under torch.compile
    through the custom ops (no graph breaks); in eager mode through `_Scan` (the same
    functions, called directly), and without saving the backward's tile states when no
    input needs a gradient."""
    args = (u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), tile_for(A.shape[1]))
    if torch.compiler.is_compiling():
        y, last, _, _ = torch.ops.seqsuite.scan_fwd(*args)
    elif torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)):
        y, last = _Scan.apply(*args)
    else:
        y, last, _, _ = scan_fwd_impl(*args, save_states=False)
    return (y, last) if return_last_state else y
