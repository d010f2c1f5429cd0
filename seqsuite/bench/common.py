"""What every benchmark shares: the environment header, timing, OOM guards, tables, JSON, plots.

A benchmark returns a `Report`: long-format `rows` (one dict per measurement, JSON-ready) plus a
printable pivot `table`. Timings are medians of repeated calls after warm-up, measured with CUDA
events on a GPU and `time.perf_counter` on the CPU; the number of repeats adapts to a per-
measurement time budget so that a slow case (attention at 2^19) does not eat the whole run.
"""
from __future__ import annotations

import gc
import json
import math
import statistics
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from ..utils import atomic_path, atomic_write_text, resolve_device


@dataclass
class Report:
    """One benchmark's results: environment, settings, measurements and a printable table."""

    name: str
    title: str
    env: dict
    settings: dict
    rows: list[dict] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "env": self.env, "settings": self.settings,
                "rows": self.rows, "notes": self.notes}


def git_commit() -> str:
    """Short hash of the checkout this package lives in ($SEQSUITE_COMMIT when set, e.g. on a
    machine that received a copy of the tree without .git), or 'unknown' outside one. The
    hash gets a '+changes' suffix when tracked files differ from it: uncommitted edits, or a
    copied tree whose git metadata is older than its files (as on the device machine, where
    the copy's .git stays at the first commit copied there)."""
    if os.environ.get("SEQSUITE_COMMIT"):
        return os.environ["SEQSUITE_COMMIT"]
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None

    out = git("rev-parse", "--short", "HEAD")
    if out is None or out.returncode != 0 or not out.stdout.strip():
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    changed = dirty is not None and dirty.returncode == 0 and bool(dirty.stdout.strip())
    return out.stdout.strip() + ("+changes" if changed else "")


def device_name(device: torch.device) -> str:
    """A human name for the device: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def env_info(device: torch.device) -> dict:
    """The header every benchmark prints and records: device, date, commit, versions."""
    return {
        "device": device_name(device),
        "device_type": device.type,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }


def pick_device(device: str | None) -> torch.device:
    """'auto' → CUDA when available, else CPU; asking for CUDA without one is a user error."""
    from ..errors import UserError

    try:
        dev = torch.device(resolve_device(device))
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use cpu, cuda or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible: use --device cpu or auto")
    return dev


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_call(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds one call of fn takes (CUDA events on a GPU, wall clock on the CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure_ms(fn: Callable[[], object], device: torch.device, warmup: int = 2, repeats: int = 20,
               budget_s: float = 1.0) -> tuple[float, int]:
    """(median ms, number of timed calls) of fn after `warmup` untimed calls.

    The first timed call estimates the cost; further calls are made while they fit in
    `budget_s` seconds, up to `repeats` in all (at least one). A warm-up call that alone
    exceeds the budget ends the warm-up (the first call compiles and autotunes kernels)."""
    for i in range(max(1, warmup)):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        if time.perf_counter() - t0 > budget_s:  # a slow case: one warm-up call is enough
            break
    times = [_timed_call(fn, device)]
    n = max(1, min(repeats, int(budget_s * 1e3 / max(times[0], 1e-3))))
    for _ in range(n - 1):
        times.append(_timed_call(fn, device))
    return statistics.median(times), len(times)


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error from CUDA or the CPU allocator."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate memory" in msg or isinstance(exc, MemoryError))


def free_memory(device: torch.device) -> None:
    """Drop cached blocks after a case (and after an OOM) so the next case starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def guarded(fn: Callable[[], dict], device: torch.device) -> dict:
    """Run one case; an OOM becomes {'status': 'OOM'}, another error {'status': 'error: ...'}.

    A benchmark sweep must survive a case that does not fit, and say so in its table."""
    status = None
    try:
        out = fn()
        out.setdefault("status", "ok")
    except Exception as exc:  # noqa: BLE001 - any failure of one case is recorded, not fatal
        status = "OOM" if is_oom(exc) else f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        exc.__traceback__ = None  # the frames hold the failed case's tensors
        del exc
    free_memory(device)
    return {"status": status} if status is not None else out


