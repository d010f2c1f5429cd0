"""The model configuration: one plain dataclass that names every architectural choice."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import UserError

LAYER_TYPES = ("s6", "s4", "attn", "hyena")


@dataclass
class ModelConfig:
    """Every choice that defines a model. Serialised to config.json beside the weights."""

    name: str = "custom"
    arch: str = "isotropic"  # isotropic | unet
    task: str = "lm"  # lm | classify
    vocab_size: int = 16
    n_classes: int = 0  # classify only
    labels: list[str] = field(default_factory=list)  # class names (classify)
    d_model: int = 64
    n_layers: int = 4  # isotropic: number of blocks; unet: blocks per stage
    layer: str = "s6"  # isotropic layer type: s6 | s4 | attn | hyena
    # U-Net (SaShiMi layout): outer = full-rate stage, inner = pooled stages and centre
    outer: str = "s6"
    inner: str = "s6"
    pool: tuple[int, ...] = (4, 4)
    pool_expand: int = 2  # width multiplier at each pooling
    # Mamba block
    expand: int = 2
    d_conv: int = 4
    # S6
    d_state: int = 16
    dt_rank: int = 0  # 0 = ceil(d_model / 16)
    dt_min: float = 0.001
    dt_max: float = 0.1
    # S4 (S4D)
    s4_mode: str = "complex"  # complex | real
    s4_init: str = "inv"  # lin | inv | legs (complex); real (real mode)
    s4_d_state: int = 64  # real state size; complex mode uses s4_d_state // 2 conjugate pairs
    s4_backend: str = "fft"  # fft | scan (training path; the two agree)
    # attention / hyena baselines
    n_heads: int = 4
    mlp_ratio: float = 4.0
    max_len: int = 1 << 20  # KV cache / Hyena filter length bound for recurrent inference
    hyena_order: int = 2
    hyena_filter_dim: int = 64
    # model
    tie_embeddings: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.pool = tuple(int(p) for p in self.pool)
        self.labels = list(self.labels)
        if self.arch not in ("isotropic", "unet"):
            raise UserError(f"unknown arch {self.arch!r}: use 'isotropic' or 'unet'")
        if self.task not in ("lm", "classify"):
            raise UserError(f"unknown task {self.task!r}: use 'lm' or 'classify'")
        for key in ("layer", "outer", "inner"):
            if getattr(self, key) not in LAYER_TYPES:
                raise UserError(f"unknown layer type {key}={getattr(self, key)!r}: use one of {', '.join(LAYER_TYPES)}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["pool"] = list(self.pool)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"model config has unknown fields {unknown}: it was written by another program or version")
        return cls(**d)

    def replace(self, **overrides) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise UserError(f"unknown model option(s) {bad}: known options are {sorted(known)}")
        return dataclasses.replace(self, **overrides)
