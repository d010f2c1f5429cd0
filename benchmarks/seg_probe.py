"""Probe (issue 4): the one-pass segmented forward (`gluon_fwd_seg._fwd_seg_kernel`) against
the launcher's Gluon forward on chosen rows: agreement of y, y before the gate, the last state
and the tile-start states, and both timed as `bench scan` times the forward. --cfg takes
S,TS,NS triples (segments a super-tile, segments across the lanes, states a thread); --rows
0-based indices of DESIGN §7's table (3 is (16, 128, 16384, 16)).

    python benchmarks/seg_probe.py --rows 3 --cfg 8,2,4 4,2,2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def seg_forward(args, S: int, TS: int, NS: int, save: bool = True, maxnreg: int = 0):
    """The segmented forward on `scan_args`' tuple (time-varying B, C of one group): returns
    (y, last, states, ypre) as `scan_fwd_impl`."""
    import torch

    from seqsuite.kernels import gluon_fwd as G
    from seqsuite.kernels import gluon_fwd_seg as GS
    from seqsuite.kernels.triton_scan import _pow2

    u, delta, A, B, C, D, z, bias, softplus, TL = args
    batch, dim, L = u.shape
    N = A.shape[1]
    NP = _pow2(N)
    BD = 32 // TS
    Gw = NP // NS
    warps = (S // TS) * Gw
    n_tiles = -(-L // TL)
    y = torch.empty_like(u)
    ypre = torch.empty_like(u) if save else u.new_empty(0)
    last = torch.empty((batch, dim, N), dtype=torch.float32, device=u.device)
    states = torch.empty((batch, n_tiles if save else 0, N, dim), dtype=torch.float32,
                         device=u.device)
    even = L % (S * 16) == 0 and dim % BD == 0 and N == NP
    opts = dict(num_warps=warps)
    if maxnreg:
        opts["maxnreg"] = maxnreg
    GS._fwd_seg_kernel[(-(-dim // BD), batch)](
        u, delta, z, A, B, C, D, bias, y, states if save else last, last,
        ypre if save else y, dim, L, N, n_tiles,
        u.stride(0), u.stride(1), A.stride(0), A.stride(1),
        B.stride(0), B.stride(1), B.stride(2), C.stride(0), C.stride(1), C.stride(2),
        S=S, TS=TS, BD=BD, NP=NP, L4=GS.seg_layout(S, TS, BD, Gw, NS),
        LIO=G.tile_layout(S * BD, 16, warps), LBC=G.tile_layout(NP, S * 16, warps),
        HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=bool(softplus), EVEN=even, SAVE=save,
        **opts)
    return y, last, states, ypre


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="3")
    p.add_argument("--cfg", nargs="+", default=["8,2,4"])
    p.add_argument("--maxnreg", type=int, default=0)
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("seg_probe.py runs Gluon kernels: run it on a machine with a CUDA GPU")
    from seqsuite.cli.bench_scan import ROWS, _median_ms, make_inputs, scan_args
    from seqsuite.kernels.triton_scan import scan_fwd_impl

    def err(a, b):
        return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()

    for r in (int(x) for x in a.rows.split(",")):
        batch, dim, L, N = ROWS[r][:4]
        args = scan_args(make_inputs(batch, dim, L, N))
        with torch.no_grad():
            ref = scan_fwd_impl(*args)
            t_ref = _median_ms(lambda: scan_fwd_impl(*args))
            print(f"row {r} ({batch}, {dim}, {L}, {N}): launcher's forward {t_ref:.3f} ms",
                  flush=True)
            for c in a.cfg:
                S, TS, NS = (int(x) for x in c.split(","))
                try:
                    out = seg_forward(args, S, TS, NS, maxnreg=a.maxnreg)
                    torch.cuda.synchronize()
                except Exception as e:  # a shape the kernel does not compile for
                    print(f"  seg S={S} TS={TS} NS={NS}: failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}", flush=True)
                    continue
                errs = ", ".join(f"{n} {err(o, q):.1e}" for n, o, q in
                                 zip(("y", "last", "states", "ypre"), out, ref))
                t = _median_ms(lambda: seg_forward(args, S, TS, NS, maxnreg=a.maxnreg))
                t_inf = _median_ms(lambda: seg_forward(args, S, TS, NS, save=False,
                                                       maxnreg=a.maxnreg))
                print(f"  seg S={S} TS={TS} NS={NS}: {t:.3f} ms saving states, {t_inf:.3f} "
                      f"without; max rel. diff to the launcher's: {errs}", flush=True)


if __name__ == "__main__":
    main()
