"""Kernel-launching operations per recurrent step of a model, counted on the CPU with the
torch profiler (views and dtype no-ops excluded; the fused decode kernel, which the CPU runs
as a reference of many ops, counted as one). On a GPU every such op is one kernel in the
step's CUDA graph, and graph replay costs ~1 µs per kernel, so this count bounds the step
time from below when the kernels are small (decoding at small batch).

    python benchmarks/step_ops.py sc09-unet-small hg38-mamba-7m bytes-mamba-small
"""
import torch, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import seqsuite.core.s6 as s6
from seqsuite.core import build
from torch.profiler import profile, ProfilerActivity
from collections import Counter

def fake_ssu(state, x, dt, A, B, C, D, z, dt_bias=None, dt_softplus=False):
    return torch.ops.aten.clone(x)   # stands for the one fused Triton kernel
s6.selective_state_update = fake_ssu
VIEWS = {"aten::unsqueeze","aten::select","aten::view","aten::chunk","aten::split","aten::slice","aten::expand",
         "aten::transpose","aten::reshape","aten::t","aten::to","aten::alias","aten::as_strided","aten::squeeze",
         "aten::narrow","aten::split_with_sizes","aten::flatten","aten::unbind","aten::detach","aten::lift_fresh",
         "aten::empty","aten::empty_like","aten::numpy_T","aten::permute","aten::contiguous","aten::item","aten::_local_scalar_dense", "aten::result_type"}
for preset in sys.argv[1:]:
    m = build(preset).eval()
    st = m.allocate_state(2)
    tok = torch.zeros(2, dtype=torch.long)
    period = getattr(m.backbone, "total_pool", 1)
    with torch.no_grad():
        for _ in range(2 * period):
            m.step(tok, st)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(period):
                m.step(tok, st)
    top = [e for e in prof.events() if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    k = [e.name for e in top if e.name not in VIEWS]
    c = Counter(k)
    print(f"{preset}: {len(k) / period:.1f} kernel-launching ops per step", c.most_common(14))
