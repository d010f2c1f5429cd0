"""Transformer++ and HyenaDNA blocks: shapes, causality, step == forward (float64), cache bounds."""
import pytest
import torch

from seqsuite.core.baselines import HyenaBlock, TransformerBlock

D, L, B = 32, 24, 2


def make(kind: str, max_len: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "attn":
        return TransformerBlock(D, n_heads=4, max_len=max_len).double()
    return HyenaBlock(D, max_len=max_len, filter_order=16).double()


@pytest.fixture(params=["attn", "hyena"])
def kind(request):
    return request.param


def test_shapes_and_grad(kind):
    block = make(kind).float()
    x = torch.randn(B, L, D, requires_grad=True)
    y = block(x)
    assert y.shape == (B, L, D)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in block.parameters())


def test_causal(kind):
    block = make(kind)
    x = torch.randn(B, L, D, dtype=torch.float64)
    x2 = x.clone()
    t = 11
    x2[:, t:] = torch.randn(B, L - t, D, dtype=torch.float64)
    y, y2 = block(x), block(x2)
    assert torch.allclose(y[:, :t], y2[:, :t], atol=1e-12, rtol=0)
    assert not torch.allclose(y[:, t:], y2[:, t:])


def test_step_equals_forward(kind):
    block = make(kind)
    x = torch.randn(B, L, D, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
        state = block.allocate_state(B)
        ys = torch.stack([block.step(x[:, t], state) for t in range(L)], dim=1)
    assert int(state["pos"]) == L
    assert (ys - y).abs().max().item() < 1e-8


def test_prefill_then_step(kind):
    block = make(kind)
    x = torch.randn(B, L, D, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
        state = block.allocate_state(B)
        p = 9
        yp = block.prefill(x[:, :p], state)
        ys = torch.stack([block.step(x[:, t], state) for t in range(p, L)], dim=1)
    assert (yp - y[:, :p]).abs().max().item() < 1e-8
    assert (ys - y[:, p:]).abs().max().item() < 1e-8


def test_state_in_place(kind):
    """step keeps the same tensors in the state (what a CUDA graph needs)."""
    block = make(kind)
    state = block.allocate_state(B)
    ptrs = {k: v.data_ptr() for k, v in state.items()}
    with torch.no_grad():
        block.step(torch.randn(B, D, dtype=torch.float64), state)
        block.step(torch.randn(B, D, dtype=torch.float64), state)
    assert {k: v.data_ptr() for k, v in state.items()} == ptrs
    assert state["pos"].dtype == torch.long and int(state["pos"]) == 2


def test_cache_bounds(kind):
    block = make(kind, max_len=64)
    state = block.allocate_state(1, max_len=4)
    first = next(iter(v for k, v in state.items() if k in ("k", "history")))
    assert first.shape[-2 if kind == "attn" else -1] == 4
    with torch.no_grad():
        for _ in range(4):
            block.step(torch.randn(1, D, dtype=torch.float64), state)
        with pytest.raises(ValueError, match="max_len"):
            block.step(torch.randn(1, D, dtype=torch.float64), state)


def test_hyena_length_limit():
    block = make("hyena", max_len=16)
    with pytest.raises(ValueError, match="max_len"):
        block(torch.randn(1, 17, D, dtype=torch.float64))


def test_bf16_forward_runs():
    for kind in ("attn", "hyena"):
        block = make(kind).to(torch.bfloat16)
        y = block(torch.randn(B, L, D, dtype=torch.bfloat16))
        assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
        state = block.allocate_state(B)
        y1 = block.step(torch.randn(B, D, dtype=torch.bfloat16), state)
        assert y1.shape == (B, D)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_cuda_graph():
    """One decode step captured in a CUDA graph and replayed equals eager steps."""
    for kind in ("attn", "hyena"):
        block = make(kind).float().cuda()
        xs = torch.randn(6, B, D, device="cuda")
        with torch.no_grad():
            ref_state = block.allocate_state(B)
            ref = [block.step(x, ref_state) for x in xs]
            state = block.allocate_state(B)
            x_static = xs[0].clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                block.step(x_static, state)  # warm-up at position 0
            torch.cuda.current_stream().wait_stream(s)
            for v in state.values():
                if v.dtype != torch.long and v is not state.get("filter"):
                    v.zero_()
            state["pos"].zero_()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                y_static = block.step(x_static, state)
            state["pos"].zero_()
            for v in state.values():
                if v.dtype != torch.long and v is not state.get("filter"):
                    v.zero_()
            outs = []
            for x in xs:
                x_static.copy_(x)
                g.replay()
                outs.append(y_static.clone())
        for a, b in zip(outs, ref):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layer", ["attn", "hyena"])
def test_registered_in_core_build(layer):
    """The core's layer registry builds these blocks; the LM's recurrent step equals its forward."""
    from seqsuite.core import build

    torch.manual_seed(0)
    model = build("tiny", layer=layer, n_heads=2, max_len=32, hyena_filter_dim=16).double()
    tokens = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        logits = model(tokens)
        state = model.allocate_state(2)
        steps = torch.stack([model.step(tokens[:, t], state) for t in range(12)], dim=1)
    assert (steps - logits).abs().max().item() < 1e-8
