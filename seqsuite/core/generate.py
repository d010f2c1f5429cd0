"""Autoregressive sampling through a model's recurrent step.

On CUDA, decoding runs in chunks of K steps captured whole in one CUDA graph, sampling
included (`ChunkDecoder`: the Triton sampler of kernels/triton_sample.py draws from a device
RNG), so the CPU issues one replay per K tokens instead of a few dozen launches per token. A
U-Net runs different work at different phases of its pooling cycle, so K is a multiple of the
cycle and one graph is captured per start phase. Steps that do not fill a chunk (prompt, tail)
replay a one-step graph (`GraphStepper`) and sample with torch.
"""
from __future__ import annotations

import os

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

        def body():
            if "t" in st:
                st["t"] = phase
            out = self.model.step(self.token, st)
            _join_side_streams(self.model)
            return out

        self.graphs[phase] = _capture_graph(body, st, self.pool, warmup=2)

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


class ChunkDecoder:
    """K consecutive steps, each followed by in-kernel sampling of the next token, as one CUDA
    graph per start phase (`capture=False` runs the same body eagerly: CPU tests under
    TRITON_INTERPRET=1). The RNG is a device tensor [seed, counter]; the graph advances the
    counter by K, so every replay draws fresh numbers and a run is a function of the seed."""

    def __init__(self, model, state: dict, batch: int, device, K: int, seed: int, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, capture: bool = True):
        self.model, self.state, self.K, self.capture = model, state, K, capture
        self.sampling = (temperature, top_p, top_k)
        self.tokens = torch.zeros(K + 1, batch, dtype=torch.long, device=device)  # row j feeds step j
        self.rng = torch.tensor([seed, 0], dtype=torch.int64, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None

    def _body(self, t0: int) -> None:
        from ..kernels.triton_sample import sample_head_triton, sample_triton

        st, (temperature, top_p, top_k) = self.state, self.sampling
        head = _fusable_head(self.model)
        for j in range(self.K):
            if "t" in st:
                st["t"] = t0 + j
            if head is not None:  # final norm, head and sampling in one kernel
                h = self.model.step_hidden(self.tokens[j], st)
                sample_head_triton(h, *head, self.tokens[j + 1], self.rng, j, temperature, top_p, top_k)
                continue
            logits = self.model.step(self.tokens[j], st)
            sample_triton(logits, self.tokens[j + 1], self.rng, j, temperature, top_p, top_k)
        self.rng[1:].add_(self.K)
        _join_side_streams(self.model)

    def _capture(self, phase: int, t0: int) -> None:
        self.graphs[phase] = _capture_graph(lambda: self._body(t0), [self.state, self.tokens, self.rng],
                                            self.pool)[0]

    def reseed(self, seed: int) -> None:
        """Start the random stream again from `seed` (in place: the graphs read this tensor)."""
        self.rng.copy_(torch.tensor([seed, 0], dtype=torch.int64))

    def __call__(self, token: torch.Tensor, t0: int) -> torch.Tensor:
        """Feed `token` (batch,) at position t0, run K steps; returns the K sampled tokens (K, batch)."""
        self.tokens[0].copy_(token)
        if not self.capture:
            self._body(t0)
        else:
            phase = t0 % _phase_period(self.model)
            if phase not in self.graphs:
                self._capture(phase, t0)
            self.graphs[phase].replay()
        if "t" in self.state:
            self.state["t"] = t0 + self.K
        return self.tokens[1:]


def _fusable_head(model):
    """(norm weight, eps, head weight) when SEQSUITE_FUSED_HEAD=1 and the model's final RMSNorm,
    bias-free head and the sampling can run as one kernel (kernels/triton_sample.py
    sample_head_triton); None otherwise. Off by default: on the H200 (2026-11-29) the one-program
    kernel took 8.8 µs per step at sc09-unet-small batch 1 against 3.5 µs for sampling alone
    plus the two launches it saves, a net loss of about 1 µs per token."""
    from ..kernels.triton_sample import fits_head
    from .block import RMSNorm

    norm, head = getattr(model, "norm", None), getattr(model, "head", None)
    if os.environ.get("SEQSUITE_FUSED_HEAD", "0").strip() != "1" or not hasattr(model, "step_hidden"):
        return None
    if not isinstance(norm, RMSNorm) or not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return None
    if not fits_head(head.out_features, head.in_features):
        return None
    return norm.weight, norm.eps, head.weight


def _join_side_streams(model) -> None:
    """A U-Net steps its inner levels on side streams (core/backbone.py); a captured graph must
    end with them joined."""
    join = getattr(getattr(model, "backbone", None), "join_inner", None)
    if join is not None:
        join()


def chunk_size(model, target: int = 32) -> int:
    """Steps per decoding graph: a multiple of the pooling cycle, at least `target`; 0 when the
    vocabulary is too large for the Triton sampler (token-by-token decoding then)."""
    from ..kernels.triton_sample import MAX_VOCAB

    if getattr(getattr(model, "config", None), "vocab_size", MAX_VOCAB + 1) > MAX_VOCAB:
        return 0
    period = _phase_period(model)
    return period * max(1, -(-target // period))


def _capture_graph(body, mutated, pool, warmup: int = 1):
    """(graph, output) of `body()` captured in a CUDA graph, after `warmup` eager runs on a side
    stream (kernels compile, cuBLAS sets up its handles). Warm-up and capture both mutate
    `mutated` (a state, buffers): it is restored to its value before the call."""
    snapshot = _clone_state(mutated)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            body()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = body()
    _copy_state(mutated, snapshot)
    return graph, out


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
             progress=None, prefill: bool = True, chunk: int | None = None, cache: dict | None = None) -> torch.Tensor:
    """Feed `prompt` (batch, Lp ≥ 1) through the model, then sample n tokens with the recurrent step.

    With `prefill` (default) and a model that supports it (isotropic S6 / attention / Hyena), the
    prompt goes through one parallel pass that fills the state; otherwise step by step.

    `chunk`: steps per `ChunkDecoder` graph (None: `chunk_size(model)` with CUDA graphs, else
    0 = token by token with torch sampling). A
    chunk without CUDA graphs runs eagerly (tests). The chunked and token-by-token paths draw
    different random numbers, so their samples differ for the same generator (both are a
    function of it); greedy decoding gives the same tokens.

    `progress(k)` is called after each generated token (after each chunk) when given.

    `cache`: a dict the caller keeps between calls (e.g. one per batch loop). With CUDA graphs
    and no parallel prefill, the state and its captured graphs are kept there and reused by the
    next call of the same shape and settings (the state is reset in place to a fresh state, the
    sampler reseeded), so only the first call pays for graph capture. The result is the same
    as without it.
    """
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError("prompt must be (batch, Lp) with Lp >= 1 (e.g. a start token)")
    batch, Lp = prompt.shape
    device = prompt.device
    use_graph = device.type == "cuda" if use_cuda_graph is None else use_cuda_graph
    if chunk is None:
        chunk = chunk_size(model) if use_graph else 0
    prefilled = prefill and Lp > 1 and supports_prefill(model)
    seed = None
    if chunk and n > chunk:
        if chunk % _phase_period(model):
            raise ValueError(f"chunk={chunk} must be a multiple of the pooling cycle {_phase_period(model)}")
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=gen_dev))
    key = (id(model), batch, str(device), Lp + n, chunk, use_graph, float(temperature), float(top_p), int(top_k))
    reuse = cache is not None and not prefilled
    if reuse and cache.get("key") == key:
        state, step, decoder = cache["state"], cache["step"], cache["decoder"]
        _copy_state(state, model.allocate_state(batch, device=device, max_len=Lp + n))  # in place
        if decoder is not None:
            decoder.reseed(seed)
    else:
        state = model.allocate_state(batch, device=device, max_len=Lp + n)
        step = GraphStepper(model, state, batch, device) if use_graph else None
        decoder = None
        if seed is not None:
            decoder = ChunkDecoder(model, state, batch, device, chunk, seed, temperature, top_p, top_k,
                                   capture=use_graph)
        if reuse:
            cache.clear()
            cache.update(key=key, state=state, step=step, decoder=decoder)
    out = torch.empty(batch, Lp + n, dtype=torch.long, device=device)
    out[:, :Lp] = prompt
    logits = None
    start = 0
    if prefilled:
        # one parallel pass over the prompt instead of Lp recurrent steps
        logits = model.prefill(prompt, state)
        if n > 0:
            out[:, Lp] = sample_logits(logits, temperature, top_p, top_k, generator)
            if progress is not None:
                progress(1)
        start = Lp
    t, end = start, Lp + n - 1  # step t reads token t and yields token t + 1
    while t < end:
        if decoder is not None and t >= Lp - 1 and t + chunk <= end:
            out[:, t + 1:t + 1 + chunk] = decoder(out[:, t], t).t()
            t += chunk
            if progress is not None:
                progress(t + 1 - Lp)
            continue
        tok = out[:, t]
        logits = step(tok, t) if step is not None else model.step(tok, state)
        if t >= Lp - 1:
            out[:, t + 1] = sample_logits(logits, temperature, top_p, top_k, generator)
            if progress is not None:
                progress(t + 2 - Lp)
        t += 1
    return out
