"""The byte-level language-modelling task, its held-out evaluation, and text generation.

    task = BytesLMTask(load_bytes(["corpus/"]))        # Task protocol of seqsuite.train
    evaluate_bpb(model, task.data["test"])             # bits per byte, beside gzip/bz2/xz
    generate_text(model, "def main(", max_bytes=200)   # sampled with the model's recurrent step
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from seqsuite.errors import UserError

from .data import VOCAB_SIZE, ByteData, Utf8Stream, encode, list_files, load_bytes, read_bytes
from .metrics import LN2, compressor_bpb


class BytesLMTask:
    """Next-byte prediction on uniformly drawn windows of a split's byte stream."""

    vocab_size = VOCAB_SIZE

    def __init__(self, data: ByteData, info: dict | None = None):
        self.data = data
        self.info = info or {}

    @classmethod
    def from_paths(cls, paths, valid_frac: float = 0.05, test_frac: float = 0.05, split_seed: int = 0):
        """Read and split files/folders; remember how, so a run can rebuild the same splits."""
        paths = [str(Path(p).resolve()) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        data = load_bytes(paths, valid_frac, test_frac, split_seed)
        info = {"paths": paths, "valid_frac": valid_frac, "test_frac": test_frac, "split_seed": split_seed}
        return cls(data, info)

    def task_info(self) -> dict:
        """What the training loop stores in config.json under "task"."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", "vocab_size": VOCAB_SIZE,
                "data": self.info}

    def sample(self, split: str, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """One window of seq_len + 1 bytes: tokens = its first seq_len, targets = its last seq_len."""
        stream = self.data[split]
        if stream.size < seq_len + 1:
            raise UserError(f"the {split} split holds {stream.size} bytes, fewer than seq_len + 1 = "
                            f"{seq_len + 1}: lower --seq-len or add files")
        start = int(rng.integers(0, stream.size - seq_len))
        window = stream[start:start + seq_len + 1].astype(np.int64)
        return {"tokens": window[:-1], "targets": window[1:]}

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy (nats) of the next byte; also next-byte accuracy."""
        logits = model(batch["tokens"])
        flat = logits.reshape(-1, logits.shape[-1]).float()
        targets = batch["targets"].reshape(-1)
        loss = F.cross_entropy(flat, targets)
        acc = (flat.argmax(-1) == targets).float().mean()
        return loss, {"acc": float(acc)}


def _as_stream(source, split: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A uint8 stream and its files' (start, end) segments, from a ByteData split, a task, an
    array, bytes, or files/folders."""
    if isinstance(source, BytesLMTask):
        source = source.data
    if isinstance(source, ByteData):
        return source[split], source.segments(split)
    if isinstance(source, (bytes, bytearray)):
        source = np.frombuffer(bytes(source), dtype=np.uint8)
    if isinstance(source, np.ndarray):
        data = source.astype(np.uint8, copy=False)
        return data, [(0, int(data.size))]
    files = list_files(source)
    sizes = np.cumsum([0] + [f.stat().st_size for f in files])
    return read_bytes(files), [(int(a), int(b)) for a, b in zip(sizes[:-1], sizes[1:]) if b > a]


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _windows(segments, seq_len: int, context: int) -> list[tuple[int, int, int]]:
    """(start, n_inputs, first_scored) windows scoring every byte but each segment's first, once."""
    out = []
    stride = seq_len - context
    for lo, hi in segments:
        for s in range(lo, max(hi - 1 - context, lo + 1), stride):
            m = min(seq_len, hi - 1 - s)
            if m > 0:
                out.append((s, m, 0 if s == lo else context))
    return out


@torch.no_grad()
def evaluate_bpb(model, source, split: str = "test", seq_len: int = 1024, batch_size: int = 8,
                 context: int = 0, per_file: bool = False, compressors: bool = True,
                 progress: bool = False) -> dict:
    """Bits per byte of `model` on held-out bytes, with gzip/bz2/xz on the same bytes.

    The bytes are cut into windows of seq_len predictions (consecutive windows overlap by
    `context` bytes that are seen but not scored again). The first byte has no context and is
    counted as 8 bits, so `bpb` is a true code length, (8 + Σ -log2 p) / n_bytes, like the
    compressors' compressed bits / n_bytes. By default the held-out files form one stream
    (compressors keep their history across files); with per_file=True every file is coded
    alone, by the model (from no context) and by the compressors.
    """
    data, segments = _as_stream(source, split)
    n = int(data.size)
    if n < 2:
        raise UserError(f"need at least 2 held-out bytes to evaluate, got {n}: pass larger files")
    if not per_file:
        segments = [(0, n)]
    if not 0 <= context < seq_len:
        raise ValueError(f"context={context} must be in [0, seq_len={seq_len})")
    device = _model_device(model)
    windows = _windows(segments, seq_len, context)
    was_training = model.training
    model.eval()
    tokens_all = torch.from_numpy(data.astype(np.int64))
    nll, scored = 0.0, 0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n - len(segments), unit="B", unit_scale=True, desc="evaluate", dynamic_ncols=True)
    for b0 in range(0, len(windows), batch_size):
        group = windows[b0:b0 + batch_size]
        x = torch.zeros(len(group), seq_len, dtype=torch.long)
        y = torch.zeros(len(group), seq_len, dtype=torch.long)
        mask = torch.zeros(len(group), seq_len, dtype=torch.bool)
        for r, (s, m, first) in enumerate(group):
            x[r, :m] = tokens_all[s:s + m]
            y[r, :m] = tokens_all[s + 1:s + 1 + m]
            mask[r, first:m] = True  # positions before `first` were scored by the previous window
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        if amp is not None:
            with amp:
                logits = model(x)
        else:
            logits = model(x)
        lp = F.log_softmax(logits.float(), dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        nll -= float(lp[mask].sum())
        k = int(mask.sum())
        scored += k
        if bar is not None:
            bar.update(k)
    if bar is not None:
        bar.close()
    model.train(was_training)
    assert scored == n - len(segments), (scored, n, len(segments))
    out = {"bpb": (8.0 * len(segments) + nll / LN2) / n, "nll_bits": nll / LN2, "n_bytes": n,
           "n_files": len(segments), "per_file": per_file}
    if compressors:
        comp = compressor_bpb(data, segments=segments if per_file else None)
        out.update({f"{k}_bpb": v for k, v in comp.items()})
    return out


def _allocate(model, batch: int, device, max_len: int) -> dict:
    """model.allocate_state, asking for max_len positions where the model takes that argument."""
    params = inspect.signature(model.allocate_state).parameters
    if "max_len" in params:
        return model.allocate_state(batch, device=device, max_len=max_len)
    return model.allocate_state(batch, device=device)


@torch.no_grad()
def stream_bytes(model, prompt: str | bytes, max_bytes: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, cuda_graph: bool | None = None) -> Iterator[int]:
    """Yield sampled byte values after `prompt`, one recurrent step per byte (the prompt goes
    through one parallel pass when the model supports prefill).

    An empty prompt starts from a newline. On CUDA the step is replayed from a CUDA graph
    (cuda_graph=None means: on CUDA only).
    """
    from seqsuite.core.generate import GraphStepper, sample_logits, supports_prefill

    if max_bytes < 0:
        raise UserError(f"--max-bytes must be >= 0, got {max_bytes}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError(f"need temperature >= 0 and 0 < top-p <= 1, got {temperature} and {top_p}")
    prompt_tokens = encode(prompt) if len(prompt) else encode(b"\n")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        state = _allocate(model, 1, device, len(prompt_tokens) + max_bytes)
        use_graph = device.type == "cuda" if cuda_graph is None else cuda_graph
        stepper = GraphStepper(model, state, 1, device) if use_graph else None
        gen = torch.Generator(device=device).manual_seed(int(seed))

        def step(tok: torch.Tensor, t: int) -> torch.Tensor:
            return stepper(tok, t) if stepper is not None else model.step(tok, state)

        tokens = torch.from_numpy(prompt_tokens).to(device)
        logits = None
        if len(tokens) > 1 and supports_prefill(model):
            logits = model.prefill(tokens[None], state)  # the prompt in one parallel pass
        else:
            for t in range(len(tokens)):
                logits = step(tokens[t:t + 1], t)
        t = len(tokens)
        for i in range(max_bytes):
            tok = sample_logits(logits, temperature, top_p, generator=gen)
            yield int(tok)
            if i + 1 < max_bytes:
                logits = step(tok, t)
                t += 1
    finally:
        model.train(was_training)


def generate_text(model, prompt: str | bytes = "", max_bytes: int = 256, temperature: float = 1.0,
                  top_p: float = 1.0, seed: int = 0, on_text: Callable[[str], None] | None = None,
                  cuda_graph: bool | None = None) -> str:
    """Sample max_bytes bytes after `prompt` and return them as text (the prompt not included).

    `on_text(chunk)` receives text as soon as whole UTF-8 characters are known; an incomplete
    character is held back, invalid bytes become U+FFFD (an unfinished tail at the end, too).
    """
    decoder = Utf8Stream()
    parts = []
    for b in stream_bytes(model, prompt, max_bytes, temperature, top_p, seed, cuda_graph):
        text = decoder.feed(b)
        if text:
            parts.append(text)
            if on_text is not None:
                on_text(text)
    tail = decoder.finish()
    if tail:
        parts.append(tail)
        if on_text is not None:
            on_text(tail)
    return "".join(parts)


# ---------------------------------------------------------------------------------- runs

def pretrain(paths=None, out: str | Path = "runs/bytes-lm", preset: str = "bytes-tiny", steps: int = 1000,
             seq_len: int = 512, batch_size: int = 16, lr: float = 2e-3, resume: bool | str = False,
             device: str = "auto", seed: int = 0, valid_frac: float = 0.05, test_frac: float = 0.05,
             model_overrides: dict | None = None, **train_overrides) -> dict:
    """Next-byte pretraining on files/folders (default: the demo corpus) with the shared loop.

    `resume` continues a run (its recorded architecture is rebuilt; `preset` is then unused).
    Returns the training loop's summary.
    """
    from seqsuite.core import build
    from seqsuite.train import TrainConfig, train

    if not paths:
        from .demo import demo_corpus

        paths = [demo_corpus()]
    task = BytesLMTask.from_paths(paths, valid_frac, test_frac)
    print(f"bytes: {task.data.summary()}")
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, device=device, seed=seed,
                      out_dir=str(out), **train_overrides)
    torch.manual_seed(seed)
    if resume:
        model = _model_of_run(resume if isinstance(resume, (str, Path)) else out)
    else:
        model = build(preset, vocab_size=VOCAB_SIZE, **(model_overrides or {}))
    summary = train(model, task, cfg, resume=resume, task_info=task.task_info())
    return summary


def _model_of_run(run: str | Path):
    """A freshly built model with the architecture recorded in a run's checkpoint (weights not loaded)."""
    import json

    from seqsuite.core import ModelConfig, build
    from seqsuite.train.checkpoint import CONFIG_FILE, find_checkpoint

    ck = find_checkpoint(run)
    try:
        cfg = json.loads((ck / CONFIG_FILE).read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{ck}: no readable model config; pass a run written by `seqsuite bytes pretrain`") from None
    return build(ModelConfig.from_dict(cfg))


def load_run(run: str | Path, device: str = "cpu", checkpoint: str = "last"):
    """(model, task info, train config) from a run directory written by `pretrain`."""
    from seqsuite.core import ModelConfig, build
    from seqsuite.train import load_checkpoint
    from seqsuite.train.checkpoint import find_checkpoint

    run = Path(run)
    if not run.exists():
        raise UserError(f"run {run} does not exist: pass the --out folder of `seqsuite bytes pretrain`")
    ck = run / checkpoint if (run / checkpoint / "trainer_state.json").exists() else find_checkpoint(run)
    loaded = load_checkpoint(ck, device="cpu")
    cfg = loaded["config"]
    if not cfg.get("model"):
        raise UserError(f"{ck} has no model config: it was not written by seqsuite")
    model_cfg = ModelConfig.from_dict(cfg["model"])
    if model_cfg.task != "lm" or model_cfg.vocab_size != VOCAB_SIZE:
        raise UserError(f"{ck} holds a {model_cfg.task} model over {model_cfg.vocab_size} tokens, "
                        "not a byte language model: pass a run of `seqsuite bytes pretrain`")
    model = build(model_cfg)
    model.load_state_dict(loaded["model_state"])
    return model.to(device).eval(), dict(cfg.get("task") or {}), dict(cfg.get("train") or {})


def evaluate_run(run: str | Path, files=None, split: str = "test", checkpoint: str = "last",
                 seq_len: int | None = None, batch_size: int = 8, context: int = 0, device: str = "auto",
                 per_file: bool = False, progress: bool = True) -> dict:
    """`evaluate RUN [FILES…]`: bits per byte on FILES (default: the run's held-out `split`), with compressors."""
    from seqsuite.utils import resolve_device

    device = resolve_device(device)
    model, info, train_cfg = load_run(run, device, checkpoint)
    seq_len = seq_len or int(train_cfg.get("seq_len", 1024))
    if files:
        source, where = list(files), f"{len(list_files(files))} file(s)"
    else:
        data_info = info.get("data") or {}
        if not data_info.get("paths"):
            raise UserError(f"run {run} does not record its data: pass the files to evaluate on")
        data = load_bytes(data_info["paths"], data_info.get("valid_frac", 0.05),
                          data_info.get("test_frac", 0.05), data_info.get("split_seed", 0))
        source, where = data, f"the run's {split} split ({len(data.sources.get(split, []))} file(s))"
    out = evaluate_bpb(model, source, split, seq_len=seq_len, batch_size=batch_size, context=context,
                       per_file=per_file, progress=progress)
    out["data"] = where
    return out
