"""Per-kernel GPU time of DESIGN §7 rows (or other shapes), forward and backward, from the
torch profiler: which of a call's kernels (chunk summary, carry, main pass, partial-sum
reductions) its time goes to.

    python benchmarks/probe_kernels.py --rows 2,3
    SEQSUITE_SCAN_GLUON=4,6,4,12 python benchmarks/probe_kernels.py --shapes 16,128,16384,16
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from seqsuite.cli.bench_scan import ROWS, make_inputs, scan_args  # noqa: E402


def kernel_times(batch: int, dim: int, L: int, N: int, iters: int) -> dict:
    """{(direction, kernel name): mean µs per call} over `iters` forward and backward calls."""
    args = scan_args(make_inputs(batch, dim, L, N))
    fwd, bwd = torch.ops.seqsuite.scan_fwd, torch.ops.seqsuite.scan_bwd
    y, _, states, ypre = fwd(*args)
    dy = torch.randn_like(y)
    for _ in range(3):  # compile and warm up
        fwd(*args)
        bwd(dy, *args[:9], states, None, args[9], ypre)
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CUDA]
    out = collections.defaultdict(float)
    for direction, fn in (("fwd", lambda: fwd(*args)),
                          ("bwd", lambda: bwd(dy, *args[:9], states, None, args[9], ypre))):
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(iters):
                fn()
            torch.cuda.synchronize()
        for ev in prof.key_averages():
            t = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
            if t and ev.count:
                out[(direction, ev.key[:60])] += t / iters
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default=None, help="row indices of DESIGN §7's table, e.g. 2,3")
    p.add_argument("--shapes", default=None, help='"batch,dim,L,N;..."')
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    shapes = [ROWS[int(i)][:4] for i in a.rows.split(",")] if a.rows else []
    if a.shapes:
        shapes += [tuple(int(v) for v in s.split(",")) for s in a.shapes.split(";")]
    for shape in shapes or [r[:4] for r in ROWS]:
        print(f"== batch, dim, L, N = {shape}", flush=True)
        times = kernel_times(*shape, a.iters)
        for direction in ("fwd", "bwd"):
            rows = sorted(((t, k) for (d, k), t in times.items() if d == direction), reverse=True)
            total = sum(t for t, _ in rows)
            print(f"  {direction} {total / 1e3:8.3f} ms in kernels")
            for t, k in rows:
                print(f"    {t / 1e3:8.3f} ms  {k}")


if __name__ == "__main__":
    main()
