"""Summarise ncu's per-SASS-instruction source page (CSV) of one kernel launch: where the
warps' stall samples fall, by reason, by opcode and by instruction, and shared memory's
wavefronts per opcode against the ideal count.

The CSV comes from `SRC="row;kernel;skip" bash benchmarks/gpu_round5.sh` (ncu's
SourceCounters section, `ncu -i REPORT --page source --print-source sass --csv`); gzip'd
files are read as they are:

    python benchmarks/ncu_source.py benchmarks/results/2026-11-29l-h200/call2/src-row3-_fwd_gluon-1-sass.csv.gz

This is how the two stalls fixed on 2026-11-29 (l) were found: a byte permute (PRMT) that
unpacked bf16 values right after their prefetch (19 % of the samples of row 4's forward
main pass) and the backward's load of the tile-start state (9 % of row 3's main pass).
"""
from __future__ import annotations

import argparse
import collections
import csv
import gzip
import io


def _num(x: str) -> float:
    try:
        return float(x.replace(",", ""))
    except ValueError:
        return 0.0


def load(path: str) -> tuple[list[str], list[dict]]:
    raw = gzip.open(path, "rt") if path.endswith(".gz") else open(path)
    with raw as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    # row 0 names the kernel, row 1 holds the column names
    hdr = rows[1]
    return hdr, [dict(zip(hdr, r)) for r in rows[2:] if len(r) >= len(hdr) - 1]


def opcode(src: str) -> str:
    parts = src.split()
    if not parts:
        return ""
    return parts[1] if parts[0].startswith("@") and len(parts) > 1 else parts[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv")
    p.add_argument("--top", type=int, default=12, help="instructions listed by samples")
    a = p.parse_args()
    hdr, data = load(a.csv)
    reasons = [c for c in hdr if c.startswith("stall_") and "Not Issued" not in c]
    samples = "Warp Stall Sampling (All Samples)"
    total = sum(_num(d[samples]) for d in data) or 1.0

    by_reason = collections.Counter()
    for d in data:
        for c in reasons:
            by_reason[c] += _num(d[c])
    print(f"stall samples {total:.0f}: " + ", ".join(
        f"{k[6:]} {v / total * 100:.1f} %" for k, v in by_reason.most_common(8)))

    by_op = collections.defaultdict(lambda: [0.0, 0.0])
    for d in data:
        o = opcode(d["Source"].strip())
        by_op[o][0] += _num(d["Instructions Executed"])
        by_op[o][1] += _num(d[samples])
    n_inst = sum(v[0] for v in by_op.values()) or 1.0
    print("\nopcode: share of executed instructions / of stall samples")
    for o, (n, s) in sorted(by_op.items(), key=lambda kv: -kv[1][1])[:14]:
        print(f"  {o:24s} {n / n_inst * 100:5.1f} % / {s / total * 100:5.1f} %")

    print("\ninstructions drawing the most samples (index in the CSV, top reason)")
    ranked = sorted(range(len(data)), key=lambda i: -_num(data[i][samples]))[:a.top]
    for i in ranked:
        d = data[i]
        r = max(reasons, key=lambda c: _num(d[c]))
        print(f"  {i:5d} {d['Source'].strip()[:56]:56s} {_num(d[samples]) / total * 100:5.1f} % "
              f"({r[6:]})")

    shared = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for d in data:
        w = _num(d.get("L1 Wavefronts Shared", "0"))
        if w:
            s = shared[opcode(d["Source"].strip())]
            s[0] += _num(d["Instructions Executed"])
            s[1] += w
            s[2] += _num(d.get("L1 Wavefronts Shared Ideal", "0"))
    if shared:
        print("\nshared memory: opcode, instructions, wavefronts (ideal), wavefronts per instruction")
        for o, (n, w, wi) in sorted(shared.items(), key=lambda kv: -kv[1][1]):
            print(f"  {o:10s} {n:14,.0f} {w:14,.0f} ({wi:,.0f}) {w / max(n, 1):5.2f}")


if __name__ == "__main__":
    main()
