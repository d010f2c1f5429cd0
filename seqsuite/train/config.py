"""The training configuration: one plain dataclass naming every choice the loop makes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from seqsuite.errors import UserError


@dataclass
class TrainConfig:
    """Every knob of `seqsuite.train.train`. Defaults follow the Mamba paper's recipes."""

    steps: int = 1000                 # optimizer updates in the whole run
    batch_size: int = 8               # global examples per update at the final seq_len
    seq_len: int = 1024               # final (target) sequence length
    lr: float = 1e-3                  # peak learning rate
    warmup_frac: float = 0.1          # linear warm-up over this fraction of the steps ...
    warmup_steps: int | None = None   # ... unless given in steps
    min_lr_frac: float = 0.1          # cosine decays to lr * min_lr_frac
    weight_decay: float = 0.1         # AdamW decay, on matrices only
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0            # max global grad norm; 0 disables clipping
    grad_accum: int = 1               # micro-batches per update (per process)
    # Sequence-length warm-up (the DNA recipe): start at this length and double it every
    # `seq_len_stage_steps` updates (None: the stages share the run equally) while halving the
    # batch, so tokens per update stay batch_size * seq_len. None disables the warm-up.
    seq_len_warmup: int | None = None
    seq_len_stage_steps: int | None = None
    eval_every: int = 100             # evaluate every k updates (0: only at the end)
    eval_batches: int = 4             # validation batches of batch_size examples at seq_len
    save_every: int = 100             # write RUN/last every k updates (0: only at the end)
    log_every: int = 1                # a CSV/TensorBoard row every k updates
    compile: bool = False             # torch.compile the model
    grad_checkpoint: bool = False     # recompute each layer's activations in the backward
    prefetch: bool = True             # sample the next batch in a thread during this update
    amp: str = "auto"                 # 'auto' (bf16 autocast on CUDA only) | 'bf16' | 'off'
    device: str = "auto"              # 'auto' | 'cpu' | 'cuda' | 'cuda:1' ...
    seed: int = 0
    out_dir: str | None = None        # the run directory RUN
    max_nonfinite: int = 5            # stop after this many non-finite steps in a row
    progress: bool = True             # show a progress bar (rank 0)
    tensorboard: bool = True          # write TensorBoard scalars to RUN/tb
    plot: bool = True                 # write RUN/learning_curve.png at the end
    find_unused_parameters: bool = False  # DDP option for models with unused parameters
    extra: dict = field(default_factory=dict)  # free-form notes stored with the checkpoint

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        self.validate()

    def validate(self) -> None:
        """Raise UserError naming the first impossible setting."""
        positive = {"steps": self.steps, "batch_size": self.batch_size, "seq_len": self.seq_len,
                    "grad_accum": self.grad_accum, "max_nonfinite": self.max_nonfinite,
                    "log_every": self.log_every}
        for name, value in positive.items():
            if int(value) < 1:
                raise UserError(f"train config: {name} must be >= 1, got {value}")
        if self.lr <= 0:
            raise UserError(f"train config: lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_frac <= 1:
            raise UserError(f"train config: warmup_frac must be in [0, 1], got {self.warmup_frac}")
        if self.amp not in ("auto", "bf16", "off"):
            raise UserError(f"train config: amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.seq_len_warmup is not None:
            start = int(self.seq_len_warmup)
            ratio = self.seq_len // start if start > 0 else 0
            if start < 1 or start > self.seq_len or start * ratio != self.seq_len \
                    or ratio & (ratio - 1):
                raise UserError(
                    f"train config: seq_len_warmup={self.seq_len_warmup} must be seq_len="
                    f"{self.seq_len} divided by a power of two (e.g. {max(1, self.seq_len // 8)})")

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from `to_dict()` output; unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"train config: unknown field(s) {', '.join(unknown)}")
        return cls(**d)
