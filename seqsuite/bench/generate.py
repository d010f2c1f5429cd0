"""`bench generate`: autoregressive inference throughput.

* LM: a Mamba LM against a Transformer++ LM of equal size (KV cache), by batch size. As in the
  Mamba paper (Fig. 8 right), a `prompt_len`-token prompt then `gen_len` sampled tokens;
  throughput = batch × gen_len / (prompt + generation time). The prompt goes through one
  parallel prefill pass (both families have one; `--no-prefill` feeds it step by step), and the
  decode-only throughput, batch × gen_len / generation time, is reported as well.
* Audio: samples/s of the SC09 U-Nets from silence by batch size, and the real-time factor at
  16 kHz (wall time / audio duration per stream; below 1 is faster than real time).

On a GPU every step is replayed from CUDA graphs, captured in an untimed warm-up: chunks of K
steps with in-kernel sampling (`seqsuite.core.generate.ChunkDecoder`, as `generate` uses;
`--no-chunks` for one graph per step with torch sampling) and one-step graphs
(`GraphStepper`) for the prompt and a tail shorter than a chunk. Stacks of Mamba-S6 layers step
as one fused kernel each (core/fused_step.py; SEQSUITE_FUSED_STEP=0 turns it off). Weights
and states are fp32 for both models.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from .common import Report, build_on, env_info, equal_size_configs, fmt, guarded, new_figure, save_figure

SAMPLE_RATE = 16000
SILENCE = 128  # μ-law token of silence


@dataclass
class GenerateSettings:
    batches: list[int]
    prompt_len: int = 2048
    gen_len: int = 128
    pair: tuple[str, str] = ("hg38-mamba-7m", "hg38-transformerpp-7m")
    d_model: int | None = None
    n_layers: int | None = None
    audio: list[str] = field(default_factory=lambda: ["sc09-unet-small", "sc09-unet-large"])
    audio_batches: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    audio_samples: int = 2048
    graphs: bool = True
    chunks: bool = True  # K-step graphs with in-kernel sampling (GPU, with graphs)
    prefill: bool = True  # LM prompts in one parallel pass (else step by step)
    repeats: int = 3
    budget_s: float = 2.0

    @classmethod
    def default(cls, device: torch.device) -> "GenerateSettings":
        """The paper's setting on a GPU (batch 1 … 256, the 7M presets); on the CPU a few short runs
        of a small equal-size pair (d=64, 4 Mamba layers)."""
        if device.type == "cuda":
            return cls(batches=[1 << k for k in range(9)])
        return cls(batches=[1, 4], prompt_len=16, gen_len=8, d_model=64, n_layers=4, audio=["sc09-unet-small"], audio_batches=[1, 4], audio_samples=32, graphs=False, repeats=1,
                   budget_s=0.3)


class Stopwatch:
    """Marks points in time (CUDA events on a GPU) and returns the ms between consecutive marks."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, []

    def mark(self) -> None:
        if self.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        if self.device.type == "cuda":
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:])]


def reset_state(state) -> None:
    """Zero a recurrent state in place (tensors zeroed, step counters back to 0), so captured
    CUDA graphs that point at its tensors stay valid."""
    if isinstance(state, dict):
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                v.zero_()
            elif isinstance(v, int):
                state[k] = 0
            else:
                reset_state(v)
    elif isinstance(state, list):
        for v in state:
            reset_state(v) if not isinstance(v, torch.Tensor) else v.zero_()


