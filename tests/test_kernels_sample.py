"""The Triton sampler (kernels/triton_sample.py) against `sample_ref`, and chunked decoding
(core/generate.py ChunkDecoder) against token-by-token decoding, on CPU under
TRITON_INTERPRET=1 (tests/test_kernels_gpu.py runs them on the GPU, with CUDA graphs)."""
from __future__ import annotations

import pytest
import torch

from triton_interp import skip_on_gpu, use_interpreter

pytestmark = skip_on_gpu


@pytest.fixture(autouse=True)
def interp():
    from seqsuite.kernels import triton_sample

    use_interpreter(triton_sample._sample_kernel)
    yield triton_sample


def _logits(batch, V, seed=0, scale=3.0):
    return torch.randn(batch, V, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("V", [5, 256])
@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 1.0, 0), (0.7, 0.9, 0), (1.3, 1.0, 3),
                                                     (1.0, 0.5, 4), (0.0, 1.0, 0)])
def test_sampler_matches_reference_given_uniforms(interp, V, temperature, top_p, top_k):
    from seqsuite.kernels.reference import sample_ref

    logits = _logits(6, V)
    u = torch.rand(6, V, generator=torch.Generator().manual_seed(1))
    out = torch.full((6,), -1, dtype=torch.long)
    interp.sample_triton(logits, out, temperature=temperature, top_p=top_p, top_k=top_k, uniforms=u)
    assert torch.equal(out, sample_ref(logits, u, temperature, top_p, top_k))


def test_sampler_distribution_and_nucleus(interp):
    """With its own RNG the kernel draws from softmax(logits / T) restricted to the nucleus."""
    V, rows = 8, 1500
    row = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    logits = row.expand(rows, V).contiguous()
    rng = torch.tensor([1234, 0], dtype=torch.int64)
    out = torch.empty(rows, dtype=torch.long)
    interp.sample_triton(logits, out, rng)
    freq = torch.bincount(out, minlength=V).float() / rows
    p = torch.softmax(row, 0)
    assert (freq - p).abs().max() < 0.05  # 1500 draws: the binomial s.d. is <= 0.013
    out = out[:100]  # the interpreter sorts slowly
    interp.sample_triton(logits[:100], out, rng, temperature=1.0, top_p=0.6)
    ps = p.sort(descending=True).values
    n_keep = int(((ps.cumsum(0) - ps) < 0.6).sum())
    assert set(out.tolist()) == set(range(n_keep))  # only (and all of) the nucleus


def test_sampler_rng_is_keyed_by_seed_and_step(interp):
    logits = _logits(64, 256, scale=0.1)  # nearly uniform: draws differ if the numbers differ
    draw = lambda seed, count, off: interp.sample_triton(  # noqa: E731
        logits, torch.empty(64, dtype=torch.long), torch.tensor([seed, count]), off)
    a = draw(7, 0, 0)
    assert torch.equal(a, draw(7, 0, 0))
    assert torch.equal(draw(7, 5, 0), draw(7, 0, 5))  # step = counter + offset
    assert (a != draw(7, 0, 1)).float().mean() > 0.5
    assert (a != draw(8, 0, 0)).float().mean() > 0.5


@pytest.mark.parametrize("V,d,rows", [(256, 16, 6), (12, 24, 24)])
def test_head_sampler_equals_head_then_sampler(V, d, rows):
    """sample_head_triton (final RMSNorm and head computed in the kernel) draws the tokens that
    sample_triton draws from the logits of torch's norm and head, with the same RNG: greedy,
    plain, top-p and top-k."""
    from seqsuite.core.block import RMSNorm
    from seqsuite.kernels.triton_sample import fits_head, sample_head_triton, sample_triton

    g = torch.Generator().manual_seed(V)
    norm = RMSNorm(d)
    with torch.no_grad():
        norm.weight.add_(torch.randn(d, generator=g) * 0.3)
    W = torch.randn(V, d, generator=g)
    h = torch.randn(rows, 2 * d, generator=g)[:, ::2]  # row-strided input
    logits = torch.nn.functional.linear(norm(h.contiguous()), W)
    rng = torch.tensor([5, 3])
    assert fits_head(V, d) and not fits_head(4096, 64)
    for temperature, top_p, top_k in [(0.0, 1.0, 0), (1.0, 1.0, 0), (0.8, 0.9, 0), (1.0, 1.0, 5)]:
        a = sample_head_triton(h, norm.weight, norm.eps, W, torch.empty(rows, dtype=torch.long), rng, 2,
                               temperature, top_p, top_k)
        b = sample_triton(logits, torch.empty(rows, dtype=torch.long), rng, 2, temperature, top_p, top_k)
        assert torch.equal(a, b), (temperature, top_p, top_k)


