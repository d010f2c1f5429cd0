"""Autoregressive sampling through a model's recurrent step.

On CUDA, one step is captured in a CUDA graph and replayed (an eager step costs far more in
launch overhead than in arithmetic). A U-Net runs different work at different phases of its
pooling cycle, so one graph is captured per phase.
"""
from __future__ import annotations

import torch


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from logits (batch, vocab); temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True)
        cum = sorted_p.cumsum(-1)
        drop = cum - sorted_p > top_p  # keep the smallest set whose mass reaches top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _phase_period(model) -> int:
    return getattr(getattr(model, "backbone", None), "total_pool", 1)


class GraphStepper:
    """Replays `model.step` from CUDA graphs, one per phase of the backbone's pooling cycle."""

    def __init__(self, model, state: dict, batch: int, device):
        self.model, self.state = model, state
        self.period = _phase_period(model)
        self.token = torch.zeros(batch, dtype=torch.long, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()

    def _capture(self, phase: int):
        st = self.state
        has_t = "t" in st
        snapshot = _clone_state(st)  # warm-up and capture mutate the state: restore afterwards
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                if has_t:
                    st["t"] = phase
                self.model.step(self.token, st)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        if has_t:
            st["t"] = phase
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.model.step(self.token, st)
        _copy_state(st, snapshot)
        self.graphs[phase] = (graph, out)

    def __call__(self, token: torch.Tensor, t: int) -> torch.Tensor:
        phase = t % self.period
        if phase not in self.graphs:
            self._capture(phase)
        self.token.copy_(token)
        graph, out = self.graphs[phase]
        graph.replay()
        if "t" in self.state:
            self.state["t"] = t + 1
        return out


def _clone_state(st):
    if isinstance(st, dict):
        return {k: _clone_state(v) for k, v in st.items()}
    if isinstance(st, list):
        return [_clone_state(v) for v in st]
    return st.clone() if isinstance(st, torch.Tensor) else st


def _copy_state(dst, src):
    if isinstance(dst, dict):
        for k in dst:
            if isinstance(dst[k], torch.Tensor):
                dst[k].copy_(src[k])
            elif isinstance(dst[k], (dict, list)):
                _copy_state(dst[k], src[k])
            else:
                dst[k] = src[k]
    elif isinstance(dst, list):
        for a, b in zip(dst, src):
            _copy_state(a, b) if not isinstance(a, torch.Tensor) else a.copy_(b)


@torch.no_grad()
def supports_prefill(model) -> bool:
    """Whether `model.prefill(tokens, state)` can replace feeding a prompt step by step
    (LMModel.can_prefill; False for models without it)."""
    return getattr(model, "can_prefill", lambda: False)()


def generate(model, prompt: torch.Tensor, n: int, temperature: float = 1.0, top_p: float = 1.0,
             top_k: int = 0, generator: torch.Generator | None = None, use_cuda_graph: bool | None = None,
             progress=None, prefill: bool = True) -> torch.Tensor:
    """Feed `prompt` (batch, Lp ≥ 1) through the model, then sample n tokens with the recurrent step.

    With `prefill` (default) and a model that supports it (isotropic S6 / attention / Hyena), the
    prompt goes through one parallel pass that fills the state; otherwise step by step.

    `progress(k)` is called after each generated token when given.
    """
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError("prompt must be (batch, Lp) with Lp >= 1 (e.g. a start token)")
    batch, Lp = prompt.shape
    device = prompt.device
    state = model.allocate_state(batch, device=device, max_len=Lp + n)
    use_graph = device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
    step = GraphStepper(model, state, batch, device) if use_graph else None
    out = torch.empty(batch, Lp + n, dtype=torch.long, device=device)
    out[:, :Lp] = prompt
    logits = None
    start = 0
    if prefill and Lp > 1 and supports_prefill(model):
        # one parallel pass over the prompt instead of Lp recurrent steps
        logits = model.prefill(prompt, state)
        if n > 0:
            out[:, Lp] = sample_logits(logits, temperature, top_p, top_k, generator)
            if progress is not None:
                progress(1)
        start = Lp
    for t in range(start, Lp + n - 1):
        tok = out[:, t]
        logits = step(tok, t) if step is not None else model.step(tok, state)
        if t >= Lp - 1:
            out[:, t + 1] = sample_logits(logits, temperature, top_p, top_k, generator)
            if progress is not None:
                progress(t + 2 - Lp)
    return out
