"""One recurrent step of a stack of Mamba-S6 residual layers in a single kernel (decoding).

For each layer l of the stack, with x the residual stream of one sequence:

    xn = RMSNorm(x) · w_norm
    (u, z) = W_in xn;  window = [conv_state[1:], u];  u = SiLU(Σ_k window_k w_conv,k + b_conv)
    (r, B, C) = W_x u;  Δ = softplus(W_Δ r + b_Δ)  (r of rank R: the low-rank form, not folded)
    h = exp(Δ A) h + Δ B u;  y = (Σ_n C_n h_n + D u) · SiLU(z)
    x = x + W_out y

The whole stack step is one launch instead of about ten per layer, which is what bounds
decoding at small batch (one launch costs about as much as the arithmetic of a layer at
batch 1). Three kernels, chosen by `mamba_stack_step_triton`:

* tiled (`_mamba_stack_step_kernel`): one program per sequence, any width; the u, z and y
  vectors of a layer pass through a small scratch buffer (batch, 3·d_inner) that the same
  program writes and then reads after a barrier;
* one-shot (`_mamba_stack_step_oneshot_kernel`): one program per sequence for narrow stacks,
  every load of a layer issued at once and the vectors kept in registers;
* split (`_mamba_stack_step_split_kernel`): several programs per sequence at small batch,
  meeting at two flag barriers per layer.

Weights are stacked over layers (see core/fused_step.py); states are the stacked conv windows
(layers, batch, d_inner, K) and SSM states (layers, batch, d_inner, N) float32, updated in
place. The reference is the layers' own `step` (core/block.py). Measurements:
benchmarks/notes-kernels.md, "Decode v3".
"""
from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from .triton_fwd import _softplus


@triton.jit
def _silu(x):
    return x * tl.sigmoid(x)


@triton.jit
def _rms_norm(x, w, d, eps):
    """RMSNorm of the vector x (padded lanes zero) over its d entries, times the weight w."""
    return x * tl.rsqrt(tl.sum(x * x, 0) / d + eps) * w


