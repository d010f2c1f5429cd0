"""Probe (issue 4): the Gluon forward of chosen rows timed as `bench scan` times it, with and
without the tile-start states and y before the gate that the backward reads
(save_states=True / False), under the current SEQSUITE_SCAN_* environment. --rows takes
0-based indices of the table (3 is (16, 128, 16384, 16)).

    python benchmarks/fwd_save_probe.py --rows 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="3")
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("fwd_save_probe.py times the Gluon forward: run it on a machine with a CUDA GPU")
    from seqsuite.cli.bench_scan import ROWS, _median_ms, make_inputs, scan_args
    from seqsuite.kernels.triton_scan import scan_fwd_impl

    for r in (int(x) for x in a.rows.split(",")):
        batch, dim, L, N = ROWS[r][:4]
        args = scan_args(make_inputs(batch, dim, L, N))
        with torch.no_grad():
            t = [_median_ms(lambda: scan_fwd_impl(*args, save_states=s)) for s in (True, False)]
        print(f"row {r} ({batch}, {dim}, {L}, {N}): fwd {t[0]:.3f} ms saving states, "
              f"{t[1]:.3f} ms without", flush=True)


if __name__ == "__main__":
    main()
