"""Save and load models: weights as safetensors + config.json. No pickle, ever."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import UserError
from ..utils import atomic_path, atomic_write_text
from .config import ModelConfig

WEIGHTS, CONFIG = "model.safetensors", "config.json"
FORMAT = "seqsuite-model-v1"


def save_pretrained(model, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `directory`/model.safetensors and config.json (each atomically). `extra` is stored
    under "extra" in config.json (e.g. the tokenizer vocabulary or the training command)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in _unique_state(model).items()}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    meta = {"format": FORMAT, "model": model.config.to_dict(), "extra": extra or {}}
    atomic_write_text(directory / CONFIG, json.dumps(meta, indent=2))
    return directory


def _unique_state(model) -> dict:
    """state_dict without tied duplicates (safetensors refuses shared storage)."""
    out, seen = {}, {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), v.shape) if v.numel() else None
        if key is not None and key in seen:
            continue
        seen[key] = k
        out[k] = v
    return out


def load_config(directory: str | os.PathLike) -> tuple[ModelConfig, dict]:
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise UserError(f"{directory}: no {CONFIG} here; pass a run or model folder written by seqsuite")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e.__class__.__name__}); the file is corrupt, retrain or restore it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "model" not in meta:
        raise UserError(f"{path}: not a seqsuite model config (expected format {FORMAT!r})")
    return ModelConfig.from_dict(meta["model"]), meta.get("extra", {})


def from_pretrained(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a model saved by `save_pretrained`; refuses truncated, foreign or mismatched files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import build_model

    directory = Path(directory)
    cfg, extra = load_config(directory)
    wpath = directory / WEIGHTS
    if not wpath.is_file():
        raise UserError(f"{directory}: no {WEIGHTS} beside {CONFIG}; the model folder is incomplete")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{wpath}: cannot be read as safetensors ({str(e).splitlines()[0]}); the file is truncated or not a model") from None
    model = build_model(cfg)
    expected = _unique_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UserError(f"{wpath}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise UserError(f"{wpath}: tensor {k} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)
    model.extra = extra
    return model.to(device)
