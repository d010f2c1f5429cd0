"""Python time of the Gluon scan launchers without a GPU: `_scan_fwd_gluon` and
`_scan_bwd_gluon` on CPU tensors of a tiny shape with the kernel launches stubbed out (and a
132-SM device assumed), so what is timed is the launchers' own Python (planning, buffers,
argument tuples), not Triton's launch or CUDA's allocation.

    python benchmarks/launcher_overhead.py
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from seqsuite.cli.bench_scan import make_inputs  # noqa: E402
from seqsuite.kernels import triton_scan as T  # noqa: E402

ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def per_call_us(fn, n: int = 3000) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    T._sm_count = lambda device: 132
    T._launch = lambda *args, **kwargs: None
    x = make_inputs(1, 32, 64, 16, device="cpu")
    args = [x[k] for k in ORDER]
    states = torch.zeros(1, 4, 16, 32)
    dy = torch.randn_like(args[0])
    fwd = per_call_us(lambda: T._scan_fwd_gluon(T._config(), *args, True, 16))
    bwd = per_call_us(lambda: T._scan_bwd_gluon(T._config(), dy, *args, True, states, None, 16))
    print(f"launcher Python per call (no launch): forward {fwd:.1f} µs, backward {bwd:.1f} µs")


if __name__ == "__main__":
    main()
