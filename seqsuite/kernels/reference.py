"""Plain-PyTorch selective scan: the definition the GPU kernels are tested against.

The recurrence, per batch b, channel d and state n (DESIGN §3):

    dt_t = softplus(delta_t + delta_bias)            (softplus only if delta_softplus)
    h_t  = exp(dt_t · A) · h_{t-1} + dt_t · B_t · u_t
    y_t  = Σ_n C_t · h_t  (+ D · u_t),  then  y_t ← y_t · silu(z_t)

With complex A the output is 2·Re(Σ_n C_t h_t): each complex state stands for a conjugate pair
(S4D's convention). The state is kept in float32 (float64 when u is float64).

The scan runs chunk by chunk over L. Inside a chunk of T steps it is computed in closed form,
h_t = Σ_{s≤t} exp(S_t − S_s) dBu_s + exp(S_t) h_0 with S the running sum of dt·A, so every
exponent is ≤ 0 (stable for any chunk length) and the work is vectorised. Memory is
O(batch · dim · N · T²) per chunk, independent of L; the (batch, dim, L, N) state is never held.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 32


def _state_dtype(u: torch.Tensor, complex_: bool) -> torch.dtype:
    if u.dtype == torch.float64:
        return torch.complex128 if complex_ else torch.float64
    return torch.complex64 if complex_ else torch.float32


def _bc_chunk(X: torch.Tensor, dim: int, lo: int, hi: int, dtype: torch.dtype) -> torch.Tensor:
    """Slice B or C to time steps [lo, hi) and lay it out as (batch|1, dim|1, T|1, N)."""
    if X.dim() == 2:  # (dim, N): time-invariant
        return X.to(dtype)[None, :, None, :]
    if X.dim() == 3:  # (batch, N, L): one group shared by every channel
        return X[:, :, lo:hi].to(dtype).transpose(1, 2)[:, None]
    if X.dim() == 4:  # (batch, G, N, L): channels split into G equal groups
        G = X.shape[1]
        if dim % G:
            raise ValueError(f"dim {dim} is not divisible by the number of groups {G}")
        Xc = X[..., lo:hi].to(dtype).transpose(2, 3)  # (batch, G, T, N)
        return Xc.repeat_interleave(dim // G, dim=1)
    raise ValueError(f"B/C must be 2-D, 3-D or 4-D, got shape {tuple(X.shape)}")


def _chunk_scan(dA: torch.Tensor, dBu: torch.Tensor, C: torch.Tensor, h0: torch.Tensor):
    """Scan one chunk in closed form. dA, dBu: (b, d, T, N); C broadcastable; h0: (b, d, N).

    Returns y (b, d, T) before the complex real-part rule, and the last state (b, d, N).
    """
    T = dA.shape[2]
    S = torch.cumsum(dA, dim=2)  # (b, d, T, N)
    diff = S.unsqueeze(3) - S.unsqueeze(2)  # (b, d, t, s, N) = S_t - S_s
    causal = torch.ones(T, T, dtype=torch.bool, device=dA.device).tril()[:, :, None]
    if diff.is_complex():
        re = diff.real.masked_fill(~causal, float("-inf"))
        W = torch.exp(torch.complex(re, diff.imag))
    else:
        W = torch.exp(diff.masked_fill(~causal, float("-inf")))
    h = torch.einsum("bdtsn,bdsn->bdtn", W, dBu) + torch.exp(S) * h0.unsqueeze(2)
    y = (h * C).sum(-1)
    return y, h[:, :, -1]


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
):
    """Selective scan in PyTorch (differentiable). Shapes as in the module docstring / DESIGN §3.

    u, delta, z: (batch, dim, L); A: (dim, N) real or complex; B, C: (batch, N, L),
    (batch, G, N, L) or (dim, N); D, delta_bias: (dim,). Returns y (batch, dim, L) in u's dtype,
    and the last state (batch, dim, N) when `return_last_state`.
    `initial_state` (batch, dim, N) starts the scan from a given state (used by tests and
    chunked long-sequence checks).
    """
    batch, dim, L = u.shape
    complex_ = A.is_complex() or B.is_complex() or C.is_complex()
    sdt = _state_dtype(u, complex_)
    rdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    uf = u.to(rdt)
    dt = delta.to(rdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(rdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    Af = A.to(sdt)
    h = (
        initial_state.to(sdt)
        if initial_state is not None
        else torch.zeros(batch, dim, A.shape[-1], dtype=sdt, device=u.device)
    )
    T = chunk_size or DEFAULT_CHUNK
    ys = []
    for lo in range(0, L, T):
        hi = min(lo + T, L)
        dt_c = dt[:, :, lo:hi, None]  # (b, d, T, 1)
        dA = dt_c * Af[None, :, None, :]
        Bc = _bc_chunk(B, dim, lo, hi, sdt)
        Cc = _bc_chunk(C, dim, lo, hi, sdt)
        dBu = dt_c * uf[:, :, lo:hi, None] * Bc
        y, h = _chunk_scan(dA, dBu, Cc, h)
        ys.append(y)
    y = torch.cat(ys, dim=2)
    if y.is_complex():
        y = 2 * y.real
    if D is not None:
        y = y + D.to(rdt)[:, None] * uf
    if z is not None:
        y = y * F.silu(z.to(rdt))
    y = y.to(u.dtype)
    return (y, h) if return_last_state else y


def _bc_step(X: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """B or C of one step as (batch, dim|1, N): from (batch, N) or (batch, G, N)."""
    if X.dim() == 2:
        return X.to(dtype)[:, None, :]
    if X.dim() == 3:
        G = X.shape[1]
        if dim % G:
            raise ValueError(f"dim {dim} is not divisible by the number of groups {G}")
        return X.to(dtype).repeat_interleave(dim // G, dim=1)
    raise ValueError(f"B/C of one step must be (batch, N) or (batch, G, N), got {tuple(X.shape)}")


def selective_state_update_ref(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One recurrent step; `state` (batch, dim, N) is updated in place; returns y (batch, dim).

    x, dt, z: (batch, dim); A: (dim, N); B, C: (batch, N) shared by every channel, or
    (batch, G, N) grouped. A time-invariant (dim, N) B is passed as B.expand(batch, dim, N)
    (G = dim). With complex A the state is complex and y = 2·Re(Σ_n C h).
    """
    dim = x.shape[1]
    rdt = state.real.dtype if state.is_complex() else state.dtype
    dtf = dt.to(rdt)
    if dt_bias is not None:
        dtf = dtf + dt_bias.to(rdt)
    if dt_softplus:
        dtf = F.softplus(dtf)
    xf = x.to(rdt)
    dA = torch.exp(dtf[..., None] * A.to(state.dtype))
    Bs = _bc_step(B, dim, state.dtype)
    Cs = _bc_step(C, dim, state.dtype)
    state.copy_(state * dA + (dtf * xf)[..., None] * Bs)
    y = (state * Cs).sum(-1)
    if y.is_complex():
        y = 2 * y.real
    if D is not None:
        y = y + D.to(rdt) * xf
    if z is not None:
        y = y * F.silu(z.to(rdt))
    return y.to(x.dtype)


