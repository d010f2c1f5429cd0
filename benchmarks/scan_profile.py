"""Run one DESIGN §7 row's forward and backward a few times (a target for ncu).

ncu --clock-control none -k "regex:_fwd_gluon_kernel|_bwd_gluon_kernel|_fwd_kernel|_bwd_kernel" \
    -c 2 --section SpeedOfLight python benchmarks/scan_profile.py --row 0
(the Gluon kernels on CUDA; the plain-Triton ones where those do not apply)
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from seqsuite.cli.bench_scan import ROWS, make_inputs, scan_args  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--row", type=int, default=0)
    p.add_argument("--iters", type=int, default=2)
    a = p.parse_args()
    batch, dim, L, N = ROWS[a.row][:4]
    args = scan_args(make_inputs(batch, dim, L, N))
    for _ in range(a.iters):
        y, _, states, ypre = torch.ops.seqsuite.scan_fwd(*args)
        torch.ops.seqsuite.scan_bwd(torch.ones_like(y), *args[:9], states, None, args[9], ypre)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
