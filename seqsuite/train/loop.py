"""The one training loop every domain uses (read it top to bottom: `train`).

Batches are a pure function of seeds: example i of update s is drawn by
`task.sample("train", numpy.random.default_rng([seed, s, i]), seq_len)`, and rank r of a
torchrun job takes examples r::world. A checkpoint therefore only needs the step to know where
the data stream stands, resume is exact, and any number of processes sees the same global batch.
"""
from __future__ import annotations

import contextlib
import math
import resource
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from seqsuite.errors import UserError
from seqsuite.train import checkpoint as ckpt
from seqsuite.train import distributed as dist_utils
from seqsuite.train.config import TrainConfig
from seqsuite.train.logging import MetricsLog, plot_learning_curve
from seqsuite.train.schedule import lr_at, seq_len_schedule

VALID_SEED_TAG = 2**32 - 1  # validation example i of batch k: default_rng([TAG, k, i])
LN2 = math.log(2.0)


class Task(Protocol):
    """What the loop needs from a domain: one example from seeds, and a loss on a batch."""

    vocab_size: int

    def sample(self, split: str, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """ONE example, e.g. {"tokens": int64[L], "targets": int64[L]}."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss in nats over the batch, plus extra metrics. `model` may be a DDP wrapper:
        only call it."""


class TrainingDiverged(UserError):
    """The loss stayed non-finite for cfg.max_nonfinite updates in a row."""


# ---------------------------------------------------------------------------------- parts

def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices (>= 2-D); none on biases, norms, 1-D parameters and
    parameters flagged `p._no_weight_decay = True` (e.g. SSM A_log, D, dt)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # shared (tied) parameters are listed once
        if not p.requires_grad:
            continue
        if p.dim() < 2 or getattr(p, "_no_weight_decay", False):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    """AdamW with the config's betas and matrix-only weight decay (fused on CUDA)."""
    extra = {"fused": True} if device.startswith("cuda") else {}
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                             betas=tuple(cfg.betas), eps=cfg.eps, **extra)


def collate(examples: list[dict], pin: bool = False) -> dict[str, torch.Tensor]:
    """Stack a list of example dicts into a dict of CPU tensors (pinned for CUDA copies)."""
    out = {}
    for key in examples[0]:
        t = torch.from_numpy(np.stack([np.asarray(e[key]) for e in examples]))
        out[key] = t.pin_memory() if pin else t
    return out


def make_batches(task: Task, cfg: TrainConfig, dinfo: dist_utils.DistInfo, split: str,
                 seeds_of: Callable, seq_len: int, batch_size: int) -> list[tuple[int, dict]]:
    """This rank's share (examples rank::world) of one global batch, as cfg.grad_accum
    collated CPU micro-batches [(n_examples, batch)]."""
    mine = np.arange(dinfo.rank, batch_size, dinfo.world)
    pin = dinfo.device.startswith("cuda")
    return [(len(c), collate([task.sample(split, rng, seq_len) for rng in seeds_of(c)], pin))
            for c in np.array_split(mine, cfg.grad_accum) if len(c)]


def train_batch_seeds(cfg: TrainConfig, step: int, indices) -> list[np.random.Generator]:
    """The generators of training examples `indices` of update `step`."""
    return [np.random.default_rng([cfg.seed, step, int(i)]) for i in indices]


def _seed_torch(cfg: TrainConfig, step: int, rank: int) -> None:
    """Seed torch (dropout etc.) from (seed, step, rank), so every update is reproducible."""
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, step, rank, 1]).generate_state(1)[0]))


def _memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        gb = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
        return gb
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _amp_context(cfg: TrainConfig, device: str):
    on = cfg.amp == "bf16" or (cfg.amp == "auto" and device.startswith("cuda"))
    if not on:
        return contextlib.nullcontext
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return lambda: torch.autocast(device_type=kind, dtype=torch.bfloat16)