@triton.jit
def _load_input(x_ptr, add_ptr, idx_ptr, b, x_stride, add_stride, offs_d, dmask, d: tl.constexpr,
                HAS_ADD: tl.constexpr, GATHER: tl.constexpr):
    """Row b of the stack's input, float32: row idx[b] of x (an embedding table) when GATHER,
    else row b; x + add when HAS_ADD (a U-Net's skip plus the unpooled inner output)."""
    row = b
    if GATHER:
        row = tl.load(idx_ptr + b).to(tl.int64)
    x = tl.load(x_ptr + row * x_stride + offs_d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_ADD:
        x += tl.load(add_ptr + b * add_stride + offs_d, mask=dmask, other=0.0).to(tl.float32)
    return x


@triton.jit
def _offsets(row0, d: tl.constexpr, di: tl.constexpr, N: tl.constexpr, R: tl.constexpr, K: tl.constexpr,
             BDM: tl.constexpr, ROWS: tl.constexpr, NP: tl.constexpr, RP: tl.constexpr):
    """Index vectors and masks of the one-shot and split kernels for the d_inner rows
    [row0, row0 + ROWS): model width, rows, states, Δ rank, conv taps, and the 2-D masks
    (rows × width, rows × states, rows × taps, states × rows)."""
    offs_d = tl.arange(0, BDM)
    dmask = offs_d < d
    offs_i = row0 + tl.arange(0, ROWS)
    imask = offs_i < di
    offs_n = tl.arange(0, NP)
    nmask = offs_n < N
    offs_r = tl.arange(0, RP)
    rmask = offs_r < R
    offs_c = tl.arange(0, K)
    m_id = imask[:, None] & dmask[None, :]
    m_in = imask[:, None] & nmask[None, :]
    m_ic = imask[:, None] & (offs_c[None, :] < K)
    m_ni = nmask[:, None] & imask[None, :]
    return offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, offs_c, m_id, m_in, m_ic, m_ni


@triton.jit
def _load_front(l, b, batch, offs_d, dmask, offs_i, offs_c, m_id, m_ic, imask,
                norm_ptr, win_ptr, convw_ptr, convb_ptr, conv_ptr, d: tl.constexpr, di: tl.constexpr,
                K: tl.constexpr):
    """The loads of layer l that its first stage needs (norm, in-projection, conv): the split
    kernel issues them for the next layer before its last barrier."""
    w = tl.load(norm_ptr + l * d + offs_d, mask=dmask, other=0.0).to(tl.float32)
    win = win_ptr + l * 2 * di * d
    Wu = tl.load(win + offs_i[:, None] * d + offs_d[None, :], mask=m_id, other=0.0).to(tl.float32)
    Wz = tl.load(win + (di + offs_i)[:, None] * d + offs_d[None, :], mask=m_id, other=0.0).to(tl.float32)
    cst = conv_ptr + (l * batch + b) * di * K + offs_i[:, None] * K + offs_c[None, :]
    nxt = tl.load(cst + 1, mask=m_ic & (offs_c[None, :] < K - 1), other=0.0).to(tl.float32)
    cw = tl.load(convw_ptr + (l * di + offs_i[:, None]) * K + offs_c[None, :], mask=m_ic, other=0.0).to(tl.float32)
    cb = tl.load(convb_ptr + l * di + offs_i, mask=imask, other=0.0).to(tl.float32)
    return w, Wu, Wz, cst, nxt, cw, cb


@triton.jit
def _load_xproj_w(l, offs_i, imask, offs_n, offs_r, rmask, m_ni, xp_ptr, di: tl.constexpr, N: tl.constexpr,
                  R: tl.constexpr):
    """The x-projection rows of layer l (low-rank Δ, B, C) for the d_inner columns offs_i."""
    P = R + 2 * N  # rows of the x-projection: [Δ (low rank) | B | C]
    xp = xp_ptr + l * P * di
    Wr = tl.load(xp + offs_r[:, None] * di + offs_i[None, :], mask=rmask[:, None] & imask[None, :],
                 other=0.0).to(tl.float32)
    WB = tl.load(xp + (R + offs_n)[:, None] * di + offs_i[None, :], mask=m_ni, other=0.0).to(tl.float32)
    WC = tl.load(xp + (R + N + offs_n)[:, None] * di + offs_i[None, :], mask=m_ni, other=0.0).to(tl.float32)
    return Wr, WB, WC


@triton.jit
def _load_ssm(l, b, batch, offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, m_in,
              dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr, ssm_ptr, d: tl.constexpr, di: tl.constexpr,
              N: tl.constexpr, R: tl.constexpr):
    """Layer l's loads after the x-projection: Δ, A, the state, D, the out-projection."""
    Wd = tl.load(dtw_ptr + (l * di + offs_i[:, None]) * R + offs_r[None, :], mask=imask[:, None] & rmask[None, :],
                 other=0.0).to(tl.float32)
    dtb = tl.load(dtb_ptr + l * di + offs_i, mask=imask, other=0.0).to(tl.float32)
    A = tl.load(A_ptr + (l * di + offs_i[:, None]) * N + offs_n[None, :], mask=m_in, other=0.0)
    hp = ssm_ptr + ((l * batch + b) * di + offs_i[:, None]) * N + offs_n[None, :]
    h = tl.load(hp, mask=m_in, other=0.0)
    Dv = tl.load(D_ptr + l * di + offs_i, mask=imask, other=0.0)
    Wo = tl.load(wout_ptr + l * d * di + offs_d[:, None] * di + offs_i[None, :], mask=dmask[:, None] & imask[None, :],
                 other=0.0).to(tl.float32)
    return Wd, dtb, A, hp, h, Dv, Wo


@triton.jit
def _store_output(out_ptr, b, out_stride, offs_d, dmask, x, fnw_ptr, f_eps, d: tl.constexpr, NORM_OUT: tl.constexpr):
    """Row b of the stack's output; RMSNorm(x) · fnw (a model's final norm) when NORM_OUT."""
    if NORM_OUT:
        x = _rms_norm(x, tl.load(fnw_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32), d, f_eps)
    tl.store(out_ptr + b * out_stride + offs_d, x.to(out_ptr.dtype.element_ty), mask=dmask)


@triton.jit
def _load_layer(l, b, batch, offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, offs_c, m_id, m_in, m_ic, m_ni,
                norm_ptr, win_ptr, convw_ptr, convb_ptr, xp_ptr, dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr,
                conv_ptr, ssm_ptr, d: tl.constexpr, di: tl.constexpr, N: tl.constexpr, R: tl.constexpr,
                K: tl.constexpr):
    """Every load of layer l for sequence b and the d_inner rows offs_i (the one-shot and split
    kernels): weights and states, none of which depends on the activations, so all are issued
    before the layer computes. Also returns the conv-window and SSM-state pointers (stored to)."""
    w, Wu, Wz, cst, nxt, cw, cb = _load_front(l, b, batch, offs_d, dmask, offs_i, offs_c, m_id, m_ic, imask,
                                              norm_ptr, win_ptr, convw_ptr, convb_ptr, conv_ptr, d, di, K)
    Wr, WB, WC = _load_xproj_w(l, offs_i, imask, offs_n, offs_r, rmask, m_ni, xp_ptr, di, N, R)
    Wd, dtb, A, hp, h, Dv, Wo = _load_ssm(l, b, batch, offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, m_in,
                                          dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr, ssm_ptr, d, di, N, R)
    return w, Wu, Wz, cst, nxt, cw, cb, Wr, WB, WC, Wd, dtb, A, hp, h, Dv, Wo


@triton.jit
def _norm_in_window(x, w, Wu, Wz, nxt, offs_c, eps, d: tl.constexpr, K: tl.constexpr):
    """RMSNorm and in-projection of the loaded rows: (the new conv window, z)."""
    xn = _rms_norm(x, w, d, eps)
    u = tl.sum(Wu * xn[None, :], 1)
    z = tl.sum(Wz * xn[None, :], 1)
    return tl.where(offs_c[None, :] == K - 1, u[:, None], nxt), z


@triton.jit
def _conv_silu(window, cw, cb, conv_ptr):
    """The depthwise conv on the window as stored (the state's dtype, as the layer's step does), SiLU."""
    wv = window.to(conv_ptr.dtype.element_ty).to(tl.float32)
    return _silu(tl.sum(wv * cw, 1) + cb)


@triton.jit
def _norm_in_conv(x, w, Wu, Wz, nxt, cw, cb, cst, m_ic, offs_c, conv_ptr, eps, d: tl.constexpr, K: tl.constexpr):
    """RMSNorm, in-projection, the conv window (shifted and stored) and SiLU for the loaded rows:
    returns (u after the conv, z)."""
    window, z = _norm_in_window(x, w, Wu, Wz, nxt, offs_c, eps, d, K)
    tl.debug_barrier()  # every lane has read the old window before any writes the new one
    tl.store(cst, window.to(conv_ptr.dtype.element_ty), mask=m_ic)
    return _conv_silu(window, cw, cb, conv_ptr), z


@triton.jit
def _ssm_update(rv, Bv, Cv, Wd, dtb, A, h, Dv, uc, z):
    """Δ from its low-rank form, the new state and the gated output y of the rows."""
    dt = _softplus(tl.sum(Wd * rv[None, :], 1) + dtb)
    h = h * tl.exp(dt[:, None] * A) + (dt * uc)[:, None] * Bv[None, :]
    return h, (tl.sum(h * Cv[None, :], 1) + Dv * uc) * _silu(z)


@triton.jit
def _ssm_gate(rv, Bv, Cv, Wd, dtb, A, h, hp, m_in, Dv, uc, z):
    """`_ssm_update`, the state stored."""
    h, y = _ssm_update(rv, Bv, Cv, Wd, dtb, A, h, Dv, uc, z)
    tl.store(hp, h, mask=m_in)
    return y


@triton.jit
def _mamba_stack_step_kernel(
    x_ptr, add_ptr, out_ptr, idx_ptr, fnw_ptr, f_eps, scratch_ptr, x_stride, add_stride, out_stride,
    norm_ptr, win_ptr, convw_ptr, convb_ptr, xp_ptr, dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr,
    conv_ptr, ssm_ptr,
    n_layers, batch, eps,
    d: tl.constexpr, di: tl.constexpr, N: tl.constexpr, R: tl.constexpr,  # constexpr: aligned, vectorised loads
    HAS_ADD: tl.constexpr, GATHER: tl.constexpr, NORM_OUT: tl.constexpr,
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
    x = _load_input(x_ptr, add_ptr, idx_ptr, b, x_stride, add_stride, offs_d, dmask, d, HAS_ADD, GATHER)
    for l in range(n_layers):
        # ---- RMSNorm ----
        w = tl.load(norm_ptr + l * d + offs_d, mask=dmask, other=0.0).to(tl.float32)
        xn = _rms_norm(x, w, d, eps)
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
    _store_output(out_ptr, b, out_stride, offs_d, dmask, x, fnw_ptr, f_eps, d, NORM_OUT)


@triton.jit
def _mamba_stack_step_oneshot_kernel(
    x_ptr, add_ptr, out_ptr, idx_ptr, fnw_ptr, f_eps, x_stride, add_stride, out_stride,
    norm_ptr, win_ptr, convw_ptr, convb_ptr, xp_ptr, dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr,
    conv_ptr, ssm_ptr,
    n_layers, batch, eps,
    d: tl.constexpr, di: tl.constexpr, N: tl.constexpr, R: tl.constexpr,
    HAS_ADD: tl.constexpr, GATHER: tl.constexpr, NORM_OUT: tl.constexpr,
    K: tl.constexpr, BDM: tl.constexpr, DI: tl.constexpr, NP: tl.constexpr, RP: tl.constexpr,
):
    """The same step for stacks narrow enough that one layer's weights fit in the registers of
    one program (d_model <= 64 at 16 warps): every load of a layer (weights and states, none of
    which depends on the activations) is issued at the top of the layer, so the layer waits on
    global memory once instead of once per stage, and the vectors pass between stages in
    registers (layout conversions through shared memory), not through a scratch buffer."""
    b = tl.program_id(0).to(tl.int64)
    offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, offs_c, m_id, m_in, m_ic, m_ni = _offsets(
        0, d, di, N, R, K, BDM, DI, NP, RP)
    x = _load_input(x_ptr, add_ptr, idx_ptr, b, x_stride, add_stride, offs_d, dmask, d, HAS_ADD, GATHER)
    for l in range(n_layers):
        # ---- every load of the layer first ----
        w, Wu, Wz, cst, nxt, cw, cb, Wr, WB, WC, Wd, dtb, A, hp, h, Dv, Wo = _load_layer(
            l, b, batch, offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, offs_c, m_id, m_in, m_ic, m_ni,
            norm_ptr, win_ptr, convw_ptr, convb_ptr, xp_ptr, dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr,
            conv_ptr, ssm_ptr, d, di, N, R, K)
        # ---- RMSNorm, in-projection, conv window, SiLU ----
        uc, z = _norm_in_conv(x, w, Wu, Wz, nxt, cw, cb, cst, m_ic, offs_c, conv_ptr, eps, d, K)
        # ---- x-projection (Δ low rank, B, C), Δ, state, output, gate ----
        rv = tl.sum(Wr * uc[None, :], 1)
        Bv = tl.sum(WB * uc[None, :], 1)
        Cv = tl.sum(WC * uc[None, :], 1)
        y = _ssm_gate(rv, Bv, Cv, Wd, dtb, A, h, hp, m_in, Dv, uc, z)
        # ---- out-projection and residual ----
        x += tl.sum(Wo * y[None, :], 1)
    _store_output(out_ptr, b, out_stride, offs_d, dmask, x, fnw_ptr, f_eps, d, NORM_OUT)


# Partial sums in shared memory, for the cluster barrier: a program's slot is the last bytes of
# its dynamic shared memory (the launcher adds them beyond what Triton uses); `$k` is the slot's
# byte offset counted from the end. Readers map a peer's slot into the cluster window (mapa).
_SMEM_ADDR = ("mov.u32 %a, %dynamic_smem_size;\n\tsub.u32 %a, %a, {};\n\t"
              "mov.u32 %b, global_smem;\n\tadd.u32 %a, %a, %b;\n\t")
_SMEM_PUT = tl.constexpr("{\n\t.reg .b32 %a, %b;\n\t" + _SMEM_ADDR.format("$2")
                         + "st.shared.f32 [%a], $1;\n\tmov.b32 $0, 0;\n\t}")
_SMEM_GET = tl.constexpr("{\n\t.reg .b32 %a, %b;\n\t" + _SMEM_ADDR.format("$1")
                         + "mapa.shared::cluster.u32 %a, %a, $2;\n\tld.shared::cluster.f32 $0, [%a];\n\t}")


@triton.jit
def _publish(part, s, PW: tl.constexpr, at: tl.constexpr, offs, v, CLUSTER: tl.constexpr):
    """Write this program's partial sums v to entries [at + offs) of its slot (PW floats): in
    global memory (flag barrier) or in its own shared memory (cluster barrier)."""
    if CLUSTER:
        tl.inline_asm_elementwise(_SMEM_PUT, "=r,f,r", [v, (PW - at - offs) * 4], dtype=tl.int32, is_pure=False,
                                  pack=1)
    else:
        tl.store(part + s * PW + at + offs, v)


@triton.jit
def _gather(part, offs_s, PW: tl.constexpr, at: tl.constexpr, offs, CLUSTER: tl.constexpr):
    """The sum over all S programs of entries [at + offs) of their slots (after the barrier):
    read from L2 (.cg; flag barrier) or from the peers' shared memory (cluster barrier)."""
    if CLUSTER:
        # the asm broadcasts its operands: byte offsets along entries, peer ranks along programs
        v = tl.inline_asm_elementwise(_SMEM_GET, "=f,r,r", [(PW - at - offs[None, :]) * 4, offs_s[:, None]],
                                      dtype=tl.float32, is_pure=False, pack=1)
    else:
        v = tl.load(part + offs_s[:, None] * PW + at + offs[None, :], cache_modifier=".cg")
    return tl.sum(v, 0)


@triton.jit
def _arrive(flags, s, target, FENCE: tl.constexpr, CLUSTER: tl.constexpr):
    """Announce that this program's partial sums for barrier `target` are written.
    CLUSTER=1: the hardware cluster barrier's arrival with release semantics at cluster scope
    (the shared-memory slot becomes visible to the peers that wait; ptxas puts a MEMBAR.ALL.GPU
    before it, which waits for the program's outstanding global memory operations too).
    CLUSTER=2: a CTA barrier (every thread's shared-memory stores are performed: bar.sync orders
    them for the CTA), then a relaxed arrival (no membar). The shared memory the peers read is
    this SM's own, written before the arrival; the PTX memory model does not promise this
    visibility without release, so the GPU tests check it under stress.
    CLUSTER=0: raise this program's flag (int64, only it writes it) once its partial sums are
    visible to the whole GPU: every thread fences its own stores (fence.acq_rel.gpu: a fence
    orders only the calling thread's writes, and the flag's release exchange runs in one
    thread), then the program meets at a CTA barrier, then the flag is raised. The fences wait
    for this program's earlier memory operations, so loads that the barrier should overlap are
    issued after `_arrive`, not before. The flags only grow, so nothing is reset: every launch
    passes the same number of barriers and starts from its flag's value. FENCE=False: the CPU
    interpreter (no inline assembly; it runs programs one after another)."""
    if CLUSTER == 1:
        tl.inline_asm_elementwise("barrier.cluster.arrive.release.aligned;\n\tmov.b32 $0, $1;", "=r,r",
                                  [target.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)
    elif CLUSTER == 2:
        tl.debug_barrier()
        tl.inline_asm_elementwise("barrier.cluster.arrive.relaxed.aligned;\n\tmov.b32 $0, $1;", "=r,r",
                                  [target.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)
    else:
        if FENCE:
            tl.inline_asm_elementwise("fence.acq_rel.gpu;\n\tmov.b32 $0, $1;", "=r,r", [target.to(tl.int32)],
                                      dtype=tl.int32, is_pure=False, pack=1)
        tl.debug_barrier()
        tl.atomic_xchg(flags + s, target, sem="release", scope="gpu")


@triton.jit
def _wait(flags, offs_s, target, CLUSTER: tl.constexpr):
    """Wait until every program of this sequence has arrived at barrier `target`: the cluster
    barrier's wait (acquire at cluster scope), or volatile polls of the flags (served by L2,
    cheaper than atomics; the partial sums are then read from L2 as well, cache modifier .cg,
    after the flags that were released after them)."""
    if CLUSTER:
        tl.inline_asm_elementwise("barrier.cluster.wait.acquire.aligned;\n\tmov.b32 $0, $1;", "=r,r",
                                  [target.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)
    else:
        seen = tl.min(tl.load(flags + offs_s, volatile=True), 0)
        while seen < target:
            seen = tl.min(tl.load(flags + offs_s, volatile=True), 0)
        tl.debug_barrier()


@triton.jit
def _mamba_stack_step_split_kernel(
    x_ptr, add_ptr, out_ptr, idx_ptr, fnw_ptr, f_eps, x_stride, add_stride, out_stride, part_ptr, flag_ptr,
    norm_ptr, win_ptr, convw_ptr, convb_ptr, xp_ptr, dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr,
    conv_ptr, ssm_ptr,
    n_layers, batch, eps,
    d: tl.constexpr, di: tl.constexpr, N: tl.constexpr, R: tl.constexpr,
    HAS_ADD: tl.constexpr, GATHER: tl.constexpr, NORM_OUT: tl.constexpr,
    K: tl.constexpr, BDM: tl.constexpr, BR: tl.constexpr, NP: tl.constexpr, RP: tl.constexpr,
    S: tl.constexpr, PREFETCH: tl.constexpr, FENCE: tl.constexpr, CLUSTER: tl.constexpr,
):
    """The step with each sequence split over S programs (batch 1 leaves the other SMs idle):
    program s owns d_inner rows [s·BR, (s+1)·BR) and keeps the whole residual stream. Its rows'
    in-projection, conv, Δ, state and gate need no other program; the x-projection (B, C, low-rank
    Δ) and the out-projection sum over all rows, so each program publishes its partial sums,
    arrives at a barrier (`_arrive`, `_wait`) and adds up all S of them: two barriers per layer.
    CLUSTER: the S programs of a sequence are one thread-block cluster (launched so by
    `mamba_stack_step_triton`), the sums pass through their shared memory and the barrier is the
    hardware's; else through global memory, with a barrier on flags. Between arriving and waiting
    a program stores its conv and SSM states and issues the loads needed after the barrier: the
    Δ/A/state/out-projection loads at the first, the next layer's norm/in-projection/conv/
    x-projection loads at the second (PREFETCH; without it they are issued at the top of the
    layer). With flags the S·batch programs must all be resident at once (the caller bounds
    them); S = 1 runs the same code alone (the CPU interpreter, which runs programs one after
    another). Programs are numbered b·S + s along one grid axis (a cluster's S consecutive ones)."""
    pid = tl.program_id(0)
    b = (pid // S).to(tl.int64)
    s = pid % S
    offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, offs_c, m_id, m_in, m_ic, m_ni = _offsets(
        s * BR, d, di, N, R, K, BDM, BR, NP, RP)
    offs_s = tl.arange(0, S)
    PW: tl.constexpr = RP + 2 * NP + BDM  # a program's partial sums: [Δ rank | B | C | out]
    OUT: tl.constexpr = RP + 2 * NP
    part = part_ptr + b * S * PW
    flags = flag_ptr + b * S
    base = 0
    if not CLUSTER:
        base = tl.load(flags + s)
    x = _load_input(x_ptr, add_ptr, idx_ptr, b, x_stride, add_stride, offs_d, dmask, d, HAS_ADD, GATHER)
    w, Wu, Wz, cst, nxt, cw, cb = _load_front(0, b, batch, offs_d, dmask, offs_i, offs_c, m_id, m_ic, imask,
                                              norm_ptr, win_ptr, convw_ptr, convb_ptr, conv_ptr, d, di, K)
    Wr, WB, WC = _load_xproj_w(0, offs_i, imask, offs_n, offs_r, rmask, m_ni, xp_ptr, di, N, R)
    for l in range(n_layers):
        if not PREFETCH:
            w, Wu, Wz, cst, nxt, cw, cb = _load_front(l, b, batch, offs_d, dmask, offs_i, offs_c, m_id, m_ic, imask,
                                                      norm_ptr, win_ptr, convw_ptr, convb_ptr, conv_ptr, d, di, K)
            Wr, WB, WC = _load_xproj_w(l, offs_i, imask, offs_n, offs_r, rmask, m_ni, xp_ptr, di, N, R)
        window, z = _norm_in_window(x, w, Wu, Wz, nxt, offs_c, eps, d, K)
        uc = _conv_silu(window, cw, cb, conv_ptr)
        # ---- x-projection: partial sums over this program's rows, then all programs' ----
        t1 = base + 2 * l + 1
        _publish(part, s, PW, 0, offs_r, tl.sum(Wr * uc[None, :], 1), CLUSTER)
        _publish(part, s, PW, RP, offs_n, tl.sum(WB * uc[None, :], 1), CLUSTER)
        _publish(part, s, PW, RP + NP, offs_n, tl.sum(WC * uc[None, :], 1), CLUSTER)
        _arrive(flags, s, t1, FENCE, CLUSTER)
        tl.store(cst, window.to(conv_ptr.dtype.element_ty), mask=m_ic)
        Wd, dtb, A, hp, h, Dv, Wo = _load_ssm(l, b, batch, offs_d, dmask, offs_i, imask, offs_n, offs_r, rmask, m_in,
                                              dtw_ptr, dtb_ptr, A_ptr, D_ptr, wout_ptr, ssm_ptr, d, di, N, R)
        _wait(flags, offs_s, t1, CLUSTER)
        rv = _gather(part, offs_s, PW, 0, offs_r, CLUSTER)
        Bv = _gather(part, offs_s, PW, RP, offs_n, CLUSTER)
        Cv = _gather(part, offs_s, PW, RP + NP, offs_n, CLUSTER)
        h, y = _ssm_update(rv, Bv, Cv, Wd, dtb, A, h, Dv, uc, z)
        # ---- out-projection: partial sums, barrier, residual ----
        t2 = base + 2 * l + 2
        _publish(part, s, PW, OUT, offs_d, tl.sum(Wo * y[None, :], 1), CLUSTER)
        _arrive(flags, s, t2, FENCE, CLUSTER)
        tl.store(hp, h, mask=m_in)
        if PREFETCH:  # the next layer's first loads wait out the barrier (the last layer reloads itself)
            nl = tl.minimum(l + 1, n_layers - 1)
            w, Wu, Wz, cst, nxt, cw, cb = _load_front(nl, b, batch, offs_d, dmask, offs_i, offs_c, m_id, m_ic, imask,
                                                      norm_ptr, win_ptr, convw_ptr, convb_ptr, conv_ptr, d, di, K)
            Wr, WB, WC = _load_xproj_w(nl, offs_i, imask, offs_n, offs_r, rmask, m_ni, xp_ptr, di, N, R)
        _wait(flags, offs_s, t2, CLUSTER)
        x += _gather(part, offs_s, PW, OUT, offs_d, CLUSTER)
    if CLUSTER:  # no program leaves while its peers may still read its shared memory
        if CLUSTER == 2:  # a relaxed arrival does not wait for this thread's loads: use what they read
            tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,f", [x], dtype=tl.int32, is_pure=False, pack=1)
        _arrive(flags, s, s, FENCE, CLUSTER)
        _wait(flags, offs_s, s, CLUSTER)
    if s == 0:
        _store_output(out_ptr, b, out_stride, offs_d, dmask, x, fnw_ptr, f_eps, d, NORM_OUT)


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


ONESHOT_MAX = 64 * 128  # padded d_model x d_inner up to which a layer's weights fit in registers
SPLIT_MAX_PROGRAMS = 64  # batch x S programs of the split kernel: all resident (also beside a second one)
SPLIT_TILE = 4096  # padded d_model x rows per program of the split kernel
CLUSTER_MAX_PROGRAMS = 1024  # batch x S of the split kernel on clusters (H200: 1,024 beat 64 at batch 16 and 64)
CLUSTER_SPLIT_NARROW_BATCH = 16  # on clusters, one-shot-sized stacks split up to this batch (H200: faster at
#                                  batch 1 and 16, slower at 64)


def _env(name: str) -> str:
    return os.environ.get(name, "auto").strip().lower() or "auto"


def _oneshot_warps(d: int, di: int) -> int:
    """Warps of the one-shot kernel for this width, 0 to use the tiled kernel.
    SEQSUITE_FUSED_ONESHOT=0 turns it off, =1 forces it (any width: register spills),
    SEQSUITE_FUSED_ONESHOT_WARPS sets its warps (default 16)."""
    mode = _env("SEQSUITE_FUSED_ONESHOT")
    if mode == "0" or (mode != "1" and _pow2(d) * _pow2(di) > ONESHOT_MAX):
        return 0
    return int(os.environ.get("SEQSUITE_FUSED_ONESHOT_WARPS", 16))


def _max_programs(device) -> int:
    """Split programs that may run at once on `device`: SPLIT_MAX_PROGRAMS, and at most half its
    SMs (every program must be resident while others wait at a barrier, and a second split
    kernel may run beside it on a U-Net's side stream; a program takes a whole SM's registers
    in the worst case)."""
    if device is None or torch.device(device).type != "cuda":
        return SPLIT_MAX_PROGRAMS
    return min(SPLIT_MAX_PROGRAMS, _sm_count(torch.device(device).index or 0) // 2)


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def split_programs(batch: int, d: int, di: int, device=None, interpreted: bool = False) -> int:
    """Programs per sequence of the split kernel, 0 for the single-program kernels. By default
    stacks too wide for the one-shot kernel are split so that each program holds SPLIT_TILE
    weights per matrix (SEQSUITE_FUSED_SPLIT_TILE overrides it, for A/B timing). Where the
    programs meet as thread-block clusters (`_cluster_barrier`), a stack that would take 32
    programs takes 16 (the largest cluster) with twice the tile, narrow stacks are split as well
    at batch <= CLUSTER_SPLIT_NARROW_BATCH, and up to CLUSTER_MAX_PROGRAMS programs run (the
    hardware schedules a cluster whole, so nothing has to stay resident); with flag barriers
    batch x S <= `_max_programs(device)`. SEQSUITE_FUSED_SPLIT=0 turns it off, =S forces S
    programs (a power of two; with flags the caller must then keep batch x S within what the
    GPU holds at once, or the kernel waits forever; under the CPU interpreter only S = 1 can
    run, its programs run one after another). H200 timings behind these bounds: RESULTS.md,
    2026-11-29 12:41 session."""
    mode = _env("SEQSUITE_FUSED_SPLIT")
    DI = _pow2(di)
    if mode == "auto":
        if interpreted:
            return 0
        tile = int(os.environ.get("SEQSUITE_FUSED_SPLIT_TILE", SPLIT_TILE))
        S = min(max(1, _pow2(d) * DI // tile), max(1, DI // 16))
        clusters = _cluster_barrier(16, device) > 0  # any S <= 16 alike
        if S == 32 and clusters:
            S = 16  # twice the tile, but one cluster (H200: 2.8x at sc09-unet-large batch 16)
        clusters = clusters and S <= 16
        oneshot = _env("SEQSUITE_FUSED_ONESHOT")
        if _pow2(d) * DI <= ONESHOT_MAX and oneshot != "0" and (oneshot == "1" or not clusters
                                                                or batch > CLUSTER_SPLIT_NARROW_BATCH):
            return 0
        env = os.environ.get("SEQSUITE_FUSED_SPLIT_MAX_PROGRAMS", "").strip()
        bound = int(env) if env else CLUSTER_MAX_PROGRAMS if clusters else _max_programs(device)
        return S if S > 1 and batch * S <= bound else 0
    S = int(mode)
    if S and (S & (S - 1) or S > DI):
        raise ValueError(f"SEQSUITE_FUSED_SPLIT={mode}: use a power of two <= {DI}")
    return S


# `_as_cluster` sets a compiled kernel's packed launch metadata, which is Triton's internal
# (warps, CTAs per cluster, shared bytes) in 3.6 (the version torch 2.11 pins). Other versions
# keep the flag barrier until checked.
_TRITON_CLUSTERS = triton.__version__.split(".")[:2] == ["3", "6"]


def _cluster_barrier(S: int, device) -> int:
    """How the split kernel's S programs per sequence meet (its CLUSTER): 0, flags in global
    memory; as one thread-block cluster, with partial sums in shared memory and the hardware
    barrier, 1 with a release arrival (a GPU-wide membar per barrier) and 2 with a CTA barrier
    and a relaxed arrival. SEQSUITE_FUSED_SPLIT_BARRIER=flags|cluster-release|cluster (auto:
    cluster). Clusters need compute capability 9, S <= 16 (16 is beyond the portable cluster
    size, which Hopper allows) and Triton 3.6 (`_TRITON_CLUSTERS`); elsewhere flags."""
    mode = _env("SEQSUITE_FUSED_SPLIT_BARRIER")
    modes = {"flags": 0, "cluster-release": 1, "cluster": 2, "auto": 2}
    if mode not in modes:
        raise ValueError(f"SEQSUITE_FUSED_SPLIT_BARRIER={mode}: use flags, cluster or cluster-release")
    device = torch.device(device if device is not None else "cpu")
    if device.type != "cuda" or S > 16 or not _TRITON_CLUSTERS:
        return 0
    if torch.cuda.get_device_capability(device) < (9, 0):
        return 0
    return modes[mode]


def _as_cluster(kernel, S: int, slot_bytes: int) -> None:
    """Make a compiled split kernel launch as clusters of S programs with `slot_bytes` of
    dynamic shared memory beyond Triton's own, where it keeps its partial sums (`_SMEM_PUT`).
    Triton launches with (warps, CTAs per cluster, shared bytes) from the compiled kernel's
    packed metadata, and grid[0] x (CTAs per cluster) programs along the first axis; it was
    compiled for one CTA per cluster, so those two entries are set here once per compiled
    variant (the kernel code does not depend on them)."""
    if getattr(kernel, "_seqsuite_cluster", None) == (S, slot_bytes):
        return
    warps, ctas, shared = kernel.packed_metadata
    if ctas != 1:
        raise RuntimeError(f"split kernel compiled for {ctas} CTAs per cluster; expected 1")
    kernel.packed_metadata = (warps, S, (shared + 15) // 16 * 16 + slot_bytes)
    kernel._seqsuite_cluster = (S, slot_bytes)


def mamba_stack_step_triton(x: torch.Tensor, w: dict, conv: torch.Tensor, ssm: torch.Tensor, eps: float,
                            buffer, out: torch.Tensor | None = None, add: torch.Tensor | None = None,
                            index: torch.Tensor | None = None, final_norm: tuple | None = None) -> torch.Tensor:
    """x (batch, d) → x after every layer of the stack (x + `add` goes in when given); x, `add` and
    `out` may be row-strided views (e.g. one slot of a pooling buffer). `conv` (layers, batch, d_inner, K) and
    `ssm` (layers, batch, d_inner, N) float32 updated in place. `w`: stacked contiguous weights
    norm (L, d), w_in (L, 2·d_inner, d), conv_w (L, d_inner, K), conv_b (L, d_inner),
    x_proj (L, R + 2N, d_inner) (rows: Δ in rank R, B, C), dt_w (L, d_inner, R), dt_bias
    (L, d_inner), A (L, d_inner, N) float32, D (L, d_inner) float32, w_out (L, d, d_inner).
    `buffer(name, shape, dtype)` returns a zero-initialised work buffer that lives as long as
    the stack and is never replaced (a CUDA graph keeps its pointer): the tiled kernel's
    scratch, the split kernel's partial sums and barrier flags.

    `index` (batch,) int: x is an embedding table (vocab, d) and row index[b] is sequence b's
    input (the gather is fused). `final_norm` = (weight (d,), eps): the output is
    RMSNorm(x) · weight (a model's final norm, fused).

    Three kernels: split over several programs per sequence (small batch, wide stacks), one-shot
    (a layer's weights fit in one program's registers) and tiled (any width)."""
    n_layers, batch, di, K = conv.shape
    N = ssm.shape[-1]
    R = w["dt_w"].shape[-1]
    d = x.shape[1]
    if K & (K - 1):
        raise ValueError(f"the fused step needs a power-of-two conv width, got {K}")
    if x.stride(1) != 1:
        x = x.contiguous()
    out = torch.empty((batch, d), device=x.device, dtype=x.dtype) if out is None else out
    if out.stride(1) != 1:
        raise ValueError("the fused step writes rows of unit stride")
    add = x if add is None else add if add.stride(1) == 1 else add.contiguous()
    idx = x if index is None else index.contiguous()
    fnw, f_eps = (x, 0.0) if final_norm is None else (final_norm[0], float(final_norm[1]))
    io = (x, add, out, idx, fnw, f_eps)
    strides = (x.stride(0), add.stride(0), out.stride(0))
    BDM, DI, NP, RP = _pow2(d), _pow2(di), _pow2(N), _pow2(R)
    weights = (w["norm"], w["w_in"], w["conv_w"], w["conv_b"], w["x_proj"], w["dt_w"], w["dt_bias"],
               w["A"], w["D"], w["w_out"], conv, ssm, n_layers, batch, float(eps))
    sizes = dict(d=d, di=di, N=N, R=R, K=K, BDM=BDM, NP=NP, RP=RP, HAS_ADD=add is not x, GATHER=index is not None,
                 NORM_OUT=final_norm is not None)
    S = split_programs(batch, d, di, x.device, interpreted=not x.is_cuda)
    if S:
        prefetch = _env("SEQSUITE_FUSED_SPLIT_PREFETCH") != "0"
        cluster = _cluster_barrier(S, x.device)
        part = buffer("split_part", (batch, S, RP + 2 * NP + BDM), torch.float32)
        flags = buffer("split_flags", (batch, S), torch.int64)
        warps = int(os.environ.get("SEQSUITE_FUSED_SPLIT_WARPS", 4))  # 4 beat 8 at batch 1 (2026-11-29)
        args = (*io, *strides, part, flags, *weights)
        kw = dict(**sizes, BR=DI // S, S=S, PREFETCH=prefetch, FENCE=x.is_cuda, CLUSTER=cluster, num_warps=warps)
        if cluster:  # Triton launches grid x S programs for S CTAs per cluster
            compiled = _mamba_stack_step_split_kernel.warmup(*args, grid=(batch,), **kw)
            _as_cluster(compiled.result() if hasattr(compiled, "result") else compiled, S, 4 * (RP + 2 * NP + BDM))
        _mamba_stack_step_split_kernel[(batch if cluster else batch * S,)](*args, **kw)
        return out
    oneshot = _oneshot_warps(d, di)
    if oneshot:
        _mamba_stack_step_oneshot_kernel[(batch,)](*io, *strides, *weights, **sizes, DI=DI, num_warps=oneshot)
        return out
    BI, BK, BKO, warps = _tiles(d, di, N, R)
    scratch = buffer("scratch", (batch, 3 * di), torch.float32)
    _mamba_stack_step_kernel[(batch,)](*io, scratch, *strides, *weights, **sizes, BI=BI, BK=BK, BKO=BKO,
                                       num_warps=warps)
    return out
