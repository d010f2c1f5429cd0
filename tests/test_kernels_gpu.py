"""Triton selective scan on a CUDA GPU at real shapes (skipped without CUDA).

Tolerances, relative error ‖x − ref‖ / ‖ref‖ against the float64 reference on the same
(rounded) inputs: float32 inputs 1e-4 for y and 1e-3 for gradients; bf16 inputs 1e-2 for
y and 2e-2 for gradients (dominated by rounding the outputs du, dΔ, dz, y to bf16).
Run: pytest -q -m gpu tests/test_kernels_gpu.py
"""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make(batch, dim, L, N, layout="vary", G=1, dtype=torch.float32, seed=0):
    from seqsuite.cli.bench_scan import make_inputs

    x = make_inputs(batch, dim, L, N, dtype=dtype, seed=seed)
    g = torch.Generator(device="cuda").manual_seed(seed + 1)
    A = -torch.rand(dim, N, generator=g, device="cuda") * 4 - 0.05  # random real A, not only -n
    x["A"] = A
    if layout == "group":
        x["B"] = torch.randn(batch, G, N, L, device="cuda", generator=g).to(dtype)
        x["C"] = torch.randn(batch, G, N, L, device="cuda", generator=g).to(dtype)
    elif layout == "inv":
        x["B"] = torch.randn(dim, N, device="cuda", generator=g)
        x["C"] = torch.randn(dim, N, device="cuda", generator=g)
    return x


def up(t):
    """t in double precision: complex128 for a complex tensor, float64 otherwise."""
    return t.to(torch.complex128) if t.is_complex() else t.double()


def rel(a, b):
    """‖a − b‖ / ‖b‖ in double precision (real or complex tensors)."""
    a, b = up(a), up(b)
    return ((a - b).abs().norm() / b.abs().norm().clamp_min(1e-30)).item()


def run_both(x):
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    out = {}
    for name, fn, cast in (("tri", selective_scan, lambda t: t),
                           ("ref", selective_scan_ref, lambda t: t.double())):
        args = {k: cast(x[k]).detach().clone().requires_grad_() for k in ORDER}
        y, last = fn(**args, delta_softplus=True, return_last_state=True)
        g = torch.Generator(device="cuda").manual_seed(3)
        gy = torch.randn(y.shape, device="cuda", generator=g)
        gl = torch.randn(last.shape, device="cuda", generator=g)
        ((y.double() * gy.double()).sum() + (last.double() * gl.double()).sum()).backward()
        out[name] = (y, last, {k: a.grad for k, a in args.items()})
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,layout,G",
    [
        ((2, 256, 2048, 16), "vary", 1),
        ((2, 256, 1000, 16), "group", 4),   # odd-ish L, grouped
        ((1, 64, 4097, 16), "inv", 1),      # time-invariant, L not a multiple of the tile
        ((2, 128, 2048, 64), "vary", 1),    # N = 64
        ((1, 32, 3000, 1), "vary", 1),      # N = 1, few channels: many chunks
        ((3, 48, 777, 16), "vary", 1),      # dim not a multiple of the 32-channel programs
        ((2, 64, 1000, 24), "group", 2),    # N = 24: two groups of 16 states, 8 masked
    ],
)
def test_gpu_scan_matches_reference(shape, layout, G, dtype):
    out = run_both(make(*shape, layout=layout, G=G, dtype=dtype))
    (y, last, g), (yr, lr, gr) = out["tri"], out["ref"]
    tol, gtol = (1e-4, 1e-3) if dtype == torch.float32 else (1e-2, 2e-2)
    assert y.dtype == dtype
    assert rel(y, yr) < tol and rel(last, lr) < 1e-4
    for k in ORDER:
        assert rel(g[k], gr[k]) < gtol, (k, rel(g[k], gr[k]))


