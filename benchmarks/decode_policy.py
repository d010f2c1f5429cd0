"""Time decoding with the fused stack step on and off, per width bound and batch, in one process,
to set the defaults of core/fused_step.py (FUSED_MAX_D, FUSED_MAX_BATCH). GPU only.

    python benchmarks/decode_policy.py --out policy.json
Each row: preset, batch, SEQSUITE_FUSED_MAX_D (0 = fused off), samples (tokens) per second of
`bench generate`'s timed loop (chunk graphs on), median of 3 runs.

    python benchmarks/decode_policy.py --out tiles.json --cases "sc09-unet-small:128" --batches 1 \
        --tiles "0,0,0,0;32,64,32,8;64,128,64,8"
sweeps the fused kernel's tiles (SEQSUITE_FUSED_TILES, see kernels/triton_mamba_step.py) per case.
"""
import argparse, json, os, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from seqsuite.bench.generate import time_generation  # noqa: E402
from seqsuite.core import build  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--n", type=int, default=1024, help="tokens generated per stream")
ap.add_argument("--batches", default="1,16,64,256")
ap.add_argument("--tiles", default="", help="';'-separated BI,BK,BKO,warps settings (fused runs only)")
ap.add_argument("--cases", default="sc09-unet-small:0,64,128,1024;sc09-unet-large:0,96,192,1024;hg38-mamba-7m:0,1024")
a = ap.parse_args()
rows = []
for case in a.cases.split(";"):
    preset, bounds = case.split(":")
    model = build(preset).cuda().eval()
    for b in map(int, a.batches.split(",")):
        prompt = torch.full((b, 1), 1, dtype=torch.long, device="cuda")
        for bound in map(int, bounds.split(",")):
            for tiles in (a.tiles.split(";") if a.tiles and bound else [""]):
                os.environ["SEQSUITE_FUSED_STEP"] = "0" if bound == 0 else "auto"
                os.environ["SEQSUITE_FUSED_MAX_D"] = str(bound)
                os.environ["SEQSUITE_FUSED_MAX_BATCH"] = "100000"
                os.environ["SEQSUITE_FUSED_TILES"] = tiles
                t0 = time.time()
                t = time_generation(model, b, prompt, a.n, torch.device("cuda"), True, 3, 0.0)
                rate = b * a.n / ((t["prompt_ms"] + t["gen_ms"]) / 1e3)
                rows.append({"preset": preset, "batch": b, "fused_max_d": bound, "tiles": tiles, "per_s": rate})
                print(f"{preset:18s} b={b:4d} max_d={bound:5d} tiles={tiles or 'default':12s} {rate:12.0f} /s"
                      f"  ({time.time() - t0:.1f}s)", flush=True)
    del model
    torch.cuda.empty_cache()
Path(a.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": torch.cuda.get_device_name(),
                                   "commit": os.environ.get("SEQSUITE_COMMIT", ""), "rows": rows}, indent=1))
