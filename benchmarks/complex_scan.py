"""Probe (issue 4): the complex-state scan (triton_complex.py) against the PyTorch reference
and against the real-A kernels on the same shape, forward and forward + backward, timed as
`bench scan` times the scan (CUDA events, warm-up, median). Shapes: batch, dim, L, N
(N complex states), time-invariant complex B/C (an S4D layer's scan path) or time-varying.

    python benchmarks/complex_scan.py --shapes 16,128,16384,32,inv 8,1536,2048,16,vary
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=["16,128,16384,32,inv", "8,1536,2048,16,vary"])
    p.add_argument("--no-ref", action="store_true", help="skip the PyTorch reference")
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("complex_scan.py times CUDA kernels: run it on a machine with a CUDA GPU")
    from seqsuite.cli.bench_scan import _median_ms
    from seqsuite.kernels import selective_scan
    from seqsuite.kernels.reference import selective_scan_ref

    for spec in a.shapes:
        *dims, layout = spec.split(",")
        batch, dim, L, N = (int(v) for v in dims)
        g = torch.Generator(device="cuda").manual_seed(0)

        def r(*s):
            return torch.randn(*s, device="cuda", generator=g)

        cs = (dim, N) if layout == "inv" else (batch, N, L)
        x = dict(u=r(batch, dim, L).bfloat16(), delta=(r(batch, dim, L) * 0.5).bfloat16(),
                 A=torch.complex(-torch.rand(dim, N, device="cuda", generator=g) - 0.1,
                                 r(dim, N)),
                 B=torch.complex(r(*cs), r(*cs)), C=torch.complex(r(*cs), r(*cs)), D=r(dim),
                 z=r(batch, dim, L).bfloat16(), delta_bias=r(dim) * 0.3 - 3.0)
        xr = dict(x, A=x["A"].real.contiguous(), B=x["B"].real.contiguous().bfloat16(),
                  C=x["C"].real.contiguous().bfloat16())
        if layout == "inv":
            xr["B"], xr["C"] = xr["B"].float(), xr["C"].float()
        print(f"({batch}, {dim}, {L}, {N}) {layout}:", flush=True)
        for name, fn, inp in (("triton complex", selective_scan, x),
                              ("reference complex", selective_scan_ref, x),
                              ("triton real A, same shape", selective_scan, xr)):
            if a.no_ref and name.startswith("reference"):
                continue
            args = {k: v.detach().clone().requires_grad_() for k, v in inp.items()}
            dy = torch.randn(batch, dim, L, device="cuda").bfloat16()
            try:
                with torch.no_grad():
                    fwd = _median_ms(lambda: fn(**args, delta_softplus=True), 3, 50)

                def step():
                    y = fn(**args, delta_softplus=True)
                    torch.autograd.backward(y, dy)

                both = _median_ms(step, 3, 50)
            except torch.OutOfMemoryError:
                print(f"  {name}: out of memory", flush=True)
                torch.cuda.empty_cache()
                continue
            print(f"  {name}: fwd {fwd:.3f} ms, fwd + bwd {both:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