@pytest.mark.parametrize("cfg", [
    dict(fwd="gluon", min_warps_per_sm_gluon=10**6),  # always chunked (8 states per thread)
    dict(fwd="gluon", min_warps_per_sm_gluon=10**6, ns_chunked_gluon=4),
    dict(fwd="gluon", min_warps_per_sm_gluon=0, ns_gluon=2),  # never chunked, 8 warps at N = 16
    dict(fwd="gluon", min_warps_per_sm_gluon=10**6, lookback_gluon=2),  # chunked, one launch
    dict(fwd="gluon", min_warps_per_sm_gluon=10**6, lookback_gluon=2, lookback_lead_gluon=0),
    dict(fwd="gluon", min_warps_per_sm_gluon=10**6, lookback_gluon=0),  # chunked, 3 launches
    dict(fwd="gluon", min_warps_per_sm_gluon=0, ns_gluon=16),  # all 16 states in one warp
    dict(fwd="tile", bwd="tile"),
    dict(bwd="gluon", ns_bwd_gluon=4),           # backward: 4 states per thread, 4 warps
    dict(bwd="gluon", ns_bwd_gluon=1),           # backward: one state per thread
    dict(bwd="gluon", reexp_bwd_gluon=2),        # backward: REEXP on chunked grids too
    dict(bwd="gluon", async_h_bwd_gluon=0),      # backward: tile-start states into registers
                                                 # (a tile ahead unchunked, else at the tile)
    dict(bwd="gluon", async_h_bwd_gluon=0, reexp_bwd_gluon=2),  # ... a tile ahead, chunked
    dict(bwd="gluon", async_in_bwd_gluon=0),     # backward: input tiles as register prefetches
    dict(bwd="gluon", ypre_bwd_gluon=0),         # backward: y recomputed, not read (dz)
    dict(even_gluon=0),                          # masked loads and stores on whole tiles too
])
@pytest.mark.parametrize(
    "shape,layout,G",
    [
        ((2, 256, 2048, 16), "vary", 1),
        ((2, 256, 1000, 16), "group", 4),
        ((1, 64, 4097, 16), "inv", 1),
        ((2, 128, 2048, 64), "vary", 1),
        ((1, 32, 3000, 1), "vary", 1),
    ],
)
def test_gpu_forward_kernels(monkeypatch, cfg, shape, layout, G):
    """Each forward kernel and tuning (the Gluon kernel chunked or not, other layouts; the
    plain-Triton tile kernel) against the float64 reference, bf16, with every gradient (the
    backward reads the forward's saved tile states)."""
    from dataclasses import replace

    from seqsuite.kernels import triton_scan

    monkeypatch.setattr(triton_scan, "CONFIG", replace(triton_scan.CONFIG, **cfg))
    out = run_both(make(*shape, layout=layout, G=G, dtype=torch.bfloat16))
    (y, last, g), (yr, lr, gr) = out["tri"], out["ref"]
    assert rel(y, yr) < 1e-2 and rel(last, lr) < 1e-4
    for k in ORDER:
        assert rel(g[k], gr[k]) < 2e-2, (k, rel(g[k], gr[k]))


@pytest.mark.parametrize("shape", [(2, 256, 2048, 16), (16, 128, 4096, 16), (3, 48, 777, 16),
                                   (1, 256, 65536, 16)])
def test_gpu_forward_kernels_keep_y_before_the_gate(shape):
    """The Gluon forward's fourth output (unchunked, chunked, masked) is y before the SiLU(z)
    gate: the y of the same call without z; the backward reads it for dz."""
    import seqsuite.kernels.triton_scan  # noqa: F401  (registers the ops)

    x = make(*shape, dtype=torch.bfloat16)
    args = [x[k] for k in ORDER]
    y, _, _, ypre = torch.ops.seqsuite.scan_fwd(*args, True, 16)
    args[6] = None
    y_nz, _, _, empty = torch.ops.seqsuite.scan_fwd(*args, True, 16)
    assert ypre.shape == y.shape and ypre.dtype == y.dtype and empty.numel() == 0
    assert rel(ypre, y_nz) < 1e-3
    assert rel(y, ypre.float() * torch.nn.functional.silu(x["z"].float())) < 1e-2


