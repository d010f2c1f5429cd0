"""The audio recipes the CLI calls: pretrain, evaluate a run, generate, evaluate samples.
Each is a short script over the library parts (data, tasks, generate, classifier, metrics)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqsuite.errors import UserError

from .data import SAMPLE_RATE, SC09, SILENCE, list_audio_files, load_audio, mu_law_decode, mu_law_encode
from .tasks import AudioLMTask, evaluate_nll, sequence_nll, unigram_baseline

log = logging.getLogger("seqsuite.audio")

DEFAULT_PRESET = {"youtubemix": "youtubemix-unet", "sc09": "sc09-unet-small"}
# `--preset tiny` in the audio commands means the dataset's CPU-sized U-Net.
TINY_PRESET = {"youtubemix": "audio-tiny", "sc09": "sc09-tiny"}


def audio_preset(preset: str | None, dataset: str) -> str:
    """The preset an audio command trains: the dataset's default when none is given, and the
    dataset's tiny U-Net for `tiny` (the core `tiny` is a DNA model)."""
    if preset is None:
        return DEFAULT_PRESET[dataset]
    return TINY_PRESET.get(dataset, preset) if preset == "tiny" else preset


@dataclass
class PretrainOptions:
    """Everything `pretrain` needs; None means the dataset's recipe default (DESIGN §9)."""
    dataset: str = "sc09"
    data: str | None = None
    preset: str | None = None
    outer: str | None = None
    inner: str | None = None
    out: str = "runs/audio"
    steps: int = 2000
    seq_len: int | None = None
    batch_size: int | None = None
    lr: float = 2e-3
    resume: str | None = None
    device: str = "auto"
    seed: int = 0
    eval_every: int | None = None
    eval_samples: int | None = None   # samples scored by the final validation NLL
    preview: bool = True              # spectrogram PNGs of validation crops + continuations


def demo_data(dataset: str) -> Path:
    """The demo data folder of a dataset, generated once into the cache."""
    from .demo import demo_music_dir, demo_sc09_dir

    return demo_sc09_dir() if dataset == "sc09" else demo_music_dir()


def make_task(dataset: str, data: str | os.PathLike | None) -> AudioLMTask:
    if dataset not in DEFAULT_PRESET:
        raise UserError(f"unknown --dataset '{dataset}': use youtubemix or sc09")
    folder = Path(data) if data else demo_data(dataset)
    return AudioLMTask.from_sc09(folder) if dataset == "sc09" else AudioLMTask.from_folder(folder)