class Generator:
    """A model, its state for one batch size, and (on a GPU) its CUDA-graph stepper."""

    def __init__(self, model, batch: int, device: torch.device, graphs: bool, prefill: bool = True,
                 chunks: bool = True):
        from ..core.generate import ChunkDecoder, GraphStepper, chunk_size, supports_prefill

        self.model, self.batch, self.device = model, batch, device
        self.prefill = prefill and supports_prefill(model)
        self.state = model.allocate_state(batch, device=device)
        self.stepper = GraphStepper(model, self.state, batch, device) if graphs and device.type == "cuda" else None
        self.rng = torch.Generator(device=device).manual_seed(0)
        K = chunk_size(model) if self.stepper is not None and chunks else 0
        self.decoder = ChunkDecoder(model, self.state, batch, device, K, seed=0) if K else None

    def _step(self, tok: torch.Tensor, t: int) -> torch.Tensor:
        return self.stepper(tok, t) if self.stepper is not None else self.model.step(tok, self.state)

    @torch.no_grad()
    def run(self, prompt: torch.Tensor, n: int) -> tuple[float, float]:
        """Feed prompt (batch, Lp), then sample n tokens; returns (prompt ms, generation ms)."""
        from ..core.generate import sample_logits

        reset_state(self.state)
        watch = Stopwatch(self.device)
        watch.mark()
        logits = None
        Lp = prompt.shape[1]
        if self.prefill:
            logits = self.model.prefill(prompt, self.state)
        else:
            for t in range(Lp):
                logits = self._step(prompt[:, t], t)
        watch.mark()
        tok = sample_logits(logits, generator=self.rng)
        t, last = Lp, Lp + n - 1  # step t feeds sampled token t; n tokens in all
        while t < last:
            if self.decoder is not None and t + self.decoder.K <= last:
                tok = self.decoder(tok, t)[-1]
                t += self.decoder.K
                continue
            tok = sample_logits(self._step(tok, t), generator=self.rng)
            t += 1
        watch.mark()
        prompt_ms, gen_ms = watch.intervals_ms()
        return prompt_ms, gen_ms


