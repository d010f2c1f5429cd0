"""`seqsuite genomics ...`: argument parsing only; every command calls the Python API."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from seqsuite.cli.options import BATCH, COMPILE, DEVICE, GRAD_CKPT, LR, RESUME, STEPS, given

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="DNA: hg38-style pretraining, species classification, classify FASTA.")

# shared training options come from seqsuite.cli.options; these name the unit
SEQ_LEN = typer.Option(None, "--seq-len", help="Window length L in bases.")
SEED = typer.Option(0, "--seed", help="Random seed (data stream and init).")
MAX_LEN = typer.Option(None, "--max-len", help="HyenaDNA filter length l_max (default: --seq-len); "
                       "set it to the longest window a later --init run will train on.")


@app.command("make-demo")
def make_demo_cmd(out: Path = typer.Argument(..., help="Folder to write the demo data into."),
                  size: str = typer.Option("small", help="tiny | small | large."),
                  seed: int = SEED) -> None:
    """Write the demo genome (genome.fa + .fai, intervals.bed) and five ape genomes (apes/, manifest.tsv)."""
    from .demo import make_demo

    paths = make_demo(out, size=size, seed=seed)
    typer.echo(f"make-demo: genome {paths['genome']}, BED {paths['bed']}, manifest {paths['manifest']}")


@app.command()
def pretrain(fasta: Optional[Path] = typer.Option(None, help="Genome FASTA (plain or bgzip); default: the demo genome."),
             bed: Optional[Path] = typer.Option(None, help="BED `chrom start end split` (Basenji layout)."),
             valid_chroms: Optional[str] = typer.Option(None, help="Without --bed: validation chromosomes, e.g. chr8,chr9."),
             test_chroms: Optional[str] = typer.Option(None, help="Without --bed: test chromosomes."),
             preset: str = typer.Option("tiny", help="Model preset, e.g. tiny, hg38-mamba-1.4m, hg38-transformerpp-1.4m."),
             out: Path = typer.Option(Path("runs/genomics-lm"), "--out", help="Run directory."),
             steps: Optional[int] = STEPS, seq_len: Optional[int] = SEQ_LEN,
             batch_size: Optional[int] = BATCH, lr: Optional[float] = LR,
             seq_len_warmup: Optional[int] = typer.Option(None, help="Start length of the sequence-length warm-up (e.g. 1024)."),
             rc_aug: bool = typer.Option(True, help="Reverse-complement augmentation."),
             keep_case: bool = typer.Option(False, help="Keep soft-masking (lowercase) as separate tokens."),
             eval_every: Optional[int] = typer.Option(None, help="Validate every k updates."),
             max_len: Optional[int] = MAX_LEN,
             grad_checkpoint: bool = GRAD_CKPT, compile: bool = COMPILE,
             resume: bool = RESUME, device: str = DEVICE, seed: int = SEED) -> None:
    """Next-base pretraining on a genome (default: the demo genome)."""
    from .data import parse_chroms
    from .tasks import pretrain as run

    s = run(fasta=fasta, bed=bed, out=out, preset=preset, valid_chroms=parse_chroms(valid_chroms),
            test_chroms=parse_chroms(test_chroms), rc_aug=rc_aug, keep_case=keep_case,
            resume=str(out) if resume else False, device=device, seed=seed,
            **given(steps=steps, seq_len=seq_len, batch_size=batch_size, lr=lr,
                     seq_len_warmup=seq_len_warmup, eval_every=eval_every),
            model_overrides={"max_len": max_len} if max_len else None,
            grad_checkpoint=grad_checkpoint, compile=compile)
    val = s.get("val_loss")
    typer.echo(f"pretrain: {s['step']} steps, train {s['final_loss'] / 0.6931471805599453:.4f} bits/base"
               + (f", valid {val / 0.6931471805599453:.4f} bits/base" if val is not None else "")
               + f", {s['tokens_per_s']:,.0f} tokens/s; checkpoint {s['checkpoint']}")


@app.command()
def evaluate(run: Path = typer.Argument(..., help="Run directory of `pretrain`."),
             split: str = typer.Option("test", help="train | valid | test."),
             fasta: Optional[Path] = typer.Option(None, help="Override the run's FASTA."),
             bed: Optional[Path] = typer.Option(None, help="Override the run's BED."),
             valid_chroms: Optional[str] = typer.Option(None), test_chroms: Optional[str] = typer.Option(None),
             seq_len: Optional[int] = typer.Option(None, help="Window length (default: the run's)."),
             windows: int = typer.Option(64, help="Number of fixed evaluation windows."),
             batch_size: int = typer.Option(8, help="Windows per forward pass."),
             markov_order: Optional[int] = typer.Option(None, help="Markov order (default: best on validation, up to 8)."),
             checkpoint: str = typer.Option("last", help="last | best."),
             as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
             device: str = DEVICE, seed: int = SEED) -> None:
    """Loss, bits per base and perplexity on a split, side by side with an order-k Markov baseline."""
    from .data import parse_chroms
    from .tasks import evaluate_run, format_lm_report

    r = evaluate_run(run, split, fasta, bed, parse_chroms(valid_chroms) or None,
                     parse_chroms(test_chroms) or None, seq_len, windows, batch_size, device,
                     markov_order, checkpoint, seed)
    if as_json:
        typer.echo(json.dumps(r, indent=2))
    else:
        typer.echo(format_lm_report(r))
    typer.echo(f"evaluate: {split} {r['bits_per_base']:.4f} bits/base vs order-{r['markov_order']} "
               f"Markov {r['markov_bits_per_base']:.4f}")


@app.command("finetune-species")
def finetune_species(manifest: Optional[Path] = typer.Option(None, help="`species<TAB>path` manifest; default: the demo apes."),
                     init: Optional[Path] = typer.Option(None, help="Pretrained LM run to start from."),
                     preset: str = typer.Option("genomics-tiny", help="Model preset (ignored with --init)."),
                     out: Path = typer.Option(Path("runs/genomics-species"), "--out", help="Run directory."),
                     steps: Optional[int] = STEPS, seq_len: Optional[int] = SEQ_LEN,
                     batch_size: Optional[int] = BATCH, lr: Optional[float] = LR,
                     warmup_frac: Optional[float] = typer.Option(None, help="Warm-up fraction (paper: 0.5)."),
                     valid_chroms: Optional[str] = typer.Option(None), test_chroms: Optional[str] = typer.Option(None),
                     test_windows: int = typer.Option(500, help="Windows scored on the test split."),
                     eval_every: Optional[int] = typer.Option(None, help="Validate every k updates."),
                     max_len: Optional[int] = MAX_LEN,
                     grad_checkpoint: bool = GRAD_CKPT, compile: bool = COMPILE,
                     resume: bool = RESUME, device: str = DEVICE, seed: int = SEED) -> None:
    """Species classification (paper protocol by default): accuracy, macro-F1, confusion matrix PNG."""
    from .data import parse_chroms
    from .tasks import finetune_species as run

    s = run(manifest=manifest, out=out, init=init, preset=preset,
            valid_chroms=parse_chroms(valid_chroms), test_chroms=parse_chroms(test_chroms),
            resume=str(out) if resume else False, device=device, seed=seed, test_windows=test_windows,
            **given(steps=steps, seq_len=seq_len, batch_size=batch_size, lr=lr,
                     warmup_frac=warmup_frac, eval_every=eval_every),
            model_overrides={"max_len": max_len} if max_len else None,
            grad_checkpoint=grad_checkpoint, compile=compile)
    typer.echo(f"finetune-species: {s['step']} steps, test accuracy {s['test_accuracy']:.3f}, "
               f"macro-F1 {s['test_macro_f1']:.3f}; confusion matrix {s['confusion_png']}; "
               f"checkpoint {s['checkpoint']}")


@app.command()
def classify(input: Path = typer.Argument(..., help="FASTA to classify (every record)."),
             model: Optional[Path] = typer.Option(None, help="Run of finetune-species (default: the shipped model)."),
             window: Optional[int] = typer.Option(None, help="Window length (default: the model's training length)."),
             fmt: str = typer.Option("tsv", "--format", help="tsv | json."),
             out: Optional[Path] = typer.Option(None, "--out", help="Write the table here instead of stdout."),
             batch_size: int = typer.Option(16, help="Windows per forward pass."),
             device: str = DEVICE) -> None:
    """Per-record species probabilities (mean of window log-probabilities, renormalised)."""
    from .tasks import classify as run

    text, rows = run(input, model, window, fmt, out, batch_size, device)
    if out is None:
        typer.echo(text, nl=False)
    done = sum(1 for r in rows if r["predicted"] is not None)
    typer.echo(f"classify: {len(rows)} record(s), {done} classified"
               + (f"; written to {out}" if out is not None else ""), err=out is None)
