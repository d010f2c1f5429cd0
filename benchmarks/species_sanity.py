"""A sanity check of a classifier backbone on the CPU (issue 7, 2026-11-29): can it learn a task
that a linear probe on mean-pooled embeddings solves? Two classes of random DNA windows; class 1
draws A with probability P_A (0.3), class 0 uniformly. Optimiser as `seqsuite train`'s defaults
(AdamW betas 0.9/0.95, global grad-norm clip 1.0), no weight decay. Prints validation accuracy
(256 fresh windows) every 20 steps.

    python benchmarks/species_sanity.py --preset hg38-hyenadna-1.4m --lr 1e-3
"""
import argparse, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from seqsuite.core import build  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="hg38-hyenadna-1.4m")
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--seq-len", type=int, default=512)
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--p-a", type=float, default=0.3)
ap.add_argument("--clip", type=float, default=1.0)
a = ap.parse_args()
torch.manual_seed(0)
kw = {"max_len": a.seq_len} if "hyena" in a.preset else {}
model = build(a.preset, task="classify", n_classes=2, **kw)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
p0 = torch.full((4,), 0.25)
p1 = torch.tensor([a.p_a] + [(1 - a.p_a) / 3] * 3)


def batch(n: int):
    y = torch.randint(0, 2, (n,))
    x = torch.multinomial(torch.where(y[:, None] == 1, p1, p0), a.seq_len, replacement=True) + 7
    return x, y


t0 = time.time()
for s in range(a.steps):
    x, y = batch(a.batch)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    if a.clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
    opt.step()
    if s % 20 == 19:
        with torch.no_grad():
            xv, yv = batch(256)
            acc = (model(xv).argmax(-1) == yv).float().mean().item()
        print(f"{a.preset} lr {a.lr} clip {a.clip} step {s + 1} loss {loss.item():.3f} valid acc {acc:.3f} "
              f"({time.time() - t0:.0f}s)", flush=True)
