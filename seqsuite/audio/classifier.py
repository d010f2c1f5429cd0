"""A small ResNet digit classifier on log-mel spectrograms of 1 s clips: the feature extractor
behind the SC09 sample metrics (FID on its penultimate features, IS/mIS/AM on its softmax).

Saved as model.safetensors + config.json; loaded without pickle.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seqsuite.errors import UserError

from .data import DIGITS, SAMPLE_RATE, SC09, mu_law_decode

log = logging.getLogger("seqsuite.audio")


@dataclass
class ClassifierConfig:
    """Shape of the classifier; everything needed to rebuild it from config.json."""
    n_mels: int = 32
    n_fft: int = 512
    win_length: int = 400   # 25 ms
    hop_length: int = 160   # 10 ms
    width: int = 16         # channels of the first stage; doubled at each later stage
    blocks: tuple[int, ...] = (2, 2, 2)
    n_classes: int = 10
    clip_samples: int = SAMPLE_RATE
    labels: tuple[str, ...] = DIGITS

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("blocks", "labels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.short is None else self.short(x)))


class DigitClassifier(nn.Module):
    """waveform [B, T] -> (penultimate features [B, 4*width], logits [B, n_classes])."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        import torchaudio

        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=config.n_fft, win_length=config.win_length,
            hop_length=config.hop_length, n_mels=config.n_mels, f_min=20.0, f_max=SAMPLE_RATE / 2)
        w = config.width
        self.stem = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, w, 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU())
        layers, c = [], w
        for i, n in enumerate(config.blocks):
            c_out = w * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, 2 if (j == 0 and i > 0) else 1))
                c = c_out
        self.blocks = nn.Sequential(*layers)
        self.feature_dim = c
        self.head = nn.Linear(c, config.n_classes)

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Peak-normalised waveform -> log-mel [B, 1, n_mels, frames]."""
        wave = wave / (wave.abs().amax(dim=1, keepdim=True) + 1e-6)
        return torch.log(self.mel(wave) + 1e-5).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(self.stem(self.spectrogram(wave)))
        feats = h.mean(dim=(2, 3))
        return feats, self.head(feats)


# ----------------------------------------------------------------------------- save / load

def save_classifier(model: DigitClassifier, out: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Write model.safetensors and config.json (config + metrics) into `out`."""
    from safetensors.torch import save_file

    from seqsuite.utils import atomic_path, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    meta = {"kind": "seqsuite-audio-digit-classifier", "config": asdict(model.config),
            "metrics": metrics or {}}
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return out


def load_classifier(path: str | os.PathLike, device: str = "cpu") -> DigitClassifier:
    """Rebuild a classifier from a folder written by `save_classifier` (no pickle)."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    if not cfg_file.exists() or not weights.exists():
        raise UserError(f"'{path}' is not a classifier folder (needs config.json and "
                        "model.safetensors): train one with `seqsuite audio train-classifier`")
    meta = json.loads(cfg_file.read_text())
    if meta.get("kind") != "seqsuite-audio-digit-classifier":
        raise UserError(f"'{path}/config.json' does not describe an audio digit classifier")
    model = DigitClassifier(ClassifierConfig.from_dict(meta["config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.to(device).eval()


# ----------------------------------------------------------------------------- use

@torch.no_grad()
def classify(model: DigitClassifier, waves: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Float waveforms [n, T] (cut/padded to the clip length) -> (features [n, d], probs [n, C])."""
    model.eval()
    device = next(model.parameters()).device
    n_clip = model.config.clip_samples
    feats, probs = [], []
    for i in range(0, len(waves), batch_size):
        w = np.zeros((len(waves[i:i + batch_size]), n_clip), dtype=np.float32)
        for j, x in enumerate(waves[i:i + batch_size]):
            w[j, : min(n_clip, len(x))] = x[:n_clip]
        f, logits = model(torch.from_numpy(w).to(device))
        feats.append(f.double().cpu().numpy())
        probs.append(torch.softmax(logits.double(), -1).cpu().numpy())
    d = model.feature_dim
    return (np.concatenate(feats) if feats else np.zeros((0, d)),
            np.concatenate(probs) if probs else np.zeros((0, model.config.n_classes)))


def _augment(wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random time shift (up to +-100 ms, zero filled) and light noise at a random level."""
    b, t = wave.shape
    out = torch.zeros_like(wave)
    shifts = torch.randint(-1600, 1601, (b,), generator=gen)
    for i, s in enumerate(shifts.tolist()):
        if s >= 0:
            out[i, s:] = wave[i, : t - s]
        else:
            out[i, : t + s] = wave[i, -s:]
    level = 10 ** (torch.rand(b, 1, generator=gen) * 3 - 4)  # -80 ... -20 dB of full scale
    return out + level * torch.randn(b, t, generator=gen)


@dataclass
class ClassifierTrainConfig:
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    model: ClassifierConfig = field(default_factory=ClassifierConfig)


def accuracy(model: DigitClassifier, waves: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on a labelled set (nan when it is empty)."""
    if len(labels) == 0:
        return float("nan")
    _, probs = classify(model, waves)
    return float((probs.argmax(1) == labels).mean())


def train_classifier(sc09_dir: str | os.PathLike, out: str | os.PathLike,
                     cfg: ClassifierTrainConfig | None = None) -> dict:
    """Train the digit classifier on the SC09 training split (mu-law decoded clips, as the audio
    models see them), save it to `out`, and return its validation and test accuracy."""
    from tqdm import tqdm

    from seqsuite.utils import resolve_device

    cfg = cfg or ClassifierTrainConfig()
    device = resolve_device(cfg.device)
    data = SC09(sc09_dir, clip_samples=cfg.model.clip_samples)
    tr_tok, tr_lab, _ = data.load("train")
    waves = torch.from_numpy(mu_law_decode(tr_tok))
    labels = torch.from_numpy(tr_lab)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = DigitClassifier(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc="training digit classifier", unit="step")
    model.train()
    for step in bar:
        idx = torch.randint(0, len(labels), (cfg.batch_size,), generator=gen)
        x = _augment(waves[idx], gen).to(device)
        _, logits = model(x)
        loss = F.cross_entropy(logits, labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    metrics = {"train_seconds": round(time.time() - t0, 1), "steps": cfg.steps,
               "train_clips": int(len(labels))}
    for split in ("valid", "test"):
        tok, lab, _ = data.load(split)
        metrics[f"{split}_accuracy"] = accuracy(model, mu_law_decode(tok), lab)
        metrics[f"{split}_clips"] = int(len(lab))
    save_classifier(model.cpu(), out, metrics)
    log.info("classifier saved to %s: %s", out, metrics)
    return metrics