def _tiny_unet():
    from seqsuite.core import build

    torch.manual_seed(0)
    return build("sc09-tiny").eval()


@pytest.mark.parametrize("kind,fused_head", [("unet", "0"), ("unet", "1"), ("attention", "0")])
def test_chunked_greedy_equals_step_by_step(monkeypatch, kind, fused_head):
    """The chunk body (K steps + in-kernel sampling, as captured in the CUDA graph) produces
    the token-by-token path's tokens when decoding is greedy: across U-Net phases, with a KV
    cache (attention), a prompt that does not end on a chunk boundary and a tail shorter than
    a chunk; also with the final norm and head computed in the sampler (SEQSUITE_FUSED_HEAD=1)."""
    from seqsuite.core import build
    from seqsuite.core.generate import generate

    monkeypatch.setenv("SEQSUITE_FUSED_HEAD", fused_head)

    torch.manual_seed(0)
    model = _tiny_unet() if kind == "unet" else build("bytes-tiny", layer="attn", n_heads=2, n_layers=2).eval()
    prompt = torch.randint(0, 256, (2, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.generate(prompt, 45, temperature=0.0)
        got = generate(model, prompt, 45, temperature=0.0, use_cuda_graph=False, chunk=16)
    assert torch.equal(got, ref)


def test_chunked_sampling_is_a_function_of_the_seed():
    from seqsuite.core.generate import generate

    model = _tiny_unet()
    prompt = torch.full((3, 1), 128)
    runs = [generate(model, prompt, 40, use_cuda_graph=False, chunk=16,
                     generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    assert runs[0].min() >= 0 and runs[0].max() < 256
    with pytest.raises(ValueError, match="multiple of the pooling cycle"):
        generate(model, prompt, 40, use_cuda_graph=False, chunk=12)


@pytest.mark.parametrize("chunk", [0, 16])
def test_generate_cache_reuses_state_with_the_same_result(chunk):
    """generate(cache=...) keeps the state (and on a GPU its CUDA graphs) for the next call of
    the same shape: that call resets the state in place and reseeds the sampler, so every call
    returns what a fresh call with its generator returns; another shape replaces the entry."""
    from seqsuite.core.generate import generate

    model = _tiny_unet()
    prompt = torch.full((2, 1), 128)
    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    cache: dict = {}
    with torch.no_grad():
        fresh = [generate(model, prompt, 40, use_cuda_graph=False, chunk=chunk, generator=gen(s)) for s in (5, 6)]
        fresh_one = generate(model, prompt[:1], 40, use_cuda_graph=False, chunk=chunk, generator=gen(6))
        first = generate(model, prompt, 40, use_cuda_graph=False, chunk=chunk, generator=gen(5), cache=cache)
        state = cache["state"]
        second = generate(model, prompt, 40, use_cuda_graph=False, chunk=chunk, generator=gen(6), cache=cache)
        assert cache["state"] is state  # reused, not reallocated
        other = generate(model, prompt[:1], 40, use_cuda_graph=False, chunk=chunk, generator=gen(6), cache=cache)
        assert cache["state"] is not state
    assert torch.equal(first, fresh[0]) and torch.equal(second, fresh[1])
    assert torch.equal(other, fresh_one)
    assert not torch.equal(fresh[0], fresh[1])
