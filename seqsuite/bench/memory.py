"""`bench memory`: peak training memory of Mamba against Transformer++ of equal size, by batch
size (the Mamba paper's Table 15: a 125M pair at L = 2048).

On a GPU the figure is `torch.cuda.max_memory_allocated` over one full training step (after a
first step, so AdamW's states exist): weights, gradients, optimizer states, activations and
every transient buffer. The CPU allocator keeps no such counter, so there the peak is reported
as n/a. On both, an *estimate* is also given: weights + gradients + AdamW states + the tensors
autograd saves for backward (counted by storage, through saved-tensor hooks). It leaves out
transient buffers and anything a custom kernel keeps outside autograd's saved tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .common import (Report, build_on, env_info, equal_size_configs, fmt, guarded, new_figure, save_figure,
                     scan_backend)
from .train import make_train_step


@dataclass
class MemorySettings:
    batches: list[int]
    seq_len: int = 2048
    d_model: int = 768
    n_layers: int = 24
    vocab: int = 50280
    compile: bool = False

    @classmethod
    def default(cls, device: torch.device) -> "MemorySettings":
        """The paper's 125M pair at L = 2048, batch 1 … 32, on a GPU; a small pair on the CPU."""
        if device.type == "cuda":
            return cls(batches=[1, 2, 4, 8, 16, 32])
        return cls(batches=[1, 2], seq_len=256, d_model=64, n_layers=4, vocab=256)


def saved_activation_bytes(model, tokens: torch.Tensor, device: torch.device) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one forward + loss
    (parameters excluded), under the same autocast as the training step."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        st = t.untyped_storage()
        if st.data_ptr() not in params and st.device.type != "meta":
            seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    vocab = model.config.vocab_size
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(tokens[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    del loss, logits
    return sum(seen.values())


def measure_memory(cfg, batch: int, seq_len: int, device: torch.device, compile: bool = False) -> dict:
    """Peak bytes of one training step (GPU), and the estimate described in the module docstring."""
    from ..core import count_params

    base = 0
    if device.type == "cuda":  # what earlier cases left allocated is not this case's memory
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
    model = build_on(cfg, device)
    n_params = count_params(model)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    step = make_train_step(model, batch, seq_len, device, compile)
    step()  # creates AdamW's states (and compiles kernels)
    out = {"params": n_params}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        out["peak_gb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
        out["baseline_gb"] = base / 2**30
    else:
        out["peak_gb"] = None
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device=device)
    act = saved_activation_bytes(model, tokens, device)
    out["activations_gb"] = act / 2**30
    out["estimate_gb"] = (4 * param_bytes + act) / 2**30  # weights + grads + 2 AdamW moments + saved
    return out


def run_memory(settings: MemorySettings, device: torch.device, progress=None) -> Report:
    """Peak memory for both models at every batch size; an OOM is recorded and larger batches skipped."""
    # tied input/output embeddings, as the paper's 125M models (GPT-3 recipe) have
    mamba, attn = equal_size_configs(settings.d_model, settings.n_layers, settings.vocab, max_len=settings.seq_len,
                                     tie_embeddings=True)
    report = Report("memory", f"training memory at L={settings.seq_len} (GiB)", env_info(device),
                    asdict(settings) | {"models": [mamba.name, attn.name],
                                        "scan_backend": scan_backend(device),
                                        "peak_counter": "torch.cuda.max_memory_allocated" if device.type == "cuda"
                                        else "none on CPU (n/a)"})
    for family, cfg in (("mamba", mamba), ("transformer++", attn)):
        failed = None
        for b in settings.batches:
            row = {"model": cfg.name, "family": family, "batch": b, "seq_len": settings.seq_len}
            if failed:
                report.rows.append(row | {"status": failed})
                continue
            row |= guarded(lambda: measure_memory(cfg, b, settings.seq_len, device, settings.compile), device)
            failed = "OOM" if row["status"] == "OOM" else None
            report.rows.append(row)
            if progress:
                progress()
    _table(report)
    return report


def _table(report: Report) -> None:
    names = list(dict.fromkeys(r["model"] for r in report.rows))
    report.headers = ["batch"] + [f"{n} {k}" for n in names for k in ("peak", "estimate")]
    by_key = {(r["model"], r["batch"]): r for r in report.rows}
    for b in report.settings["batches"]:
        cells = [str(b)]
        for n in names:
            r = by_key[(n, b)]
            cells += [fmt(r.get("peak_gb"), r["status"]), fmt(r.get("estimate_gb"), r["status"])]
        report.table.append(cells)
    params = {r["model"]: r["params"] for r in report.rows if "params" in r}
    report.notes.append("parameters: " + ", ".join(f"{n} {p / 1e6:.3g}M" for n, p in params.items()))
    if report.settings["scan_backend"] == "reference":
        report.notes.append("the scan ran on the PyTorch reference, whose autograd keeps O(chunk²) tensors per "
                            "chunk: Mamba's estimate here says nothing about the GPU kernel's memory")
    report.notes.append("peak = max_memory_allocated over one training step minus what was allocated before the "
                        "case (n/a on CPU); estimate = weights + "
                        "grads + AdamW states + tensors saved for backward (no transient buffers); "
                        f"scan backend: {report.settings['scan_backend']}")


def plot_memory(report: Report, path) -> None:
    """Memory vs batch size (log-log): measured peak (solid, GPU) and estimate (dotted)."""
    fig, (ax,) = new_figure(1, width=7)
    for name in dict.fromkeys(r["model"] for r in report.rows):
        rows = [r for r in report.rows if r["model"] == name]
        for key, ls in (("peak_gb", "-"), ("estimate_gb", ":")):
            pts = [(r["batch"], r[key]) for r in rows if r.get(key)]
            if pts:
                ax.plot(*zip(*pts), marker="o", ls=ls, label=f"{name} {key[:-3]}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("GiB")
    ax.set_title(f"training memory, L={report.settings['seq_len']} — {report.env['device']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
