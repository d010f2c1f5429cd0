"""Options the training commands of every domain share (DESIGN §8), and `given`."""
from __future__ import annotations

import typer

STEPS = typer.Option(None, "--steps", help="Optimizer updates.")
BATCH = typer.Option(None, "--batch-size", help="Examples per update.")
LR = typer.Option(None, "--lr", help="Peak learning rate.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")
DEVICE = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto.")
GRAD_CKPT = typer.Option(False, "--grad-checkpoint",
                         help="Recompute each layer's activations in the backward (long L: less memory, ~30% slower).")
COMPILE = typer.Option(False, "--compile", help="torch.compile the model.")


def given(**kw):
    """Only the options the user set (so the API's defaults apply otherwise)."""
    return {k: v for k, v in kw.items() if v is not None}