@pytest.mark.parametrize("shape", [(16, 128, 4096, 16), (1, 256, 65536, 16), (3, 48, 777, 16)])
def test_gpu_forward_kernels_lookback_matches_three_launches(monkeypatch, shape):
    """The chunked forward in one launch (ticketed summaries and main passes, start states by
    look-back) gives the three-launch forward's y, last state, tile states and y before the
    gate (the chunk carry is combined in another order: to rounding)."""
    from dataclasses import replace

    from seqsuite.kernels import triton_scan

    x = make(*shape, dtype=torch.bfloat16)
    args = [x[k] for k in ORDER] + [True, 16]
    cfg = replace(triton_scan.CONFIG, fwd="gluon", min_warps_per_sm_gluon=10**6)
    out = {}
    for lb in (0, 2):
        monkeypatch.setattr(triton_scan, "CONFIG", replace(cfg, lookback_gluon=lb))
        out[lb] = torch.ops.seqsuite.scan_fwd(*args)
    for name, a, b in zip(("y", "last", "states", "ypre"), out[0], out[2]):
        assert a.shape == b.shape, name
        assert rel(b, a) < (1e-2 if a.dtype == torch.bfloat16 else 1e-5), (name, rel(b, a))


@pytest.mark.parametrize("async_in", [0, 1])
@pytest.mark.parametrize("layout,G,dim", [("vary", 1, 1536), ("group", 2, 1536), ("inv", 1, 1536),
                                          ("vary", 1, 1520)])
def test_gpu_backward_kernels_agree_unchunked(monkeypatch, layout, G, dim, async_in):
    """The Gluon backward against the plain-Triton one on a grid wide enough not to be split
    into chunks and without a last-state gradient (the benchmark's path), float32; also with
    the input tiles copied by cp.async (async_in: its first GPU run failed here, inv layout,
    on a race in the first tile)."""
    from dataclasses import replace

    from seqsuite.kernels import triton_scan

    monkeypatch.setattr(triton_scan, "CONFIG",
                        replace(triton_scan.CONFIG, async_in_bwd_gluon=async_in))

    x = make(8, dim, 512, 16, layout=layout, G=G, dtype=torch.float32)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True, 16)
    y, _, states, ypre = torch.ops.seqsuite.scan_fwd(*args)
    dout = torch.randn_like(y)
    out = {}
    for kind in ("gluon", "tile"):
        monkeypatch.setattr(triton_scan, "CONFIG", replace(triton_scan.CONFIG, bwd=kind))
        out[kind] = torch.ops.seqsuite.scan_bwd(dout, *args[:9], states, None, 16, ypre)
    for name, a, b in zip(("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dbias"),
                          out["gluon"], out["tile"]):
        assert a.shape == b.shape, name
        assert rel(a, b) < 1e-4, (name, rel(a, b))


