"""Compile the Gluon scan kernels for sm_90 on any machine (no GPU needed) and report what
the hardware will run: registers, spills and shared memory (the bundled ptxas), and the
SASS of the tile loop by opcode (the bundled cuobjdump).

The integer arguments are specialised as Triton's runtime does for DESIGN §7's row 1
(multiples of 16 marked divisible by 16, unit strides and a single chunk as constants);
without that the loads of Δ, u and z come out as one masked 2-byte load per element and the
counts mislead. `--chunked` keeps the chunk count a runtime value (rows 3 and 4).

    python benchmarks/gluon_sass.py fwd                  # forward, N = 16, 4 states per thread
    python benchmarks/gluon_sass.py bwd --N 64           # backward, N = 64 (four groups)
    python benchmarks/gluon_sass.py bwd --reexp 0 --maxnreg 128 --sass out.sass
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# compiled for real: under the interpreter triton.jit makes InterpretedFunctions (the
# reductions' combine functions among them), which the Gluon compiler cannot call (the CPU
# tests run this tool with TRITON_INTERPRET=1 in their environment)
os.environ.pop("TRITON_INTERPRET", None)

BF16_ARGS = {
    "fwd": ("u_ptr", "dt_ptr", "z_ptr", "B_ptr", "C_ptr", "y_ptr", "yp_ptr"),
    "bwd": ("dout_ptr", "u_ptr", "dt_ptr", "z_ptr", "B_ptr", "C_ptr", "du_ptr", "ddt_ptr", "dz_ptr",
            "yp_ptr"),
}
DIV16 = ("dim", "L", "chunk_len", "n_tiles", "group_b", "group_c", "s_ub", "s_ud", "s_ab",
         "sB_b", "sB_n", "sC_b", "sC_n")


def compile_kernel(fn, consts: dict, bf16: tuple, warps: int, maxnreg: int | None, chunked: bool):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    consts = dict(consts, s_an=1, sB_l=1, sC_l=1, sB_g=0, sC_g=0)
    if not chunked:
        consts["n_chunks"] = 1
    sig, cexp, attrs = {}, {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            sig[name] = "constexpr"
            cexp[(i,)] = consts[name]
        elif name.endswith("_ptr"):
            sig[name] = "*bf16" if name in bf16 else "*i32" if name == "flag_ptr" else "*fp32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "i32"
            if name in DIV16:
                attrs[(i,)] = [["tt.divisibility", 16]]
    options = {"num_warps": warps}
    if maxnreg:
        options["maxnreg"] = maxnreg
    src = GluonASTSource(fn, sig, constexprs=cexp, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)


INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);")  # address, text


def loop_opcodes(sass: str) -> tuple[int, collections.Counter]:
    """Instruction count and opcode histogram of the longest backward-branching loop."""
    lb = loop_bounds(sass)
    if not lb:
        return 0, collections.Counter()
    body = [m.group(2) for m in INSTRUCTION.finditer(sass)
            if lb[0] <= int(m.group(1), 16) <= lb[1]]
    ops = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0] for t in body)
    return len(body), ops


def loop_bounds(sass: str) -> tuple[int, int] | None:
    """Address range of the longest backward-branching loop."""
    loops = []
    for m in INSTRUCTION.finditer(sass):
        b = re.search(r"BRA (?:`\(.*?\) )?0x([0-9a-f]+)", m.group(2))
        if b and int(b.group(1), 16) < int(m.group(1), 16):
            loops.append((int(b.group(1), 16), int(m.group(1), 16)))
    return max(loops, key=lambda x: x[1] - x[0]) if loops else None


def mixed_waits(sass: str) -> list[str]:
    """Waits in the tile loop on a scoreboard that a global load's result shares with a
    shared-memory load, an exp or a shuffle: the short-latency consumer then waits for memory
    too (ptxas has 6 scoreboards; it put the backward's prefetch of Δ on one with the
    recompute's loads, RESULTS.md 2026-11-29 22:09 UTC). Reads the control bits of each
    instruction (bits 41-63 of its second word: stall 4, yield 1, write barrier 3, read
    barrier 3, wait mask 6) over two passes of the loop."""
    lines = sass.splitlines()
    ins = []
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;\s*/\* (0x[0-9a-f]+) \*/", line)
        h = re.search(r"/\* (0x[0-9a-f]+) \*/", lines[i + 1])
        if m and h:
            c = int(h.group(1), 16) >> 41
            ins.append((int(m.group(1), 16), m.group(2), (c >> 5) & 7, (c >> 8) & 7,
                        (c >> 11) & 63))
    lb = loop_bounds(sass)
    if not lb:
        return []
    body = [x for x in ins if lb[0] <= x[0] <= lb[1]]
    pend: dict[int, list[str]] = {k: [] for k in range(6)}
    out = []
    for rnd in range(2):
        for addr, text, wb, rb, wm in body:
            for k in range(6):
                if wm >> k & 1:
                    glob = [p for p in pend[k] if p.startswith("W:LDG") and "LDGSTS" not in p]
                    short = [p for p in pend[k] if any(o in p for o in ("LDS", "MUFU", "SHFL"))]
                    if rnd == 1 and glob and short:
                        out.append(f"{addr:05x} {text[:40]} waits on SB{k}: {glob[0][2:40]} "
                                   f"with {short[0][2:40]}")
                    pend[k] = []
            if wb != 7:
                pend[wb].append("W:" + text)
            if rb != 7:
                pend[rb].append("R:" + text)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kernel", choices=("fwd", "bwd"))
    p.add_argument("--N", type=int, default=16)
    p.add_argument("--ns", type=int, default=0, help="states per thread (default: the launcher's)")
    p.add_argument("--maxnreg", type=int, default=0)
    p.add_argument("--reexp", type=int, default=1, help="backward: recompute exp in the reverse pass")
    p.add_argument("--hasync", action="store_true",
                   help="backward: the tile-start state copied ahead by cp.async (H_ASYNC)")
    p.add_argument("--inasync", action="store_true",
                   help="backward: Δ, u, dout, z copied ahead by cp.async too (IN_ASYNC)")
    p.add_argument("--yp", type=int, default=1,
                   help="backward: y read from the forward's save (HAS_YP), not recomputed")
    p.add_argument("--lookback", action="store_true",
                   help="forward: the one-launch chunked kernel (_fwd_lookback_kernel)")
    p.add_argument("--summary", action="store_true", help="the SUMMARY variant")
    p.add_argument("--chunked", action="store_true", help="the chunk count as a runtime value")
    p.add_argument("--pack", action="store_true",
                   help="16-bit tiles loaded as int32 pairs (with --even)")
    p.add_argument("--even", action="store_true", help="the EVEN variant (no masks)")
    p.add_argument("--sass", help="also write the SASS here")
    p.add_argument("--scoreboards", action="store_true",
                   help="list the loop's waits on a scoreboard a global load shares (`mixed_waits`)")
    a = p.parse_args()

    import triton

    from seqsuite.kernels import gluon_bwd as GB
    from seqsuite.kernels import gluon_fwd as G
    from seqsuite.kernels.triton_scan import (CONFIG, _gluon_shape, gluon_bwd_plan, gluon_consts,
                                              gluon_fwd_maxnreg)

    NP = triton.next_power_of_2(a.N)
    # the launcher's choices for row 1 (8, 1536, 2048, N) on the H200's 132 SMs
    if a.kernel == "fwd":
        _, ns, warps = _gluon_shape(a.ns or CONFIG.ns_gluon, a.N)
    else:
        ns, warps = gluon_bwd_plan(CONFIG if not a.ns else replace(CONFIG, ns_bwd_gluon=a.ns),
                                   8, 1536, 2048, a.N, 132)[:2]
    common = dict(gluon_consts(ns, warps, NP, 16, True, True, True, True, True, True, a.even),
                  SUMMARY=a.summary)
    if a.kernel == "fwd":
        maxnreg = a.maxnreg or gluon_fwd_maxnreg(CONFIG, warps, a.chunked) or None
        if a.lookback:
            k = compile_kernel(G._fwd_lookback_kernel,
                               {k: v for k, v in dict(common, PACK=a.pack).items()
                                if k != "SUMMARY"}, BF16_ARGS["fwd"], warps, maxnreg, True)
        else:
            k = compile_kernel(G._fwd_gluon_kernel,
                               dict(common, HAS_H0=a.chunked, PACK=a.pack), BF16_ARGS["fwd"],
                               warps, maxnreg, a.chunked)
    else:
        k = compile_kernel(GB._bwd_gluon_kernel,
                           dict(common, HAS_R=a.chunked, REEXP=bool(a.reexp), H_ASYNC=a.hasync,
                                IN_ASYNC=a.inasync, HAS_YP=bool(a.yp)),
                           BF16_ARGS["bwd"],
                           warps, a.maxnreg or None, a.chunked)
    bindir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        ptx, cubin = Path(tmp, "k.ptx"), Path(tmp, "k.cubin")
        ptx.write_text(k.asm["ptx"])
        cubin.write_bytes(k.asm["cubin"])
        cmd = [str(bindir / "ptxas"), "-arch=sm_90a", "-v", "-o", os.devnull, str(ptx)]
        if a.maxnreg:
            cmd.append(f"--maxrregcount={a.maxnreg}")
        info = subprocess.run(cmd, capture_output=True, text=True).stderr
        sass = subprocess.run([str(bindir / "cuobjdump"), "-sass", str(cubin)],
                              capture_output=True, text=True).stdout
    if a.sass:
        Path(a.sass).write_text(sass)
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    n, ops = loop_opcodes(sass)
    print(f"{a.kernel} N={a.N} NS={ns} warps={warps}: {regs.group(1) if regs else '?'} registers, "
          f"spills {spill.group(1) if spill else '?'} B stored / {spill.group(2) if spill else '?'} B "
          f"loaded, {k.metadata.shared} B shared memory")
    print(f"tile loop: {n} SASS instructions; " + ", ".join(f"{o} {c}" for o, c in ops.most_common(16)))
    if a.scoreboards:
        mw = mixed_waits(sass)
        print(f"waits on a scoreboard shared with a global load: {len(mw)}")
        for w in mw:
            print("  " + w)


if __name__ == "__main__":
    main()
