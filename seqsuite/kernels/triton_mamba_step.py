"""One recurrent step of a stack of Mamba-S6 residual layers in a single kernel (decoding).

For each layer l of the stack, with x the residual stream of one sequence:

    xn = RMSNorm(x) · w_norm
    (u, z) = W_in xn;  window = [conv_state[1:], u];  u = SiLU(Σ_k window_k w_conv,k + b_conv)
    (r, B, C) = W_x u;  Δ = softplus(W_Δ r + b_Δ)  (r of rank R: the low-rank form, not folded)
    h = exp(Δ A) h + Δ B u;  y = (Σ_n C_n h_n + D u) · SiLU(z)
    x = x + W_out y

One program per sequence runs every layer in turn: the whole stack step is one launch instead
of about ten per layer, which is what bounds decoding at small batch (one launch costs about
as much as the arithmetic of a layer at batch 1). The u, z and y vectors of a layer pass
through a small scratch buffer (batch, 3, d_inner) that the same program writes and then
reads after a barrier. Weights are stacked over layers (see core/fused_step.py); states are
the stacked conv windows (layers, batch, d_inner, K) and SSM states (layers, batch, d_inner, N)
float32, updated in place. The reference is the layers' own `step` (core/block.py).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .triton_fwd import _softplus


@triton.jit
def _silu(x):
    return x * tl.sigmoid(x)


@triton.jit
def _mamba_stack_step_kernel(
    x_ptr, out_ptr, scratch_ptr,
    norm_ptr, win_ptr, convw_ptr, convb_ptr, xp_ptr, dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr,
    conv_ptr, ssm_ptr,
    n_layers, batch, eps,
    d: tl.constexpr, di: tl.constexpr, N: tl.constexpr, R: tl.constexpr,  # constexpr: aligned, vectorised loads
    K: tl.constexpr, BDM: tl.constexpr, BI: tl.constexpr, BK: tl.constexpr, NP: tl.constexpr,
    RP: tl.constexpr, BKO: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BDM)
    dmask = offs_d < d
    offs_i = tl.arange(0, BI)
    offs_k = tl.arange(0, BK)
    offs_n = tl.arange(0, NP)
    nmask = offs_n < N
    offs_r = tl.arange(0, RP)
    rkmask = offs_r < R
    offs_c = tl.arange(0, K)
    offs_ko = tl.arange(0, BKO)
    P = R + 2 * N  # rows of the x-projection: [Δ (low rank) | B | C]
    scr = scratch_ptr + b * 3 * di  # [u | z | y] of this sequence
    x = tl.load(x_ptr + b * d + offs_d, mask=dmask, other=0.0).to(tl.float32)
    for l in range(n_layers):
        # ---- RMSNorm ----
        w = tl.load(norm_ptr + l * d + offs_d, mask=dmask, other=0.0).to(tl.float32)
        xn = x * tl.rsqrt(tl.sum(x * x, 0) / d + eps) * w
        # ---- in-projection, conv window shift, depthwise conv, SiLU ----
        win = win_ptr + l * 2 * di * d
        cst = conv_ptr + (l * batch + b) * di * K
        for i0 in range(0, di, BI):
            rows = i0 + offs_i
            rmask = rows < di
            m2 = rmask[:, None] & dmask[None, :]
            Wu = tl.load(win + rows[:, None] * d + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
            Wz = tl.load(win + (di + rows)[:, None] * d + offs_d[None, :], mask=m2, other=0.0).to(tl.float32)
            cm = rmask[:, None] & (offs_c[None, :] < K)
            nxt = tl.load(cst + rows[:, None] * K + offs_c[None, :] + 1, mask=cm & (offs_c[None, :] < K - 1),
                          other=0.0).to(tl.float32)
            cw = tl.load(convw_ptr + (l * di + rows[:, None]) * K + offs_c[None, :], mask=cm, other=0.0)
            cb = tl.load(convb_ptr + l * di + rows, mask=rmask, other=0.0).to(tl.float32)
            u = tl.sum(Wu * xn[None, :], 1)
            z = tl.sum(Wz * xn[None, :], 1)
            window = tl.where(offs_c[None, :] == K - 1, u[:, None], nxt)
            tl.debug_barrier()  # every lane has read the old window before any writes the new one
            tl.store(cst + rows[:, None] * K + offs_c[None, :], window.to(conv_ptr.dtype.element_ty), mask=cm)
            # the conv runs on the window as stored (the state's dtype), as the layer's step does
            wv = window.to(conv_ptr.dtype.element_ty).to(tl.float32)
            uc = _silu(tl.sum(wv * cw.to(tl.float32), 1) + cb)
            tl.store(scr + rows, uc, mask=rmask)
            tl.store(scr + di + rows, z, mask=rmask)
        tl.debug_barrier()
        # ---- x-projection: Δ in low rank (R), B and C ----
        xp = xp_ptr + l * P * di
        rv = tl.zeros((RP,), dtype=tl.float32)
        Bv = tl.zeros((NP,), dtype=tl.float32)
        Cv = tl.zeros((NP,), dtype=tl.float32)
        for k0 in range(0, di, BK):
            ks = k0 + offs_k
            kmask = ks < di
            uk = tl.load(scr + ks, mask=kmask, other=0.0)
            Wr = tl.load(xp + offs_r[:, None] * di + ks[None, :], mask=rkmask[:, None] & kmask[None, :],
                         other=0.0).to(tl.float32)
            m2 = nmask[:, None] & kmask[None, :]
            WB = tl.load(xp + (R + offs_n)[:, None] * di + ks[None, :], mask=m2, other=0.0).to(tl.float32)
            WC = tl.load(xp + (R + N + offs_n)[:, None] * di + ks[None, :], mask=m2, other=0.0).to(tl.float32)
            rv += tl.sum(Wr * uk[None, :], 1)
            Bv += tl.sum(WB * uk[None, :], 1)
            Cv += tl.sum(WC * uk[None, :], 1)
        # ---- Δ, state update, output, gate ----
        for i0 in range(0, di, BI):
            rows = i0 + offs_i
            rmask = rows < di
            Wd = tl.load(dtw_ptr + (l * di + rows[:, None]) * R + offs_r[None, :],
                         mask=rmask[:, None] & rkmask[None, :], other=0.0).to(tl.float32)
            m2 = rmask[:, None] & nmask[None, :]
            A = tl.load(A_ptr + (l * di + rows[:, None]) * N + offs_n[None, :], mask=m2, other=0.0)
            hp = ssm_ptr + ((l * batch + b) * di + rows[:, None]) * N + offs_n[None, :]
            h = tl.load(hp, mask=m2, other=0.0)
            ur = tl.load(scr + rows, mask=rmask, other=0.0)
            zr = tl.load(scr + di + rows, mask=rmask, other=0.0)
            Dr = tl.load(D_ptr + l * di + rows, mask=rmask, other=0.0)
            dt = tl.sum(Wd * rv[None, :], 1) + tl.load(dtb_ptr + l * di + rows, mask=rmask, other=0.0).to(tl.float32)
            dt = _softplus(dt)
            h = h * tl.exp(dt[:, None] * A) + (dt * ur)[:, None] * Bv[None, :]
            tl.store(hp, h, mask=m2)
            y = tl.sum(h * Cv[None, :], 1) + Dr * ur
            tl.store(scr + 2 * di + rows, y * _silu(zr), mask=rmask)
        tl.debug_barrier()
        # ---- out-projection and residual ----
        wo = wout_ptr + l * d * di
        acc = tl.zeros((BDM,), dtype=tl.float32)
        for k0 in range(0, di, BKO):
            ks = k0 + offs_ko
            kmask = ks < di
            yk = tl.load(scr + 2 * di + ks, mask=kmask, other=0.0)
            Wo = tl.load(wo + offs_d[:, None] * di + ks[None, :], mask=dmask[:, None] & kmask[None, :],
                         other=0.0).to(tl.float32)
            acc += tl.sum(Wo * yk[None, :], 1)
        x += acc
        tl.debug_barrier()  # the next layer overwrites the scratch
    tl.store(out_ptr + b * d + offs_d, x.to(out_ptr.dtype.element_ty), mask=dmask)


def _pow2(n: int) -> int:
    return max(triton.next_power_of_2(int(n)), 2)


def _tiles(d: int, di: int, N: int, R: int) -> list[int]:
    """[BI, BK, BKO, warps]: rows of the in-projection tiles (BI x d), columns of the
    x-projection tiles, columns of the out-projection tile (d x BKO), warps per program.
    SEQSUITE_FUSED_TILES="BI,BK,BKO,warps" overrides them (0 keeps one) for tuning sweeps
    (benchmarks/decode_policy.py --tiles). ptxas (sm_90a) at d = 64: the defaults use 255
    registers and spill 260 B; 64,128,64,8 and 32,64,32,8 do not spill (notes-kernels.md).
    Which is faster is not yet measured."""
    BDM, DI = _pow2(d), _pow2(di)
    cfg = [max(8, min(DI, 8192 // BDM)), max(16, min(DI, 4096 // max(_pow2(N), _pow2(R)))),
           max(8, min(DI, 16384 // BDM)), 8]
    env = os.environ.get("SEQSUITE_FUSED_TILES", "").strip()
    if env:
        vals = [int(v) for v in env.split(",")]
        if len(vals) != 4:
            raise ValueError(f"SEQSUITE_FUSED_TILES={env!r}: use BI,BK,BKO,warps")
        cfg = [v if v > 0 else c for v, c in zip(vals, cfg)]
        cfg[:3] = [min(_pow2(v), DI) for v in cfg[:3]]
    return cfg


def mamba_stack_step_triton(x: torch.Tensor, w: dict, conv: torch.Tensor, ssm: torch.Tensor,
                            scratch: torch.Tensor, eps: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """x (batch, d) → x after every layer of the stack; `conv` (layers, batch, d_inner, K) and
    `ssm` (layers, batch, d_inner, N) float32 updated in place. `w`: stacked contiguous weights
    norm (L, d), w_in (L, 2·d_inner, d), conv_w (L, d_inner, K), conv_b (L, d_inner),
    x_proj (L, R + 2N, d_inner) (rows: Δ in rank R, B, C), dt_w (L, d_inner, R), dt_bias
    (L, d_inner), A (L, d_inner, N) float32, D (L, d_inner) float32, w_out (L, d, d_inner).
    `scratch`: float32 (batch, 3·d_inner)."""
    n_layers, batch, di, K = conv.shape
    N = ssm.shape[-1]
    R = w["dt_w"].shape[-1]
    d = x.shape[1]
    if K & (K - 1):
        raise ValueError(f"the fused step needs a power-of-two conv width, got {K}")
    x = x.contiguous()
    out = torch.empty_like(x) if out is None else out
    BDM = _pow2(d)
    BI, BK, BKO, warps = _tiles(d, di, N, R)
    _mamba_stack_step_kernel[(batch,)](
        x, out, scratch, w["norm"], w["w_in"], w["conv_w"], w["conv_b"], w["x_proj"], w["dt_w"], w["dt_bias"],
        w["A"], w["D"], w["w_out"], conv, ssm, n_layers, batch, float(eps), d=d, di=di, N=N, R=R,
        K=K, BDM=BDM, BI=BI, BK=BK, NP=_pow2(N), RP=_pow2(R), BKO=BKO, num_warps=warps,
    )
    return out
