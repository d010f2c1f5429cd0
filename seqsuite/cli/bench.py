"""`seqsuite bench …`: the efficiency section of the Mamba paper on your machine.

Only argument parsing lives here; the measurements are in seqsuite.bench (scan in
seqsuite.cli.bench_scan, owned by the kernels). Each command prints a table headed by device,
date, commit and torch version, writes JSON with --out, and a PNG with --plot.
"""
from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmarks: scan, ops, train, generate, memory, all.")

OUT = typer.Option(None, "--out", help="Write the results as JSON to this file.")
PLOT = typer.Option(False, "--plot", help="Also write a PNG beside --out (or bench-<name>.png).")
DEVICE = typer.Option("auto", "--device", help="cpu, cuda or auto.")
BUDGET = typer.Option(None, "--budget", help="Seconds of timed calls per case (default: 1-2 on GPU, 0.3 on CPU).")


@app.command()
def scan(out: Optional[str] = OUT, plot: bool = PLOT,
         reps: int = typer.Option(100, help="Timed runs per median (at least 50).")) -> None:
    """Selective-scan kernel vs mamba_ssm's reference figures on DESIGN §7's rows (GPU only)."""
    from ..bench.runner import run_scan

    run_scan(out=out, plot=plot, reps=reps)


@app.command()
def ops(out: Optional[str] = OUT, plot: bool = PLOT, device: str = DEVICE,
        lengths: Optional[str] = typer.Option(None, help="e.g. '2^9..2^19' or '512,2048' (default: paper grid on GPU, up to 2^12 on CPU)."),
        dim: Optional[int] = typer.Option(None, help="Channels of scan and FFT conv, = heads x head size (1536 on GPU)."),
        heads: Optional[int] = typer.Option(None, help="Attention heads (24 on GPU)."),
        batch: int = typer.Option(1, help="Batch size."),
        budget: Optional[float] = BUDGET) -> None:
    """Scan vs causal attention (flash) vs FFT convolution by length, fwd and fwd+bwd (Fig. 8 left)."""
    from ..bench.runner import run_ops_cmd

    run_ops_cmd(out=out, plot=plot, device=device, lengths=lengths, dim=dim, heads=heads, batch=batch,
                budget=budget)


@app.command()
def train(out: Optional[str] = OUT, plot: bool = PLOT, device: str = DEVICE,
          lengths: Optional[str] = typer.Option(None, help="e.g. '2^10..2^17' (default on GPU; 2^7..2^9 on CPU)."),
          tokens: Optional[int] = typer.Option(None, help="Tokens per step, held constant (batch = tokens / L)."),
          pairs: Optional[str] = typer.Option(None, help="Mamba:Transformer preset pairs, e.g. 'hg38-mamba-7m:hg38-transformerpp-7m'."),
          d_model: Optional[int] = typer.Option(None, "--d-model", help="Instead of presets: an equal-size pair of this width…"),
          n_layers: Optional[int] = typer.Option(None, "--n-layers", help="…with this many Mamba layers (Transformer++ gets half)."),
          compile: bool = typer.Option(False, "--compile", help="torch.compile the models."),
          budget: Optional[float] = BUDGET) -> None:
    """Training tokens/s (fwd + bwd + AdamW) of Mamba vs Transformer++ of equal size by length."""
    from ..bench.runner import run_train_cmd

    run_train_cmd(out=out, plot=plot, device=device, lengths=lengths, tokens=tokens, pairs=pairs,
                  d_model=d_model, n_layers=n_layers, compile=compile, budget=budget)


@app.command()
def generate(out: Optional[str] = OUT, plot: bool = PLOT, device: str = DEVICE,
             batches: Optional[str] = typer.Option(None, help="LM batch sizes (default 1,2,…,256 on GPU; 1,4 on CPU)."),
             prompt_len: Optional[int] = typer.Option(None, "--prompt-len", help="Prompt tokens (2048 on GPU)."),
             gen_len: Optional[int] = typer.Option(None, "--gen-len", help="Generated tokens (128 on GPU)."),
             pair: Optional[str] = typer.Option(None, help="Mamba:Transformer preset pair (default hg38-mamba-7m:hg38-transformerpp-7m)."),
             d_model: Optional[int] = typer.Option(None, "--d-model", help="Instead of presets: an equal-size pair of this width…"),
             n_layers: Optional[int] = typer.Option(None, "--n-layers", help="…with this many Mamba layers."),
             audio: Optional[str] = typer.Option(None, help="Audio presets, comma-separated (default sc09-unet-small,sc09-unet-large; 'none' to skip)."),
             audio_batches: Optional[str] = typer.Option(None, "--audio-batches", help="Audio batch sizes (default 1,16,64,256 on GPU)."),
             audio_samples: Optional[int] = typer.Option(None, "--audio-samples", help="Samples generated per stream (2048 on GPU)."),
             graphs: bool = typer.Option(True, "--graphs/--no-graphs", help="Replay steps from CUDA graphs (GPU)."),
             prefill: bool = typer.Option(True, "--prefill/--no-prefill", help="LM prompt in one parallel pass (else step by step)."),
             chunks: bool = typer.Option(True, "--chunks/--no-chunks", help="Replay K steps with in-kernel sampling per CUDA graph (else one graph per step, torch sampling)."),
             budget: Optional[float] = BUDGET) -> None:
    """Generation throughput: Mamba vs Transformer++ (KV cache) by batch; SC09 samples/s and real-time factor."""
    from ..bench.runner import run_generate_cmd

    run_generate_cmd(out=out, plot=plot, device=device, batches=batches, prompt_len=prompt_len,
                     gen_len=gen_len, pair=pair, d_model=d_model, n_layers=n_layers, audio=audio,
                     audio_batches=audio_batches, audio_samples=audio_samples, graphs=graphs, prefill=prefill, chunks=chunks,
                     budget=budget)


@app.command()
def memory(out: Optional[str] = OUT, plot: bool = PLOT, device: str = DEVICE,
           batches: Optional[str] = typer.Option(None, help="Batch sizes (default 1,2,…,32 on GPU; 1,2 on CPU)."),
           seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length (2048 on GPU)."),
           d_model: Optional[int] = typer.Option(None, "--d-model", help="Width (768 on GPU: the paper's 125M pair)."),
           n_layers: Optional[int] = typer.Option(None, "--n-layers", help="Mamba layers (24 on GPU); Transformer++ gets half."),
           vocab: Optional[int] = typer.Option(None, "--vocab", help="Vocabulary (50280 on GPU, GPT-2-like)."),
           compile: bool = typer.Option(False, "--compile", help="torch.compile the models."),
           ) -> None:
    """Peak training memory of Mamba vs Transformer++ of equal size by batch size (Table 15)."""
    from ..bench.runner import run_memory_cmd

    run_memory_cmd(out=out, plot=plot, device=device, batches=batches, seq_len=seq_len, d_model=d_model,
                   n_layers=n_layers, vocab=vocab, compile=compile)


@app.command("all")
def all_(out: Optional[str] = OUT, plot: bool = PLOT, device: str = DEVICE,
         compile: bool = typer.Option(False, "--compile", help="torch.compile the models in train and memory."),
         budget: Optional[float] = BUDGET) -> None:
    """Run scan (GPU only), ops, train, generate and memory with their default grids."""
    from ..bench.runner import run_all

    run_all(out=out, plot=plot, device=device, compile=compile, budget=budget)