def _forward_backward(model, task, batches, dinfo, batch_size, amp, ddp=None, train=True):
    """Run this rank's micro-batches of one global batch (forward, and backward if `train`).

    Each micro-batch loss is scaled by n_micro * world / batch_size before backward, so after
    DDP averages the gradients they are those of the mean loss over the whole global batch.
    Returns the global (loss sum, example count, {metric: sum}) summed over all ranks.
    """
    loss_sum = torch.zeros((), device=dinfo.device, dtype=torch.float64)
    metric_sums: dict[str, float] = {}
    for c, (n, cpu_batch) in enumerate(batches):
        batch = {k: v.to(dinfo.device, non_blocking=True) for k, v in cpu_batch.items()}
        sync = ddp is None or c == len(batches) - 1
        with (contextlib.nullcontext() if sync else ddp.no_sync()):
            with amp():
                loss, extras = task.loss(model, batch)
            if train:
                (loss * (n * dinfo.world / batch_size)).backward()
        loss_sum += loss.detach().double() * n
        for k, v in (extras or {}).items():
            metric_sums[k] = metric_sums.get(k, 0.0) + float(v) * n
    keys = sorted(metric_sums)
    packed = torch.tensor([float(sum(n for n, _ in batches))] + [metric_sums[k] for k in keys],
                          dtype=torch.float64, device=dinfo.device)
    packed = torch.cat([loss_sum.reshape(1), packed])
    dist_utils.all_reduce_sum(packed, dinfo)
    packed = packed.tolist()
    return packed[0], packed[1], dict(zip(keys, packed[2:]))


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, cfg: TrainConfig,
             dinfo: dist_utils.DistInfo | None = None, amp=None) -> dict[str, float]:
    """Mean loss (nats), bits per token and task metrics on the fixed validation stream:
    cfg.eval_batches batches of cfg.batch_size examples at cfg.seq_len."""
    dinfo = dinfo or dist_utils.DistInfo(device=str(next(model.parameters()).device))
    amp = amp or _amp_context(cfg, dinfo.device)
    was_training = model.training
    model.eval()
    total, count, metrics = 0.0, 0.0, {}
    for k in range(cfg.eval_batches):
        seeds_of = lambda idx, k=k: [np.random.default_rng([VALID_SEED_TAG, k, int(i)])
                                     for i in idx]
        batches = make_batches(task, cfg, dinfo, "valid", seeds_of, cfg.seq_len, cfg.batch_size)
        s, n, m = _forward_backward(model, task, batches, dinfo, cfg.batch_size, amp, train=False)
        total, count = total + s, count + n
        for key, v in m.items():
            metrics[key] = metrics.get(key, 0.0) + v
    model.train(was_training)
    loss = total / max(count, 1.0)
    return {"loss": loss, "bits_per_token": loss / LN2,
            **{k: v / max(count, 1.0) for k, v in metrics.items()}}


