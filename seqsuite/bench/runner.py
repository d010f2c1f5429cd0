"""Run a benchmark end to end: defaults for the device, the measurement, the printed table,
JSON (--out) and PNG (--plot). The `seqsuite bench` commands call these functions."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from ..errors import UserError
from .common import Report, env_info, pick_device, plot_path, print_report, save_json


@contextlib.contextmanager
def _progress(total: int, desc: str):
    """A tqdm bar on stderr (ticks per finished case)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, unit="case")
    try:
        yield bar.update
    finally:
        bar.close()


def _finish(report: Report, out: str | None, plot: bool, plotter) -> Report:
    """Print the table, write JSON and the PNG, and end with one summary line."""
    print_report(report)
    if out:
        save_json(report.to_dict(), out)
    if plot:
        path = plot_path(out, report.name)
        plotter(report, path)
        print(f"plot: {path}")
    ok = sum(r["status"] == "ok" for r in report.rows)
    oom = sum(r["status"] == "OOM" for r in report.rows)
    err = len(report.rows) - ok - oom
    print(f"bench {report.name}: {ok} cases measured, {oom} OOM, {err} failed"
          + (f"; results in {out}" if out else ""))
    return report


def _ints(text: str | None, name: str) -> list[int] | None:
    from .common import parse_int_list

    vals = parse_int_list(text)
    if vals is not None and (not vals or min(vals) < 1):
        raise UserError(f"--{name} must list positive integers, got {text!r}")
    return vals


def _pairs(text: str | None) -> list[tuple[str, str]] | None:
    if not text:
        return None
    pairs = []
    for item in text.split(","):
        if item.count(":") != 1:
            raise UserError(f"cannot read the pair {item!r}: write MAMBA_PRESET:TRANSFORMER_PRESET")
        a, b = item.split(":")
        pairs.append((a.strip(), b.strip()))
    return pairs


def _choose_models(s, pairs, d_model, n_layers) -> None:
    """Presets named on the command line, or a custom pair by size, replace the defaults."""
    if pairs and (d_model is not None or n_layers is not None):
        raise UserError("give either preset pairs or --d-model/--n-layers, not both")
    if pairs:
        if hasattr(s, "pairs"):
            s.pairs = pairs
        else:
            s.pair = pairs[0]
        s.d_model = s.n_layers = None
    elif d_model is not None or n_layers is not None:
        s.d_model, s.n_layers = d_model, n_layers


def run_scan(out: str | None = None, plot: bool = False, reps: int = 100) -> list[dict]:
    """The kernel table of DESIGN §7 (seqsuite.cli.bench_scan), with the environment header."""
    from ..cli.bench_scan import bench_scan

    if not torch.cuda.is_available():
        raise UserError("bench scan needs a CUDA GPU: run it on a machine with one (the others run on CPU too)")
    env = env_info(torch.device("cuda"))
    print(f"selective scan vs mamba_ssm reference · {env['device']} · {env['date']} · commit {env['commit']} "
          f"· torch {env['torch']}")
    rows = bench_scan(out=None, reps=reps)
    if out:
        save_json({"name": "scan", "env": env, "settings": {"reps": reps}, "rows": rows}, out)
    if plot:
        path = plot_path(out, "scan")
        plot_scan(rows, env, path)
        print(f"plot: {path}")
    print(f"bench scan: {len(rows)} rows measured" + (f"; results in {out}" if out else ""))
    return rows


