"""Collect the runs of benchmarks/gpu_show.sh into ROOT/show.md, ROOT/show.json and PNGs.

    python benchmarks/show_report.py ROOT

Reads only what the commands wrote (metrics.csv, metrics_test.json, evaluate_test.txt,
ablation.json, classifier config.json, samples metrics.json/manifest.json); a missing or failed
run becomes a row saying so, never a made-up number.
"""
from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seqsuite.train import read_metrics  # noqa: E402
from seqsuite.train.logging import plot_runs  # noqa: E402

LN2 = math.log(2)
SHARE = "shared GPU"  # gpu_show.sh runs its jobs side by side; --alone for gpu_rerun.sh


def first_json(path: Path) -> dict | None:
    """The JSON object a `--json` command printed before its summary line."""
    if not path.exists():
        return None
    text = path.read_text()
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except json.JSONDecodeError:
        return None


def train_summary(run: Path) -> dict:
    rows = read_metrics(run / "metrics.csv")
    tr = [r for r in rows if r.get("split") == "train"]
    va = [r for r in rows if r.get("split") == "valid"]
    out = {"steps": max((r["step"] for r in tr), default=0),
           "tokens": max((r.get("tokens", 0) for r in tr), default=0),
           "tokens_per_s": statistics.median([r["tokens_per_s"] for r in tr[1:] or tr]) if tr else None,
           "peak_mem_gb": max((r.get("mem_gb", 0.0) for r in tr), default=None),
           "elapsed_s": max((r.get("elapsed_s", 0.0) for r in tr), default=None),
           "valid_bits": va[-1]["bits_per_token"] if va else None,
           "valid_accuracy": va[-1].get("accuracy") if va else None}
    return out


def fmt(x, spec=".4f", none="—"):
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def genomics(root: Path, md: list[str], js: dict) -> None:
    g = root / "genomics"
    pair = sorted(p for p in g.glob("lm-*") if p.is_dir() and "2p20" not in p.name)
    rows = []
    for run in pair:
        s = train_summary(run)
        ev = first_json(run / "evaluate_test.txt") or {}
        s.update(model=run.name[3:], test_bits=ev.get("bits_per_base"),
                 markov_bits=ev.get("markov_bits_per_base"), markov_order=ev.get("markov_order"))
        rows.append(s)
    js["genomics_pair"] = rows
    md += ["## Genomics: Mamba vs Transformer++ at L = 2^14, same steps and batch", "",
           "| model | steps | tokens | test bits/base | order-k Markov | valid bits/base | "
           f"train tokens/s ({SHARE}) | peak GB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['steps']} | {r['tokens']:,} | {fmt(r['test_bits'])} | "
                  f"{fmt(r['markov_bits'])} (k={r['markov_order']}) | {fmt(r['valid_bits'])} | "
                  f"{fmt(r['tokens_per_s'], ',.0f')} | {fmt(r['peak_mem_gb'], '.1f')} |")
    if pair:
        plot_runs(root / "genomics_curves.png", [(r.name[3:], r) for r in pair], "bits per base")
        md += ["", "![learning curves](genomics_curves.png)", ""]
    long = g / "lm-7m-2p20"
    if not long.exists():
        return
    s = train_summary(long)
    js["genomics_2p20"] = s
    md += ["", "## Genomics: hg38-mamba-7m at L = 2^20, batch 1 (activation checkpointing)", "",
           f"steps completed: {s['steps']}; tokens {s['tokens']:,}; peak memory "
           f"{fmt(s['peak_mem_gb'], '.1f')} GB; {fmt(s['tokens_per_s'], ',.0f')} tokens/s; last valid "
           f"{fmt(s['valid_bits'])} bits/base", ""]


