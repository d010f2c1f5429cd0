"""`bench train`: tokens per second of one training step (forward, backward, AdamW) of Mamba
against Transformer++ of equal size, by sequence length at constant tokens per step.

On a GPU the step runs under bf16 autocast with fp32 master weights and fused AdamW (the usual
mixed-precision recipe); attention uses SDPA (flash on a GPU). A length that runs out of memory
is recorded as OOM and longer lengths of that model are not tried.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .common import (Report, build_on, env_info, equal_size_configs, fmt, guarded, measure_ms, new_figure,
                     powers_of_two, save_figure, scan_backend)

DEFAULT_PAIRS = [("hg38-mamba-1.4m", "hg38-transformerpp-1.4m"), ("hg38-mamba-7m", "hg38-transformerpp-7m")]


@dataclass
class TrainSettings:
    lengths: list[int]
    tokens: int
    pairs: list[tuple[str, str]] = field(default_factory=lambda: list(DEFAULT_PAIRS))
    d_model: int | None = None  # set with n_layers: a preset-independent equal-size pair
    n_layers: int | None = None
    compile: bool = False
    warmup: int = 2
    repeats: int = 10
    budget_s: float = 1.0

    @classmethod
    def default(cls, device: torch.device) -> "TrainSettings":
        """The 1.4M and 7M presets at L = 2^10 … 2^17, 2^17 tokens per step, on a GPU. On the CPU
        (where the scan is the PyTorch reference) a small equal-size pair, d=64 with 4 Mamba
        layers, at L = 2^6 … 2^8 and 2^9 tokens per step."""
        if device.type == "cuda":
            return cls(lengths=powers_of_two(10, 17), tokens=1 << 17)
        return cls(lengths=powers_of_two(6, 8), tokens=1 << 9, d_model=64, n_layers=4, repeats=3, budget_s=0.3)


def model_configs(s) -> list[tuple[str, object]]:
    """(family, ModelConfig) for every model the settings name: preset pairs or a custom pair."""
    from ..core import get_config

    if s.d_model is not None or s.n_layers is not None:
        from ..errors import UserError

        if s.d_model is None or s.n_layers is None:
            raise UserError("give both --d-model and --n-layers for a custom Mamba/Transformer++ pair")
        vocab = getattr(s, "vocab", None) or 12
        m, a = equal_size_configs(s.d_model, s.n_layers, vocab)
        return [("mamba", m), ("transformer++", a)]
    out = []
    for mamba, attn in s.pairs:
        out += [("mamba", get_config(mamba)), ("transformer++", get_config(attn))]
    return out


def make_train_step(model, batch: int, L: int, device: torch.device, compile: bool = False):
    """A zero-argument callable doing one full training step on random tokens (batch, L)."""
    vocab = model.config.vocab_size
    g = torch.Generator(device="cpu").manual_seed(0)
    data = torch.randint(0, vocab, (batch, L + 1), generator=g).to(device)
    x, y = data[:, :-1], data[:, 1:]
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=cuda)
    fwd = torch.compile(model) if compile else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = fwd(x)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    return step


def run_train(settings: TrainSettings, device: torch.device, progress=None) -> Report:
    """Time one training step for every model and length (batch = tokens // L, at least 1)."""
    from ..core import count_params

    models = model_configs(settings)
    report = Report("train", "training throughput (tokens/s)", env_info(device),
                    asdict(settings) | {"models": [cfg.name for _, cfg in models],
                                        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
                                        "scan_backend": scan_backend(device)})
    for family, cfg in models:
        failed = None
        model = None
        for L in settings.lengths:
            batch = max(1, settings.tokens // L)
            row = {"model": cfg.name, "family": family, "L": L, "batch": batch, "tokens_per_step": batch * L}
            if failed:
                report.rows.append(row | {"status": failed})
                if progress:
                    progress()
                continue
            if model is None:
                model = build_on(cfg, device)
            row["params"] = count_params(model)

            def case():
                fn = make_train_step(model, batch, L, device, settings.compile)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                ms, n = measure_ms(fn, device, settings.warmup, settings.repeats, settings.budget_s)
                res = {"ms": ms, "tokens_per_s": batch * L / (ms / 1e3), "repeats": n}
                if device.type == "cuda":
                    res["peak_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                return res

            row |= guarded(case, device)
            if row["status"] == "OOM":
                failed = "OOM"
            report.rows.append(row)
            if progress:
                progress()
        del model
    _table(report)
    return report


def _table(report: Report) -> None:
    """Rows: lengths; columns: tokens/s of each model, and after each pair Mamba's speed-up."""
    series = list(dict.fromkeys((r["family"], r["model"]) for r in report.rows))
    report.headers = ["L", "batch"]
    for i, (family, name) in enumerate(series):
        report.headers.append(f"{name} tok/s")
        if family != "mamba" and i > 0 and series[i - 1][0] == "mamba":
            report.headers.append("mamba speed-up")
    by_key = {(r["family"], r["model"], r["L"]): r for r in report.rows}
    for L in report.settings["lengths"]:
        first = by_key[series[0] + (L,)]
        cells = [f"{L:,}", str(first["batch"])]
        for i, (family, name) in enumerate(series):
            r = by_key[(family, name, L)]
            cells.append(fmt(r.get("tokens_per_s"), r["status"]))
            if family != "mamba" and i > 0 and series[i - 1][0] == "mamba":
                m = by_key[series[i - 1] + (L,)]
                ratio = m["tokens_per_s"] / r["tokens_per_s"] if m.get("tokens_per_s") and r.get("tokens_per_s") else None
                cells.append(f"{ratio:.2f}x" if ratio else "—")
        report.table.append(cells)
    params = {r["model"]: r["params"] for r in report.rows if "params" in r}
    report.notes.append("parameters: " + ", ".join(f"{n} {p / 1e6:.3g}M" for n, p in params.items()))
    report.notes.append(f"{report.settings['tokens']:,} tokens per step; one step = forward + backward + AdamW; "
                        f"{report.settings['precision']}; compile={report.settings['compile']}; "
                        f"scan backend: {report.settings['scan_backend']}")


def plot_train(report: Report, path) -> None:
    """Tokens/s vs length, log-log, one line per model (dashed: Transformer++)."""
    fig, (ax,) = new_figure(1, width=7)
    for family, name in dict.fromkeys((r["family"], r["model"]) for r in report.rows):
        rows = [r for r in report.rows if r["model"] == name and r["family"] == family]
        pts = [(r["L"], r["tokens_per_s"]) for r in rows if r.get("tokens_per_s")]
        if pts:
            ax.plot(*zip(*pts), marker="o", ls="--" if family != "mamba" else "-", label=name)
        oom = [r["L"] for r in rows if r["status"] == "OOM"]
        if oom and pts:
            ax.plot(oom[0], pts[-1][1], marker="x", color="red", ms=10)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L (constant tokens per step)")
    ax.set_ylabel("training tokens / s")
    ax.set_title(f"training throughput — {report.env['device']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
