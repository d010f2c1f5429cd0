"""`bench ops`: the selective scan against causal attention and FFT convolution by length
(the Mamba paper's Fig. 8, left), forward and forward+backward.

Shapes follow DESIGN §7: the scan runs over `dim` channels with N states (bf16 activations on a
GPU), attention has `heads` × `head_dim` = dim (24 × 64 = 1536 on a GPU, flash backend), the FFT
convolution is a causal long convolution over `dim` channels in fp32 (a kernel as long as the
input, zero-padded to 2L). Batch 1 by default.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .common import (Report, env_info, fmt, guarded, measure_ms, new_figure, powers_of_two, save_figure,
                     scan_backend)

OPS = ("scan", "attention", "fftconv")
MODES = ("fwd", "fwd+bwd")


@dataclass
class OpsSettings:
    lengths: list[int]
    batch: int = 1
    dim: int = 1536
    heads: int = 24
    d_state: int = 16
    warmup: int = 2
    repeats: int = 20
    budget_s: float = 1.0

    @classmethod
    def default(cls, device: torch.device) -> "OpsSettings":
        """The paper's grid (L = 2^9 … 2^19, 1536 channels) on a GPU; small shapes on the CPU."""
        if device.type == "cuda":
            return cls(lengths=powers_of_two(9, 19))
        return cls(lengths=powers_of_two(9, 12), dim=32, heads=1, repeats=5, budget_s=0.3)


def _scan_inputs(s: OpsSettings, L: int, device, grad: bool):
    from ..kernels import selective_scan  # noqa: F401  (fail early if the kernels are missing)

    act = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape, dtype=act, scale=1.0):
        return (torch.randn(*shape, generator=g, device=device) * scale).to(dtype).requires_grad_(grad)

    b, d, n = s.batch, s.dim, s.d_state
    x = dict(u=rnd(b, d, L), delta=rnd(b, d, L, scale=0.5), z=rnd(b, d, L), B=rnd(b, n, L), C=rnd(b, n, L))
    x["A"] = (-torch.arange(1, n + 1, device=device, dtype=torch.float32).repeat(d, 1)).requires_grad_(grad)
    x["D"] = torch.ones(d, device=device).requires_grad_(grad)
    x["delta_bias"] = torch.full((d,), math.log(math.expm1(0.01)), device=device).requires_grad_(grad)
    return x


def _scan_case(s: OpsSettings, L: int, device, mode: str):
    from ..kernels import selective_scan

    x = _scan_inputs(s, L, device, grad=mode != "fwd")

    def fwd():
        return selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"],
                              delta_bias=x["delta_bias"], delta_softplus=True)

    return _runner(fwd, list(x.values()), mode)


def _attention_case(s: OpsSettings, L: int, device, mode: str):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hd = s.dim // s.heads
    q, k, v = (torch.randn(s.batch, s.heads, L, hd, device=device, dtype=dtype, requires_grad=mode != "fwd")
               for _ in range(3))

    def fwd():
        if device.type == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return _runner(fwd, [q, k, v], mode)


def fft_causal_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution of x (batch, dim, L) with a per-channel kernel k (dim, L), by FFT."""
    L = x.shape[-1]
    n = 2 * L
    return torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]


def _fft_case(s: OpsSettings, L: int, device, mode: str):
    x = torch.randn(s.batch, s.dim, L, device=device, requires_grad=mode != "fwd")
    k = (torch.randn(s.dim, L, device=device) / L).requires_grad_(mode != "fwd")
    return _runner(lambda: fft_causal_conv(x, k), [x, k], mode)


def _runner(fwd, inputs, mode: str):
    """A zero-argument callable doing the forward (no grad) or forward + backward to all inputs."""
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fwd()
        return run
    leaves = [t for t in inputs if t.requires_grad]

    def run():
        y = fwd()
        return torch.autograd.grad(y, leaves, torch.ones_like(y))
    return run


CASES = {"scan": _scan_case, "attention": _attention_case, "fftconv": _fft_case}


def run_ops(settings: OpsSettings, device: torch.device, progress=None) -> Report:
    """Time every (op, mode, L); a case that runs out of memory is recorded as OOM, and larger
    lengths of the same op and mode are then not tried."""
    if settings.dim % settings.heads:
        from ..errors import UserError

        raise UserError(f"--dim {settings.dim} is not divisible by --heads {settings.heads}")
    report = Report("ops", "scan vs attention vs FFT convolution (ms)", env_info(device),
                    asdict(settings) | {"scan_backend": scan_backend(device),
                                        "attention_backend": "flash" if device.type == "cuda" else "default"})
    for op in OPS:
        for mode in MODES:
            failed = None
            for L in settings.lengths:
                if failed:
                    row = {"status": failed}
                else:
                    def case():
                        fn = CASES[op](settings, L, device, mode)
                        ms, n = measure_ms(fn, device, settings.warmup, settings.repeats, settings.budget_s)
                        return {"ms": ms, "repeats": n}
                    row = guarded(case, device)
                    if row["status"] == "OOM":
                        failed = "OOM"
                report.rows.append({"op": op, "mode": mode, "L": L} | row)
                if progress:
                    progress()
    _table(report)
    return report


def _table(report: Report) -> None:
    cols = [(op, mode) for mode in MODES for op in OPS]
    report.headers = ["L"] + [f"{op} {mode}" for op, mode in cols]
    by_key = {(r["op"], r["mode"], r["L"]): r for r in report.rows}
    for L in report.settings["lengths"]:
        cells = [f"{L:,}"]
        for op, mode in cols:
            r = by_key[(op, mode, L)]
            cells.append(fmt(r.get("ms"), r["status"]))
        report.table.append(cells)
    s = report.settings
    report.notes.append(f"batch {s['batch']}, {s['dim']} channels; scan N={s['d_state']} ({s['scan_backend']} backend); "
                        f"attention {s['heads']} heads x {s['dim'] // s['heads']} causal; FFT conv fp32; median ms")


def plot_ops(report: Report, path) -> None:
    """Time vs length, log-log, forward and forward+backward side by side (Fig. 8 left)."""
    fig, axes = new_figure(2)
    for ax, mode in zip(axes, MODES):
        for op in OPS:
            pts = [(r["L"], r["ms"]) for r in report.rows if r["op"] == op and r["mode"] == mode and r.get("ms")]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=op)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("time (ms)")
        ax.set_title(f"{mode} — {report.env['device']}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    save_figure(fig, path)