def plot_scan(rows: list[dict], env: dict, path) -> None:
    """Our forward/backward ms against the reference and the floor, one group of bars per row."""
    from .common import new_figure, save_figure

    fig, axes = new_figure(2, width=7)
    labels = [f"{r['batch']}x{r['dim']}x{r['L']}\nN={r['N']}" for r in rows]
    x = range(len(rows))
    for ax, d in zip(axes, ("fwd", "bwd")):
        w = 0.27
        ax.bar([i - w for i in x], [r[f"ref_{d}_ms"] for r in rows], w, label="mamba_ssm reference")
        ax.bar(list(x), [r[f"{d}_ms"] for r in rows], w, label="seqsuite")
        ax.bar([i + w for i in x], [r[f"{d}_floor_ms"] for r in rows], w, label="floor")
        ax.set_yscale("log")
        ax.set_xticks(list(x), labels, fontsize=7)
        ax.set_ylabel("ms")
        ax.set_title(f"selective scan {d} — {env['device']}", fontsize=9)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def run_ops_cmd(out=None, plot=False, device="auto", lengths=None, dim=None, heads=None, batch=1,
                budget=None) -> Report:
    from .ops import OpsSettings, plot_ops, run_ops

    dev = pick_device(device)
    s = OpsSettings.default(dev)
    s.lengths = _ints(lengths, "lengths") or s.lengths
    s.batch = batch
    if dim is not None:
        s.dim = dim
        if heads is None:
            s.heads = max(1, dim // 64) if dim % 64 == 0 else 1
    s.heads = heads or s.heads
    s.budget_s = budget if budget is not None else s.budget_s
    with _progress(len(s.lengths) * 6, "bench ops") as tick:
        report = run_ops(s, dev, tick)
    return _finish(report, out, plot, plot_ops)


def run_train_cmd(out=None, plot=False, device="auto", lengths=None, tokens=None, pairs=None, d_model=None,
                  n_layers=None, compile=False, budget=None) -> Report:
    from .train import TrainSettings, model_configs, plot_train, run_train

    dev = pick_device(device)
    s = TrainSettings.default(dev)
    s.lengths = _ints(lengths, "lengths") or s.lengths
    s.tokens = tokens or s.tokens
    _choose_models(s, _pairs(pairs), d_model, n_layers)
    s.compile = compile
    s.budget_s = budget if budget is not None else s.budget_s
    with _progress(len(s.lengths) * len(model_configs(s)), "bench train") as tick:
        report = run_train(s, dev, tick)
    return _finish(report, out, plot, plot_train)


def run_generate_cmd(out=None, plot=False, device="auto", batches=None, prompt_len=None, gen_len=None, pair=None,
                     d_model=None, n_layers=None, audio=None, audio_batches=None, audio_samples=None, graphs=True, prefill=True,
                     chunks=True, budget=None) -> Report:
    from .generate import GenerateSettings, plot_generate, run_generate

    dev = pick_device(device)
    s = GenerateSettings.default(dev)
    s.batches = _ints(batches, "batches") or s.batches
    s.prompt_len = prompt_len or s.prompt_len
    s.gen_len = gen_len or s.gen_len
    p = _pairs(pair)
    if p is not None and len(p) != 1:
        raise UserError("--pair takes one MAMBA_PRESET:TRANSFORMER_PRESET pair")
    _choose_models(s, p, d_model, n_layers)
    if audio is not None:
        s.audio = [] if audio.strip().lower() in ("", "none") else [a.strip() for a in audio.split(",")]
    s.audio_batches = _ints(audio_batches, "audio-batches") or s.audio_batches
    s.audio_samples = audio_samples or s.audio_samples
    s.graphs = s.graphs and graphs
    s.prefill = prefill
    s.chunks = chunks
    s.budget_s = budget if budget is not None else s.budget_s
    total = 2 * len(s.batches) + len(s.audio) * len(s.audio_batches)
    with _progress(total, "bench generate") as tick:
        report = run_generate(s, dev, tick)
    return _finish(report, out, plot, plot_generate)


def run_memory_cmd(out=None, plot=False, device="auto", batches=None, seq_len=None, d_model=None, n_layers=None,
                   vocab=None, compile=False) -> Report:
    from .memory import MemorySettings, plot_memory, run_memory

    dev = pick_device(device)
    s = MemorySettings.default(dev)
    s.batches = _ints(batches, "batches") or s.batches
    s.seq_len = seq_len or s.seq_len
    s.d_model = d_model or s.d_model
    s.n_layers = n_layers or s.n_layers
    s.vocab = vocab or s.vocab
    s.compile = compile
    with _progress(2 * len(s.batches), "bench memory") as tick:
        report = run_memory(s, dev, tick)
    return _finish(report, out, plot, plot_memory)


def run_all(out=None, plot=False, device="auto", compile=False, budget=None) -> dict:
    """Every benchmark with its default grid. With --out, one JSON holding each benchmark's
    results, rewritten after each one (a later failure keeps the earlier results); each
    benchmark's PNG beside it. A benchmark that fails is reported and the others still run.
    `budget` (seconds of timed calls per case) applies to ops, train and generate."""
    dev = pick_device(device)
    results: dict = {"env": env_info(dev)}
    out_dir = Path(out).parent if out else Path(".")
    stem = Path(out).stem if out else "bench"
    jobs = [
        ("scan", lambda o: run_scan(out=o, plot=plot) if dev.type == "cuda" else None),
        ("ops", lambda o: run_ops_cmd(out=o, plot=plot, device=str(dev), budget=budget)),
        ("train", lambda o: run_train_cmd(out=o, plot=plot, device=str(dev), compile=compile, budget=budget)),
        ("generate", lambda o: run_generate_cmd(out=o, plot=plot, device=str(dev), budget=budget)),
        ("memory", lambda o: run_memory_cmd(out=o, plot=plot, device=str(dev), compile=compile)),
    ]
    for name, job in jobs:
        part = str(out_dir / f"{stem}-{name}.json")
        print(f"\n== bench {name} ==")
        t0 = time.perf_counter()
        try:
            res = job(part)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others
            print(f"bench {name} failed: {type(exc).__name__}: {exc}")
            results[name] = {"status": f"error: {type(exc).__name__}: {exc}"}
        else:
            if res is None:
                results[name] = {"status": "skipped (needs CUDA)"}
                print(f"bench {name}: skipped (needs CUDA)")
            else:
                results[name] = json.loads(Path(part).read_text())
            Path(part).unlink(missing_ok=True)
        results[name]["elapsed_s"] = round(time.perf_counter() - t0, 1)
        print(f"bench {name}: {results[name]['elapsed_s']} s")
        if out:
            save_json(results, out)
    done = [k for k, v in results.items() if k != "env" and "status" not in v]
    print(f"\nbench all: {len(done)} of {len(jobs)} benchmarks ran ({', '.join(done)})"
          + (f"; results in {out}" if out else ""))
    return results
