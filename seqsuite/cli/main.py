"""`seqsuite` entry point. Sub-apps live in each domain's cli.py; this file only mounts them and
turns user errors into one clear line."""
from __future__ import annotations

import importlib
import sys

import typer

from ..errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="seqsuite: long-sequence modeling of DNA, audio and bytes with Mamba (S6) and S4.")

SUBAPPS = {
    "genomics": ("seqsuite.genomics.cli", "DNA: hg38-style pretraining, species classification, classify FASTA."),
    "audio": ("seqsuite.audio.cli", "Audio: μ-law pretraining, SC09 generation and sample metrics."),
    "bytes": ("seqsuite.bytes.cli", "Byte-level language model (MambaByte)."),
    "bench": ("seqsuite.cli.bench", "Benchmarks: scan, ops, train, generate, memory."),
}
for _name, (_module, _help) in SUBAPPS.items():
    app.add_typer(importlib.import_module(_module).app, name=_name, help=_help)


@app.command()
def presets() -> None:
    """List the named model presets with their parameter counts."""
    import torch

    from ..core import PRESETS, build, count_params

    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            n = count_params(build(name))
        layers = cfg.layer if cfg.arch == "isotropic" else f"outer={cfg.outer} inner={cfg.inner} pool={list(cfg.pool)}"
        typer.echo(f"{name:28s} {n / 1e6:8.3f}M  {cfg.arch:9s} d={cfg.d_model:<4d} n={cfg.n_layers:<3d} {layers}")


@app.command()
def demo(out: str = typer.Option("seqsuite-demo", help="Report folder."),
         quick: bool = typer.Option(False, help="Smaller and faster (for tests)."),
         device: str = typer.Option("auto", help="cpu, cuda or auto.")) -> None:
    """The main job on the built-in demo data: DNA pretraining, ape classification, audio generation."""
    from ..demo import run_demo

    run_demo(out, quick=quick, device=device)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv)
    except UserError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
