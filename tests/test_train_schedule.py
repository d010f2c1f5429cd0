"""Pure schedules (learning rate, sequence-length warm-up), optimizer groups, checkpoint I/O."""
from __future__ import annotations

import math

import pytest
import torch

from seqsuite.errors import UserError
from seqsuite.train import TrainConfig, lr_at, param_groups, seq_len_schedule, seq_len_stages
from seqsuite.train.checkpoint import flatten_optimizer, unflatten_optimizer
from seqsuite.train.toy import ToyLM


def test_lr_warmup_then_cosine():
    cfg = TrainConfig(steps=100, lr=1e-3, warmup_frac=0.1, min_lr_frac=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9) == pytest.approx(1e-3)          # end of the 10-step warm-up
    assert lr_at(cfg, 10) == pytest.approx(1e-3)         # cosine starts at the peak
    assert lr_at(cfg, 55) == pytest.approx(1e-4 + 0.5 * 9e-4)  # half-way: the midpoint
    lrs = [lr_at(cfg, s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))     # monotone decay
    assert lrs[-1] >= 1e-4 and lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert lr_at(TrainConfig(steps=50, lr=2.0, warmup_steps=0), 0) == pytest.approx(2.0)


def test_seq_len_warmup_doubles_length_halves_batch():
    cfg = TrainConfig(steps=40, batch_size=4, seq_len=1024, seq_len_warmup=128)
    assert seq_len_stages(cfg) == [(0, 128, 32), (10, 256, 16), (20, 512, 8), (30, 1024, 4)]
    schedule = [seq_len_schedule(cfg, s) for s in range(40)]
    assert schedule[0] == (128, 32) and schedule[9] == (128, 32) and schedule[10] == (256, 16)
    assert schedule[-1] == (1024, 4)
    assert {length * batch for length, batch in schedule} == {4 * 1024}  # constant tokens/step
    lengths = [length for length, _ in schedule]
    assert lengths == sorted(lengths)

    fixed = TrainConfig(steps=100, batch_size=4, seq_len=1024, seq_len_warmup=256,
                        seq_len_stage_steps=7)
    assert [seq_len_schedule(fixed, s) for s in (0, 6, 7, 13, 14, 99)] == \
        [(256, 16), (256, 16), (512, 8), (512, 8), (1024, 4), (1024, 4)]
    assert seq_len_schedule(TrainConfig(steps=9, batch_size=3, seq_len=100), 5) == (100, 3)


def test_seq_len_warmup_refuses_non_power_of_two_ratio():
    with pytest.raises(UserError, match="seq_len_warmup"):
        TrainConfig(seq_len=1024, seq_len_warmup=384)
    with pytest.raises(UserError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(UserError, match="unknown"):
        TrainConfig.from_dict({"stepz": 3})
    cfg = TrainConfig(steps=7, betas=[0.8, 0.9])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_weight_decay_only_on_matrices():
    model = ToyLM()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed == {"emb.weight", "conv.weight", "mlp.0.weight", "mlp.3.weight", "head.weight"}
    assert "gate" in {names[id(p)] for p in no_decay["params"]}   # flagged _no_weight_decay
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_optimizer_state_round_trips_through_tensors_and_json():
    import json

    model = ToyLM()
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randint(0, 8, (2, 5))).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer(opt.state_dict())
    meta = json.loads(json.dumps(meta))
    opt2 = torch.optim.AdamW(param_groups(ToyLM(), 0.1), lr=5.0)
    opt2.load_state_dict(unflatten_optimizer(tensors, meta))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key, value in a["state"][idx].items():
            assert torch.equal(value, b["state"][idx][key])
    assert not math.isnan(b["param_groups"][0]["lr"])
