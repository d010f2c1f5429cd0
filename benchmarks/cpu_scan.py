"""CPU training scan vs the closed-form reference: forward + backward time on this machine.

    python benchmarks/cpu_scan.py [--shape 8,96,1024,16] [--reps 3]

Prints the median wall time of forward + backward (softplus, time-varying B/C, z gating) for
the sequential CPU scan (`seqsuite.kernels.cpu_scan`) and the closed-form reference at its
default chunk and at chunk 4 (the fastest closed form on CPU).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqsuite.kernels.cpu_scan import selective_scan_cpu
from seqsuite.kernels.reference import DEFAULT_CHUNK, selective_scan_ref


def time_fwd_bwd(fn, args, reps: int) -> float:
    times = []
    for _ in range(reps):
        for a in args.values():
            a.grad = None
        t = time.perf_counter()
        fn(**args, delta_softplus=True).sum().backward()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="8,96,1024,16", help="batch,dim,L,N")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    b, d, L, N = map(int, a.shape.split(","))
    g = torch.Generator().manual_seed(0)
    args = dict(u=torch.randn(b, d, L, generator=g), delta=torch.randn(b, d, L, generator=g),
                A=-torch.rand(d, N, generator=g), B=torch.randn(b, N, L, generator=g),
                C=torch.randn(b, N, L, generator=g), z=torch.randn(b, d, L, generator=g))
    args = {k: v.requires_grad_() for k, v in args.items()}
    print(f"shape batch={b} dim={d} L={L} N={N}, {torch.get_num_threads()} threads, median of {a.reps}")
    cpu = time_fwd_bwd(selective_scan_cpu, args, a.reps)
    print(f"cpu scan (sequential, chunk 64)      {cpu:8.3f} s")
    for chunk in (DEFAULT_CHUNK, 4):
        ref = time_fwd_bwd(lambda **kw: selective_scan_ref(**kw, chunk_size=chunk), args, a.reps)
        print(f"reference (closed form, chunk {chunk:>2})   {ref:8.3f} s   ({ref / cpu:.1f}x the cpu scan)")


if __name__ == "__main__":
    main()
