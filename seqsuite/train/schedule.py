"""Pure schedules of the step index: learning rate and (sequence length, batch size)."""
from __future__ import annotations

import math

from seqsuite.train.config import TrainConfig


def warmup_steps(cfg: TrainConfig) -> int:
    """Number of linear warm-up steps."""
    if cfg.warmup_steps is not None:
        return max(0, min(int(cfg.warmup_steps), cfg.steps))
    return int(round(cfg.warmup_frac * cfg.steps))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of update `step` (0-based): linear warm-up, then cosine to lr*min_lr_frac."""
    warm = warmup_steps(cfg)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    min_lr = cfg.lr * cfg.min_lr_frac
    decay_steps = max(1, cfg.steps - warm)
    progress = min(1.0, (step - warm) / decay_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - min_lr)


def seq_len_stages(cfg: TrainConfig) -> list[tuple[int, int, int]]:
    """The warm-up stages as (first_step, seq_len, batch_size), lengths doubling to cfg.seq_len.

    Tokens per update stay cfg.batch_size * cfg.seq_len at every stage. Without a warm-up there
    is one stage.
    """
    if cfg.seq_len_warmup is None:
        return [(0, cfg.seq_len, cfg.batch_size)]
    n_doublings = int(round(math.log2(cfg.seq_len // cfg.seq_len_warmup)))
    n_stages = n_doublings + 1
    stage_steps = cfg.seq_len_stage_steps or max(1, cfg.steps // n_stages)
    stages = []
    for k in range(n_stages):
        length = cfg.seq_len_warmup * 2 ** k
        batch = cfg.batch_size * 2 ** (n_doublings - k)
        stages.append((k * stage_steps, length, batch))
    return stages


def seq_len_schedule(cfg: TrainConfig, step: int) -> tuple[int, int]:
    """(seq_len, global batch size) of update `step`; a pure function of the config and step."""
    current = None
    for first, length, batch in seq_len_stages(cfg):
        if step >= first:
            current = (length, batch)
    return current
