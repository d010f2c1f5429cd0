"""Next-sample prediction on mu-law audio (the Task protocol of seqsuite.train), held-out NLL in
bits per sample, and a unigram mu-law baseline.

    task = AudioLMTask.from_folder("youtubemix/")    # or AudioLMTask.from_sc09("sc09/")
    train(model, task, TrainConfig(seq_len=16384, ...), task_info=task.task_info())
    evaluate_nll(model, task, "test")                 # {"bits_per_sample": ...}
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from seqsuite.errors import UserError

from .data import N_CLASSES, SILENCE, SC09, AudioFolder, canonical_split

LN2 = math.log(2.0)
DATASETS = ("youtubemix", "sc09")


class AudioLMTask:
    """Autoregressive mu-law modelling. Every clip is read as [128 (silence)] + its samples, so
    the first sample is predicted from silence exactly as generation starts. A training example
    is a uniformly placed window of seq_len + 1 tokens: tokens = its first seq_len, targets = its
    last seq_len. SC09 clips are 16000 samples, so seq_len = 16000 is a whole clip."""

    vocab_size = N_CLASSES

    def __init__(self, dataset: str, source: AudioFolder | SC09):
        if dataset not in DATASETS:
            raise UserError(f"unknown audio dataset '{dataset}': use youtubemix or sc09")
        self.dataset = dataset
        self.source = source
        self._clips: dict[str, list[np.ndarray]] = {}
        self._cum: dict[tuple[str, int], np.ndarray] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "AudioLMTask":
        """A YouTubeMix-style folder of music files (split by file, sorted, 88/6/6)."""
        return cls("youtubemix", AudioFolder(folder))

    @classmethod
    def from_sc09(cls, root: str | os.PathLike) -> "AudioLMTask":
        """A Speech Commands folder restricted to the ten digits."""
        return cls("sc09", SC09(root))

    @classmethod
    def from_info(cls, info: dict) -> "AudioLMTask":
        """Rebuild the task a run was trained on from its stored `task_info()`."""
        data = info.get("data")
        if not data or not os.path.isdir(data):
            raise UserError(f"the run's data folder '{data}' is not there any more: pass --data")
        return cls.from_sc09(data) if info.get("dataset") == "sc09" else cls.from_folder(data)

    def task_info(self) -> dict:
        """What the training loop stores in config.json under "task"."""
        root = self.source.root if isinstance(self.source, SC09) else self.source.folder
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}",
                "vocab_size": N_CLASSES, "dataset": self.dataset, "data": str(root.resolve())}

    def clips(self, split: str) -> list[np.ndarray]:
        """The split's clips as uint8 token arrays, each starting with the silence token."""
        split = canonical_split(split)
        if split not in self._clips:
            if isinstance(self.source, SC09):
                raw = list(self.source.load(split)[0])
            else:
                raw = self.source.tokens(split)
            head = np.array([SILENCE], dtype=np.uint8)
            self._clips[split] = [np.concatenate([head, c]) for c in raw]
        return self._clips[split]

    def _starts(self, split: str, seq_len: int) -> np.ndarray:
        """Cumulative counts of valid window starts per clip (for uniform window placement)."""
        key = (split, seq_len)
        if key not in self._cum:
            clips = self.clips(split)
            if not clips:
                raise UserError(f"the {split} split of {self.dataset} data is empty: add files")
            counts = np.array([max(0, len(c) - seq_len) for c in clips], dtype=np.int64)
            if counts.sum() == 0:
                longest = max(len(c) for c in clips) - 1
                raise UserError(f"every {split} clip is shorter than seq_len + 1 = {seq_len + 1} "
                                f"(longest {longest} samples): lower --seq-len to <= {longest}")
            self._cum[key] = np.cumsum(counts)
        return self._cum[key]

    def sample(self, split: str, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """One window, placed uniformly over all valid positions of the split."""
        split = canonical_split(split)
        cum = self._starts(split, seq_len)
        u = int(rng.integers(0, int(cum[-1])))
        i = int(np.searchsorted(cum, u, side="right"))
        start = u - (int(cum[i - 1]) if i else 0)
        window = self.clips(split)[i][start:start + seq_len + 1].astype(np.int64)
        return {"tokens": window[:-1], "targets": window[1:]}

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy (nats) of the next sample; also next-sample accuracy."""
        logits = model(batch["tokens"])
        flat = logits.reshape(-1, logits.shape[-1]).float()
        targets = batch["targets"].reshape(-1)
        loss = F.cross_entropy(flat, targets)
        return loss, {"acc": float((flat.argmax(-1) == targets).float().mean())}


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _amp(device: torch.device):
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def sequence_nll(model, tokens: torch.Tensor | np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Per-row NLL in bits per sample of full sequences [n, 1 + T] that start with the silence
    token: the model scores samples 1..T given everything before them."""
    device = _device(model)
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    out = []
    was_training = model.training
    model.eval()
    for i in range(0, len(tokens), batch_size):
        x = tokens[i:i + batch_size].to(device)
        with _amp(device):
            logits = model(x[:, :-1])
        nll = F.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")
        out.append((nll.mean(1) / LN2).double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


@torch.no_grad()
def evaluate_nll(model, task: AudioLMTask, split: str = "test", seq_len: int | None = None,
                 batch_size: int = 8, max_samples: int | None = None, progress: bool = False) -> dict:
    """NLL of every sample of the split's clips (read in order; up to `max_samples`), in windows
    of seq_len predictions that start from an empty state (SC09: one window = one clip).
    Returns bits and nats per sample and how many samples were scored."""
    split = canonical_split(split)
    clips = task.clips(split)
    if not clips:
        raise UserError(f"the {split} split of the {task.dataset} data is empty: add files")
    if seq_len is None:
        seq_len = max(len(c) for c in clips) - 1 if task.dataset == "sc09" else 65536
    windows, budget = [], max_samples if max_samples else math.inf
    for ci, c in enumerate(clips):
        for s in range(0, len(c) - 1, seq_len):
            n = min(seq_len, len(c) - 1 - s, int(min(budget, 2**62)))
            if n <= 0:
                break
            windows.append((ci, s, n))
            budget -= n
        if budget <= 0:
            break
    device = _device(model)
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(w[2] for w in windows), unit="sample", unit_scale=True,
                   desc=f"evaluate {split}", dynamic_ncols=True)
    total, count = 0.0, 0
    for b in range(0, len(windows), batch_size):
        group = windows[b:b + batch_size]
        width = max(n for _, _, n in group)
        x = torch.full((len(group), width), SILENCE, dtype=torch.long)
        y = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.bool)
        for r, (ci, s, n) in enumerate(group):
            seq = torch.from_numpy(clips[ci][s:s + n + 1].astype(np.int64))
            x[r, :n], y[r, :n], mask[r, :n] = seq[:-1], seq[1:], True
        with _amp(device):
            logits = model(x.to(device))
        nll = F.cross_entropy(logits.float().transpose(1, 2), y.to(device), reduction="none")
        total += float(nll[mask.to(device)].double().sum())
        count += int(mask.sum())
        if bar is not None:
            bar.update(int(mask.sum()))
    if bar is not None:
        bar.close()
    model.train(was_training)
    nats = total / max(count, 1)
    return {"split": split, "bits_per_sample": nats / LN2, "nats_per_sample": nats,
            "samples": count, "windows": len(windows), "seq_len": seq_len}


def unigram_baseline(task: AudioLMTask, split: str = "test", max_samples: int | None = None) -> dict:
    """Bits per sample of the training split's mu-law histogram (add-one smoothed) on `split`:
    what a model that ignores context achieves."""
    counts = np.ones(N_CLASSES, dtype=np.float64)
    for c in task.clips("train"):
        counts += np.bincount(c[1:], minlength=N_CLASSES)
    logp = np.log(counts / counts.sum())
    nll, n = 0.0, 0
    for c in task.clips(split):
        body = c[1:]
        if max_samples is not None:
            body = body[: max(0, max_samples - n)]
        nll -= float(logp[body].sum())
        n += len(body)
        if max_samples is not None and n >= max_samples:
            break
    nats = nll / max(n, 1)
    return {"split": canonical_split(split), "bits_per_sample": nats / LN2,
            "nats_per_sample": nats, "samples": n}