class _StopFlag:
    """Set by SIGINT/SIGTERM: finish the update, save a checkpoint, exit cleanly. A second
    signal more than 2 s later aborts at once (torchrun may repeat the first one)."""

    def __init__(self):
        self.set_at: float | None = None
        self.previous = {}

    def __call__(self, signum, frame):
        now = time.monotonic()
        if self.set_at is not None:
            if now - self.set_at > 2.0:
                raise KeyboardInterrupt
            return
        self.set_at = now
        print(f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
              f"(press Ctrl-C again to abort without saving)", flush=True)

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self)

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def _resolve_run(cfg: TrainConfig, resume) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None), refusing to clobber a run."""
    if resume:
        source = Path(resume) if isinstance(resume, (str, Path)) else None
        if source is None:
            if cfg.out_dir is None:
                raise UserError("resume=True needs cfg.out_dir (the run directory to resume)")
            source = Path(cfg.out_dir)
        path = ckpt.find_checkpoint(source)
        run_dir = Path(cfg.out_dir) if cfg.out_dir else path.parent
        return run_dir, path
    if cfg.out_dir is None:
        raise UserError("train config: out_dir is required (the run directory, e.g. --out RUN)")
    run_dir = Path(cfg.out_dir)
    if (run_dir / "last").exists() or (run_dir / ".last.old").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another --out")
    return run_dir, None


_TRAJECTORY_KEYS = ("steps", "batch_size", "seq_len", "lr", "warmup_frac", "warmup_steps",
                    "min_lr_frac", "weight_decay", "betas", "grad_clip", "seq_len_warmup",
                    "seq_len_stage_steps", "seed")


# ---------------------------------------------------------------------------------- the loop

def train(model: torch.nn.Module, task: Task, cfg: TrainConfig, resume: bool | str = False,
          callbacks: Sequence[Callable[[dict], bool | None]] = (),
          task_info: dict | None = None) -> dict:
    """Train `model` on `task` as `cfg` says; write logs and checkpoints under cfg.out_dir.

    resume: False (fresh run; refuses a directory that already holds one), True (continue
    cfg.out_dir/last), or a path (a run directory or a checkpoint directory).
    callbacks: called on every rank after each update with a dict (step, loss, lr, row,
    valid, model); returning True asks for a clean stop (checkpoint, then return).
    Returns a summary dict (run_dir, step, final_loss, best_val_loss, interrupted, ...).
    """
    dinfo = dist_utils.setup(cfg.device)
    device, main = dinfo.device, dinfo.is_main
    stop = _StopFlag()
    log = prefetcher = None
    try:
        run_dir, resume_from = _resolve_run(cfg, resume)
        model.to(device)
        optimizer = build_optimizer(model, cfg, device)
        start_step, best_val, elapsed_before, in_row = 0, math.inf, 0.0, 0
        if resume_from is not None:
            loaded = ckpt.load_checkpoint(resume_from, model, optimizer, device)
            state = loaded["state"]
            start_step = loaded["step"]
            best_val = state.get("best_val_loss", math.inf)
            elapsed_before = state.get("elapsed_s", 0.0)
            ckpt.set_rng_states(loaded["trainer_tensors"], state.get("rng", {}))
            saved = (loaded["config"].get("train") or {})
            changed = [f"{k} {saved.get(k)} -> {v}" for k, v in cfg.to_dict().items()
                       if k in _TRAJECTORY_KEYS and k in saved and saved[k] != v]
            if main:
                print(f"resuming from {resume_from} at step {start_step}"
                      + (f" (changed: {', '.join(changed)})" if changed else ""), flush=True)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            log = MetricsLog(
                run_dir, resume_step=start_step if resume_from is not None else None,
                tensorboard=cfg.tensorboard)
        dist_utils.barrier(dinfo)

        model_config = None
        if hasattr(model, "config") and hasattr(model.config, "to_dict"):
            model_config = model.config.to_dict()
        info = task_info or {"class": f"{type(task).__module__}.{type(task).__qualname__}",
                             "vocab_size": getattr(task, "vocab_size", None)}
        config_json = {"model": model_config, "train": cfg.to_dict(), "task": info}
        if model_config is not None:  # also readable by seqsuite.core.from_pretrained
            config_json.update({"format": "seqsuite-model-v1", "extra": {"task": info}})

        if cfg.grad_checkpoint:
            from seqsuite.core import set_grad_checkpointing

            if not set_grad_checkpointing(model):
                raise UserError("grad_checkpoint: this model has no seqsuite backbone to "
                                "checkpoint; train it without --grad-checkpoint")
        ddp = None
        train_model = model
        if dinfo.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(model, device_ids=[dinfo.local_rank] if device.startswith("cuda") else None,
                      find_unused_parameters=cfg.find_unused_parameters)
            train_model = ddp
        if cfg.compile:
            train_model = torch.compile(train_model)
        eval_model = model if dinfo.world > 1 or not cfg.compile else train_model
        amp = _amp_context(cfg, device)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        tokens_per_step = cfg.batch_size * cfg.seq_len

        def save(name: str, step: int) -> Path:
            """Write RUN/<name> on rank 0 (every rank first checks the weights are finite)."""
            for p in model.parameters():
                if not bool(torch.isfinite(p).all()):
                    raise TrainingDiverged(f"step {step}: the weights are not finite; no "
                                           f"checkpoint written (last good: {run_dir / 'last'})")
            if main:
                rng_t, rng_j = ckpt.rng_states()
                ckpt.save_checkpoint(
                    run_dir / name, model, optimizer, config=config_json, extra_tensors=rng_t,
                    trainer_state={"step": step, "best_val_loss": best_val, "rng": rng_j,
                                   "elapsed_s": elapsed_before + time.perf_counter() - t_start,
                                   "world_size": dinfo.world, "nonfinite_in_row": in_row})
            dist_utils.barrier(dinfo)
            return run_dir / name

        bar = None
        if main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start_step, unit="step", dynamic_ncols=True,
                       desc=run_dir.name)
        if main and start_step >= cfg.steps:
            print(f"{run_dir}: already at step {start_step} of {cfg.steps}; nothing to do "
                  f"(raise --steps to train further)")
        say = (bar.write if bar is not None else print) if main else (lambda *_: None)

        def sample_step(step_index: int) -> list[tuple[int, dict]]:
            """The collated micro-batches of training update `step_index` (a pure function)."""
            length, size = seq_len_schedule(cfg, step_index)
            seeds_of = lambda idx: train_batch_seeds(cfg, step_index, idx)
            return make_batches(task, cfg, dinfo, "train", seeds_of, length, size)

        prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seqsuite-data")
        next_batches = None
        stop.install()
        model.train()
        t_start = time.perf_counter()
        window = {"loss": 0.0, "n": 0, "bad": 0, "tokens": 0, "busy": 0.0, "metrics": {}}
        last_loss, last_val, grad_norm = math.nan, None, math.nan
        interrupted, step = False, start_step
        saved_at = start_step if resume_from is not None else -1

        for s in range(start_step, cfg.steps):
            seq_len, batch_size = seq_len_schedule(cfg, s)
            if batch_size // dinfo.world < cfg.grad_accum:  # every rank needs every micro-step
                raise UserError(f"step {s}: batch {batch_size} cannot be split over {dinfo.world} "
                                f"process(es) x grad_accum {cfg.grad_accum}; raise --batch-size")
            lr = lr_at(cfg, s)
            for g in optimizer.param_groups:
                g["lr"] = lr
            _seed_torch(cfg, s, dinfo.rank)
            t_step = time.perf_counter()
            batches = next_batches.result() if next_batches is not None else sample_step(s)
            next_batches = None
            if cfg.prefetch and s + 1 < cfg.steps:  # sample update s+1 while s computes
                next_batches = prefetcher.submit(sample_step, s + 1)
            loss_sum, count, msums = _forward_backward(train_model, task, batches, dinfo,
                                                       batch_size, amp, ddp)
            del batches
            loss = loss_sum / count
            finite = math.isfinite(loss)
            if finite:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(
                    params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
                finite = math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                in_row = 0
            optimizer.zero_grad(set_to_none=True)
            window["busy"] += time.perf_counter() - t_step
            step = s + 1

            if not finite:  # NaN/Inf guard: skip the update, log it, stop after n in a row
                in_row += 1
                what = f"loss {loss}" if not math.isfinite(loss) else f"grad norm {grad_norm}"
                batch_desc = (f"batch seeds [seed={cfg.seed}, step={s}, i=0..{batch_size - 1}], "
                              f"seq_len {seq_len}")
                say(f"step {step}: {what} is not finite; update skipped ({in_row} in a row; "
                    f"{batch_desc})")
                if log is not None:
                    log.log({"step": step, "split": "train", "loss": loss, "lr": lr,
                             "seq_len": seq_len, "batch_size": batch_size, "nonfinite": 1})
                window["bad"] += 1
                if in_row >= cfg.max_nonfinite:
                    raise TrainingDiverged(
                        f"training stopped at step {step}: non-finite loss or gradients for "
                        f"{in_row} updates in a row (last: {what}; {batch_desc}); lower --lr or "
                        f"--grad-clip and resume from {run_dir / 'last'}")
            else:
                last_loss = loss
                window["loss"] += loss
                window["n"] += 1
                for k, v in msums.items():
                    window["metrics"][k] = window["metrics"].get(k, 0.0) + v / count
            window["tokens"] += seq_len * batch_size

            row = None
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                tok_s = window["tokens"] / max(window["busy"], 1e-9)
                if window["n"]:
                    mean = window["loss"] / window["n"]
                    row = {"step": step, "split": "train", "loss": mean,
                           "bits_per_token": mean / LN2, "lr": lr, "grad_norm": grad_norm,
                           "tokens_per_s": tok_s, "seq_len": seq_len, "batch_size": batch_size,
                           "tokens": step * tokens_per_step, "mem_gb": _memory_gb(device),
                           "elapsed_s": elapsed_before + now - t_start,
                           "nonfinite": window["bad"],
                           **{k: v / window["n"] for k, v in window["metrics"].items()}}
                    if log is not None:
                        log.log(row)
                    if bar is not None:
                        bar.set_postfix_str(f"loss {mean / LN2:.3f} bpt, {tok_s:,.0f} tok/s, "
                                            f"L {seq_len}", refresh=False)
                window = {"loss": 0.0, "n": 0, "bad": 0, "tokens": 0, "busy": 0.0, "metrics": {}}
            if bar is not None:
                bar.update(1)

            val = None
            last_step = step == cfg.steps
            if cfg.eval_batches > 0 and ((cfg.eval_every > 0 and step % cfg.eval_every == 0)
                                         or last_step):
                if next_batches is not None:
                    next_batches.result()  # task.sample is never called from two threads at once
                val = evaluate(eval_model, task, cfg, dinfo, amp)
                last_val = val["loss"]
                improved = val["loss"] < best_val
                if improved:
                    best_val = val["loss"]
                if log is not None:
                    log.log({"step": step, "split": "valid", "seq_len": cfg.seq_len,
                             "batch_size": cfg.batch_size, **val})
                say(f"step {step}: valid loss {val['loss']:.4f} "
                    f"({val['bits_per_token']:.4f} bits/token){' *best*' if improved else ''}")
                if improved:
                    save("best", step)
            if cfg.save_every > 0 and step % cfg.save_every == 0 and in_row and not last_step:
                say(f"step {step}: checkpoint deferred (the last update was skipped)")
            elif (cfg.save_every > 0 and step % cfg.save_every == 0) or last_step:
                save("last", step)
                saved_at = step

            want_stop = False
            for cb in callbacks:
                if cb({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "row": row,
                       "valid": val, "model": model, "seq_len": seq_len,
                       "batch_size": batch_size}):
                    want_stop = True
            want_stop = want_stop or stop.set_at is not None
            flag = torch.tensor([1.0 if want_stop else 0.0], device=device)
            if float(dist_utils.all_reduce_sum(flag, dinfo)) > 0 and not last_step:
                if saved_at != step:
                    save("last", step)
                    saved_at = step
                interrupted = True
                say(f"stopped at step {step}; checkpoint {run_dir / 'last'} "
                    f"(continue with --resume {run_dir})")
                break

        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - t_start
        if main and cfg.plot:
            plot_learning_curve(run_dir)
        return {"run_dir": str(run_dir), "step": step, "steps": cfg.steps,
                "final_loss": last_loss, "val_loss": last_val,
                "best_val_loss": best_val if math.isfinite(best_val) else None,
                "interrupted": interrupted, "checkpoint": str(run_dir / "last"),
                "tokens": step * tokens_per_step, "elapsed_s": elapsed_before + elapsed,
                "tokens_per_s": (step - start_step) * tokens_per_step / max(elapsed, 1e-9)}
    finally:
        if prefetcher is not None:
            prefetcher.shutdown(wait=True, cancel_futures=True)
        stop.uninstall()
        if log is not None:
            log.close()
        dist_utils.teardown(dinfo)
