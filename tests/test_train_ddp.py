"""torchrun + DDP (gloo, CPU): 2 processes match 1 process with the same global batch, and a
single-process checkpoint resumes under 2 processes."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from seqsuite.train import TrainConfig, load_checkpoint, read_metrics, train
from seqsuite.train.toy import CycleTask, ToyLM

REPO = Path(__file__).resolve().parents[1]
BASE = dict(steps=8, batch_size=8, seq_len=16, lr=1e-2, eval_every=4, eval_batches=1,
            save_every=4, log_every=1, progress=False, tensorboard=False, plot=False, seed=5,
            seq_len_warmup=8)


def run(out_dir, resume=False, callbacks=(), **overrides):
    torch.manual_seed(0)
    cfg = TrainConfig(**{**BASE, **overrides, "out_dir": str(out_dir)})
    return train(ToyLM(dropout=0.0), CycleTask(), cfg, resume=resume, callbacks=callbacks)


def losses(run_dir, split="train"):
    return {r["step"]: r["loss"] for r in read_metrics(Path(run_dir) / "metrics.csv")
            if r["split"] == split}


def test_two_process_ddp_matches_single_process(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(tmp_path / "single")                                      # reference: 1 process
        run(tmp_path / "handoff", callbacks=[lambda info: info["step"] == 4])  # stops at 4
    finally:
        torch.set_num_threads(before)
    assert load_checkpoint(tmp_path / "handoff")["step"] == 4

    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.distributed as dist
        torch.set_num_threads(1)
        dist.init_process_group("gloo")
        from seqsuite.train import TrainConfig, train
        from seqsuite.train.toy import CycleTask, ToyLM
        BASE = {BASE!r}
        def run(out_dir, resume=False, **overrides):
            torch.manual_seed(0)
            cfg = TrainConfig(**{{**BASE, **overrides, "out_dir": out_dir}})
            return train(ToyLM(dropout=0.0), CycleTask(), cfg, resume=resume)
        run({str(tmp_path / "ddp")!r}, grad_accum=2)    # 2 ranks x 2 micro-batches of 2
        run({str(tmp_path / "handoff")!r}, resume=True)  # 1-process checkpoint, 2 processes
        dist.destroy_process_group()
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    want = losses(tmp_path / "single")
    got = losses(tmp_path / "ddp")
    assert sorted(got) == sorted(want) == list(range(1, 9))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-4), step
    assert losses(tmp_path / "ddp", "valid") == pytest.approx(losses(tmp_path / "single", "valid"),
                                                              rel=1e-4)
    rows = read_metrics(tmp_path / "ddp" / "metrics.csv")
    assert [r["seq_len"] for r in rows if r["split"] == "train"][:1] == [8]  # warm-up ran

    resumed = losses(tmp_path / "handoff")
    assert sorted(resumed) == list(range(1, 9))
    for step in want:
        assert resumed[step] == pytest.approx(want[step], rel=1e-4), step
    ck = load_checkpoint(tmp_path / "handoff")
    assert ck["step"] == 8 and ck["state"]["world_size"] == 2