@pytest.mark.parametrize("shape", [(2, 256, 2048, 16), (1, 64, 4097, 16), (16, 128, 4096, 16)])
def test_gpu_inference_path_matches_training_forward(shape):
    """Without gradients the scan skips the backward's tile states (and torch's dispatcher):
    y and the last state must be those of the training forward, bit for bit (unchunked,
    masked and chunked grids)."""
    from seqsuite.kernels import selective_scan

    x = make(*shape, dtype=torch.bfloat16)
    with torch.no_grad():
        y0, last0 = selective_scan(**x, delta_softplus=True, return_last_state=True)
    xg = {k: v.clone().requires_grad_() for k, v in x.items()}
    y1, last1 = selective_scan(**xg, delta_softplus=True, return_last_state=True)
    assert torch.equal(y0, y1.detach()) and torch.equal(last0, last1.detach())
    y2, _, states, _ = torch.ops.seqsuite.scan_fwd(*(x[k] for k in ORDER), True, 16)
    assert torch.equal(y0, y2) and states.shape[1] == -(-shape[2] // 16)


def test_gpu_misaligned_16bit_inputs():
    """bf16 inputs that the EVEN variant cannot load as int32 pairs (a 2-byte offset and odd
    strides: `gluon_pack` refuses) give the same values and gradients as their contiguous
    copies, which it loads as pairs."""
    from seqsuite.kernels import selective_scan

    x = make(2, 256, 2048, 16, dtype=torch.bfloat16)
    odd = {}
    for k, v in x.items():
        if v.dim() == 3:  # u, delta, z, B, C: views at a 2-byte offset with odd strides
            w = torch.empty(v.shape[:-1] + (v.shape[-1] + 1,), device="cuda", dtype=v.dtype)
            w[..., 1:] = v
            odd[k] = w[..., 1:]
        else:
            odd[k] = v
    outs = []
    for inp in (x, odd):
        args = {k: v.detach().clone() if v.is_contiguous() else v.detach() for k, v in inp.items()}
        for v in args.values():
            v.requires_grad_()
        y, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
        (y.float().square().sum() + last.sum()).backward()
        outs.append((y, last, [args[k].grad for k in ORDER]))
    (y0, l0, g0), (y1, l1, g1) = outs
    assert rel(y1, y0) < 1e-6 and rel(l1, l0) < 1e-6
    for k, a, b in zip(ORDER, g1, g0):
        assert rel(a, b) < 1e-5, (k, rel(a, b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,layout", [
    ((2, 256, 2048, 16), "vary"),       # complex time-varying B/C
    ((4, 128, 4096, 32), "inv"),        # S4D: complex time-invariant B/C, 32 complex states
    ((2, 96, 1000, 8), "group"),        # grouped, L not a multiple of the tile
    ((1, 64, 3000, 16), "vary-real"),   # complex A with real B/C
])
def test_gpu_complex_scan_matches_reference(shape, layout, dtype):
    """Complex states (triton_complex.py) at real shapes: y, the last state and every gradient
    against the float64 reference (tolerances as in the module docstring)."""
    from seqsuite.kernels import backend_for, selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    batch, dim, L, N = shape
    g = torch.Generator(device="cuda").manual_seed(0)

    def r(*s):
        return torch.randn(*s, device="cuda", generator=g)

    def c(*s):
        return torch.complex(r(*s), r(*s))

    A = torch.complex(-torch.rand(dim, N, device="cuda", generator=g) * 2 - 0.05, r(dim, N) * 3)
    B, C = {"vary": lambda: (c(batch, N, L), c(batch, N, L)),
            "inv": lambda: (c(dim, N), c(dim, N)),
            "group": lambda: (c(batch, 4, N, L), c(batch, 4, N, L)),
            "vary-real": lambda: (r(batch, N, L).to(dtype), r(batch, N, L).to(dtype))}[layout]()
    x = dict(u=r(batch, dim, L).to(dtype), delta=(r(batch, dim, L) * 0.5).to(dtype), A=A, B=B,
             C=C, D=r(dim), z=r(batch, dim, L).to(dtype), delta_bias=r(dim) * 0.3 - 3.0)
    assert backend_for(x["u"], A, B, C) == "triton"

    out = {}
    for name, fn, cast in (("tri", selective_scan, lambda t: t), ("ref", selective_scan_ref, up)):
        args = {k: cast(v).detach().clone().requires_grad_() for k, v in x.items()}
        y, last = fn(**args, delta_softplus=True, return_last_state=True)
        gg = torch.Generator(device="cuda").manual_seed(3)
        gy = torch.randn(y.shape, device="cuda", generator=gg)
        gl = torch.view_as_complex(torch.randn(last.shape + (2,), device="cuda", generator=gg))
        ((y.double() * gy.double()).sum() + (up(last) * gl.conj().to(torch.complex128)).real.sum()
         ).backward()
        out[name] = (y, last, {k: a.grad for k, a in args.items()})
    (y, last, gt), (yr, lr, gr) = out["tri"], out["ref"]
    tol, gtol = (1e-4, 1e-3) if dtype == torch.float32 else (1e-2, 2e-2)
    assert y.dtype == dtype and last.dtype == torch.complex64
    assert rel(y, yr) < tol and rel(last, lr) < 1e-4
    for k in gr:
        assert rel(gt[k], gr[k]) < gtol, (k, rel(gt[k], gr[k]))


def check_in_segments(x, L, seg):
    """`selective_scan` on x (length L) against the float64 reference run in segments of seg
    steps carrying the state: y to 1e-2 and the last state to 1e-4, relative."""
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    y, last = selective_scan(**x, delta_softplus=True, return_last_state=True)
    h = None
    err, norm = 0.0, 0.0
    for lo in range(0, L, seg):
        part = {k: up(v[..., lo:lo + seg] if v.dim() == 3 else v) for k, v in x.items()}
        yr, h = selective_scan_ref(**part, delta_softplus=True, return_last_state=True,
                                   initial_state=h, chunk_size=64)
        err += (y[..., lo:lo + seg].double() - yr).square().sum().item()
        norm += yr.square().sum().item()
    assert (err / norm) ** 0.5 < 1e-2
    assert rel(last, h) < 1e-4


def test_gpu_long_sequence_batch1():
    """Batch 1, L = 2^20 (the §7 row): y and the last state against the float64 reference run
    in segments of 2^16 steps carrying the state."""
    L, seg = 1 << 20, 1 << 16
    x = make(1, 256, L, 16, dtype=torch.bfloat16)
    check_in_segments(x, L, seg)


def test_gpu_complex_long_sequence_batch1():
    """Complex states, batch 1, L = 2^20 (chunked over L): y and the last state against the
    float64 reference run in segments of 2^16 steps carrying the state."""
    L, seg, dim, N = 1 << 20, 1 << 16, 64, 8
    g = torch.Generator(device="cuda").manual_seed(5)

    def r(*s):
        return torch.randn(*s, device="cuda", generator=g)

    x = dict(u=r(1, dim, L).bfloat16(), delta=(r(1, dim, L) * 0.5).bfloat16(),
             A=torch.complex(-torch.rand(dim, N, device="cuda", generator=g) - 0.05, r(dim, N)),
             B=torch.complex(r(dim, N), r(dim, N)), C=torch.complex(r(dim, N), r(dim, N)),
             D=r(dim), z=r(1, dim, L).bfloat16(), delta_bias=r(dim) * 0.3 - 3.0)
    check_in_segments(x, L, seg)


def test_gpu_decode_and_cuda_graph():
    from seqsuite.kernels import selective_state_update
    from seqsuite.kernels.reference import selective_state_update_ref

    batch, dim, N = 64, 1536, 16
    x = {k: torch.randn(batch, dim, device="cuda") for k in ("x", "dt", "z")}
    A = -torch.rand(dim, N, device="cuda") * 4
    B, C = torch.randn(batch, N, device="cuda"), torch.randn(batch, N, device="cuda")
    D, bias = torch.randn(dim, device="cuda"), torch.randn(dim, device="cuda")
    state = torch.randn(batch, dim, N, device="cuda")
    s_ref = state.clone()
    y = selective_state_update(state, x["x"], x["dt"], A, B, C, D, x["z"], bias, True)
    yr = selective_state_update_ref(s_ref, x["x"], x["dt"], A, B, C, D, x["z"], bias, True)
    torch.testing.assert_close(y, yr, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(state, s_ref, rtol=1e-4, atol=1e-4)
    # capture one step in a CUDA graph and replay it
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        selective_state_update(state, x["x"], x["dt"], A, B, C, D, x["z"], bias, True)  # warm-up
        with torch.cuda.graph(graph, stream=stream):
            yg = selective_state_update(state, x["x"], x["dt"], A, B, C, D, x["z"], bias, True)
    torch.cuda.synchronize()
    selective_state_update_ref(s_ref, x["x"], x["dt"], A, B, C, D, x["z"], bias, True)  # = warm-up
    graph.replay()
    torch.cuda.synchronize()
    yr = selective_state_update_ref(s_ref, x["x"], x["dt"], A, B, C, D, x["z"], bias, True)
    torch.testing.assert_close(state, s_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(yg, yr, rtol=1e-4, atol=1e-4)


def test_gpu_complex_decode_and_cuda_graph():
    """The decode step with a complex64 state (S4D-style, time-invariant complex B and C
    expanded over the batch) against the reference, and replayed in a CUDA graph."""
    from seqsuite.kernels import selective_state_update
    from seqsuite.kernels.reference import selective_state_update_ref

    batch, dim, N = 64, 256, 32

    def c(*s):
        return torch.complex(torch.randn(*s, device="cuda"), torch.randn(*s, device="cuda"))

    x = {k: torch.randn(batch, dim, device="cuda") for k in ("x", "dt", "z")}
    A = torch.complex(-torch.rand(dim, N, device="cuda") - 0.1, torch.randn(dim, N, device="cuda"))
    B, C = c(dim, N).expand(batch, dim, N), c(dim, N).expand(batch, dim, N)
    D, bias = torch.randn(dim, device="cuda"), torch.randn(dim, device="cuda")
    state = c(batch, dim, N)
    s_ref = state.clone()
    args = (x["x"], x["dt"], A, B, C, D, x["z"], bias, True)
    y = selective_state_update(state, *args)
    yr = selective_state_update_ref(s_ref, *args)
    torch.testing.assert_close(y, yr, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(state, s_ref, rtol=1e-4, atol=1e-4)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        selective_state_update(state, *args)  # warm-up
        with torch.cuda.graph(graph, stream=stream):
            yg = selective_state_update(state, *args)
    torch.cuda.synchronize()
    selective_state_update_ref(s_ref, *args)  # = warm-up
    graph.replay()
    torch.cuda.synchronize()
    yr = selective_state_update_ref(s_ref, *args)
    torch.testing.assert_close(state, s_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(yg, yr, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 1.0, 0), (0.8, 0.9, 0), (1.0, 1.0, 20), (0.0, 1.0, 0)])
def test_gpu_sampler_matches_reference(temperature, top_p, top_k):
    from seqsuite.kernels.reference import sample_ref
    from seqsuite.kernels.triton_sample import sample_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    logits = torch.randn(512, 256, device="cuda", generator=g) * 3
    u = torch.rand(512, 256, device="cuda", generator=g)
    out = torch.empty(512, dtype=torch.long, device="cuda")
    sample_triton(logits, out, temperature=temperature, top_p=top_p, top_k=top_k, uniforms=u)
    assert torch.equal(out, sample_ref(logits, u, temperature, top_p, top_k))
    # the in-kernel RNG: frequencies of 200k draws from one row against softmax
    row = logits[0]
    many = row.expand(200_000, 256).contiguous()
    draws = torch.empty(200_000, dtype=torch.long, device="cuda")
    sample_triton(many, draws, torch.tensor([11, 0], device="cuda"))
    freq = torch.bincount(draws, minlength=256).float() / draws.numel()
    assert (freq - torch.softmax(row, 0)).abs().max() < 5e-3


@pytest.mark.parametrize("preset", ["sc09-unet-small", "sc09-unet-large", "bytes-mamba-small"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_fused_stack_step(monkeypatch, preset, dtype):
    """The one-kernel stack step against the layers' own steps over 40 steps (all U-Net phases).
    float32: within 1e-4 (relative, logits). bf16: the per-layer path rounds every op to bf16 and
    the fused kernel computes in float32, so both are compared with a float32 run of the same
    weights and the fused error must not exceed the per-layer path's by more than 20%."""
    import copy

    from fused_steps import fused_and_layer_steps

    from seqsuite.core import build

    torch.manual_seed(0)
    ref32 = build(preset).cuda().eval()
    with torch.no_grad():
        for p in ref32.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model = copy.deepcopy(ref32).to(dtype)
    st_f, st_r, st_32 = model.allocate_state(4), model.allocate_state(4), ref32.allocate_state(4)
    toks = torch.randint(0, model.config.vocab_size, (40, 4), device="cuda")
    rel = lambda a, b: ((a.float() - b.float()).norm() / b.float().norm()).item()  # noqa: E731
    with torch.no_grad():
        for t, a, b in fused_and_layer_steps(monkeypatch, model, toks, st_f, st_r):
            if dtype == torch.float32:
                assert rel(a, b) < 1e-4, t
            else:
                truth = ref32.step(toks[t], st_32)
                assert rel(a, truth) <= 1.2 * rel(b, truth) + 1e-3, t


def test_gpu_chunked_graph_decoding():
    """Chunk graphs (K steps + in-kernel sampling per replay) give the eager path's greedy tokens,
    and sampled runs are a function of the seed."""
    from seqsuite.core import build
    from seqsuite.core.generate import generate

    torch.manual_seed(0)
    model = build("sc09-unet-small").cuda().eval()
    prompt = torch.randint(0, 256, (3, 5), device="cuda")
    with torch.no_grad():
        eager = generate(model, prompt, 150, temperature=0.0, use_cuda_graph=False, chunk=0)
        graphed = generate(model, prompt, 150, temperature=0.0)
        assert torch.equal(eager, graphed)
        runs = [generate(model, prompt, 150, top_p=0.9, generator=torch.Generator(device="cuda").manual_seed(s))
                for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_gpu_chunked_generate_cache_replays_its_graphs():
    """generate(cache=...) (audio generate's batches): the second call of one shape replays the
    first call's CUDA graphs on its reset state and returns what a fresh call returns."""
    from seqsuite.core import build
    from seqsuite.core.generate import generate

    torch.manual_seed(0)
    model = build("sc09-unet-small").cuda().eval()
    prompt = torch.full((2, 1), 128, device="cuda")
    gen = lambda s: torch.Generator(device="cuda").manual_seed(s)  # noqa: E731
    cache: dict = {}
    with torch.no_grad():
        fresh = [generate(model, prompt, 150, generator=gen(s)) for s in (1, 2)]
        first = generate(model, prompt, 150, generator=gen(1), cache=cache)
        decoder = cache["decoder"]
        second = generate(model, prompt, 150, generator=gen(2), cache=cache)
    assert cache["decoder"] is decoder and decoder.graphs  # reused, with its captured graphs
    assert torch.equal(first, fresh[0]) and torch.equal(second, fresh[1])


def test_gpu_unet_inner_levels_on_side_streams(monkeypatch):
    """Stepping a U-Net's inner levels on side streams (the default) gives bitwise the logits of
    stepping them on the main stream, eagerly and in chunk graphs (greedy tokens equal)."""
    from seqsuite.core import build
    from seqsuite.core.generate import generate

    torch.manual_seed(0)
    model = build("sc09-unet-small").cuda().eval()
    toks = torch.randint(0, 256, (40, 2), device="cuda")
    outs = {}
    with torch.no_grad():
        for flag in ("0", "1"):
            monkeypatch.setenv("SEQSUITE_OVERLAP_INNER", flag)
            st = model.allocate_state(2)
            outs[flag] = torch.stack([model.step(toks[t], st) for t in range(40)])
            outs[flag + "gen"] = generate(model, toks[:3].t(), 100, temperature=0.0)
    assert torch.equal(outs["0"], outs["1"])
    assert torch.equal(outs["0gen"], outs["1gen"])


@pytest.mark.parametrize("env", [
    {"SEQSUITE_FUSED_ONESHOT": "0", "SEQSUITE_FUSED_SPLIT": "0"},  # tiled, every stack
    {"SEQSUITE_FUSED_SPLIT": "2"},
    {"SEQSUITE_FUSED_SPLIT": "8"},
    {"SEQSUITE_FUSED_SPLIT": "16", "SEQSUITE_FUSED_SPLIT_WARPS": "4"},
    {"SEQSUITE_FUSED_SPLIT": "4", "SEQSUITE_FUSED_SPLIT_WARPS": "8"},
    {"SEQSUITE_FUSED_SPLIT": "16", "SEQSUITE_FUSED_SPLIT_PREFETCH": "0"},
    {"SEQSUITE_FUSED_SPLIT": "8", "SEQSUITE_FUSED_SPLIT_PREFETCH": "0", "SEQSUITE_FUSED_SPLIT_WARPS": "8"},
    {"SEQSUITE_FUSED_SPLIT": "8", "SEQSUITE_FUSED_SPLIT_BARRIER": "flags"},
    {"SEQSUITE_FUSED_SPLIT": "16", "SEQSUITE_FUSED_SPLIT_BARRIER": "flags", "SEQSUITE_FUSED_SPLIT_PREFETCH": "0"},
    {"SEQSUITE_FUSED_SPLIT": "8", "SEQSUITE_FUSED_SPLIT_BARRIER": "cluster-release"},
    {"SEQSUITE_FUSED_SPLIT": "2", "SEQSUITE_FUSED_SPLIT_BARRIER": "cluster-release",
     "SEQSUITE_FUSED_SPLIT_PREFETCH": "0"},
])
def test_gpu_fused_kernel_variants(monkeypatch, env):
    """Each fused-step kernel (tiled; split over 2, 8, 16 programs per sequence, whose barriers
    only a GPU can run: thread-block clusters by default on Hopper, flags, clusters with release
    arrivals) against the layers' own steps, float32, 24 steps at batch 3, on a U-Net of widths
    32/64/128 (every stack fused, whatever the width bound)."""
    from fused_steps import fused_and_layer_steps

    from seqsuite.core import build

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    torch.manual_seed(0)
    model = build("sc09-unet-small", d_model=32, n_layers=2).cuda().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    st_f, st_r = model.allocate_state(3), model.allocate_state(3)
    toks = torch.randint(0, 256, (24, 3), device="cuda")
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    with torch.no_grad():
        for t, a, b in fused_and_layer_steps(monkeypatch, model, toks, st_f, st_r):
            assert rel(a, b) < 1e-4, t


@pytest.mark.parametrize("barrier", ["cluster", "flags", "cluster-release"])
def test_gpu_fused_split_barriers_at_real_widths(monkeypatch, barrier):
    """The default split of sc09-unet-small's stacks (widths 64/128/256; on clusters 2, 8 and 16
    programs per sequence, with flags none, 8 and 32) at batch 1 and 2 under each barrier, 96
    steps each against the layers' own steps: a stress of the barriers with the real tiles."""
    from fused_steps import fused_and_layer_steps

    from seqsuite.core import build

    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT_BARRIER", barrier)
    torch.manual_seed(1)
    model = build("sc09-unet-small").cuda().eval()
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    for batch in (1, 2):
        st_f, st_r = model.allocate_state(batch), model.allocate_state(batch)
        toks = torch.randint(0, 256, (96, batch), device="cuda")
        with torch.no_grad():
            for t, a, b in fused_and_layer_steps(monkeypatch, model, toks, st_f, st_r):
                assert rel(a, b) < 1e-4, (batch, t)
