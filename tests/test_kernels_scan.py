"""Triton selective-scan kernels vs the PyTorch reference, on CPU under TRITON_INTERPRET=1.

Tiny shapes (the interpreter is slow): values and every gradient against the float64
reference, for each B/C layout, odd L, N = 1 and N > 16, several chunks per sequence, the
gradient through the returned last state, the decode step, the dispatcher and torch.compile.
On a machine with CUDA these are skipped (tests/test_kernels_gpu.py runs them at real shapes).
"""
from __future__ import annotations

import pytest
import torch

from triton_interp import skip_on_gpu, use_interpreter

pytestmark = skip_on_gpu


@pytest.fixture(autouse=True)
def triton_backend(monkeypatch):
    from seqsuite.kernels import triton_fwd, triton_scan

    use_interpreter(triton_fwd._fwd_kernel)

    monkeypatch.setenv("SEQSUITE_SCAN_BACKEND", "triton")
    monkeypatch.setattr(triton_scan, "CONFIG", triton_scan.ScanConfig(tile=16))
    yield triton_scan


def make(batch, dim, L, N, layout="vary", G=1, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x = dict(u=r(batch, dim, L), delta=r(batch, dim, L) * 0.5, A=-torch.rand(dim, N, generator=g) * 2 - 0.1,
             D=r(dim), z=r(batch, dim, L), delta_bias=r(dim) * 0.3)
    if layout == "vary":
        x["B"], x["C"] = r(batch, N, L), r(batch, N, L)
    elif layout == "group":
        x["B"], x["C"] = r(batch, G, N, L), r(batch, G, N, L)
    elif layout == "mixed":  # time-invariant B, grouped C
        x["B"], x["C"] = r(dim, N), r(batch, G, N, L)
    else:
        x["B"], x["C"] = r(dim, N), r(dim, N)
    for k in ("u", "delta", "z"):
        x[k] = x[k].to(dtype)
    return x


ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def run_both(x, softplus=True, with_last=True, drop=()):
    """Forward + backward through `selective_scan` (triton) and the float64 reference."""
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    out = {}
    for name, fn, cast in (("tri", selective_scan, lambda t: t),
                           ("ref", selective_scan_ref, lambda t: t.double())):
        args = {k: (None if k in drop else cast(x[k]).detach().clone().requires_grad_()) for k in ORDER}
        y, last = fn(**args, delta_softplus=softplus, return_last_state=True)
        gen = torch.Generator().manual_seed(1)
        gy = torch.randn(y.shape, generator=gen)
        gl = torch.randn(last.shape, generator=gen) if with_last else torch.zeros(last.shape)
        ((y.double() * gy.double()).sum() + (last.double() * gl.double()).sum()).backward()
        out[name] = (y, last, {k: a.grad for k, a in args.items() if a is not None})
    return out


def up(t):
    """t in double precision: complex128 for a complex tensor, float64 otherwise."""
    return t.to(torch.complex128) if t.is_complex() else t.double()


def rel(a, b):
    """‖a − b‖ / ‖b‖ in double precision (real or complex tensors)."""
    a, b = up(a), up(b)
    return ((a - b).abs().norm() / b.abs().norm().clamp_min(1e-30)).item()


def check(out, tol=2e-5, gtol=2e-5):
    (y, last, g), (yr, lr, gr) = out["tri"], out["ref"]
    assert y.dtype == out["tri"][0].dtype
    assert rel(y, yr) < tol, rel(y, yr)
    assert rel(last, lr) < tol
    for k in gr:
        assert g[k] is not None, k
        assert g[k].shape == gr[k].shape and g[k].dtype != torch.float64, k
        assert rel(g[k], gr[k]) < gtol, (k, rel(g[k], gr[k]))


@pytest.mark.parametrize(
    "shape,layout,G,chunk_tiles",
    [
        ((2, 4, 37, 3), "vary", 1, 0),      # odd L, one chunk
        ((2, 4, 37, 3), "vary", 1, 1),      # three chunks of one tile
        ((1, 6, 45, 5), "group", 2, 2),     # grouped B/C (group size 3: one channel a program)
        ((2, 3, 20, 1), "inv", 1, 1),       # time-invariant B/C, N = 1
        ((1, 4, 40, 4), "mixed", 2, 1),     # time-invariant B with grouped C
        ((1, 2, 33, 20), "vary", 1, 1),     # N > 16
    ],
)
@pytest.mark.parametrize("fwd", ["tile", "seq"])
def test_scan_matches_reference(triton_backend, shape, layout, G, chunk_tiles, fwd):
    triton_backend.CONFIG.chunk_tiles = chunk_tiles
    triton_backend.CONFIG.fwd = fwd
    triton_backend.CONFIG.bd_seq = 4  # several channel blocks at these tiny dims
    check(run_both(make(*shape, layout=layout, G=G)))


@pytest.mark.parametrize("fwd", ["tile", "seq"])
def test_scan_without_optional_inputs(triton_backend, fwd):
    triton_backend.CONFIG.chunk_tiles = 1
    triton_backend.CONFIG.fwd = fwd
    x = make(1, 3, 30, 4)
    check(run_both(x, softplus=False, with_last=False, drop=("D", "z", "delta_bias")))


@pytest.mark.parametrize("fwd", ["tile", "seq"])
def test_scan_half_inputs_and_noncontiguous(triton_backend, fwd):
    triton_backend.CONFIG.fwd = fwd
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    x = make(2, 4, 24, 4, dtype=torch.float16)
    # non-contiguous views of the same values
    x["u"] = x["u"].transpose(1, 2).contiguous().transpose(1, 2)
    x["B"] = x["B"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not x["u"].is_contiguous()
    y = selective_scan(**x, delta_softplus=True)
    yr = selective_scan_ref(**{k: v.double() if v.dtype == torch.float16 else v for k, v in x.items()},
                            delta_softplus=True)
    assert y.dtype == torch.float16
    assert rel(y, yr) < 2e-3


@pytest.mark.parametrize("fwd", ["tile", "seq"])
def test_forward_keeps_y_before_the_gate(triton_backend, fwd):
    """`scan_fwd`'s fourth output is y before the SiLU(z) gate (what the backward reads for
    dz): the y of the same call without z; empty without z."""
    triton_backend.CONFIG.chunk_tiles = 1
    triton_backend.CONFIG.fwd = fwd
    triton_backend.CONFIG.bd_seq = 4
    x = make(2, 5, 37, 4)
    args = [x[k] for k in ORDER]
    y, _, _, ypre = torch.ops.seqsuite.scan_fwd(*args, True, 16)
    args[6] = None
    y_nz, _, _, empty = torch.ops.seqsuite.scan_fwd(*args, True, 16)
    assert ypre.shape == y.shape and empty.numel() == 0
    torch.testing.assert_close(ypre, y_nz)
    torch.testing.assert_close(y, ypre * torch.nn.functional.silu(x["z"]))


def make_complex(batch, dim, L, N, layout, seed=0):
    """Inputs with a complex A (S4D-like: negative real part, spread imaginary part) and B/C
    laid out as `layout`: "vary" / "group" / "inv" complex, "vary-real" (real B and C),
    "mixed" (real time-invariant B, complex grouped C)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    c = lambda *s: torch.complex(r(*s), r(*s))  # noqa: E731
    x = dict(u=r(batch, dim, L), delta=r(batch, dim, L) * 0.5,
             A=torch.complex(-torch.rand(dim, N, generator=g) * 2 - 0.1, r(dim, N) * 3),
             D=r(dim), z=r(batch, dim, L), delta_bias=r(dim) * 0.3)
    x["B"], x["C"] = {
        "vary": lambda: (c(batch, N, L), c(batch, N, L)),
        "vary-real": lambda: (r(batch, N, L), r(batch, N, L)),
        "group": lambda: (c(batch, 3, N, L), c(batch, 3, N, L)),
        "inv": lambda: (c(dim, N), c(dim, N)),
        "mixed": lambda: (r(dim, N), c(batch, 1, N, L)),
    }[layout]()
    return x


def run_both_complex(x, softplus=True):
    """`run_both` for complex inputs: the loss reads y and the complex last state, and every
    gradient (complex ones in PyTorch's convention) is compared."""
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    out = {}
    for name, fn, cast in (("tri", selective_scan, lambda t: t), ("ref", selective_scan_ref, up)):
        args = {k: (cast(v).detach().clone().requires_grad_() if v is not None else None)
                for k, v in x.items()}
        y, last = fn(**args, delta_softplus=softplus, return_last_state=True)
        gen = torch.Generator().manual_seed(1)
        gy = torch.randn(y.shape, generator=gen)
        gl = torch.view_as_complex(torch.randn(last.shape + (2,), generator=gen))
        loss = (y.double() * gy.double()).sum() + (up(last) * gl.conj().to(torch.complex128)).real.sum()
        loss.backward()
        out[name] = (y, last, {k: a.grad for k, a in args.items() if a is not None})
    return out


def check_complex(out, tol=2e-5):
    (y, last, g), (yr, lr, gr) = out["tri"], out["ref"]
    assert last.dtype == torch.complex64
    assert rel(y, yr) < tol, rel(y, yr)
    assert rel(last, lr) < tol, rel(last, lr)
    for k in gr:
        assert g[k] is not None and g[k].shape == gr[k].shape, k
        assert g[k].is_complex() == gr[k].is_complex(), k
        assert rel(g[k], gr[k]) < tol, (k, rel(g[k], gr[k]))


@pytest.mark.parametrize("shape,layout", [
    ((2, 3, 37, 3), "vary"),        # odd L
    ((2, 3, 37, 3), "vary-real"),   # complex A, real B and C
    ((1, 6, 20, 2), "group"),       # grouped B/C (3 groups of 2 channels)
    ((2, 4, 21, 1), "inv"),         # time-invariant complex B/C (S4D), N = 1
    ((1, 4, 40, 4), "mixed"),       # real time-invariant B, complex grouped C
    ((1, 2, 17, 20), "vary"),       # N > 16
])
@pytest.mark.parametrize("chunk_tiles", [1, 1000])
def test_complex_scan_matches_reference(triton_backend, shape, layout, chunk_tiles):
    """Chunks of one tile (summaries, the carry across chunks, forward and backward) and one
    chunk a sequence."""
    from seqsuite.kernels import backend_for

    triton_backend.CONFIG.chunk_tiles = chunk_tiles
    x = make_complex(*shape, layout)
    assert backend_for(x["u"], x["A"], x["B"], x["C"]) == "triton"
    check_complex(run_both_complex(x))


def test_complex_scan_without_optional_inputs(triton_backend):
    x = make_complex(2, 3, 19, 2, "inv")
    for k in ("D", "z", "delta_bias"):
        x[k] = None
    check_complex(run_both_complex(x, softplus=False))


def test_complex_scan_no_grad_saves_nothing(triton_backend):
    """Without gradients the forward keeps two tiles' states, not every tile's: same y."""
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    x = make_complex(2, 3, 50, 3, "vary")
    with torch.no_grad():
        y, last = selective_scan(**x, delta_softplus=True, return_last_state=True)
    yr, lr = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    assert rel(y, yr) < 2e-5 and rel(last, lr) < 2e-5


def test_s4_complex_scan_path_matches_fft(triton_backend):
    """The S4 layer's scan path (complex A, B, C through the Triton kernels) against its
    FFT path, values and parameter gradients."""
    from seqsuite.core.s4 import S4

    torch.manual_seed(0)
    layer = S4(4, d_state=6, mode="complex")
    x, z = torch.randn(2, 4, 30), torch.randn(2, 4, 30)
    outs = []
    for backend in ("fft", "scan"):
        layer.zero_grad()
        layer.backend = backend
        y = layer(x, z)
        y.square().sum().backward()
        outs.append((y.detach(), {n: p.grad.clone() for n, p in layer.named_parameters()}))
    (y1, g1), (y2, g2) = outs
    torch.testing.assert_close(y2, y1, rtol=1e-4, atol=1e-5)
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], rtol=1e-3, atol=1e-5)


def test_backend_env(monkeypatch):
    from seqsuite.kernels import backend_for

    u, A = torch.zeros(1, 1, 1), torch.zeros(1, 1)
    monkeypatch.setenv("SEQSUITE_SCAN_BACKEND", "auto")
    assert backend_for(u, A, A, A) == "cpu"  # real CPU tensors
    assert backend_for(u, A.to(torch.complex64), A, A) == "reference"  # complex: not cpu_scan
    monkeypatch.setenv("SEQSUITE_SCAN_BACKEND", "triton")
    assert backend_for(u, A, A, A) == "triton"
    assert backend_for(u, A.to(torch.complex64), A, A) == "triton"  # triton_complex.py
    assert backend_for(u.double(), A, A, A) == "reference"
    monkeypatch.setenv("SEQSUITE_SCAN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="SEQSUITE_SCAN_BACKEND"):
        backend_for(u, A, A, A)


@pytest.mark.parametrize("layout", ["shared", "group", "invariant"])
def test_decode_matches_reference(triton_backend, layout):
    from seqsuite.kernels import selective_state_update
    from seqsuite.kernels.reference import selective_state_update_ref

    batch, dim, N = 3, 6, 5
    g = torch.Generator().manual_seed(2)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    state = r(batch, dim, N)
    x, dt, z = r(batch, dim), r(batch, dim), r(batch, dim)
    A, D, bias = -torch.rand(dim, N, generator=g), r(dim), r(dim)
    if layout == "shared":
        B, C = r(batch, N), r(batch, N)
    elif layout == "group":
        B, C = r(batch, 2, N), r(batch, 2, N)
    else:
        B, C = r(dim, N).expand(batch, dim, N), r(dim, N).expand(batch, dim, N)
    s1, s2 = state.clone(), state.clone()
    for _ in range(3):  # a few steps: the state must evolve in place
        y1 = selective_state_update(s1, x, dt, A, B, C, D, z, bias, True)
        y2 = selective_state_update_ref(s2, x, dt, A, B, C, D, z, bias, True)
        torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["shared", "group", "invariant", "real"])
def test_complex_decode_matches_reference(triton_backend, layout):
    """The decode step with a complex64 state (complex A; complex or real B, C) in place."""
    from seqsuite.kernels import selective_state_update
    from seqsuite.kernels.reference import selective_state_update_ref

    batch, dim, N = 3, 6, 5
    g = torch.Generator().manual_seed(4)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    c = lambda *s: torch.complex(r(*s), r(*s))  # noqa: E731
    state = c(batch, dim, N)
    x, dt, z = r(batch, dim), r(batch, dim), r(batch, dim)
    A = torch.complex(-torch.rand(dim, N, generator=g), r(dim, N))
    D, bias = r(dim), r(dim)
    B, C = {"shared": lambda: (c(batch, N), c(batch, N)),
            "group": lambda: (c(batch, 2, N), c(batch, 2, N)),
            "invariant": lambda: (c(dim, N).expand(batch, dim, N), c(dim, N).expand(batch, dim, N)),
            "real": lambda: (r(batch, N), r(batch, N))}[layout]()
    s1, s2 = state.clone(), state.clone()
    for _ in range(3):
        y1 = selective_state_update(s1, x, dt, A, B, C, D, z, bias, True)
        y2 = selective_state_update_ref(s2, x, dt, A, B, C, D, z, bias, True)
        torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cplx", [False, True])
def test_scan_step_equals_parallel(triton_backend, cplx):
    """Decoding step by step gives the parallel scan's outputs and last state (real states,
    and complex64 ones)."""
    from seqsuite.kernels import selective_scan, selective_state_update

    x = make_complex(2, 4, 9, 3, "vary") if cplx else make(2, 4, 9, 3)
    y, last = selective_scan(**x, delta_softplus=True, return_last_state=True)
    state = torch.zeros(2, 4, 3, dtype=torch.complex64 if cplx else torch.float32)
    for t in range(9):
        yt = selective_state_update(state, x["u"][..., t], x["delta"][..., t], x["A"],
                                    x["B"][..., t], x["C"][..., t], x["D"], x["z"][..., t],
                                    x["delta_bias"], True)
        torch.testing.assert_close(yt, y[..., t], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state, last, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cplx", [False, True])
def test_torch_compile_fullgraph(triton_backend, cplx):
    """The custom ops (real and complex states) trace without graph breaks (fake kernels for
    forward and backward)."""
    from seqsuite.kernels import selective_scan

    x = make_complex(1, 2, 16, 2, "inv") if cplx else make(1, 2, 16, 2)
    args = {k: v.clone().requires_grad_() for k, v in x.items()}

    def f(**kw):
        return selective_scan(**kw, delta_softplus=True).square().sum()

    loss = torch.compile(f, fullgraph=True, backend="aot_eager")(**args)
    loss.backward()
    eager = {k: v.clone().requires_grad_() for k, v in x.items()}
    torch.testing.assert_close(loss, f(**eager))
    f(**eager).backward()
    for k in args:
        torch.testing.assert_close(args[k].grad, eager[k].grad)


def test_gluon_forward_plan():
    """The Gluon forward's launch plan on a 132-SM GPU (pure Python): DESIGN §7's wide rows run
    unchunked with 4 states per thread, the narrow long rows are chunked (8 states per thread)
    until the grid has 48 warps per SM, N = 64 takes 8 warps of 8 states."""
    from seqsuite.kernels.triton_scan import ScanConfig, gluon_plan

    cfg = ScanConfig()
    assert gluon_plan(cfg, 8, 1536, 2048, 16, 132) == (4, 4, 128, 1)
    assert gluon_plan(cfg, 2, 4096, 4096, 16, 132) == (4, 4, 256, 1)
    assert gluon_plan(cfg, 8, 1536, 2048, 64, 132) == (8, 8, 128, 1)
    NS, warps, ct, nc = gluon_plan(cfg, 1, 256, 1 << 20, 16, 132)
    assert (NS, warps) == (8, 2) and nc * 8 * warps > 0.9 * 48 * 132 and ct * nc >= (1 << 20) // 16
    NS, warps, ct, nc = gluon_plan(cfg, 16, 128, 16384, 16, 132)
    assert (NS, warps) == (8, 2) and (nc - 1) * ct < 1024 <= nc * ct
    assert gluon_plan(cfg, 1, 32, 16, 1, 132) == (1, 1, 1, 1)  # one tile: nothing to split


def test_gluon_forward_lookback_policy():
    """The chunked forward runs in one launch where a chunk has 32 programs or more (the
    default), always at 2, never at 0."""
    from dataclasses import replace

    from seqsuite.kernels.triton_scan import CONFIG, use_lookback

    assert use_lookback(CONFIG, 64) and not use_lookback(CONFIG, 8)
    assert use_lookback(replace(CONFIG, lookback_gluon=2), 8)
    assert not use_lookback(replace(CONFIG, lookback_gluon=0), 64)


def test_gluon_backward_plan():
    """The Gluon backward runs unchunked where the grid has programs_per_sm programs per SM
    (DESIGN §7 rows 1, 2 and 5), splits smaller grids into whole waves of chunks (rows 3 and
    4) whose summaries run on sub-chunks that tile each chunk, holds 16 states at a time (N =
    64: four groups), and leaves N > 64 to the tile backward."""
    from dataclasses import replace

    from seqsuite.kernels.triton_scan import ScanConfig, gluon_bwd_plan

    cfg = replace(ScanConfig(), programs_per_sm_bwd_gluon=1, summary_programs_per_sm_bwd_gluon=6)
    assert gluon_bwd_plan(cfg, 8, 1536, 2048, 16, 132) == (2, 8, 128, 1, 128)
    assert gluon_bwd_plan(cfg, 2, 4096, 4096, 16, 132) == (2, 8, 256, 1, 256)
    # 128 programs of 4096 tiles; summaries: 7 sub-chunks per chunk (896 programs)
    assert gluon_bwd_plan(cfg, 1, 256, 1 << 20, 16, 132) == (2, 8, 4102, 16, 586)
    assert gluon_bwd_plan(cfg, 16, 128, 16384, 16, 132) == (2, 8, 518, 2, 74)
    assert gluon_bwd_plan(cfg, 8, 1536, 2048, 64, 132) == (2, 8, 128, 1, 128)
    assert gluon_bwd_plan(cfg, 8, 1536, 2048, 4, 132)[:2] == (2, 2)
    assert gluon_bwd_plan(cfg, 8, 1536, 2048, 65, 132) is None
    for pps in (1, 2, 3):
        for spps in (1, 6, 50):
            c = replace(cfg, programs_per_sm_bwd_gluon=pps, summary_programs_per_sm_bwd_gluon=spps)
            for batch, dim, L in ((1, 256, 1 << 20), (16, 128, 16384), (1, 32, 40), (3, 64, 5000)):
                NS, warps, ct, nc, cs = gluon_bwd_plan(c, batch, dim, L, 16, 132)
                n_tiles, programs = -(-L // 16), batch * -(-dim // 32)
                assert (NS, warps) == (2, 8)
                assert (nc - 1) * ct < n_tiles <= nc * ct  # every chunk has a tile
                assert programs * nc <= max(pps * 132, programs)
                assert ct % cs == 0 and 1 <= cs <= ct  # chunks are whole sub-chunks
    assert gluon_bwd_plan(cfg, 1, 32, 40, 16, 132)[2:4] == (1, 3)  # no more chunks than tiles


def test_gluon_backward_summary_shape():
    """The backward's chunk summaries hold the main pass's 16-state group in 2 warps of 8
    states (N >= 16), all of a smaller N in one warp; the states per group stay those of the
    main pass (GS = NS x warps)."""
    from dataclasses import replace

    from seqsuite.kernels.triton_scan import ScanConfig, gluon_bwd_plan, gluon_bwd_summary_shape

    cfg = ScanConfig()
    for N, want in ((16, (8, 2)), (64, (8, 2)), (24, (8, 2)), (4, (4, 1)), (1, (1, 1))):
        NS, warps = gluon_bwd_plan(cfg, 1, 256, 1 << 20, N, 132)[:2]
        NP = 1 << (N - 1).bit_length()
        NSs, Ws = gluon_bwd_summary_shape(cfg, NS, warps, NP)
        assert (NSs, Ws) == want and NSs * Ws == NS * warps, N
    # ns_summary = the main pass's NS: the main pass's shape
    assert gluon_bwd_summary_shape(replace(cfg, ns_summary_bwd_gluon=2), 2, 8, 16) == (2, 8)


def test_gluon_backward_reexp_policy():
    """exp(ΔA) is recomputed in the reverse pass on unchunked grids with N <= 16 by default
    (measured faster there, slower on chunked rows); 0 and 2 force it off and on."""
    from dataclasses import replace

    from seqsuite.kernels.triton_scan import ScanConfig, reexp_bwd

    cfg = ScanConfig()
    assert reexp_bwd(cfg, 1, 16) and reexp_bwd(cfg, 1, 8)
    assert not reexp_bwd(cfg, 4, 16) and not reexp_bwd(cfg, 1, 64)
    assert not any(reexp_bwd(replace(cfg, reexp_bwd_gluon=0), c, n) for c in (1, 4) for n in (16, 64))
    assert all(reexp_bwd(replace(cfg, reexp_bwd_gluon=2), c, n) for c in (1, 4) for n in (16, 64))


def test_config_cache_follows_environment_and_fields(monkeypatch):
    """`_config()` is cached, but an environment override or a field changed in place (as the
    tests and benchmark sweeps do) must show at the next call."""
    from seqsuite.kernels import triton_scan

    monkeypatch.setattr(triton_scan, "CONFIG", triton_scan.ScanConfig())
    monkeypatch.delenv("SEQSUITE_SCAN_EVEN", raising=False)
    assert triton_scan._config().even_gluon == 1
    monkeypatch.setenv("SEQSUITE_SCAN_EVEN", "0")
    assert triton_scan._config().even_gluon == 0
    monkeypatch.delenv("SEQSUITE_SCAN_EVEN")
    assert triton_scan._config().even_gluon == 1
    triton_scan.CONFIG.fast_launch = 0
    assert triton_scan._config().fast_launch == 0
    monkeypatch.setenv("SEQSUITE_SCAN_BWD_GLUON", "2,2,6,0,1,4")
    cfg = triton_scan._config()
    assert (cfg.ns_summary_bwd_gluon, cfg.reexp_bwd_gluon, cfg.fast_launch) == (4, 1, 0)


def test_plain_python_cdiv_and_pow2_match_triton():
    import triton

    from seqsuite.kernels.triton_scan import _cdiv, _pow2

    for a in (1, 2, 15, 16, 17, 1000, 1 << 20):
        assert _pow2(a) == triton.next_power_of_2(a)
        for b in (1, 16, 32):
            assert _cdiv(a, b) == triton.cdiv(a, b)


def test_gluon_even_policy():
    """The unmasked (EVEN) variant of the Gluon kernels runs only where no load or store would
    need a mask: L a multiple of the tile, dim of the 32-channel programs, N a power of two."""
    from dataclasses import replace

    from seqsuite.kernels.triton_scan import ScanConfig, gluon_even

    cfg = ScanConfig()
    assert gluon_even(cfg, 1536, 2048, 16, 16) and gluon_even(cfg, 128, 16384, 64, 16)
    assert not gluon_even(cfg, 1536, 2047, 16, 16)   # a partial last tile
    assert not gluon_even(cfg, 48, 2048, 16, 16)     # a partial channel block
    assert not gluon_even(cfg, 1536, 2048, 24, 16)   # states past N in the last group
    assert not gluon_even(replace(cfg, even_gluon=0), 1536, 2048, 16, 16)


@pytest.mark.parametrize("P,G,dtype", [(8, 1, torch.float32), (6, 3, torch.bfloat16),
                                        (4, 2, torch.float16)])
def test_sum_parts_matches_torch(P, G, dtype):
    """The backward's dB/dC partial sums (batch, programs, N, L) summed per group and cast in
    one kernel, against torch's sum then cast; N x L not a multiple of the block."""
    from seqsuite.kernels import triton_bwd
    from seqsuite.kernels.triton_scan import sum_parts

    use_interpreter(triton_bwd._sum_parts_kernel)
    X = torch.randn(2, P, 3, 1000, generator=torch.Generator().manual_seed(0))
    out = sum_parts(X, G, dtype, fast=False)
    ref = X.view(2, G, P // G, 3, 1000).sum(2)
    assert out.shape == (2, G, 3, 1000) and out.dtype == dtype
    assert torch.allclose(out.float(), ref.to(dtype).float(), rtol=1e-2 if dtype != torch.float32
                          else 1e-6, atol=1e-5)


def test_sum_parts_policy():
    """The one-pass partial-sum kernel only for grids of 4+ programs per SM (it lost on rows
    1, 2 and 5 of DESIGN §7, gained on rows 3 and 4)."""
    from seqsuite.kernels.triton_scan import sum_parts_fits

    assert sum_parts_fits(1, 16 * (1 << 20), 132) and sum_parts_fits(16, 16 * 16384, 132)
    assert not sum_parts_fits(8, 16 * 2048, 132) and not sum_parts_fits(2, 16 * 4096, 132)


def test_gluon_pack_policy():
    """16-bit tiles go as int32 pairs only in the EVEN variant and only where every 16-bit
    tensor is 4-byte aligned with even strides (fp32 tensors and absent ones do not count)."""
    from seqsuite.kernels.triton_scan import gluon_pack

    u = torch.zeros(2, 64, 32, dtype=torch.bfloat16)
    f = torch.zeros(2, 64, 32)
    assert gluon_pack(True, u, u, None, f)
    assert not gluon_pack(False, u)
    odd = torch.zeros(2, 64, 33, dtype=torch.bfloat16)[..., 1:]  # 2-byte offset, odd strides
    assert not gluon_pack(True, u, odd)
    assert not gluon_pack(True, torch.zeros(2, 64, 34, dtype=torch.bfloat16)[..., 1:33])
    assert gluon_pack(True, torch.zeros(2, 64, 34, dtype=torch.bfloat16)[..., 2:34])
    assert gluon_pack(True, torch.zeros(2, 64, 33)[..., 1:])  # fp32: no pairs to load


def test_async_copy_policies():
    """The backward's cp.async paths: tile-start states per `async_h_bwd_gluon` (2 always, 1
    where the state was read a tile ahead: REEXP or no incoming adjoint, 0 never); the input
    tiles (`async_in_bwd_gluon`, on by default) only with them, in the EVEN variant, at most
    8 warps and bf16 (4-byte aligned) or fp32 tiles, so that every copy is 4 bytes or more."""
    from dataclasses import replace

    from seqsuite.kernels.triton_scan import CONFIG, async_h_bwd, async_in_bwd

    for a, want in ((2, [True] * 4), (1, [True, True, False, True]), (0, [False] * 4)):
        cfg = replace(CONFIG, async_h_bwd_gluon=a)
        got = [async_h_bwd(cfg, reexp, has_r) for reexp, has_r in
               ((True, True), (False, False), (False, True), (True, False))]
        assert got == want, (a, got)
    b = torch.zeros(2, 64, 32, dtype=torch.bfloat16)
    f = torch.zeros(2, 64, 32)
    on = replace(CONFIG, async_in_bwd_gluon=1)
    assert async_in_bwd(on, True, True, 8, b, b, f, None)
    assert not async_in_bwd(on, False, True, 8, b, b, b, b)  # states not copied
    assert not async_in_bwd(on, True, False, 8, b, b, b, b)  # masked variant
    assert not async_in_bwd(on, True, True, 16, b, b, b, b)  # 1 value a thread: 2 bytes
    assert not async_in_bwd(on, True, True, 8, b, b.half(), b, b)  # fp16: no pairs
    odd = torch.zeros(2, 64, 33, dtype=torch.bfloat16)[..., 1:]
    assert not async_in_bwd(on, True, True, 8, b, odd, b, b)  # 2-byte aligned
    assert not async_in_bwd(replace(on, async_in_bwd_gluon=0), True, True, 8, b, b, b, b)


def test_gluon_sass_tool_compiles_the_kernels_for_sm90():
    """benchmarks/gluon_sass.py compiles the Gluon kernels for sm_90 without a GPU (the
    bundled ptxas) and reports registers and the tile loop; its figures back the kernel
    notes, so it must keep working."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this triton has no bundled ptxas")
    tool = Path(__file__).resolve().parent.parent / "benchmarks" / "gluon_sass.py"
    counts = {}
    for args in (["fwd"], ["fwd", "--even"], ["bwd", "--summary", "--chunked"],
                 ["fwd", "--lookback", "--ns", "8"]):
        out = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        head, loop = out.stdout.strip().splitlines()
        assert re.search(r"\d+ registers, spills \d+ B stored", head), head
        counts[" ".join(args)] = int(re.search(r"tile loop: (\d+) SASS", loop).group(1))
        assert counts[" ".join(args)] > 0, loop
    # the unmasked variant drops the masks' compares and selects from the tile loop
    assert counts["fwd --even"] < counts["fwd"]
    # --scoreboards: the backward's register prefetches leave loop waits on a scoreboard
    # shared with a global load (ptxas 12.x bundled with the pinned triton); with every input
    # tile and the tile-start state copied by cp.async (IN_ASYNC) none are left
    waits = {}
    for extra in ([], ["--hasync", "--inasync"]):
        out = subprocess.run([sys.executable, str(tool), "bwd", "--chunked", "--reexp", "0",
                              "--even", "--scoreboards", *extra], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        waits[bool(extra)] = int(re.search(r"global load: (\d+)", out.stdout).group(1))
    assert waits[False] >= 1 and waits[True] == 0, waits
