"""The loop trains the core model (`seqsuite.core.build('tiny')`) and its checkpoint loads back."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqsuite.train import TrainConfig, load_checkpoint, read_metrics, train

core = pytest.importorskip("seqsuite.core")


class CountingTask:
    """Next-token prediction on sequences counting up modulo the vocabulary."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def sample(self, split, rng, seq_len):
        seq = (int(rng.integers(self.vocab_size)) + np.arange(seq_len + 1)) % self.vocab_size
        return {"tokens": seq[:-1].astype(np.int64), "targets": seq[1:].astype(np.int64)}

    def loss(self, model, batch):
        logits = model(batch["tokens"])
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten()), {}


def test_train_core_tiny_and_reload(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = core.build("tiny")
        task = CountingTask(model.config.vocab_size)
        cfg = TrainConfig(steps=12, batch_size=4, seq_len=32, lr=8e-3, eval_every=6,
                          eval_batches=1, save_every=6, progress=False, tensorboard=False,
                          plot=False, out_dir=str(tmp_path / "run"), seq_len_warmup=16)
        result = train(model, task, cfg, task_info={"kind": "counting"})
    finally:
        torch.set_num_threads(before)
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.csv") if r["split"] == "train"]
    assert len(rows) == 12 and all(math.isfinite(r["loss"]) for r in rows)
    assert result["val_loss"] < math.log(model.config.vocab_size)

    ck = load_checkpoint(tmp_path / "run")
    assert ck["config"]["model"] == model.config.to_dict()
    assert ck["config"]["task"] == {"kind": "counting"}
    again = core.from_pretrained(tmp_path / "run" / "last")  # also a plain model folder
    tokens = torch.randint(0, model.config.vocab_size, (2, 16))
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.allclose(model(tokens), again(tokens), atol=1e-5)
