"""`seqsuite audio ...`: argument parsing only; every command calls the Python API."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Audio: mu-law pretraining (YouTubeMix, SC09), generation and SC09 sample metrics.")


@app.command("make-demo")
def make_demo(kind: str = typer.Argument(..., help="music or sc09"),
              out: Path = typer.Argument(..., help="Output folder."),
              pieces: int = typer.Option(32, help="music: number of pieces."),
              seconds: float = typer.Option(64.0, help="music: seconds per piece."),
              speakers: int = typer.Option(200, help="sc09: number of synthetic speakers (10 digits each)."),
              takes: int = typer.Option(1, help="sc09: takes of each digit per speaker."),
              seed: int = typer.Option(0, help="Random seed.")) -> None:
    """Write demo data in a real layout: piano pieces (wav) or espeak-ng digits (Speech Commands)."""
    from seqsuite.errors import UserError

    from .demo import make_demo_music, make_demo_sc09

    if kind == "music":
        make_demo_music(out, pieces=pieces, seconds=seconds, seed=seed)
        typer.echo(f"wrote {pieces} piano pieces of {seconds:g} s to {out}")
    elif kind == "sc09":
        make_demo_sc09(out, speakers=speakers, takes=takes, seed=seed)
        typer.echo(f"wrote {speakers * takes * 10} spoken digits (SC09 layout) to {out}")
    else:
        raise UserError(f"unknown demo '{kind}': use music or sc09")


@app.command()
def pretrain(data: Optional[Path] = typer.Option(None, help="Audio folder (youtubemix) or Speech Commands folder (sc09); default: demo data."),
             dataset: str = typer.Option("sc09", help="youtubemix or sc09."),
             preset: Optional[str] = typer.Option(None, help="Model preset (default youtubemix-unet / sc09-unet-small; tiny for CPU)."),
             outer: Optional[str] = typer.Option(None, help="Layer of the full-rate U-Net stages: s4 or s6."),
             inner: Optional[str] = typer.Option(None, help="Layer of the pooled U-Net stages: s4 or s6."),
             out: Path = typer.Option(..., help="Run folder."),
             steps: int = typer.Option(2000, help="Optimizer updates."),
             seq_len: Optional[int] = typer.Option(None, help="Samples per example (sc09: 16000; youtubemix: 65536, up to 958464)."),
             batch_size: Optional[int] = typer.Option(None, help="Examples per update (sc09: 16; youtubemix: ~1M tokens)."),
             lr: float = typer.Option(2e-3, help="Peak learning rate."),
             resume: Optional[Path] = typer.Option(None, help="Continue this run (folder or checkpoint)."),
             device: str = typer.Option("auto", help="cpu, cuda or auto."),
             seed: int = typer.Option(0, help="Random seed."),
             eval_every: Optional[int] = typer.Option(None, help="Validate every k updates (default steps/10)."),
             preview: bool = typer.Option(True, help="Write RUN/preview.png (validation crops + continuations).")) -> None:
    """Train an audio language model on mu-law samples; report validation bits per sample."""
    from .recipes import PretrainOptions
    from .recipes import pretrain as run

    res = run(PretrainOptions(dataset=dataset, data=str(data) if data else None, preset=preset,
                              outer=outer, inner=inner, out=str(out), steps=steps, seq_len=seq_len,
                              batch_size=batch_size, lr=lr, resume=str(resume) if resume else None,
                              device=device, seed=seed, eval_every=eval_every, preview=preview))
    typer.echo(f"{out}: valid {res['valid']['bits_per_sample']:.4f} bits/sample over "
               f"{res['valid']['samples']:,} samples (unigram mu-law baseline "
               f"{res['unigram_valid']['bits_per_sample']:.4f})")


@app.command()
def evaluate(path: Path = typer.Argument(..., help="A RUN (or model folder) -> test bits/sample; a SAMPLES_DIR -> sample metrics."),
             data: Optional[Path] = typer.Option(None, help="RUN: data folder (default: the run's own)."),
             dataset: Optional[str] = typer.Option(None, help="RUN: youtubemix or sc09 (default: the run's)."),
             split: str = typer.Option("test", help="RUN: train, valid or test."),
             seq_len: Optional[int] = typer.Option(None, help="RUN: window of predictions (sc09: a clip; youtubemix: 65536)."),
             batch_size: int = typer.Option(8, help="RUN: windows per forward pass."),
             max_samples: Optional[int] = typer.Option(None, help="RUN: score at most this many samples."),
             classifier: Optional[Path] = typer.Option(None, help="SAMPLES: digit classifier folder (default: trained once on the reference)."),
             reference: Optional[Path] = typer.Option(None, help="SAMPLES: SC09 folder of real clips (default: demo digits)."),
             model: Optional[Path] = typer.Option(None, help="SAMPLES: the model that made them (its test NLL; likelihoods for the filter)."),
             device: str = typer.Option("auto", help="cpu, cuda or auto.")) -> None:
    """Evaluate a trained RUN (bits per sample on held-out files) or a SAMPLES_DIR written by
    `generate` (FID, IS, mIS, AM as in the Mamba/SaShiMi SC09 tables). Which one is decided
    from the folder: tokens.npy/manifest.json or only audio files = samples; a checkpoint or
    config.json = a model."""
    from .recipes import evaluate_run, evaluate_samples, format_table, is_samples_dir

    if is_samples_dir(path):
        res = evaluate_samples(path, classifier=str(classifier) if classifier else None,
                               reference=str(reference) if reference else None,
                               model=str(model) if model else None, device=device)
        typer.echo(format_table(res))
        r = res["rows"]["samples"]
        typer.echo(f"{path}: {r['n']} samples, FID {r['fid']:.3f}, IS {r['is']:.3f}, mIS {r['mis']:.3f}, "
                   f"AM {r['am']:.3f} (written to {path / 'metrics.json'})")
    else:
        res = evaluate_run(path, data=str(data) if data else None, dataset=dataset, split=split,
                           seq_len=seq_len, batch_size=batch_size, max_samples=max_samples, device=device)
        typer.echo(f"{path}: {res['split']} {res['bits_per_sample']:.4f} bits/sample over "
                   f"{res['samples']:,} samples (unigram mu-law baseline {res['unigram_bits_per_sample']:.4f})")


@app.command()
def generate(model: Optional[Path] = typer.Option(None, help="RUN or model folder (default: the SC09 model shipped in the package)."),
             num: int = typer.Option(16, help="Number of clips."),
             seconds: float = typer.Option(1.0, help="Seconds per clip (16 kHz)."),
             temperature: float = typer.Option(1.0, help="Sampling temperature (0 = greedy)."),
             top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
             batch: int = typer.Option(16, help="Clips generated together."),
             out: Path = typer.Option(..., help="Output folder."),
             seed: int = typer.Option(0, help="Random seed."),
             spectrograms: Optional[int] = typer.Option(None, help="Spectrogram PNGs for the first N samples (default all)."),
             device: str = typer.Option("auto", help="cpu, cuda or auto.")) -> None:
    """Sample clips from silence: WAVs, spectrogram PNGs, grid.png, tokens.npy and manifest.json."""
    from seqsuite.utils import resolve_device

    from .generate import generate_audio
    from .recipes import load_model, shipped_model

    src = model if model is not None else shipped_model()
    lm, _ = load_model(src, resolve_device(device))
    man = generate_audio(lm, num, seconds, temperature, top_p, batch, out, seed,
                         model_name=str(src), spectrograms=spectrograms)
    typer.echo(f"{out}: {num} clips of {seconds:g} s, {man['samples_per_s']:,.0f} samples/s "
               f"({man['real_time_factor']:.2f}x real time)")


@app.command("train-classifier")
def train_classifier(data: Optional[Path] = typer.Option(None, help="SC09 folder (default: demo digits)."),
                     out: Path = typer.Option(..., help="Classifier folder."),
                     steps: int = typer.Option(1500, help="Optimizer updates."),
                     seq_len: int = typer.Option(16000, help="Clip length in samples (SC09: 16000)."),
                     batch_size: int = typer.Option(64, help="Clips per update."),
                     lr: float = typer.Option(3e-3, help="Peak learning rate."),
                     resume: Optional[Path] = typer.Option(None, help="Not supported for the classifier (it trains in minutes)."),
                     device: str = typer.Option("auto", help="cpu, cuda or auto."),
                     seed: int = typer.Option(0, help="Random seed.")) -> None:
    """Train the log-mel ResNet digit classifier behind the sample metrics; report test accuracy."""
    from seqsuite.errors import UserError

    from .classifier import ClassifierConfig, ClassifierTrainConfig
    from .classifier import train_classifier as run
    from .recipes import demo_data

    if resume is not None:
        raise UserError("train-classifier has no --resume: it trains in minutes; start it again")
    cfg = ClassifierTrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                                model=ClassifierConfig(clip_samples=seq_len))
    m = run(data or demo_data("sc09"), out, cfg)
    typer.echo(f"{out}: test accuracy {m['test_accuracy']:.4f} on {m['test_clips']} clips "
               f"(valid {m['valid_accuracy']:.4f})")


@app.command()
def export(run: Path = typer.Argument(..., help="Run folder (or checkpoint) to export."),
           out: Path = typer.Argument(..., help="Model folder to write (model.safetensors + config.json)."),
           bf16: bool = typer.Option(True, help="Store the weights in bfloat16 (half the size).")) -> None:
    """Export a trained run as a standalone model folder (e.g. the SC09 model shipped in
    seqsuite/assets/audio/sc09-small, which `generate` uses without --model)."""
    from .recipes import export_model

    res = export_model(run, out, bf16=bf16)
    typer.echo(f"{out}: {res['params']:,} parameters, {res['bytes'] / 2**20:.1f} MiB")


@app.command()
def ablation(data: Optional[Path] = typer.Option(None, help="Audio folder (default: demo music)."),
             dataset: str = typer.Option("youtubemix", help="youtubemix or sc09."),
             preset: Optional[str] = typer.Option(None, help="U-Net preset (default youtubemix-unet)."),
             out: Path = typer.Option(..., help="Folder for the four runs and the table."),
             steps: int = typer.Option(2000, help="Optimizer updates per run."),
             seq_len: Optional[int] = typer.Option(None, help="Samples per example (default 65536)."),
             batch_size: Optional[int] = typer.Option(None, help="Examples per update."),
             lr: float = typer.Option(1e-3, help="Peak learning rate (Fig. 10: 0.001)."),
             device: str = typer.Option("auto", help="cpu, cuda or auto."),
             seed: int = typer.Option(0, help="Random seed."),
             test_samples: Optional[int] = typer.Option(None, help="Test samples scored per run.")) -> None:
    """Fig. 10: outer/inner S4/S6 combinations of a U-Net, same steps and tokens; test bits/sample,
    tokens/s and learning curves (OUT/ablation.md, ablation.json, learning_curves.png)."""
    from .recipes import PretrainOptions
    from .recipes import ablation as run

    res = run(PretrainOptions(dataset=dataset, data=str(data) if data else None, preset=preset,
                              out=str(out), steps=steps, seq_len=seq_len, batch_size=batch_size,
                              lr=lr, device=device, seed=seed), test_samples=test_samples)
    typer.echo(res["table"])
    best = min(res["rows"], key=lambda r: r["test_bits"])
    typer.echo(f"{out}: best outer={best['outer']} inner={best['inner']} "
               f"({best['test_bits']:.4f} test bits/sample)")