def powers_of_two(lo: int, hi: int) -> list[int]:
    """[2^lo, …, 2^hi]."""
    return [1 << k for k in range(lo, hi + 1)]


def parse_int_list(text: str | None) -> list[int] | None:
    """'512,1024,4096' or '2^9..2^12' or '9..12' (exponents) → list of ints; None passes through."""
    from ..errors import UserError

    if text is None or not text.strip():
        return None
    text = text.replace(" ", "")
    try:
        if ".." in text:
            a, b = text.split("..")
            ea, eb = (int(s[2:]) if s.startswith("2^") else int(s) for s in (a, b))
            return powers_of_two(ea, eb)
        return [1 << int(s[2:]) if s.startswith("2^") else int(s) for s in text.split(",") if s]
    except ValueError:
        raise UserError(f"cannot read the list {text!r}: write e.g. '512,1024,2048' or '2^9..2^12'") from None


def fmt(value, status: str = "ok", digits: int = 3) -> str:
    """A table cell: a number to `digits` significant digits, or the case's status (OOM, n/a)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return status if status != "ok" else "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    mag = math.floor(math.log10(abs(value)))
    return f"{value:,.{max(0, digits - 1 - mag)}f}"


def print_report(report: Report) -> None:
    """Print the environment header, the table and the notes (rich when available)."""
    env = report.env
    header = f"{report.title} · {env['device']} · {env['date']} · commit {env['commit']} · torch {env['torch']}"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text fallback
        print(header)
        print("  ".join(report.headers))
        for row in report.table:
            print("  ".join(row))
    else:
        table = Table(title=header, title_justify="left")
        for i, h in enumerate(report.headers):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in report.table:
            table.add_row(*row)
        Console(width=max(120, 14 * len(report.headers))).print(table)
    for note in report.notes:
        print(f"note: {note}")


def save_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically (NaN/inf are written as null)."""
    atomic_write_text(path, json.dumps(_finite(data), indent=1) + "\n")


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def save_figure(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.2):
    """A figure with `ncols` axes side by side, drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def plot_path(out: str | Path | None, name: str) -> Path:
    """Where --plot writes: beside the JSON with .png (ops.json → ops.png), else bench-<name>.png."""
    return Path(out).with_suffix(".png") if out else Path(f"bench-{name}.png")


def equal_size_configs(d_model: int, n_layers: int, vocab_size: int, max_len: int = 1 << 20,
                       head_dim: int = 64, tie_embeddings: bool = False):
    """A Mamba LM and a Transformer++ LM of about the same size, independent of any preset.

    A Mamba block holds ~6·d² parameters and a Transformer++ block ~12·d², so the Transformer
    gets half the layers (the Mamba paper's pairing). Heads of `head_dim` (fewer if d is small)."""
    from ..core import ModelConfig

    n_heads = max(1, d_model // head_dim)
    while d_model % n_heads or (d_model // n_heads) % 2:
        n_heads -= 1
    mamba = ModelConfig(name=f"mamba-d{d_model}-n{n_layers}", vocab_size=vocab_size, d_model=d_model,
                        n_layers=n_layers, tie_embeddings=tie_embeddings)
    attn = ModelConfig(name=f"transformerpp-d{d_model}-n{max(1, n_layers // 2)}", vocab_size=vocab_size,
                       d_model=d_model, n_layers=max(1, n_layers // 2), layer="attn", n_heads=n_heads,
                       mlp_ratio=8 / 3, max_len=max_len, tie_embeddings=tie_embeddings)
    return mamba, attn


def build_on(cfg, device: torch.device):
    """Build a model directly on `device` (no CPU copy of the weights first)."""
    from ..core import build

    with device:
        return build(cfg)


def scan_backend(device: torch.device) -> str:
    """The selective-scan backend real float inputs on `device` would use (triton | reference)."""
    from ..kernels import backend_for

    probe = torch.zeros(1, 1, 1, device=device)
    return backend_for(probe, probe[0], probe, probe)