def recipe_train_config(opts: PretrainOptions):
    """TrainConfig from the paper recipes: AdamW (0.9, 0.95), wd 0.1, 10% warm-up, cosine;
    SC09: whole 1 s clips, batch 16, clip 0.1; YouTubeMix: ~1M tokens per batch."""
    from seqsuite.train import TrainConfig

    if opts.dataset == "sc09":
        seq_len = opts.seq_len or SAMPLE_RATE
        batch = opts.batch_size or 16
        clip = 0.1
    else:
        seq_len = opts.seq_len or 65536
        batch = opts.batch_size or max(1, (1 << 20) // seq_len)
        clip = 1.0
    eval_every = opts.eval_every if opts.eval_every is not None else max(1, min(1000, opts.steps // 10))
    return TrainConfig(steps=opts.steps, batch_size=batch, seq_len=seq_len, lr=opts.lr,
                       weight_decay=0.1, grad_clip=clip, eval_every=eval_every,
                       save_every=eval_every, eval_batches=4, device=opts.device, seed=opts.seed,
                       out_dir=opts.out, extra={"recipe": f"audio-{opts.dataset}"})


def build_audio_model(preset: str, outer: str | None = None, inner: str | None = None):
    """A core model from a preset, with the U-Net's outer/inner layer types overridden."""
    from seqsuite.core import build, get_config

    overrides = {}
    for key, val in (("outer", outer), ("inner", inner)):
        if val is not None:
            if val not in ("s4", "s6"):
                raise UserError(f"--{key} must be s4 or s6, got '{val}'")
            overrides[key] = val
    cfg = get_config(preset)
    if cfg.vocab_size != 256:
        raise UserError(f"preset '{preset}' has vocabulary {cfg.vocab_size}, not 256 mu-law classes: "
                        "use an audio preset (youtubemix-unet, sc09-unet-small/large, tiny)")
    if overrides and cfg.arch != "unet":
        raise UserError(f"--outer/--inner need a U-Net preset; '{preset}' is {cfg.arch}")
    return build(preset, **overrides)


def pretrain(opts: PretrainOptions) -> dict:
    """Train an audio LM; then score the validation split (bits/sample) beside the unigram
    baseline, write RUN/audio_eval.json and (optionally) RUN/preview.png."""
    from seqsuite.train import train
    from seqsuite.utils import atomic_write_text, resolve_device

    task = make_task(opts.dataset, opts.data)
    preset = audio_preset(opts.preset, opts.dataset)
    device = resolve_device(opts.device)
    if opts.resume:
        model = load_model(opts.resume, "cpu")[0]
    else:
        model = build_audio_model(preset, opts.outer, opts.inner)
    cfg = recipe_train_config(opts)
    summary = train(model, task, cfg, resume=opts.resume or False, task_info=task.task_info())
    model.to(device).eval()
    budget = opts.eval_samples or (2_000_000 if device.startswith("cuda") else 32_768)
    val = evaluate_nll(model, task, "valid", seq_len=cfg.seq_len, max_samples=budget,
                       batch_size=cfg.batch_size)
    base = unigram_baseline(task, "valid", max_samples=val["samples"])
    result = {"preset": preset, "outer": model.config.outer, "inner": model.config.inner,
              "dataset": opts.dataset, "data": task.task_info()["data"], "valid": val,
              "unigram_valid": base, "train": {k: v for k, v in summary.items()
                                               if isinstance(v, (int, float, str, type(None)))}}
    atomic_write_text(Path(summary["run_dir"]) / "audio_eval.json", json.dumps(result, indent=2) + "\n")
    if opts.preview:
        preview(model, task, Path(summary["run_dir"]) / "preview.png", seed=opts.seed)
    return result


def preview(model, task: AudioLMTask, path: Path, n: int = 4, seed: int = 0,
            prompt_seconds: float | None = None, seconds: float | None = None) -> Path:
    """A grid of spectrograms: validation crops (top) and the model's continuations of their
    first part (bottom). Short on CPU, where each recurrent step is slow."""
    from .generate import generate_tokens, save_spectrogram_grid

    on_gpu = next(model.parameters()).device.type == "cuda"
    prompt_seconds = prompt_seconds or (0.5 if on_gpu else 0.0125)
    seconds = seconds or (1.0 if on_gpu else 0.05)
    p, g = int(prompt_seconds * SAMPLE_RATE), int(seconds * SAMPLE_RATE)
    if task.dataset == "sc09" and p + g > SAMPLE_RATE - 1:  # clips are 1 s: keep crops inside one
        p = min(p, SAMPLE_RATE // 4)
        g = SAMPLE_RATE - 1 - p
        prompt_seconds = p / SAMPLE_RATE
    rng = np.random.default_rng([seed, 7])
    crops = [task.sample("valid", rng, p + g)["tokens"] for _ in range(n)]
    prompt = torch.from_numpy(np.stack([c[:p] for c in crops]))
    cont = generate_tokens(model, n, g, prompt=prompt, seed=seed, batch=n, progress=False)
    real = [mu_law_decode(c) for c in crops]
    fake = [mu_law_decode(c) for c in cont]
    titles = [f"valid crop {i}" for i in range(n)] + [f"continuation {i} (after {prompt_seconds:g} s)"
                                                       for i in range(n)]
    save_spectrogram_grid(path, real + fake, titles, suptitle="validation crops / model continuations")
    return path


# ----------------------------------------------------------------------------- models and runs

def load_model(path: str | os.PathLike, device: str = "cpu"):
    """Load an audio LM from a run directory (RUN = RUN/last, or RUN/best), a checkpoint or a
    `save_pretrained` folder. Returns (model, info) where info holds the run's task."""
    from seqsuite.core import ModelConfig, from_pretrained
    from seqsuite.core.model import build_model

    path = Path(path)
    if not path.exists():
        raise UserError(f"model '{path}' does not exist: pass a run folder (--out of pretrain) or a model folder")
    cfg_file = path / "config.json"
    if cfg_file.exists():
        try:
            meta = json.loads(cfg_file.read_text())
        except ValueError:
            meta = {}
        if meta.get("format") == "seqsuite-model-v1":
            model = from_pretrained(path, device)
            return model.eval(), {"name": str(path), "task": (meta.get("extra") or {}).get("task", {})}
    from seqsuite.train import load_checkpoint
    from seqsuite.train.checkpoint import find_checkpoint

    if path.is_dir() and not any((path / n).exists() for n in ("last", ".last.old", "trainer_state.json")):
        raise UserError(f"'{path}' is not a run (no last/), a checkpoint or a model folder (no config.json); "
                        "for sample metrics pass a folder written by `generate` or holding audio files")
    ckpt = find_checkpoint(path)
    config = json.loads((ckpt / "config.json").read_text())
    if not config.get("model"):
        raise UserError(f"checkpoint {ckpt} has no model config: it was not written by seqsuite audio pretrain")
    model = build_model(ModelConfig.from_dict(config["model"]))
    loaded = load_checkpoint(ckpt, model, device=device)
    return model.to(device).eval(), {"name": str(path), "task": config.get("task", {}),
                                     "step": loaded["step"]}


def evaluate_run(run: str | os.PathLike, data: str | None = None, dataset: str | None = None,
                 split: str = "test", seq_len: int | None = None, batch_size: int = 8,
                 max_samples: int | None = None, device: str = "auto") -> dict:
    """Bits per sample of a trained model on the test (or other) split of its data, with the
    unigram mu-law baseline on the same samples."""
    from seqsuite.utils import resolve_device

    device = resolve_device(device)
    model, info = load_model(run, device)
    if max_samples is None and not device.startswith("cuda"):
        max_samples = 65536
        print(f"on CPU: scoring the first {max_samples:,} samples of the split "
              "(pass --max-samples to change)")
    tinfo = info.get("task") or {}
    dataset = dataset or tinfo.get("dataset") or "youtubemix"
    if data:
        task = make_task(dataset, data)
    elif tinfo.get("data"):
        task = AudioLMTask.from_info({**tinfo, "dataset": dataset})
    else:
        task = make_task(dataset, None)
    res = evaluate_nll(model, task, split, seq_len=seq_len, batch_size=batch_size,
                       max_samples=max_samples, progress=True)
    res["unigram_bits_per_sample"] = unigram_baseline(task, split, max_samples=res["samples"])["bits_per_sample"]
    res.update(model=str(run), dataset=dataset, step=info.get("step"))
    return res


# ----------------------------------------------------------------------------- sample metrics

def default_classifier(reference: Path, device: str) -> Path:
    """The classifier cached for a reference SC09 folder, trained once on first use."""
    from .classifier import ClassifierTrainConfig, train_classifier
    from seqsuite.utils import cache_dir

    key = hashlib.sha1(str(reference.resolve()).encode()).hexdigest()[:10]
    out = cache_dir() / "models" / f"sc09-classifier-{key}"
    if not (out / "model.safetensors").exists():
        print(f"no --classifier given: training one on {reference} into {out} (once)")
        steps = 1500 if device.startswith("cuda") else 600
        train_classifier(reference, out, ClassifierTrainConfig(steps=steps, device=device))
    return out


def read_samples(samples_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(waveforms [n, 16000], tokens [n, 1+T] or None, NLL bits per sample or None) of a samples
    folder: tokens.npy + manifest.json as written by `generate`, or any audio files."""
    d = Path(samples_dir)
    tok_file, man_file = d / "tokens.npy", d / "manifest.json"
    if tok_file.exists():
        tokens = np.load(tok_file, allow_pickle=False)
        nll = None
        if man_file.exists():
            entries = json.loads(man_file.read_text()).get("samples", [])
            vals = [e.get("nll_bits_per_sample") for e in entries]
            if len(vals) == len(tokens) and all(v is not None for v in vals):
                nll = np.asarray(vals, dtype=np.float64)
        return mu_law_decode(tokens[:, 1:]), tokens, nll
    files = list_audio_files(d)
    if not files:
        raise UserError(f"'{d}' holds no tokens.npy and no audio file: pass the --out folder of "
                        "`seqsuite audio generate` or a folder of wavs")
    waves = []
    for f in files:
        try:
            waves.append(load_audio(f))
        except Exception as e:
            raise UserError(f"cannot decode sample '{f}' ({type(e).__name__}): remove or replace it") from None
    # the reference clips reach the classifier mu-law coded and decoded; treat these the same
    clips = [np.pad(w[:SAMPLE_RATE], (0, max(0, SAMPLE_RATE - len(w)))) for w in waves]
    return np.stack([mu_law_decode(mu_law_encode(c)) for c in clips]), None, None


def evaluate_samples(samples_dir: str | os.PathLike, classifier: str | None = None,
                     reference: str | None = None, model: str | None = None,
                     device: str = "auto", drop_low: float = 0.40, drop_high: float = 0.05) -> dict:
    """Table-4 metrics of a folder of generated clips: FID (vs the reference training set's
    classifier features), IS, mIS, AM; all samples and, where each sample's likelihood is known
    (manifest.json, or --model), after the likelihood filter. Also the real test and train sets
    as reference rows, and the model's test NLL when a model is given."""
    from seqsuite.utils import atomic_write_text, resolve_device

    from .classifier import classify, load_classifier
    from .metrics import likelihood_filter, sample_metrics

    device = resolve_device(device)
    ref_dir = Path(reference) if reference else demo_data("sc09")
    sc09 = SC09(ref_dir)
    cls_dir = Path(classifier) if classifier else default_classifier(ref_dir, device)
    clf = load_classifier(cls_dir, device)
    waves, tokens, nll = read_samples(samples_dir)
    if len(waves) < 2:
        raise UserError(f"'{samples_dir}' holds {len(waves)} sample(s); the metrics need at least 2 "
                        "(the paper uses 10,240): generate more with --num")
    lm = None
    if model is not None:
        lm, _ = load_model(model, device)
        if tokens is None:  # plain audio files: re-encode each clip as the model would see it
            tokens = np.stack([np.concatenate([[SILENCE], mu_law_encode(w)]) for w in waves])
        if nll is None:
            nll = sequence_nll(lm, tokens)
    feats, probs = classify(clf, waves)
    tr_tok, _, _ = sc09.load("train")
    te_tok, _, _ = sc09.load("test")
    tr_f, tr_p = classify(clf, mu_law_decode(tr_tok))
    rows = {"samples": sample_metrics(feats, probs, tr_f, tr_p)}
    if nll is not None and len(nll) >= 4:
        keep = likelihood_filter(-nll, drop_low, drop_high)
        rows["samples (likelihood-filtered)"] = sample_metrics(feats[keep], probs[keep], tr_f, tr_p)
        rows["samples"]["mean_nll_bits"] = float(np.mean(nll))
    if len(te_tok) >= 2:
        te_f, te_p = classify(clf, mu_law_decode(te_tok))
        rows["real test set"] = sample_metrics(te_f, te_p, tr_f, tr_p)
    rows["real train set"] = sample_metrics(tr_f, tr_p, tr_f, tr_p)
    result = {"samples_dir": str(samples_dir), "classifier": str(cls_dir), "reference": str(ref_dir),
              "filter": {"drop_low": drop_low, "drop_high": drop_high}, "rows": rows}
    if lm is not None:
        test_task = AudioLMTask("sc09", sc09)
        result["model"] = str(model)
        result["model_test_nll"] = evaluate_nll(lm, test_task, "test", batch_size=16)
    atomic_write_text(Path(samples_dir) / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    """The rows of `evaluate_samples` as a Table-4 style text table."""
    nll = result.get("model_test_nll", {}).get("bits_per_sample")
    lines = [f"{'':34s} {'NLL':>7s} {'FID':>8s} {'IS':>7s} {'mIS':>9s} {'AM':>7s} {'n':>6s}"]
    for name, r in result["rows"].items():
        nll_s = f"{nll:7.3f}" if (nll is not None and name.startswith("samples")) else f"{'-':>7s}"
        lines.append(f"{name:34s} {nll_s} {r['fid']:8.3f} {r['is']:7.3f} {r['mis']:9.3f} "
                     f"{r['am']:7.3f} {r['n']:6d}")
    return "\n".join(lines)


def is_samples_dir(path: str | os.PathLike) -> bool:
    """True for a folder of generated samples (tokens.npy/manifest.json or only audio files),
    False for a run or model folder (checkpoint or config.json)."""
    p = Path(path)
    if (p / "tokens.npy").exists() or (p / "manifest.json").exists():
        return True
    if (p / "config.json").exists() or (p / "last").exists() or (p / "trainer_state.json").exists() \
            or (p / "state.json").exists():
        return False
    return p.is_dir() and bool(list_audio_files(p))


SHIPPED = {"sc09": "sc09-small", "music": "music-small"}


def shipped_model(kind: str = "sc09") -> Path:
    """A small model shipped in the package: `sc09` (seqsuite/assets/audio/sc09-small, spoken
    digits) or `music` (seqsuite/assets/audio/music-small, piano), both trained on the demo data."""
    root = Path(__file__).resolve().parent.parent / "assets" / "audio" / SHIPPED[kind]
    if not (root / "model.safetensors").exists():
        dataset = "sc09" if kind == "sc09" else "youtubemix"
        raise UserError(f"no model shipped in this installation (seqsuite/assets/audio/{SHIPPED[kind]}): "
                        f"pass --model RUN (train one with `seqsuite audio pretrain --dataset {dataset}`)")
    return root


def export_model(src: str | os.PathLike, out: str | os.PathLike, bf16: bool = True) -> dict:
    """Write a run's model as a `save_pretrained` folder (model.safetensors + config.json), in
    bfloat16 by default (half the bytes; loaded back into float32) - how the shipped model is
    made small."""
    from seqsuite.core import save_pretrained

    model, info = load_model(src, "cpu")
    if bf16:
        model = model.to(torch.bfloat16)
    save_pretrained(model, out, extra={"task": info.get("task", {}), "source": str(src),
                                       "step": info.get("step")})
    size = (Path(out) / "model.safetensors").stat().st_size
    return {"out": str(out), "bytes": size, "params": sum(p.numel() for p in model.parameters())}


def ablation(opts: PretrainOptions, combos: tuple[tuple[str, str], ...] = (("s4", "s4"), ("s4", "s6"),
                                                                          ("s6", "s4"), ("s6", "s6")),
             test_samples: int | None = None) -> dict:
    """The Fig. 10 ablation: train the preset once per (outer, inner) combination with the same
    steps, batch and sequence length (so the same tokens), then score each on the test files.
    Writes OUT/<outer>-<inner>/ runs, OUT/ablation.json, OUT/ablation.md (table) and
    OUT/learning_curves.png."""
    from seqsuite.train import read_metrics
    from seqsuite.utils import atomic_write_text, resolve_device

    root = Path(opts.out)
    rows = []
    for outer, inner in combos:
        run = root / f"{outer}-{inner}"
        sub = PretrainOptions(**{**opts.__dict__, "outer": outer, "inner": inner, "out": str(run),
                                 "preview": False})
        if (run / "audio_eval.json").exists():
            print(f"{run}: already trained, reusing it")
            res = json.loads((run / "audio_eval.json").read_text())
        else:
            res = pretrain(sub)
        device = resolve_device(opts.device)
        budget = test_samples or (4_000_000 if device.startswith("cuda") else 32_768)
        test = evaluate_run(run, split="test", seq_len=recipe_train_config(sub).seq_len,
                            max_samples=budget, device=device)
        train_rows = [r for r in read_metrics(run / "metrics.csv") if r.get("split") == "train"]
        tok_s = float(np.median([r["tokens_per_s"] for r in train_rows])) if train_rows else float("nan")
        from seqsuite.core import count_params

        params = count_params(load_model(run, "cpu")[0])
        rows.append({"outer": outer, "inner": inner, "params": params,
                     "valid_bits": res["valid"]["bits_per_sample"],
                     "test_bits": test["bits_per_sample"], "test_samples": test["samples"],
                     "unigram_test_bits": test["unigram_bits_per_sample"],
                     "tokens_per_s": tok_s, "tokens": res["train"].get("tokens")})
    cfg = recipe_train_config(opts)
    table = ["| outer | inner | params | test bits/sample | valid bits/sample | train tokens/s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['outer'].upper()} | {r['inner'].upper()} | {r['params'] / 1e6:.2f}M | "
                     f"{r['test_bits']:.4f} | {r['valid_bits']:.4f} | {r['tokens_per_s']:,.0f} |")
    note = (f"\n{audio_preset(opts.preset, opts.dataset)}, {opts.steps} steps x batch "
            f"{cfg.batch_size} x L={cfg.seq_len}; unigram mu-law baseline "
            f"{rows[0]['unigram_test_bits']:.4f} bits/sample on the same test samples.\n")
    atomic_write_text(root / "ablation.md", "\n".join(table) + "\n" + note)
    atomic_write_text(root / "ablation.json", json.dumps({"rows": rows, "train": cfg.to_dict()}, indent=2) + "\n")
    _plot_curves(root, [(f"{r['outer']}-{r['inner']}", root / f"{r['outer']}-{r['inner']}") for r in rows])
    return {"rows": rows, "table": "\n".join(table)}


def _plot_curves(root: Path, runs: list[tuple[str, Path]]) -> None:
    """Training and validation bits/sample of several runs against tokens, one figure."""
    from seqsuite.train.logging import plot_runs

    plot_runs(root / "learning_curves.png", runs, "bits per sample")
