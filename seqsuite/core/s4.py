"""S4 (S4D): a diagonal, time-invariant SSM, real or complex, discretised by zero-order hold.

Training computes the convolution kernel K (a Vandermonde product) and applies it by causal FFT
convolution; generation runs the recurrence. The same layer can also run through the
selective-scan kernel with time-invariant Δ, B, C (`backend="scan"`), which gives the same
output as the FFT path.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels import selective_scan


def s4d_init(n: int, init: str) -> torch.Tensor:
    """Diagonal state matrix A (n,) for an init name: lin, inv, legs (complex) or real."""
    k = torch.arange(n, dtype=torch.float64)
    if init == "real":  # S4D-Real: A_k = -(k + 1)
        return -(k + 1)
    if init == "lin":  # S4D-Lin: A_k = -1/2 + iπk
        imag = math.pi * k
    elif init == "inv":  # S4D-Inv: A_k = -1/2 + i (N/π)(N/(2k+1) - 1), N = 2n real states
        N = 2 * n
        imag = (N / math.pi) * (N / (2 * k + 1) - 1)
    elif init == "legs":  # diagonal part of HiPPO-LegS in normal-plus-low-rank form
        N = 2 * n
        q = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
        skew = torch.tril(q[:, None] * q[None, :], -1)
        skew = 0.5 * (skew - skew.T)  # S = A + PP^T = -1/2 I + skew
        omega = torch.linalg.eigvalsh(-1j * skew.to(torch.complex128))  # real, ± pairs
        imag = torch.sort(omega[omega > 0])[0][:n]
    else:
        raise ValueError(f"unknown S4D init {init!r}: use lin, inv, legs or real")
    return torch.complex(torch.full((n,), -0.5, dtype=torch.float64), imag)


class S4(nn.Module):
    """S4D layer over (batch, d_inner, L) with D skip and gating by z (Mamba-block mixer)."""

    def __init__(self, d_inner: int, d_state: int = 64, mode: str = "complex", init: str = "inv",
                 dt_min: float = 0.001, dt_max: float = 0.1, backend: str = "fft"):
        super().__init__()
        if mode not in ("complex", "real"):
            raise ValueError(f"S4 mode must be 'complex' or 'real', got {mode!r}")
        self.d_inner, self.mode, self.backend = d_inner, mode, backend
        self.n = d_state // 2 if mode == "complex" else d_state
        init = init if mode == "complex" else "real"
        A = s4d_init(self.n, init).repeat(d_inner, 1)  # (d_inner, n)
        log_dt = torch.rand(d_inner, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt.float())
        if mode == "complex":
            self.A_log_re = nn.Parameter(torch.log(-A.real).float())
            self.A_im = nn.Parameter(A.imag.float())
            self.B = nn.Parameter(torch.view_as_real(torch.ones(d_inner, self.n, dtype=torch.complex64)).contiguous())
            C = torch.randn(d_inner, self.n, dtype=torch.complex64) * math.sqrt(0.5)
            self.C = nn.Parameter(torch.view_as_real(C).contiguous())
            wd_free = (self.log_dt, self.A_log_re, self.A_im, self.B)
        else:
            self.A_log_re = nn.Parameter(torch.log(-A).float())
            self.B = nn.Parameter(torch.ones(d_inner, self.n))
            self.C = nn.Parameter(torch.randn(d_inner, self.n))
            wd_free = (self.log_dt, self.A_log_re, self.B)
        self.D = nn.Parameter(torch.ones(d_inner))
        for p in wd_free + (self.D,):
            p._no_weight_decay = True

    # ---- parameters in their mathematical form ----
    def ssm_params(self, dtype=torch.float32):
        """A (d, n), B (d, n), C (d, n) (complex in complex mode) and dt (d,), in `dtype` precision."""
        real = torch.float64 if dtype == torch.float64 else torch.float32
        dt = torch.exp(self.log_dt.to(real))
        if self.mode == "complex":
            cdt = torch.complex128 if real == torch.float64 else torch.complex64
            A = torch.complex(-torch.exp(self.A_log_re.to(real)), self.A_im.to(real))
            B = torch.view_as_complex(self.B.to(real)).to(cdt)
            C = torch.view_as_complex(self.C.to(real)).to(cdt)
        else:
            A = -torch.exp(self.A_log_re.to(real))
            B, C = self.B.to(real), self.C.to(real)
        return A, B, C, dt

    def discretize(self, dtype=torch.float32):
        """ZOH: Ā = exp(ΔA), B̄ = (exp(ΔA) - 1) / A · B. Returns Ā, B̄, C (d, n)."""
        A, B, C, dt = self.ssm_params(dtype)
        dtA = dt[:, None] * A
        return torch.exp(dtA), torch.expm1(dtA) / A * B, C

    def kernel(self, L: int, dtype=torch.float32, chunk: int = 4096) -> torch.Tensor:
        """Convolution kernel K (d, L): K_l = Re-part-rule(Σ_n C_n Ā_n^l B̄_n), built in chunks of L."""
        A, B, C, dt = self.ssm_params(dtype)
        dtA = dt[:, None] * A  # (d, n)
        CB = C * torch.expm1(dtA) / A * B
        parts = []
        for lo in range(0, L, chunk):
            pos = torch.arange(lo, min(lo + chunk, L), device=dtA.device, dtype=dtA.real.dtype)
            V = torch.exp(dtA[:, :, None] * pos)  # Vandermonde (d, n, T)
            K = torch.einsum("dn,dnl->dl", CB, V)
            parts.append(2 * K.real if K.is_complex() else K)
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x, z: (batch, d_inner, L) → y (batch, d_inner, L)."""
        L = x.shape[-1]
        if self.backend == "scan":
            return self.forward_scan(x, z)
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        K = self.kernel(L, work)
        n = 2 * L
        y = torch.fft.irfft(torch.fft.rfft(x.to(work), n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]
        y = y + self.D.to(work)[:, None] * x.to(work)
        return (y * F.silu(z.to(work))).to(x.dtype)

    def forward_scan(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The same function through the selective-scan kernel with time-invariant Δ, B, C."""
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        A, B, C, dt = self.ssm_params(work)
        dtA = dt[:, None] * A
        B_zoh = torch.expm1(dtA) / dtA * B  # so that Δ·B_zoh = B̄
        delta = dt[None, :, None].expand(x.shape[0], -1, x.shape[-1])
        return selective_scan(x, delta, A, B_zoh, C, self.D.to(work), z)

    def allocate_state(self, batch: int, device=None, dtype=None) -> dict:
        real = torch.float64 if dtype == torch.float64 else torch.float32
        sdt = {torch.float64: torch.complex128, torch.float32: torch.complex64}[real] if self.mode == "complex" else real
        return {"ssm": torch.zeros(batch, self.d_inner, self.n, device=device or self.D.device, dtype=sdt)}

    def step(self, x: torch.Tensor, z: torch.Tensor, state: dict) -> torch.Tensor:
        """x, z: (batch, d_inner) → y (batch, d_inner); state updated in place."""
        h = state["ssm"]
        real = h.real.dtype if h.is_complex() else h.dtype
        dA, dB, C = self.discretize(real)
        h.mul_(dA).add_(dB * x.to(real)[..., None])
        y = (h * C).sum(-1)
        y = 2 * y.real if y.is_complex() else y
        y = y + self.D.to(real) * x.to(real)
        return (y * F.silu(z.to(real))).to(x.dtype)
