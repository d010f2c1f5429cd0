"""Where the host time of a scan call goes: cProfile over forward and backward calls at a
tiny shape (the GPU idles; everything measured is the Python launch path).

    python benchmarks/probe_host.py [--calls 300] [--top 30]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from probe_launch import calls  # noqa: E402  (torch.ops: the dispatcher included)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--shape", default="1,32,64,16")
    a = p.parse_args()
    import seqsuite.kernels.triton_scan  # noqa: F401  (registers the ops)

    with torch.no_grad():
        for name, fn in zip(("fwd", "bwd"), calls(*(int(v) for v in a.shape.split(",")))):
            for _ in range(10):
                fn()
            torch.cuda.synchronize()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(a.calls):
                fn()
            prof.disable()
            torch.cuda.synchronize()
            s = io.StringIO()
            st = pstats.Stats(prof, stream=s)
            print(f"== {name}: {st.total_tt / a.calls * 1e6:.1f} us per call (profiled)")
            st.sort_stats("tottime").print_stats(a.top)
            print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:6000])


if __name__ == "__main__":
    main()
