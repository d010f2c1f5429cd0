"""Training loop: exact resume after SIGKILL and Ctrl-C, corrupt checkpoints, NaN guard."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from seqsuite.errors import UserError
from seqsuite.train import TrainConfig, TrainingDiverged, load_checkpoint, read_metrics, train
from seqsuite.train.toy import CycleTask, ToyLM

REPO = Path(__file__).resolve().parents[1]
BASE = dict(steps=16, batch_size=8, seq_len=24, lr=1e-2, eval_every=8, eval_batches=1,
            save_every=4, log_every=1, progress=False, tensorboard=False, plot=False, seed=3)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: bitwise-reproducible CPU math and no oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(out_dir, resume=False, callbacks=(), task=None, **overrides):
    torch.manual_seed(0)
    cfg = TrainConfig(**{**BASE, **overrides, "out_dir": str(out_dir)})
    return train(ToyLM(), task or CycleTask(), cfg, resume=resume, callbacks=callbacks)


def run_script(tmp_path, body: str) -> subprocess.CompletedProcess:
    """Run a training script in a fresh Python process (so it can be killed for real)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from seqsuite.train import TrainConfig, train
        from seqsuite.train.toy import CycleTask, ToyLM
        BASE = {BASE!r}
        def run(out_dir, callbacks=(), **overrides):
            torch.manual_seed(0)
            cfg = TrainConfig(**{{**BASE, **overrides, "out_dir": str(out_dir)}})
            return train(ToyLM(), CycleTask(), cfg, callbacks=callbacks)
    """) + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)


def losses(run_dir, split="train"):
    return {r["step"]: r["loss"] for r in read_metrics(Path(run_dir) / "metrics.csv")
            if r["split"] == split}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 16-step run (with TensorBoard and the PNG, to exercise them once)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ref") / "run"
    result = run(out, tensorboard=True, plot=True)
    torch.set_num_threads(before)
    return out, result


def test_uninterrupted_run_writes_logs_and_checkpoints(reference):
    out, result = reference
    assert result["step"] == 16 and not result["interrupted"]
    rows = read_metrics(out / "metrics.csv")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 17))
    for key in ("bits_per_token", "lr", "grad_norm", "tokens_per_s", "seq_len", "mem_gb"):
        assert all(math.isfinite(r[key]) for r in train_rows), key
    first, last = (sum(r["loss"] for r in rows_) / 4 for rows_ in (train_rows[:4], train_rows[-4:]))
    assert last < first - 0.2
    assert [r["step"] for r in rows if r["split"] == "valid"] == [8, 16]
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert any((out / "tb").iterdir())
    ck = load_checkpoint(out)
    assert ck["step"] == 16 and ck["config"]["train"]["steps"] == 16
    assert set(ck["model_state"]) == set(ToyLM().state_dict())
    assert load_checkpoint(out / "best")["step"] in (8, 16)


def test_sigkill_then_resume_matches_uninterrupted(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "run"
    proc = run_script(tmp_path, f"""
        def die(info):
            if info["step"] == 10:  # last checkpoint was written at step 8
                os.kill(os.getpid(), signal.SIGKILL)
        run({str(out)!r}, callbacks=[die])
    """)
    assert proc.returncode == -signal_number("SIGKILL"), proc.stderr[-2000:]
    assert max(losses(out)) == 10          # the killed run had logged steps 9 and 10
    assert load_checkpoint(out)["step"] == 8
    result = run(out, resume=True)
    assert result["step"] == 16
    got, want = losses(out), losses(ref_dir)
    assert sorted(got) == sorted(want) == list(range(1, 17))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-7), step
    assert losses(out, "valid") == pytest.approx(losses(ref_dir, "valid"), rel=1e-6)


def signal_number(name):
    import signal

    return int(getattr(signal, name))


def test_ctrl_c_saves_and_resumes_exactly(reference, tmp_path):
    ref_dir, _ = reference
    out = tmp_path / "run"
    proc = run_script(tmp_path, f"""
        def interrupt(info):
            if info["step"] == 5:
                os.kill(os.getpid(), signal.SIGINT)
        result = run({str(out)!r}, callbacks=[interrupt])
        print("RESULT", result["step"], result["interrupted"])
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RESULT 5 True" in proc.stdout
    assert "stopped at step 5" in proc.stdout + proc.stderr
    assert load_checkpoint(out)["step"] == 5
    run(out, resume=True)
    got, want = losses(out), losses(ref_dir)
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6, abs=1e-7), step


def test_corrupt_or_truncated_checkpoint_is_refused(reference, tmp_path):
    out = tmp_path / "run"
    run(out, callbacks=[lambda info: info["step"] == 8])  # a clean stop: last = best = step 8
    metrics_before = (out / "metrics.csv").read_bytes()

    with pytest.raises(UserError) as e:  # a fresh run never clobbers an existing one
        run(out)
    assert "--resume" in str(e.value)

    model_file = out / "last" / "model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-5] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(UserError) as e:
        run(out, resume=True)
    msg = str(e.value)
    assert "\n" not in msg and "corrupt" in msg and "model.safetensors" in msg
    assert str(out / "best") in msg                       # the fix: resume from best

    trainer_file = out / "last" / "trainer.safetensors"
    trainer_file.write_bytes(trainer_file.read_bytes()[:100])
    (out / "last" / "model.safetensors").write_bytes(
        (out / "best" / "model.safetensors").read_bytes())
    with pytest.raises(UserError) as e:
        load_checkpoint(out / "last")
    assert "\n" not in str(e.value) and "trainer.safetensors" in str(e.value)

    (out / "last" / "trainer_state.json").write_text('{"step": 1')
    with pytest.raises(UserError) as e:
        load_checkpoint(out)
    assert "\n" not in str(e.value) and "trainer_state.json" in str(e.value)
    assert (out / "metrics.csv").read_bytes() == metrics_before  # nothing was touched

    assert load_checkpoint(out / "best")["step"] == 8    # the run dir is still usable
    result = run(out, resume=str(out / "best"))
    assert result["step"] == 16 and load_checkpoint(out)["step"] == 16
    got, want = losses(out), losses(reference[0])
    assert sorted(got) == list(range(1, 17))
    assert got[16] == pytest.approx(want[16], rel=1e-6)


def test_crash_between_renames_uses_previous_checkpoint(reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    os.rename(out / "last", out / ".last.old")  # what a crash inside the swap leaves behind
    ck = load_checkpoint(out)
    assert ck["step"] == 16 and "interrupted" in capsys.readouterr().out


def test_nan_guard_skips_then_stops(tmp_path):
    result = run(tmp_path / "a", task=CycleTask(nan_calls={3, 4}), steps=8, eval_batches=0)
    rows = [r for r in read_metrics(tmp_path / "a" / "metrics.csv") if r["split"] == "train"]
    skipped = [r["step"] for r in rows if r.get("nonfinite") == 1 and math.isnan(r["loss"])]
    assert skipped == [3, 4] and result["step"] == 8
    assert math.isfinite(result["final_loss"])

    with pytest.raises(TrainingDiverged) as e:
        run(tmp_path / "b", task=CycleTask(nan_calls=set(range(5, 100))), steps=12,
            eval_batches=0, max_nonfinite=3, save_every=2)
    msg = str(e.value)
    assert "\n" not in msg and "step 7" in msg and "seed=3, step=6" in msg
    ck = load_checkpoint(tmp_path / "b")
    assert ck["step"] == 4                      # nothing written after the loss went bad
    assert all(torch.isfinite(t).all() for t in ck["model_state"].values())
