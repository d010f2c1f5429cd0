"""Host time per scan call against GPU time: is a short row's `bench scan` figure the kernel
or the Python launch path?

Prints the host µs per call at a tiny shape (the GPU idles, so this is the launch path alone)
through torch.ops (the custom ops, as torch.compile runs them), through the eager functions
(`scan_fwd_impl` / `scan_bwd_impl`, as `selective_scan` runs them), the inference forward and
a training forward + backward of `selective_scan`, each with SEQSUITE_SCAN_FASTLAUNCH=0 and
1; then for a DESIGN §7 row ms per call back to back (the larger of host and GPU time), in a
CUDA graph (GPU time alone) and by `bench scan`'s timer (each run after an L2 flush).

    python benchmarks/probe_launch.py --row 0
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from seqsuite.cli.bench_scan import ROWS, _median_ms, make_inputs  # noqa: E402
from seqsuite.kernels.triton_scan import scan_bwd_impl, scan_fwd_impl, tile_for  # noqa: E402

ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def calls(batch, dim, L, N, op: bool = True):
    """(forward, backward) closures through torch.ops (op) or the eager functions."""
    x = make_inputs(batch, dim, L, N)
    args = tuple(x[k] for k in ORDER) + (True, tile_for(N))
    fwd, bwd = ((torch.ops.seqsuite.scan_fwd, torch.ops.seqsuite.scan_bwd) if op
                else (scan_fwd_impl, scan_bwd_impl))
    y, _, states, ypre = fwd(*args)
    dy = torch.randn_like(y)
    return (lambda: fwd(*args)), (lambda: bwd(dy, *args[:9], states, None, args[9], ypre))


def user_calls(batch, dim, L, N):
    """(inference forward, training forward + backward) of `selective_scan`."""
    from seqsuite.kernels import selective_scan

    x = make_inputs(batch, dim, L, N)
    xg = {k: v.clone().requires_grad_() for k, v in x.items()}

    def infer():
        with torch.no_grad():
            selective_scan(**x, delta_softplus=True)

    def train():
        selective_scan(**xg, delta_softplus=True).float().sum().backward()

    return infer, train


def host_us(fn, n=300) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    dt = time.perf_counter() - t
    torch.cuda.synchronize()
    return dt / n * 1e6


def back_to_back_ms(fn, n=200) -> float:
    for _ in range(10):
        fn()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    for _ in range(n):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / n


def graph_ms(fn, n=50) -> float:
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(st)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(n):
            fn()
    g.replay()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    g.replay()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--row", type=int, default=0)
    a = p.parse_args()

    tiny = (1, 32, 64, 16)
    for fast in ("0", "1"):
        os.environ["SEQSUITE_SCAN_FASTLAUNCH"] = fast
        with torch.no_grad():
            of, ob = calls(*tiny, op=True)
            ef, eb = calls(*tiny, op=False)
            line = (f"ops fwd {host_us(of):.1f} bwd {host_us(ob):.1f}; "
                    f"eager fwd {host_us(ef):.1f} bwd {host_us(eb):.1f}")
        infer, train = user_calls(*tiny)
        print(f"fast launch {fast}: host us per call at {tiny}: {line}; selective_scan "
              f"inference {host_us(infer):.1f}, training fwd+bwd {host_us(train, 100):.1f}",
              flush=True)
    shape = ROWS[a.row][:4]
    with torch.no_grad():
        f, b = calls(*shape, op=False)
        for name, fn in (("fwd", f), ("bwd", b)):
            print(f"  row {a.row} {name}: back to back {back_to_back_ms(fn):.3f} ms, "
                  f"CUDA graph {graph_ms(fn):.3f} ms, bench timer {_median_ms(fn):.3f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
