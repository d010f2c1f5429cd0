"""S6: the selective SSM of Mamba. Δ, B, C depend on the input; A is diagonal and real."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels import selective_scan, selective_state_update
from .derived import DerivedTensors


class S6(nn.Module):
    """Selective scan over (batch, d_inner, L) with gating by z.

    Δ = softplus(W_Δ (W_r x) + b), B = W_B x, C = W_C x, A = -exp(A_log) (S4D-Real init).
    """

    def __init__(self, d_inner: int, d_state: int = 16, dt_rank: int = 0, dt_min: float = 0.001,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = dt_rank or math.ceil(d_inner / 32)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():  # bias = softplus^-1(dt)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))
        for p in (self.A_log, self.D, self.dt_proj.bias):
            p._no_weight_decay = True

    def _proj(self, x: torch.Tensor):
        """x (..., d_inner) → dt (..., d_inner) without bias, B and C (..., N)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def _scan(self, x: torch.Tensor, z: torch.Tensor, return_last_state: bool = False):
        dt, B, C = self._proj(x.transpose(1, 2))
        A = -torch.exp(self.A_log.float())
        return selective_scan(
            x, dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
            return_last_state=return_last_state,
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x, z: (batch, d_inner, L) → y (batch, d_inner, L)."""
        return self._scan(x, z)

    def prefill(self, x: torch.Tensor, z: torch.Tensor, state: dict) -> torch.Tensor:
        """forward() over a prompt that also leaves the scan's last state in state["ssm"]."""
        y, last = self._scan(x, z, return_last_state=True)
        state["ssm"].copy_(last)
        return y

    def allocate_state(self, batch: int, device=None, dtype=None) -> dict:
        dtype = torch.float64 if dtype == torch.float64 else torch.float32
        return {"ssm": torch.zeros(batch, self.d_inner, self.d_state, device=device or self.A_log.device, dtype=dtype)}

    def _step_weights(self, x: torch.Tensor, state_dtype: torch.dtype):
        """A = -exp(A_log) and one (d_inner + 2N, d_inner) matrix giving Δ (without bias), B
        and C from x in a single matmul (W_Δ W_r folded), for the recurrent step. Kept between
        steps and refreshed in place when a parameter changes, so a CUDA graph that captured
        them stays valid; this saves three kernel launches per layer and step."""
        def make():
            W = self.x_proj.weight
            return {"A": -torch.exp(self.A_log.to(state_dtype)),
                    "Wx": torch.cat([self.dt_proj.weight @ W[: self.dt_rank], W[self.dt_rank:]]).to(x.dtype)}

        cache = self.__dict__.setdefault("_step_cache", DerivedTensors())
        t = cache.get((self.A_log, self.x_proj.weight, self.dt_proj.weight), make, (x.dtype, state_dtype, x.device))
        return t["A"], t["Wx"]

    def step(self, x: torch.Tensor, z: torch.Tensor, state: dict) -> torch.Tensor:
        """x, z: (batch, d_inner) → y (batch, d_inner); state updated in place."""
        A, Wx = self._step_weights(x, state["ssm"].dtype)
        dt, B, C = F.linear(x, Wx).split([self.d_inner, self.d_state, self.d_state], dim=-1)
        return selective_state_update(state["ssm"], x, dt, A, B, C, self.D, z,
                                      dt_bias=self.dt_proj.bias, dt_softplus=True)