def time_generation(model, batch: int, prompt: torch.Tensor, n: int, device: torch.device, graphs: bool,
                    repeats: int, budget_s: float, prefill: bool = True, chunks: bool = True) -> dict:
    """Median prompt and generation times over repeated runs, after a warm-up that captures graphs."""
    gen = Generator(model, batch, device, graphs, prefill, chunks)
    period = getattr(model.backbone, "total_pool", 1)
    gen.run(prompt[:, : min(prompt.shape[1], period + 1)], min(n, period + 2))  # captures every phase
    if gen.decoder is not None:  # and the chunk graph for this prompt's start phase
        gen.run(prompt, min(n, 2 * gen.decoder.K + 1))
    if gen.prefill:  # the full-length prefill once, untimed: kernels for that shape compile here
        gen.run(prompt, 1)
    runs = [gen.run(prompt, n)]
    total_s = sum(runs[0]) / 1e3
    k = max(1, min(repeats, int(budget_s / max(total_s, 1e-6))))
    runs += [gen.run(prompt, n) for _ in range(k - 1)]
    runs.sort(key=sum)
    prompt_ms, gen_ms = runs[len(runs) // 2]
    return {"prompt_ms": prompt_ms, "gen_ms": gen_ms, "repeats": len(runs)}


def lm_configs(s: GenerateSettings) -> list[tuple[str, object]]:
    """(family, config) of the Mamba and Transformer++ LMs, the KV cache sized to prompt + gen."""
    from ..core import get_config

    max_len = s.prompt_len + s.gen_len
    if s.d_model is not None or s.n_layers is not None:
        from ..errors import UserError

        if s.d_model is None or s.n_layers is None:
            raise UserError("give both --d-model and --n-layers for a custom Mamba/Transformer++ pair")
        m, a = equal_size_configs(s.d_model, s.n_layers, vocab_size=12, max_len=max_len)
    else:
        m, a = get_config(s.pair[0]), get_config(s.pair[1])
    return [("mamba", m), ("transformer++", a.replace(max_len=max_len) if a.layer == "attn" else a)]


def run_generate(settings: GenerateSettings, device: torch.device, progress=None) -> Report:
    """LM throughput by batch for both models, then audio samples/s for each audio preset."""
    from ..core import count_params, get_config

    report = Report("generate", "generation throughput", env_info(device),
                    asdict(settings) | {"cuda_graphs": settings.graphs and device.type == "cuda"})
    for family, cfg in lm_configs(settings):
        model = build_on(cfg, device).eval()
        n_params = count_params(model)
        failed = None
        for b in settings.batches:
            row = {"kind": "lm", "model": cfg.name, "family": family, "params": n_params, "batch": b}
            if failed:
                report.rows.append(row | {"status": failed})
                continue
            g = torch.Generator(device="cpu").manual_seed(b)
            prompt = torch.randint(0, cfg.vocab_size, (b, settings.prompt_len), generator=g).to(device)

            def case():
                t = time_generation(model, b, prompt, settings.gen_len, device, settings.graphs,
                                    settings.repeats, settings.budget_s, settings.prefill, settings.chunks)
                total_s = (t["prompt_ms"] + t["gen_ms"]) / 1e3
                return t | {"tokens_per_s": b * settings.gen_len / total_s,
                            "decode_tokens_per_s": b * settings.gen_len / (t["gen_ms"] / 1e3)}

            row |= guarded(case, device)
            failed = "OOM" if row["status"] == "OOM" else None
            report.rows.append(row)
            if progress:
                progress()
        del model
    for name in settings.audio:
        cfg = get_config(name)
        model = build_on(cfg, device).eval()
        n_params = count_params(model)
        failed = None
        for b in settings.audio_batches:
            row = {"kind": "audio", "model": name, "family": cfg.outer, "params": n_params, "batch": b}
            if failed:
                report.rows.append(row | {"status": failed})
                continue
            prompt = torch.full((b, 1), SILENCE, dtype=torch.long, device=device)

            def case():
                t = time_generation(model, b, prompt, settings.audio_samples, device, settings.graphs,
                                    settings.repeats, settings.budget_s, chunks=settings.chunks)
                secs = (t["prompt_ms"] + t["gen_ms"]) / 1e3
                audio_s = settings.audio_samples / SAMPLE_RATE
                return t | {"samples_per_s": b * settings.audio_samples / secs, "rtf": secs / audio_s,
                            "x_realtime_total": b * audio_s / secs}

            row |= guarded(case, device)
            failed = "OOM" if row["status"] == "OOM" else None
            report.rows.append(row)
            if progress:
                progress()
        del model
    _table(report)
    return report


def _table(report: Report) -> None:
    s = report.settings
    report.headers = ["model", "batch", "tokens or samples /s", "decode tok/s", "prompt ms", "gen ms", "RTF 16 kHz"]
    for r in report.rows:
        st = r["status"]
        if r["kind"] == "lm":
            report.table.append([r["model"], str(r["batch"]), fmt(r.get("tokens_per_s"), st),
                                 fmt(r.get("decode_tokens_per_s"), st), fmt(r.get("prompt_ms"), st),
                                 fmt(r.get("gen_ms"), st), "—"])
        else:
            report.table.append([r["model"], str(r["batch"]), fmt(r.get("samples_per_s"), st), "—",
                                 "—", fmt(r.get("gen_ms"), st), fmt(r.get("rtf"), st)])
    lm = {(r["family"], r["batch"]): r.get("tokens_per_s") for r in report.rows if r["kind"] == "lm"}
    ratios = [f"{b}: {lm[('mamba', b)] / lm[('transformer++', b)]:.2f}x" for b in s["batches"]
              if lm.get(("mamba", b)) and lm.get(("transformer++", b))]
    if ratios:
        report.notes.append("Mamba / Transformer++ throughput by batch — " + ", ".join(ratios))
    params = {r["model"]: r["params"] for r in report.rows}
    report.notes.append("parameters: " + ", ".join(f"{n} {p / 1e6:.3g}M" for n, p in params.items()))
    report.notes.append(f"LM: {s['prompt_len']}-token prompt "
                        f"{'in one prefill pass' if s.get('prefill', False) else 'fed step by step'}, then {s['gen_len']} sampled tokens; "
                        f"tokens/s = batch x {s['gen_len']} / total time; cuda_graphs={s['cuda_graphs']}")
    if s["audio"]:
        report.notes.append(f"audio: {s['audio_samples']} samples per stream from silence; RTF = wall time / "
                            f"audio duration per stream (< 1 is faster than real time)")


def plot_generate(report: Report, path) -> None:
    """Throughput vs batch, log-log: LM tokens/s (left), audio samples/s (right)."""
    kinds = [k for k in ("lm", "audio") if any(r["kind"] == k for r in report.rows)]
    fig, axes = new_figure(len(kinds))
    for ax, kind in zip(axes, kinds):
        key = "tokens_per_s" if kind == "lm" else "samples_per_s"
        for name in dict.fromkeys(r["model"] for r in report.rows if r["kind"] == kind):
            pts = [(r["batch"], r[key]) for r in report.rows if r["model"] == name and r.get(key)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("generated tokens / s" if kind == "lm" else "audio samples / s")
        ax.set_title(f"{'LM inference' if kind == 'lm' else 'SC09 generation'} — {report.env['device']}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
