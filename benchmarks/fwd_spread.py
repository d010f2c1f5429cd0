"""Spread of one DESIGN §7 row's forward time within and across processes.

Forward row 1 read 0.229 ms in some processes and 0.26-0.40 ms in others (RESULTS.md,
2026-11-29 17:00 UTC), steady within a process. This times the row `--medians` times in one
process, each median on freshly allocated inputs (`--fresh`) or on the same ones, to tell
an address-dependent cause from a per-process one. Run it in several processes:

    for i in 1 2 3 4; do python3 benchmarks/fwd_spread.py --row 0 --fresh; done
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--row", type=int, default=0)
    p.add_argument("--medians", type=int, default=4)
    p.add_argument("--fresh", action="store_true", help="new input tensors for every median")
    p.add_argument("--addresses", action="store_true",
                   help="print each median with the buffers' addresses (MiB, mod 64 MiB)")
    a = p.parse_args()
    import seqsuite.kernels.triton_scan  # noqa: F401  (registers the ops)
    from seqsuite.cli.bench_scan import ROWS, _median_ms, make_inputs
    from seqsuite.kernels.triton_scan import tile_for

    batch, dim, L, N, *_ = ROWS[a.row]
    out = []
    x = None
    keep = []
    for i in range(a.medians):
        if x is None or a.fresh:
            keep.append(torch.empty(int(1e6) * (i + 1), device="cuda"))  # shift the allocation
            x = make_inputs(batch, dim, L, N, seed=i)
        args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"],
                True, tile_for(N))
        with torch.no_grad():
            out.append(_median_ms(lambda: torch.ops.seqsuite.scan_fwd(*args), 10, 50))
            if a.addresses:
                y, _, states, _ = torch.ops.seqsuite.scan_fwd(*args)
                bufs = dict(u=x["u"], dt=x["delta"], z=x["z"], B=x["B"], C=x["C"], y=y,
                            states=states)
                mib = " ".join(f"{k}={(t.data_ptr() % (64 << 20)) / (1 << 20):.3f}"
                               for k, t in bufs.items())
                print(f"  {out[-1]:.3f} ms  {mib}", flush=True)
                del y, states
    print(f"row {a.row} fwd ms: " + " ".join(f"{v:.3f}" for v in out), flush=True)


if __name__ == "__main__":
    main()
