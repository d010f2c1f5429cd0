"""Unconditional audio generation from silence, and what it writes: WAVs, a spectrogram PNG per
sample, a grid PNG, tokens.npy (for exact re-scoring) and manifest.json."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from seqsuite.errors import UserError

from .data import SAMPLE_RATE, SILENCE, mu_law_decode, write_wav
from .tasks import sequence_nll

GRID_MAX = 16


def log_spectrogram(audio: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Power spectrogram in dB, [freq, frames] with low frequencies in row 0."""
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    return (10 * torch.log10(spec + 1e-10)).numpy()


def save_spectrogram_png(path: str | os.PathLike, audio: np.ndarray, floor_db: float = -80.0) -> None:
    """One spectrogram as a bare image (no axes): fast enough for thousands of samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqsuite.utils import atomic_path

    spec = log_spectrogram(audio)
    top = spec.max()
    with atomic_path(path) as tmp:
        plt.imsave(tmp, spec[::-1], cmap="magma", vmin=top + floor_db, vmax=top, format="png")


def save_spectrogram_grid(path: str | os.PathLike, audios: list[np.ndarray], titles: list[str],
                          suptitle: str = "", floor_db: float = -80.0) -> None:
    """Up to 16 spectrograms in a grid with time/frequency axes and a title each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqsuite.utils import atomic_path

    audios, titles = audios[:GRID_MAX], titles[:GRID_MAX]
    if not audios:
        return
    cols = min(4, len(audios))
    rows = (len(audios) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, audio, title in zip(axes.flat, audios, titles):
        spec = log_spectrogram(audio)
        top = spec.max()
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top + floor_db, vmax=top,
                  extent=(0, len(audio) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000))
        ax.axis("on")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("s", fontsize=7)
        ax.set_ylabel("kHz", fontsize=7)
        ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


@torch.no_grad()
def generate_tokens(model, num: int, n_samples: int, temperature: float = 1.0, top_p: float = 1.0,
                    batch: int = 16, seed: int = 0, prompt: torch.Tensor | None = None,
                    progress: bool = True) -> np.ndarray:
    """Sample `num` sequences of `n_samples` mu-law tokens after `prompt` (default: the silence
    token). Batch k uses a generator seeded with (seed, k), so the output is a function of
    (model, seed, batch). Returns uint8 [num, prompt_len + n_samples] including the prompt."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    model.eval()
    outs = []
    graphs: dict = {}  # batches of one shape reuse the first one's state and CUDA graphs
    bar = tqdm(total=num * n_samples, unit="sample", unit_scale=True, desc="generating",
               dynamic_ncols=True, disable=not progress)
    for k, b0 in enumerate(range(0, num, batch)):
        b = min(batch, num - b0)
        p = (torch.full((b, 1), SILENCE, dtype=torch.long) if prompt is None
             else prompt[b0:b0 + b].long()).to(device)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
        done = [0]

        def tick(i: int, b=b) -> None:
            bar.update((i - done[0]) * b)
            done[0] = i

        out = model.generate(p, n_samples, temperature=temperature, top_p=top_p,
                             generator=gen, progress=tick, cache=graphs)
        outs.append(out.to(torch.uint8).cpu().numpy())
    bar.close()
    return np.concatenate(outs)


def generate_audio(model, num: int, seconds: float = 1.0, temperature: float = 1.0, top_p: float = 1.0,
                   batch: int = 16, out_dir: str | os.PathLike = "samples", seed: int = 0,
                   model_name: str = "", spectrograms: int | None = None, progress: bool = True) -> dict:
    """Generate `num` clips of `seconds` from silence and write them to `out_dir`:
    sample_XXXXX.wav (16 kHz), sample_XXXXX.png (spectrogram; the first `spectrograms` samples,
    default all), grid.png, tokens.npy (uint8 [num, 1 + n] with the silence token first) and
    manifest.json (model, seed, settings, time, samples/s, each sample's NLL under the model)."""
    if num < 1 or seconds <= 0 or batch < 1:
        raise UserError("generate needs --num >= 1, --seconds > 0 and --batch >= 1")
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError("generate needs --temperature >= 0 and 0 < --top-p <= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * SAMPLE_RATE))
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    tokens = generate_tokens(model, num, n, temperature, top_p, batch, seed, progress=progress)
    if device.type == "cuda":
        torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    nll = sequence_nll(model, tokens, batch_size=max(1, min(batch, 64)))
    from seqsuite.utils import atomic_path

    with atomic_path(out / "tokens.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, tokens)
    n_png = num if spectrograms is None else min(num, spectrograms)
    names, audios = [], []
    for i in range(num):
        audio = mu_law_decode(tokens[i, 1:])
        name = f"sample_{i:05d}"
        write_wav(out / f"{name}.wav", audio)
        if i < n_png:
            save_spectrogram_png(out / f"{name}.png", audio)
        names.append(name)
        if i < GRID_MAX:
            audios.append(audio)
    save_spectrogram_grid(out / "grid.png", audios,
                          [f"{nm} ({b:.2f} bits)" for nm, b in zip(names, nll)],
                          suptitle=f"{model_name or 'model'}: T={temperature}, top-p={top_p}, seed={seed}")
    manifest = {
        "model": model_name,
        "model_config": model.config.to_dict() if hasattr(model, "config") else None,
        "seed": seed,
        "settings": {"num": num, "seconds": seconds, "samples_per_clip": n,
                     "temperature": temperature, "top_p": top_p, "batch": batch,
                     "prompt": "silence (token 128)", "device": str(device)},
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "generation_seconds": round(gen_s, 3),
        "samples_per_s": num * n / gen_s,
        "real_time_factor": num * n / gen_s / SAMPLE_RATE,
        "spectrogram_pngs": n_png,
        "samples": [{"file": f"{nm}.wav", "nll_bits_per_sample": float(b)} for nm, b in zip(names, nll)],
    }
    from seqsuite.utils import atomic_write_text

    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
