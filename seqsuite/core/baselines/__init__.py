"""Baselines for comparisons in the same harness: Transformer++ and HyenaDNA blocks.

Both blocks follow the layer contract of the core (forward / allocate_state / step, state updated
in place) and own their pre-norms and residuals, so a backbone stacks them like Mamba blocks.
`make_attention_layer` / `make_hyena_layer` build them from a ModelConfig (the "attn" and
"hyena" entries of `core.block.make_layer`).
"""
from .hyena import HyenaBlock, HyenaOperator, ImplicitFilter, fft_causal_conv
from .transformerpp import CausalSelfAttention, RMSNorm, SwiGLU, TransformerBlock


def make_attention_layer(d_model: int, cfg) -> TransformerBlock:
    """A Transformer++ block at width d_model from cfg.n_heads, cfg.mlp_ratio and cfg.max_len."""
    n_heads = cfg.n_heads
    if d_model % n_heads or (d_model // n_heads) % 2:
        raise ValueError(f"attention layer: d_model={d_model} does not split into n_heads={n_heads} even-sized heads")
    return TransformerBlock(d_model, n_heads=n_heads, mlp_ratio=cfg.mlp_ratio, max_len=cfg.max_len)


def make_hyena_layer(d_model: int, cfg) -> HyenaBlock:
    """A HyenaDNA block at width d_model from cfg.max_len, cfg.hyena_order, cfg.hyena_filter_dim, cfg.mlp_ratio."""
    return HyenaBlock(d_model, max_len=cfg.max_len, order=cfg.hyena_order,
                      filter_order=cfg.hyena_filter_dim, mlp_ratio=cfg.mlp_ratio)


__all__ = [
    "CausalSelfAttention",
    "HyenaBlock",
    "HyenaOperator",
    "ImplicitFilter",
    "RMSNorm",
    "SwiGLU",
    "TransformerBlock",
    "fft_causal_conv",
    "make_attention_layer",
    "make_hyena_layer",
]
