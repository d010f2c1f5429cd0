"""`seqsuite bytes ...`: argument parsing only; every command calls the Python API."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from seqsuite.cli.options import BATCH, DEVICE, LR, RESUME, STEPS, given

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Byte-level language model (MambaByte): pretrain, evaluate, generate.")

# shared training options come from seqsuite.cli.options; these name the unit
SEQ_LEN = typer.Option(None, "--seq-len", help="Window length L in bytes.")
SEED = typer.Option(0, "--seed", help="Random seed (data stream, init, sampling).")


@app.command("make-demo")
def make_demo_cmd(out: Path = typer.Argument(..., help="Folder to write the demo corpus into."),
                  size: str = typer.Option("small", help="small (1 MB) | medium (4 MB) | large (16 MB).")) -> None:
    """Copy seqsuite's sources and a slice of Python's standard library into OUT/corpus (nothing downloaded)."""
    from .demo import SIZES, make_demo

    if size not in SIZES:
        from seqsuite.errors import UserError

        raise UserError(f"unknown demo size {size!r}: use one of {', '.join(SIZES)}")
    corpus = make_demo(out, SIZES[size])
    typer.echo(f"make-demo: corpus in {corpus}")


@app.command()
def pretrain(files: Optional[List[Path]] = typer.Argument(None, help="Files or folders (default: the demo corpus)."),
             preset: str = typer.Option("bytes-tiny", help="Model preset, e.g. bytes-tiny, bytes-mamba-small, "
                                                          "bytes-transformerpp-small."),
             out: Path = typer.Option(Path("runs/bytes-lm"), "--out", help="Run directory."),
             steps: Optional[int] = STEPS, seq_len: Optional[int] = SEQ_LEN,
             batch_size: Optional[int] = BATCH, lr: Optional[float] = LR,
             eval_every: Optional[int] = typer.Option(None, help="Validate every k updates."),
             resume: bool = RESUME, device: str = DEVICE, seed: int = SEED) -> None:
    """Next-byte pretraining on any files; splits by file (or by offset for one file)."""
    from .tasks import pretrain as run

    s = run(files or None, out=out, preset=preset, resume=str(out) if resume else False, device=device, seed=seed,
            **given(steps=steps, seq_len=seq_len, batch_size=batch_size, lr=lr, eval_every=eval_every))
    val = s.get("val_loss")
    typer.echo(f"pretrain: {s['step']} steps, train {s['final_loss'] / 0.6931471805599453:.4f} bits/byte"
               + (f", valid {val / 0.6931471805599453:.4f} bits/byte" if val is not None else "")
               + f", {s['tokens_per_s']:,.0f} bytes/s; checkpoint {s['checkpoint']}")


@app.command()
def evaluate(run: Path = typer.Argument(..., help="Run directory of `pretrain`."),
             files: Optional[List[Path]] = typer.Argument(None, help="Held-out files or folders "
                                                                    "(default: the run's test split)."),
             split: str = typer.Option("test", help="Without FILES: valid | test."),
             seq_len: Optional[int] = typer.Option(None, help="Window length (default: the run's)."),
             context: int = typer.Option(0, help="Bytes of overlap between windows (seen, not rescored)."),
             batch_size: int = typer.Option(8, help="Windows per forward pass."),
             per_file: bool = typer.Option(False, "--per-file", help="Code every file alone (model from no "
                                                                     "context, compressors per file)."),
             checkpoint: str = typer.Option("last", help="last | best."),
             as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
             device: str = DEVICE) -> None:
    """Bits per byte on held-out files, beside gzip, bz2 and xz on the same bytes."""
    from .tasks import evaluate_run

    r = evaluate_run(run, files or None, split, checkpoint, seq_len, batch_size, context, device, per_file)
    if as_json:
        typer.echo(json.dumps(r, indent=2))
    how = "each file alone" if per_file else "one stream"
    typer.echo(f"evaluate: {r['n_bytes']:,} bytes of {r['data']} ({how}): model {r['bpb']:.4f} bits/byte; "
               f"gzip {r['gzip_bpb']:.4f}, bz2 {r['bz2_bpb']:.4f}, xz {r['lzma_bpb']:.4f}")


@app.command()
def generate(run: Path = typer.Argument(..., help="Run directory of `pretrain`."),
             prompt: str = typer.Option("", "--prompt", help="Text to continue (UTF-8)."),
             max_bytes: int = typer.Option(256, "--max-bytes", help="Bytes to generate."),
             temperature: float = typer.Option(1.0, help="Sampling temperature (0: greedy)."),
             top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
             checkpoint: str = typer.Option("last", help="last | best."),
             device: str = DEVICE, seed: int = SEED) -> None:
    """Continue PROMPT byte by byte with the model's recurrent step, printing text as it comes."""
    import time

    from seqsuite.utils import resolve_device

    from .tasks import generate_text, load_run

    model, _, _ = load_run(run, resolve_device(device), checkpoint)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    t0 = time.perf_counter()

    def show(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    generate_text(model, prompt, max_bytes, temperature, top_p, seed, on_text=show)
    dt = time.perf_counter() - t0
    typer.echo("")
    typer.echo(f"generate: {max_bytes} bytes in {dt:.2f}s ({max_bytes / max(dt, 1e-9):,.0f} bytes/s)", err=True)
