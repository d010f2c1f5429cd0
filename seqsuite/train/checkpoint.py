"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a directory (RUN/last, RUN/best) holding
  model.safetensors      the model weights
  config.json            {"model": model config, "train": train config, "task": task info}
  trainer.safetensors    optimizer tensors and torch/CUDA RNG states
  trainer_state.json     step, optimizer hyper-parameters, numpy/python RNG states, best
                         validation loss, and the size + sha256 of every file above
It is written into a temporary directory and renamed into place, so a reader sees either the
old checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seqsuite.errors import UserError

FORMAT = "seqsuite-checkpoint-1"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.json"


# ---------------------------------------------------------------------------------- helpers

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into safetensors-ready tensors and a JSON-ready dict."""
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of `flatten_optimizer`: rebuild the optimizer state_dict."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    """The torch/CUDA RNG states (tensors) and the numpy/python RNG states (JSON)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                      for k, v in np_state["state"].items()}}
    py = random.getstate()
    return tensors, {"numpy": np_state, "python": [py[0], list(py[1]), py[2]]}


def set_rng_states(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Restore what `rng_states` captured (CUDA states only where the devices exist)."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8).cpu())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"rng.cuda.{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"].cpu(), i)
    if "numpy" in meta:
        st = dict(meta["numpy"])
        st["state"] = {k: (np.asarray(v, dtype=np.uint32) if k == "key" else v)
                       for k, v in st["state"].items()}
        np.random.set_state(st)
    if "python" in meta:
        v, internal, gauss = meta["python"]
        random.setstate((v, tuple(internal), gauss))


# ---------------------------------------------------------------------------------- save

def _full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every state_dict entry as its own CPU tensor (safetensors refuses shared storage): tied
    weights are stored under each name, so a strict `load_state_dict` needs no knowledge of
    the tying."""
    return {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    trainer_state: dict | None = None, config: dict | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename); returns its path.

    Refuses (ValueError) to write weights or optimizer moments that are not finite.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise ValueError(f"model tensor {name} is not finite; checkpoint not written")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        save_file(_full_state(model), str(tmp / MODEL_FILE), metadata={"format": FORMAT})
        tensors = dict(extra_tensors or {})
        state = dict(trainer_state or {})
        if optimizer is not None:
            opt_tensors, opt_meta = flatten_optimizer(optimizer.state_dict())
            for name, t in opt_tensors.items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise ValueError(f"optimizer tensor {name} is not finite; "
                                     f"checkpoint not written")
            tensors.update(opt_tensors)
            state["optimizer"] = opt_meta
        save_file(tensors, str(tmp / TRAINER_FILE), metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps(config or {}, indent=2, default=str))
        files = {}
        for name in (MODEL_FILE, TRAINER_FILE, CONFIG_FILE):
            f = tmp / name
            _fsync(f)
            files[name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
        state.update(format=FORMAT, files=files, saved_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        _fsync(tmp / STATE_FILE)
        old = _old_name(path)
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------- load

def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve a run directory (-> RUN/last) or a checkpoint directory to a checkpoint path.

    If a crash hit the instant between the two renames of a save, the previous checkpoint is
    still at RUN/.last.old; it is used and reported.
    """
    path = Path(path)
    if (path / STATE_FILE).exists():
        return path
    for candidate in (path / "last", path):
        old = _old_name(candidate)
        if (candidate / STATE_FILE).exists():
            return candidate
        if (old / STATE_FILE).exists():
            print(f"note: {candidate} is missing (a save was interrupted); using the previous "
                  f"checkpoint {old}")
            return old
    if not path.exists():
        raise UserError(f"no run to resume at {path}; pass an existing run directory (or "
                        f"RUN/last, RUN/best), or start without --resume")
    raise UserError(f"no checkpoint in {path} (no {STATE_FILE}); pass a run directory holding "
                    f"last/ or a checkpoint directory, or start without --resume")


def _corrupt(path: Path, why: str) -> UserError:
    run = path.parent
    others = [str(run / n) for n in ("last", "best") if (run / n) != path
              and (run / n / STATE_FILE).exists()]
    fix = (f"resume from {' or '.join(others)} instead" if others
           else "start a new run with another --out")
    return UserError(f"checkpoint {path} is corrupt or truncated ({why}); {fix}")


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """Check a checkpoint's files against the sizes and hashes it recorded; return its state.

    Raises UserError (one line, with the fix) if anything is missing, truncated or altered.
    """
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        raise _corrupt(path, f"{STATE_FILE}: {type(e).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "files" not in state:
        raise _corrupt(path, f"{STATE_FILE} is not a {FORMAT} record")
    for name, rec in state["files"].items():
        f = path / name
        if not f.exists():
            raise _corrupt(path, f"{name} is missing")
        size = f.stat().st_size
        if size != rec["bytes"]:
            raise _corrupt(path, f"{name} has {size} bytes, expected {rec['bytes']}")
        if _sha256(f) != rec["sha256"]:
            raise _corrupt(path, f"{name} does not match its recorded sha256")
    return state


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    device: str | torch.device = "cpu") -> dict:
    """Verify and read a checkpoint (a run dir means RUN/last); never unpickles anything.

    With `model`, its weights are loaded in place (strict); with `optimizer`, its state too.
    Returns {"path", "step", "config", "state", "model_state" (only without `model`),
    "trainer_tensors"}.
    """
    from safetensors.torch import load_file

    path = find_checkpoint(path)
    state = verify_checkpoint(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        trainer_tensors = load_file(str(path / TRAINER_FILE), device="cpu")
    except Exception as e:  # verified above, so only a foreign or hand-edited file gets here
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    out = {"path": path, "step": int(state.get("step", 0)), "config": config, "state": state,
           "trainer_tensors": trainer_tensors}
    if model is not None:
        try:
            weights = load_file(str(path / MODEL_FILE), device="cpu")
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            first = " ".join(line.strip() for line in str(e).strip().splitlines()[1:3])[:200]
            raise UserError(f"checkpoint {path} does not fit this model ({first}); build the "
                            f"model with the checkpoint's config.json") from None
    else:
        out["model_state"] = load_file(str(path / MODEL_FILE), device=str(device))
    if optimizer is not None and "optimizer" in state:
        sd = unflatten_optimizer(trainer_tensors, state["optimizer"])
        current = optimizer.state_dict()["param_groups"]
        if len(current) != len(sd["param_groups"]):
            raise UserError(f"checkpoint {path}: optimizer has {len(sd['param_groups'])} "
                            f"parameter groups, this run {len(current)}; use the same model")
        for saved, now in zip(sd["param_groups"], current):
            for key in ("fused", "foreach", "capturable"):  # device-specific: keep this run's
                if key in now:
                    saved[key] = now[key]
        try:
            optimizer.load_state_dict(sd)
        except (ValueError, KeyError) as e:
            raise UserError(f"checkpoint {path}: optimizer state does not fit this model "
                            f"({e}); use the same model") from None
    return out