def species(root: Path, md: list[str], js: dict) -> None:
    sp = root / "species"
    if not sp.exists():
        return
    table: dict[int, dict] = {}
    for run in sorted(sp.glob("*-L*")):
        # TAG-LK, or TAG-LK-seedS from gpu_species_chain.sh: keep the seed with the best
        # validation accuracy, the rule that script uses to pick the run it continues
        hit = re.fullmatch(r"(\w+)-L(\d+)(?:-seed(\d+))?", run.name)
        if not hit:
            continue
        tag, k = hit.group(1), int(hit.group(2))
        m = {}
        if (run / "metrics_test.json").exists():
            m = json.loads((run / "metrics_test.json").read_text())
        s = train_summary(run)
        row = {"accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "steps": s["steps"],
               "tokens_per_s": s["tokens_per_s"], "valid_accuracy": s["valid_accuracy"],
               "seed": int(hit.group(3)) if hit.group(3) else None}
        old = table.setdefault(k, {}).get(tag)
        if old is None or (row["valid_accuracy"] or -1) > (old["valid_accuracy"] or -1):
            table[k][tag] = row
    js["species"] = {str(k): v for k, v in table.items()}
    md += ["## Species classification: Mamba vs HyenaDNA by context length", "",
           "| L | Mamba acc | Mamba F1 | Mamba steps | HyenaDNA acc | HyenaDNA F1 | HyenaDNA steps |",
           "|---|---|---|---|---|---|---|"]
    for k in sorted(table):
        a, h = table[k].get("mamba", {}), table[k].get("hyena", {})
        md.append(f"| 2^{k} | {fmt(a.get('accuracy'), '.3f')} | {fmt(a.get('macro_f1'), '.3f')} | "
                  f"{a.get('steps', '—')} | {fmt(h.get('accuracy'), '.3f')} | {fmt(h.get('macro_f1'), '.3f')} | "
                  f"{h.get('steps', '—')} |")
    if table:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for tag, name in (("mamba", "Mamba"), ("hyena", "HyenaDNA")):
            pts = [(2 ** k, v[tag]["accuracy"]) for k, v in sorted(table.items())
                   if v.get(tag, {}).get("accuracy") is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.axhline(0.2, color="gray", ls=":", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length L (bases)")
        ax.set_ylabel("test accuracy (5 species)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(root / "species_accuracy.png", dpi=120)
        plt.close(fig)
        md += ["", "![accuracy by context](species_accuracy.png)"]
    md.append("")


def audio(root: Path, md: list[str], js: dict) -> None:
    f = root / "audio" / "ablation" / "ablation.json"
    if not (root / "audio").exists():
        return
    md += ["## Audio: outer/inner S4/S6 ablation (Fig. 10)", ""]
    if not f.exists():
        md += ["ablation.json missing: the ablation did not finish (see logs/ablation.log).", ""]
        return
    ab = json.loads(f.read_text())
    js["ablation"] = ab
    for r in ab["rows"]:
        r["steps"] = train_summary(root / "audio" / "ablation" / f"{r['outer']}-{r['inner']}")["steps"]
    md += ["| outer | inner | params | steps | test bits/sample | valid bits/sample | "
           f"train tokens/s ({SHARE}) |", "|---|---|---|---|---|---|---|"]
    for r in ab["rows"]:
        md.append(f"| {r['outer'].upper()} | {r['inner'].upper()} | {r['params'] / 1e6:.2f}M | {r['steps']} | "
                  f"{fmt(r['test_bits'])} | {fmt(r['valid_bits'])} | {fmt(r['tokens_per_s'], ',.0f')} |")
    md += ["", f"unigram mu-law baseline on the same test samples: "
           f"{fmt(ab['rows'][0]['unigram_test_bits'])} bits/sample", "",
           "![learning curves](audio/ablation/learning_curves.png)", ""]


def bytes_lm(root: Path, md: list[str], js: dict) -> None:
    rows = []
    for run in sorted((root / "bytes").glob("*")):
        if not run.is_dir():
            continue
        s = train_summary(run)
        ev = first_json(run / "evaluate_test.txt") or {}
        s.update(model=run.name, test_bpb=ev.get("bpb"), gzip=ev.get("gzip_bpb"), xz=ev.get("lzma_bpb"),
                 n_bytes=ev.get("n_bytes"))
        rows.append(s)
    js["bytes"] = rows
    md += ["## Bytes: Mamba vs Transformer++ after equal tokens", "",
           f"| model | steps | tokens | test bits/byte | gzip | xz | train tokens/s ({SHARE}) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['steps']} | {r['tokens']:,} | {fmt(r['test_bpb'])} | "
                  f"{fmt(r['gzip'])} | {fmt(r['xz'])} | {fmt(r['tokens_per_s'], ',.0f')} |")
    if rows:
        plot_runs(root / "bytes_curves.png", [(r["model"], root / "bytes" / r["model"]) for r in rows],
               "bits per byte")
        md += ["", "![learning curves](bytes_curves.png)"]
    md.append("")


def sc09(root: Path, md: list[str], js: dict) -> None:
    d = root / "sc09"
    if not d.exists():
        return
    md += ["## SC09: Table-4-style row for the shipped model (demo digits)", ""]
    cls = d / "classifier" / "config.json"
    if cls.exists():
        m = json.loads(cls.read_text()).get("metrics", {})
        js["sc09_classifier"] = m
        md.append(f"digit classifier: test accuracy {fmt(m.get('test_accuracy'), '.3f')}")
    man = json.loads((d / "manifest.json").read_text()) if (d / "manifest.json").exists() else {}
    met = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").exists() else {}
    js["sc09_generate"] = {k: man.get(k) for k in ("samples_per_s", "seconds", "num", "batch", "time_s")}
    js["sc09_metrics"] = met
    if man:
        md.append(f"generation: {man.get('num')} clips, batch {man.get('batch')}, "
                  f"{fmt(man.get('samples_per_s'), ',.0f')} samples/s ({SHARE})")
    if met.get("rows"):
        nll = (met.get("model_test_nll") or {}).get("bits_per_sample")
        md += ["", "| rows | NLL (bits/sample) | FID ↓ | IS ↑ | mIS ↑ | AM ↓ | n |", "|---|---|---|---|---|---|---|"]
        for name, r in met["rows"].items():
            md.append(f"| {name} | {fmt(nll, '.3f') if name.startswith('samples') else '—'} | {r['fid']:.3f} | "
                      f"{r['is']:.3f} | {r['mis']:.3f} | {r['am']:.3f} | {r['n']} |")
        md += ["", "![samples](sc09/grid.png)"]
    else:
        md.append("sample metrics missing (see logs/sc09-evaluate.log)")
    md.append("")


def main(root: Path) -> None:
    md = [f"# Show runs ({root})", ""]
    gpu = root / "logs" / "gpu.txt"
    if gpu.exists():
        md += ["device: " + " ".join(gpu.read_text().split("\n")[1:]).strip(), ""]
    js: dict = {}
    for part in (genomics, species, audio, bytes_lm, sc09):
        try:
            part(root, md, js)
        except Exception as e:  # one broken part must not hide the others
            md += [f"{part.__name__}: report failed: {type(e).__name__}: {e}", ""]
    (root / "show.md").write_text("\n".join(md) + "\n")
    (root / "show.json").write_text(json.dumps(js, indent=1, default=str) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    if "--alone" in sys.argv:
        SHARE = "alone on the GPU"
    main(Path([a for a in sys.argv[1:] if not a.startswith("--")][0]))
