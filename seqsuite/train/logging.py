"""Run logs: RUN/metrics.csv, TensorBoard scalars in RUN/tb, and RUN/learning_curve.png."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from seqsuite.utils import atomic_write_text

FIRST_COLUMNS = ["step", "split", "loss", "bits_per_token", "lr", "grad_norm", "tokens_per_s",
                 "seq_len", "batch_size", "tokens", "mem_gb", "elapsed_s", "nonfinite"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics.csv as dicts (numbers converted to float/int where they parse)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                if v in ("", None):
                    continue
                try:
                    parsed[k] = int(v) if k in ("step", "seq_len", "batch_size", "tokens",
                                                "nonfinite") else float(v)
                except ValueError:
                    parsed[k] = v
            rows.append(parsed)
    return rows


class MetricsLog:
    """Appends rows to RUN/metrics.csv and mirrors numbers to TensorBoard (rank 0 only).

    On resume at step s, rows after s (written by the run that died) are dropped first, so
    the CSV reads as one uninterrupted run.
    """

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = list(FIRST_COLUMNS)
        rows: list[dict] = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns += [c for c in (reader.fieldnames or []) if c not in self.columns]
                rows = [r for r in reader if r.get("step") and int(r["step"]) <= resume_step]
        self._rewrite(rows)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(log_dir=str(self.path.parent / "tb"), purge_step=purge)

    def _rewrite(self, rows: list[dict]) -> None:
        lines = [",".join(self.columns)]
        for r in rows:
            lines.append(",".join(_fmt(r.get(c, "")) for c in self.columns))
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def log(self, row: dict) -> None:
        """Append one row (new keys extend the header, rewriting the small file once)."""
        new = [k for k in row if k not in self.columns]
        if new:
            old_rows = []
            with open(self.path, newline="") as f:
                old_rows = list(csv.DictReader(f))
            self.columns += new
            self._rewrite(old_rows)
        with open(self.path, "a") as f:
            f.write(",".join(_fmt(row.get(c, "")) for c in self.columns) + "\n")
        if self.writer is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k in ("step", "split") or not isinstance(v, (int, float)):
                    continue
                self.writer.add_scalar(f"{row.get('split', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


def plot_learning_curve(run_dir: str | os.PathLike) -> Path | None:
    """Draw train and validation bits per token against step into RUN/learning_curve.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.csv")
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for split, style in (("train", "-"), ("valid", "o-")):
        pts = [(r["step"], r["bits_per_token"]) for r in rows if r.get("split") == split
               and isinstance(r.get("bits_per_token"), float)
               and math.isfinite(r["bits_per_token"])]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, style, label=split, lw=1.2, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (bits per token)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    tmp = run_dir / ".learning_curve.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def plot_runs(path: str | os.PathLike, runs: list[tuple[str, Path]], ylabel: str = "bits per token") -> Path:
    """Several runs in one figure against training tokens: each run's training loss (faint) and
    its validation points (labelled); written atomically to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqsuite.utils import atomic_path

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, run) in enumerate(runs):
        rows = read_metrics(Path(run) / "metrics.csv")
        tr = [(r["tokens"], r["bits_per_token"]) for r in rows if r.get("split") == "train" and "tokens" in r]
        va = [(r["step"], r["bits_per_token"]) for r in rows if r.get("split") == "valid"]
        color = f"C{i}"
        if tr:
            ax.plot(*zip(*tr), color=color, alpha=0.35, lw=0.8)
        if va and tr:
            per_step = tr[-1][0] / max(1, max(r["step"] for r in rows if r.get("split") == "train"))
            ax.plot([s * per_step for s, _ in va], [b for _, b in va], color=color, marker="o", ms=3,
                    label=f"{name} (valid)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)