def sample_ref(logits: torch.Tensor, uniforms: torch.Tensor | None = None, temperature: float = 1.0,
               top_p: float = 1.0, top_k: int = 0) -> torch.Tensor:
    """One token per row of logits (batch, V) by Gumbel-max over the kept tokens, given the
    uniforms (batch, V) in (0, 1) (the function of triton_sample.py; greedy at temperature 0).

    Kept: the top-k most probable tokens (top_k > 0) and the nucleus (the most probable tokens
    whose mass, before each, is below top_p); ties with the smallest kept probability are kept."""
    x = logits.float()
    if temperature <= 0:
        return x.argmax(-1)
    p = torch.softmax(x / temperature, dim=-1)
    V = p.shape[-1]
    keep = torch.ones_like(p, dtype=torch.bool)
    if top_p < 1.0 or 0 < top_k < V:
        ps = p.sort(dim=-1, descending=True).values
        kept = torch.ones_like(ps, dtype=torch.bool)
        if 0 < top_k < V:
            kept[:, top_k:] = False
        if top_p < 1.0:
            kept &= (ps.cumsum(-1) - ps) < top_p
        tau = torch.where(kept, ps, torch.full_like(ps, float("inf"))).min(-1, keepdim=True).values
        keep = p >= tau
    u = uniforms.float().clamp(1e-12, 1.0 - 1e-7)
    score = torch.where(keep & (p > 0), p.log() - (-u.log()).log(), torch.full_like(p, float("-inf")))
    return score.argmax(-1)
