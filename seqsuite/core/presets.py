"""Named model configurations reproducing the papers' models (DESIGN §6).

`PRESETS[name]` is a ModelConfig; `CLAIMED_PARAMS[name]` is the size the name or the paper
claims, which a test checks (±10%). `build(name_or_config, **overrides)` makes the model.
"""
from __future__ import annotations

import difflib

from ..errors import UserError
from .config import ModelConfig

DNA_VOCAB = 12  # genomics tokenizer: A C G T N + PAD BOS EOS MASK, padded to 12
BYTE_VOCAB = 256
MULAW_VOCAB = 256

PRESETS: dict[str, ModelConfig] = {}
CLAIMED_PARAMS: dict[str, float] = {}


def register(cfg: ModelConfig, claimed: float | None = None) -> ModelConfig:
    PRESETS[cfg.name] = cfg
    if claimed is not None:
        CLAIMED_PARAMS[cfg.name] = claimed
    return cfg


# ---- tiny: tests, CI and CPU smoke runs (≤ 100k parameters) ----
register(ModelConfig(name="tiny", vocab_size=DNA_VOCAB, d_model=32, n_layers=2, d_state=8))
register(ModelConfig(name="genomics-tiny", vocab_size=DNA_VOCAB, d_model=48, n_layers=2, d_state=16))
register(ModelConfig(name="audio-tiny", arch="unet", vocab_size=MULAW_VOCAB, d_model=16, n_layers=1,
                     pool=(4, 4), outer="s4", inner="s6", d_state=8, s4_d_state=16))
register(ModelConfig(name="sc09-tiny", arch="unet", vocab_size=MULAW_VOCAB, d_model=16, n_layers=1,
                     pool=(4, 4), outer="s6", inner="s6", d_state=8))
register(ModelConfig(name="bytes-tiny", vocab_size=BYTE_VOCAB, d_model=48, n_layers=2, d_state=16))

# ---- DNA (Mamba paper §4.3): HG38 pretraining ladder, matched baselines ----
register(ModelConfig(name="hg38-mamba-1.4m", vocab_size=DNA_VOCAB, d_model=128, n_layers=12), 1.4e6)
register(ModelConfig(name="hg38-mamba-7m", vocab_size=DNA_VOCAB, d_model=256, n_layers=16), 7e6)
for width, layers in ((64, 8), (128, 8), (256, 8), (384, 8), (512, 8)):
    register(ModelConfig(name=f"hg38-mamba-w{width}", vocab_size=DNA_VOCAB, d_model=width, n_layers=layers))
# Transformer++ blocks (SwiGLU 8/3) hold ~12·d² parameters and HyenaDNA blocks ~13·d², a
# Mamba block ~6·d²: about half the layers, set so each lands within 10% of the named size.
register(ModelConfig(name="hg38-transformerpp-1.4m", vocab_size=DNA_VOCAB, d_model=128, n_layers=7,
                     layer="attn", n_heads=4, mlp_ratio=8 / 3), 1.4e6)
register(ModelConfig(name="hg38-transformerpp-7m", vocab_size=DNA_VOCAB, d_model=256, n_layers=9,
                     layer="attn", n_heads=8, mlp_ratio=8 / 3), 7e6)
register(ModelConfig(name="hg38-hyenadna-1.4m", vocab_size=DNA_VOCAB, d_model=128, n_layers=6,
                     layer="hyena", mlp_ratio=4), 1.4e6)
register(ModelConfig(name="hg38-hyenadna-7m", vocab_size=DNA_VOCAB, d_model=256, n_layers=8,
                     layer="hyena", mlp_ratio=4), 7e6)

# ---- audio (Mamba paper §4.4, SaShiMi U-Net) ----
register(ModelConfig(name="youtubemix-unet", arch="unet", vocab_size=MULAW_VOCAB, d_model=64, n_layers=3,
                     pool=(16, 16), outer="s4", inner="s6"), 3.5e6)
register(ModelConfig(name="sc09-unet-small", arch="unet", vocab_size=MULAW_VOCAB, d_model=64, n_layers=8,
                     pool=(4, 4)), 6.1e6)
register(ModelConfig(name="sc09-unet-large", arch="unet", vocab_size=MULAW_VOCAB, d_model=96, n_layers=15,
                     pool=(4, 4)), 24.3e6)
# Small U-Nets for the models shipped with the package (trained on the demo data): two layers per
# stage keeps one generated sample at ~5 ms on a laptop CPU (batch 4), so the demo can speak.
register(ModelConfig(name="sc09-unet-demo", arch="unet", vocab_size=MULAW_VOCAB, d_model=64, n_layers=2,
                     pool=(4, 4)))
register(ModelConfig(name="youtubemix-unet-demo", arch="unet", vocab_size=MULAW_VOCAB, d_model=64,
                     n_layers=2, pool=(16, 16), outer="s4", inner="s6"))

# ---- bytes (MambaByte) ----
register(ModelConfig(name="bytes-mamba-small", vocab_size=BYTE_VOCAB, d_model=256, n_layers=8))
register(ModelConfig(name="bytes-mamba-medium", vocab_size=BYTE_VOCAB, d_model=512, n_layers=16))
register(ModelConfig(name="bytes-transformerpp-small", vocab_size=BYTE_VOCAB, d_model=256, n_layers=4,
                     layer="attn", n_heads=4, mlp_ratio=8 / 3))


def get_config(name_or_cfg: str | ModelConfig, **overrides) -> ModelConfig:
    """A preset by name (or a config), with overrides applied."""
    if isinstance(name_or_cfg, ModelConfig):
        cfg = name_or_cfg
    else:
        if name_or_cfg not in PRESETS:
            near = difflib.get_close_matches(name_or_cfg, PRESETS, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UserError(f"unknown preset {name_or_cfg!r}{hint}: run `seqsuite presets` to list them")
        cfg = PRESETS[name_or_cfg]
    return cfg.replace(**overrides) if overrides else cfg


def build(name_or_cfg: str | ModelConfig, **overrides):
    """Build a model from a preset name or config, e.g. build('youtubemix-unet', outer='s6')."""
    from .model import build_model

    return build_model(get_config(name_or_cfg, **overrides))


def count_params(model) -> int:
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n
