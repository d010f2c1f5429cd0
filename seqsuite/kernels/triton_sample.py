"""Token sampling in one kernel, for decoding loops captured whole in a CUDA graph.

One program per row of logits (batch, V):

    greedy (temperature 0):  token = argmax(logits)
    otherwise:               p = softmax(logits / T), restricted to the top-k tokens and to the
                             nucleus (the most probable tokens whose mass reaches top_p);
                             token = argmax over kept tokens of (log p + Gumbel noise)

Gumbel-max draws exactly from the renormalised kept distribution. The uniforms come from
Triton's Philox generator keyed by (seed, step), where `rng` is a device tensor [seed, counter]
and step = counter + `step_offset`; so a graph that replays K steps reads fresh numbers each
replay once the counter is advanced by K (the caller does it inside the graph). Nothing is
allocated at launch, so it can be captured. `sample_ref` in reference.py is the same function
in PyTorch given the uniforms; tests compare the two with the kernel reading those uniforms
(`uniforms=`).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_mamba_step import _rms_norm

MAX_VOCAB = 4096  # one program holds a row; larger vocabularies use torch's sampling


@triton.jit
def _sample_kernel(logits_ptr, out_ptr, rng_ptr, u_ptr, V, s_lb, s_lv, s_ob, step_offset,
                   inv_temp, top_p, top_k, w_ptr, nw_ptr, D, eps,
                   BV: tl.constexpr, GREEDY: tl.constexpr, TOP_P: tl.constexpr, TOP_K: tl.constexpr,
                   HAS_U: tl.constexpr, HEAD: tl.constexpr, BD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BV)
    m = offs < V
    if HEAD:  # logits = W · (RMSNorm(h) · w_norm), with logits_ptr = h (batch, D), w_ptr = W (V, D)
        offs_d = tl.arange(0, BD)
        dm = offs_d < D
        h = tl.load(logits_ptr + row * s_lb + offs_d, mask=dm, other=0.0).to(tl.float32)
        h = _rms_norm(h, tl.load(nw_ptr + offs_d, mask=dm, other=0.0).to(tl.float32), D, eps)
        W = tl.load(w_ptr + offs[:, None] * D + offs_d[None, :], mask=m[:, None] & dm[None, :], other=0.0)
        x = tl.where(m, tl.sum(W.to(tl.float32) * h[None, :], 1), float("-inf"))
    else:
        x = tl.load(logits_ptr + row * s_lb + offs * s_lv, mask=m, other=float("-inf")).to(tl.float32)
    if GREEDY:
        tok = tl.argmax(x, 0)
    else:
        x = x * inv_temp
        e = tl.where(m, tl.exp(x - tl.max(x, 0)), 0.0)
        p = e / tl.sum(e, 0)
        keep = m
        if TOP_P or TOP_K:
            ps = tl.sort(p, descending=True)
            rank = tl.arange(0, BV)
            kept = rank < V
            if TOP_K:
                kept = kept & (rank < top_k)
            if TOP_P:
                kept = kept & ((tl.cumsum(ps, 0) - ps) < top_p)
            tau = tl.min(tl.where(kept, ps, float("inf")), 0)  # smallest kept probability
            keep = m & (p >= tau)
        if HAS_U:
            u = tl.load(u_ptr + row * V + offs, mask=m, other=0.5)
        else:
            seed = tl.load(rng_ptr)
            step = tl.load(rng_ptr + 1) + step_offset
            # key stride 0x9E3779B9 (golden ratio): keys of neighbouring steps differ widely
            u = tl.rand(seed + step * 0x9E3779B9, (row * BV).to(tl.int32) + offs)
        u = tl.minimum(tl.maximum(u, 1e-12), 1.0 - 1e-7)
        score = tl.where(keep & (p > 0), tl.log(tl.maximum(p, 1e-38)) - tl.log(-tl.log(u)), float("-inf"))
        tok = tl.argmax(score, 0)
    tl.store(out_ptr + row * s_ob, tok.to(out_ptr.dtype.element_ty))


def sample_triton(logits: torch.Tensor, out: torch.Tensor, rng: torch.Tensor | None = None,
                  step_offset: int = 0, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                  uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Write one token per row of `logits` (batch, V) into `out` (batch,) (any integer view).

    `rng`: int64 tensor [seed, counter] on the logits' device (ignored with `uniforms`, a
    (batch, V) float32 tensor of given uniforms, used by tests)."""
    batch, V = logits.shape
    if V > MAX_VOCAB:
        raise ValueError(f"sample_triton handles vocabularies up to {MAX_VOCAB}, got {V}")
    greedy = temperature <= 0
    use_p = (not greedy) and top_p < 1.0
    use_k = (not greedy) and 0 < top_k < V
    if not greedy and uniforms is None and rng is None:
        raise ValueError("sample_triton needs rng=[seed, counter] or uniforms")
    BV = max(triton.next_power_of_2(V), 2)
    dummy_u = uniforms if uniforms is not None else logits
    dummy_r = rng if rng is not None else out
    _sample_kernel[(batch,)](
        logits, out, dummy_r, dummy_u, V, logits.stride(0), logits.stride(1), out.stride(0),
        int(step_offset), 1.0 / temperature if not greedy else 1.0, float(top_p), int(top_k), logits, logits, 1, 0.0,
        BV=BV, GREEDY=greedy, TOP_P=use_p, TOP_K=use_k, HAS_U=uniforms is not None, HEAD=False, BD=2,
        num_warps=1 if BV <= 512 else 4,
    )
    return out


HEAD_MAX = 32768  # padded vocabulary x width of a head that one program computes


def fits_head(V: int, d: int) -> bool:
    """Whether `sample_head_triton` takes a head of V tokens over width d."""
    return V <= MAX_VOCAB and max(triton.next_power_of_2(V), 2) * max(triton.next_power_of_2(d), 2) <= HEAD_MAX


def sample_head_triton(h: torch.Tensor, norm_w: torch.Tensor, eps: float, W: torch.Tensor, out: torch.Tensor,
                       rng: torch.Tensor, step_offset: int = 0, temperature: float = 1.0, top_p: float = 1.0,
                       top_k: int = 0) -> torch.Tensor:
    """`sample_triton` of the logits W · RMSNorm(h) (an LM's final norm and bias-free head),
    computed in the same kernel in float32: two launches fewer per decoded token. h (batch, d)."""
    batch, d = h.shape
    V = W.shape[0]
    if not fits_head(V, d) or W.shape[1] != d:
        raise ValueError(f"sample_head_triton: head {tuple(W.shape)} over width {d} is too large")
    greedy = temperature <= 0
    BV, BD = max(triton.next_power_of_2(V), 2), max(triton.next_power_of_2(d), 2)
    h = h if h.stride(1) == 1 else h.contiguous()
    W = W.contiguous()
    _sample_kernel[(batch,)](
        h, out, rng if rng is not None else out, h, V, h.stride(0), 1, out.stride(0),
        int(step_offset), 1.0 / temperature if not greedy else 1.0, float(top_p), int(top_k), W, norm_w, d, float(eps),
        BV=BV, GREEDY=greedy, TOP_P=(not greedy) and top_p < 1.0, TOP_K=(not greedy) and 0 < top_k < V,
        HAS_U=False, HEAD=True, BD=BD, num_warps=8 if BV * BD <= 16384 else 16,
    )
    return out
