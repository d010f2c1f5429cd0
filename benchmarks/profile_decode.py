"""Where the time of one decoded sample goes: torch.profiler over replays of a chunk graph
(core/generate.py ChunkDecoder), kernels grouped by name. GPU only.

    python benchmarks/profile_decode.py --preset sc09-unet-small --batch 1 --out prof.json

Prints, per kernel name: launches per sample and GPU µs per sample; then the sum of kernel time
against the wall time per sample (the difference is the gaps between graph nodes).
"""
import argparse, json, os, sys, time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from seqsuite.core import build  # noqa: E402
from seqsuite.core.generate import ChunkDecoder, chunk_size  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="sc09-unet-small")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--replays", type=int, default=16)
ap.add_argument("--out", default="")
a = ap.parse_args()

model = build(a.preset).cuda().eval()
K = chunk_size(model)
dev = torch.device("cuda")
with torch.no_grad():
    state = model.allocate_state(a.batch, device=dev)
    dec = ChunkDecoder(model, state, a.batch, dev, K, seed=0)
    tok = torch.full((a.batch,), 128, dtype=torch.long, device=dev)
    t = 0
    for _ in range(3):  # capture the graph of phase 0 and warm up
        tok = dec(tok, t)[-1]
        t += K
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.replays):
        tok = dec(tok, t)[-1]
        t += K
    torch.cuda.synchronize()
    wall_us = (time.perf_counter() - t0) * 1e6 / (a.replays * K)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(a.replays):
            tok = dec(tok, t)[-1]
            t += K
        torch.cuda.synchronize()

per = defaultdict(lambda: [0, 0.0])
for ev in prof.events():
    if ev.device_type == torch.autograd.DeviceType.CUDA:
        name = ev.name if len(ev.name) < 70 else ev.name[:67] + "..."
        per[name][0] += 1
        per[name][1] += ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
n_samples = a.replays * K
rows = sorted(((k, c / n_samples, us / n_samples) for k, (c, us) in per.items()), key=lambda r: -r[2])
print(f"{a.preset} batch {a.batch}: K={K}, wall {wall_us:.1f} us per step ({a.batch * 1e6 / wall_us:,.0f} samples/s)")
print(f"{'kernel':70s} {'per step':>9s} {'us/step':>9s}")
for k, c, us in rows[:25]:
    print(f"{k:70s} {c:9.2f} {us:9.2f}")
busy = sum(r[2] for r in rows)
launches = sum(r[1] for r in rows)
print(f"kernel time {busy:.1f} us per step in {launches:.1f} launches; gaps {wall_us - busy:.1f} us")
if a.out:
    Path(a.out).write_text(json.dumps({
        "preset": a.preset, "batch": a.batch, "K": K, "wall_us_per_step": wall_us, "kernel_us_per_step": busy,
        "launches_per_step": launches, "commit": os.environ.get("SEQSUITE_COMMIT", ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": torch.cuda.get_device_name(),
        "kernels": [{"name": k, "per_step": c, "us_per_step": us} for k, c, us in rows]}, indent=1))
