"""Time the launcher's reduction of the Gluon backward's per-program dB/dC partial sums
((batch, programs over dim, N, L) fp32 summed over the programs) for DESIGN §7 rows 1 and 6."""
import torch
import triton

for batch, dim, L, N in ((8, 1536, 2048, 16), (8, 1536, 2048, 64)):
    nd = dim // 32
    X = torch.randn(batch, nd, N, L, device="cuda")
    ms = triton.testing.do_bench(lambda: X.view(batch, 1, nd, N, L).sum(2), warmup=100, rep=300)
    print(f"({batch}, {dim}, {L}, {N}): dB or dC partial reduction {ms * 1e3:.1f} us "
          f"({X.numel() * 4 / (ms * 1e-3) / 1e9:.0f} GB/s)", flush=True)
