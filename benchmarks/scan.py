"""Selective-scan benchmark (DESIGN §7 rows): python benchmarks/scan.py [--out f.json].

--cfg takes one or more kernel configurations "bd_fwd,bd_bwd,tile,warps_fwd,warps_bwd" and
runs the table once per configuration (a sweep; SEQSUITE_SCAN_CFG is set for each).
--rows picks rows by index (0-based) of the table; --shapes "batch,dim,L,N;..." times other
shapes (no reference figure: the ratio columns read nan).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from seqsuite.cli.bench_scan import ROWS, bench_scan  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=None, help="JSON file (one per --cfg: suffixed)")
    p.add_argument("--rows", default=None, help="comma-separated row indices, e.g. 0,2")
    p.add_argument("--shapes", default=None, help='"batch,dim,L,N;batch,dim,L,N"')
    p.add_argument("--cfg", nargs="*", default=[None])
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--reps", type=int, default=100)
    a = p.parse_args()
    rows = [ROWS[int(i)] for i in a.rows.split(",")] if a.rows else None
    if a.shapes:
        nan = float("nan")
        rows = (rows or []) + [(*(int(v) for v in s.split(",")), nan, nan)
                               for s in a.shapes.split(";")]
    for cfg in a.cfg:
        if cfg:
            os.environ["SEQSUITE_SCAN_CFG"] = cfg
        print(f"\n== config {cfg or 'default'}", flush=True)
        out = a.out
        if out and len(a.cfg) > 1:
            out = out.replace(".json", f"-{(cfg or 'default').replace(',', '_')}.json")
        bench_scan(out, rows=rows, warmup=a.warmup, reps=a.reps)


if __name__ == "__main__":
    main()
