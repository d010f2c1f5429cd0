"""`seqsuite bench scan`: time the selective-scan kernels on DESIGN §7's rows.

Each row runs the forward (the whole `selective_scan` call, no grad) and the backward (the
backward op alone, from saved forward states) with bf16 u/Δ/z/B/C, fp32 A/D/Δ-bias, z gating
and softplus, one group of time-varying B/C — the setting of the reference figures. Times
are medians of >= 50 runs timed with CUDA events after warm-up (triton.testing.do_bench,
which also clears the L2 between runs).

Floors (DESIGN §7): forward = max(bytes / 4.3 TB/s, exps / 4.2e12 /s) with bytes = u, Δ, z,
B, C read and y written once (2 bytes each) and one exp per (batch, dim, L, N). Backward:
bytes = u, Δ, z, dout, B, C read and du, dΔ, dz, dB, dC written once (2 bytes each), and
the same single exp per element (the recompute), so the same exp floor.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

# (batch, dim, L, N, ref fwd ms, ref bwd ms): DESIGN §7, mamba_ssm's CUDA kernel on the H200
ROWS = [
    (8, 1536, 2048, 16, 0.448, 1.752),
    (4, 2048, 8192, 16, 1.381, 4.764),
    (1, 256, 1048576, 16, 10.139, 26.301),
    (16, 128, 16384, 16, 0.699, 2.718),
    (2, 4096, 4096, 16, 0.602, 2.353),
    (8, 1536, 2048, 64, 1.494, 6.634),
]
COPY_BPS = 4.3e12
EXP_PER_S = 4.2e12


@dataclass
class BenchRow:
    batch: int
    dim: int
    L: int
    N: int
    fwd_ms: float
    bwd_ms: float
    fwd_floor_ms: float
    bwd_floor_ms: float
    ref_fwd_ms: float
    ref_bwd_ms: float

    @property
    def fwd_speedup(self) -> float:
        return self.ref_fwd_ms / self.fwd_ms

    @property
    def bwd_speedup(self) -> float:
        return self.ref_bwd_ms / self.bwd_ms


def floors_ms(batch: int, dim: int, L: int, N: int) -> tuple[float, float]:
    """(forward floor, backward floor) in ms, as the module docstring defines them."""
    exp_ms = batch * dim * L * N / EXP_PER_S * 1e3
    fwd_bytes = (4 * batch * dim * L + 2 * batch * N * L) * 2
    bwd_bytes = (7 * batch * dim * L + 4 * batch * N * L) * 2
    return max(fwd_bytes / COPY_BPS * 1e3, exp_ms), max(bwd_bytes / COPY_BPS * 1e3, exp_ms)


def make_inputs(batch: int, dim: int, L: int, N: int, device="cuda", dtype=None, seed=0):
    """Random inputs of the benchmark setting (bf16 activations, realistic Δ and A)."""
    import torch

    dtype = dtype or torch.bfloat16
    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, dt=dtype):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.float32).to(dt)

    u, delta, z = rnd(batch, dim, L), rnd(batch, dim, L) * 0.5, rnd(batch, dim, L)
    B, C = rnd(batch, N, L), rnd(batch, N, L)
    A = -torch.arange(1, N + 1, device=device, dtype=torch.float32).repeat(dim, 1)
    D = rnd(dim, dt=torch.float32)
    dt0 = torch.exp(torch.rand(dim, generator=g, device=device) * (math.log(0.1) - math.log(1e-3))
                    + math.log(1e-3))
    bias = dt0 + torch.log(-torch.expm1(-dt0))  # inverse softplus: softplus(bias) = dt0
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias)


def scan_args(x: dict) -> tuple:
    """`make_inputs`' tensors as the positional arguments of the scan ops (`scan_fwd_impl`,
    torch.ops.seqsuite.scan_fwd): softplus on, the kernels' tile for x's N."""
    from seqsuite.kernels.triton_scan import tile_for

    return (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True,
            tile_for(x["A"].shape[1]))


def _median_ms(fn, warmup: int = 10, reps: int = 100) -> float:
    """Median ms of about `reps` (>= 50) timed runs after about `warmup` untimed runs (and at
    least 200 ms of them, so that the GPU's clocks have left their idle state)."""
    import triton

    fn()
    est = triton.testing.do_bench(fn, warmup=1, rep=1, return_mode="median")
    return float(triton.testing.do_bench(fn, warmup=max(200.0, warmup * est),
                                         rep=max(50, reps) * 1.2 * est, return_mode="median"))


def bench_row(batch: int, dim: int, L: int, N: int, ref_fwd: float, ref_bwd: float,
              warmup: int = 10, reps: int = 100) -> BenchRow:
    """Time forward and backward of one row on the current CUDA device."""
    import torch

    args = scan_args(make_inputs(batch, dim, L, N))
    tile = args[9]
    # the eager functions that `selective_scan` runs when training (the forward saves the
    # tile states for the backward)
    from seqsuite.kernels.triton_scan import scan_bwd_impl as bwd
    from seqsuite.kernels.triton_scan import scan_fwd_impl as fwd
    with torch.no_grad():
        fwd_ms = _median_ms(lambda: fwd(*args), warmup, reps)
        y, _, states, ypre = fwd(*args)
        dout = torch.randn_like(y)
        bwd_ms = _median_ms(lambda: bwd(dout, *args[:9], states, None, tile, ypre), warmup,
                            reps)
    del args, y, states, ypre, dout
    torch.cuda.empty_cache()
    ff, bf = floors_ms(batch, dim, L, N)
    return BenchRow(batch, dim, L, N, fwd_ms, bwd_ms, ff, bf, ref_fwd, ref_bwd)


def bench_scan(out: str | None = None, rows=None, warmup: int = 10, reps: int = 100) -> list[dict]:
    """Run the §7 rows (or `rows`: list of (batch, dim, L, N, ref_fwd_ms, ref_bwd_ms)), print a
    table, write JSON to `out` if given, and return one dict per row.

    `warmup`: untimed runs first; `reps`: timed runs per median (at least 50)."""
    import torch

    if not torch.cuda.is_available():
        from seqsuite.errors import UserError

        raise UserError("bench scan needs a CUDA GPU: run it on a machine with one")
    import seqsuite.kernels.triton_scan  # noqa: F401  (registers the ops)

    results = []
    header = (f"{'batch':>5} {'dim':>5} {'L':>8} {'N':>3} | {'fwd ms':>8} {'x floor':>7} "
              f"{'vs ref':>6} | {'bwd ms':>8} {'x floor':>7} {'vs ref':>6}")
    print(header)
    print("-" * len(header))
    for r in rows or ROWS:
        row = bench_row(*r, warmup=warmup, reps=reps)
        d = asdict(row) | {"fwd_speedup": row.fwd_speedup, "bwd_speedup": row.bwd_speedup,
                           "fwd_x_floor": row.fwd_ms / row.fwd_floor_ms,
                           "bwd_x_floor": row.bwd_ms / row.bwd_floor_ms}
        results.append(d)
        print(f"{row.batch:>5} {row.dim:>5} {row.L:>8} {row.N:>3} | {row.fwd_ms:8.3f} "
              f"{d['fwd_x_floor']:7.2f} {row.fwd_speedup:5.2f}x | {row.bwd_ms:8.3f} "
              f"{d['bwd_x_floor']:7.2f} {row.bwd_speedup:5.2f}x", flush=True)
    if out:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                "cfg": os.environ.get("SEQSUITE_SCAN_CFG", "default"), "rows": results}
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, out)
    return results
