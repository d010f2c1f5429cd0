"""Core model tests: recurrent step = parallel forward, causality, S4 paths, presets, I/O, learning."""
import itertools

import pytest
import torch

from seqsuite.core import CLAIMED_PARAMS, PRESETS, ModelConfig, build, build_model, count_params
from seqsuite.core.io import from_pretrained, save_pretrained
from seqsuite.core.s4 import S4
from seqsuite.errors import UserError
from seqsuite.kernels.reference import selective_scan_ref


def _cfg(**kw):
    base = dict(vocab_size=11, d_model=8, n_layers=1, d_state=4, s4_d_state=6, n_heads=2)
    base.update(kw)
    return ModelConfig(**base)


MAMBA_CONFIGS = (
    [("iso-" + k, _cfg(layer=k, n_layers=2)) for k in ("s6", "s4")]
    + [("iso-s4-real", _cfg(layer="s4", s4_mode="real", n_layers=2))]
    + [
        (f"unet-{o}-{i}-p{p}", _cfg(arch="unet", outer=o, inner=i, pool=(p, p)))
        for (o, i), p in itertools.product(itertools.product(("s4", "s6"), repeat=2), (2, 4))
    ]
)


def _step_all(model, tokens):
    state = model.allocate_state(tokens.shape[0], dtype=torch.float64)
    return torch.stack([model.step(tokens[:, t], state) for t in range(tokens.shape[1])], dim=1)


@pytest.mark.parametrize("name,cfg", MAMBA_CONFIGS, ids=[n for n, _ in MAMBA_CONFIGS])
@pytest.mark.parametrize("L", [16, 21])  # a multiple of the total pooling (4 or 16) and not
def test_step_equals_forward(name, cfg, L):
    torch.manual_seed(0)
    model = build_model(cfg).double().eval()
    tokens = torch.randint(0, cfg.vocab_size, (2, L))
    with torch.no_grad():
        par = model(tokens)
        rec = _step_all(model, tokens)
    assert (par - rec).abs().max().item() < 1e-8


@pytest.mark.parametrize("name,cfg", MAMBA_CONFIGS, ids=[n for n, _ in MAMBA_CONFIGS])
def test_causal(name, cfg):
    torch.manual_seed(1)
    model = build_model(cfg).double().eval()
    L, t = 24, 9
    a = torch.randint(0, cfg.vocab_size, (2, L))
    b = a.clone()
    b[:, t:] = torch.randint(0, cfg.vocab_size, (2, L - t))
    with torch.no_grad():
        ya, yb = model(a), model(b)
    assert torch.allclose(ya[:, :t], yb[:, :t], atol=1e-12, rtol=0)
    assert not torch.allclose(ya[:, t:], yb[:, t:])


@pytest.mark.parametrize("mode,init", [("complex", "lin"), ("complex", "inv"), ("complex", "legs"), ("real", "real")])
def test_s4_fft_equals_recurrence_and_scan(mode, init):
    torch.manual_seed(2)
    layer = S4(6, d_state=8, mode=mode, init=init).double()
    x = torch.randn(2, 6, 37, dtype=torch.float64)
    z = torch.randn_like(x)
    with torch.no_grad():
        y_fft = layer(x, z)
        y_scan = layer.forward_scan(x, z)
        state = layer.allocate_state(2, dtype=torch.float64)
        y_rec = torch.stack([layer.step(x[..., t], z[..., t], state) for t in range(37)], dim=-1)
    assert (y_fft - y_rec).abs().max() < 1e-9
    assert (y_fft - y_scan).abs().max() < 1e-9


def test_s4_legs_init_is_hippo_spectrum():
    from seqsuite.core.s4 import s4d_init

    A = s4d_init(4, "legs")
    assert torch.allclose(A.real, torch.full((4,), -0.5, dtype=torch.float64))
    assert (A.imag > 0).all() and (A.imag.diff() > 0).all()


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("layout", ["tv", "grouped", "ti"])
def test_reference_scan_gradcheck(complex_, layout):
    torch.manual_seed(3)
    b, d, L, N = 1, 4, 7, 3
    f64 = dict(dtype=torch.float64)
    u = torch.randn(b, d, L, **f64, requires_grad=True)
    delta = (0.5 * torch.randn(b, d, L, **f64)).requires_grad_()
    z = torch.randn(b, d, L, **f64, requires_grad=True)
    A_re = (-torch.rand(d, N, **f64) - 0.1).requires_grad_()
    A_im = torch.randn(d, N, **f64, requires_grad=True)
    shape = {"tv": (b, N, L), "grouped": (b, 2, N, L), "ti": (d, N)}[layout]
    B = torch.randn(*shape, **f64, requires_grad=True)
    C = torch.randn(*shape, **f64, requires_grad=True)
    D = torch.randn(d, **f64, requires_grad=True)
    bias = torch.randn(d, **f64, requires_grad=True)

    def f(u, delta, z, A_re, A_im, B, C, D, bias):
        A = torch.complex(A_re, A_im) if complex_ else A_re
        return selective_scan_ref(u, delta, A, B, C, D, z, bias, delta_softplus=True, chunk_size=3)

    assert torch.autograd.gradcheck(f, (u, delta, z, A_re, A_im, B, C, D, bias))


@pytest.mark.parametrize("name", sorted(CLAIMED_PARAMS))
def test_preset_param_counts(name):
    claimed = CLAIMED_PARAMS[name]
    with torch.device("meta"):
        n = count_params(build(name))
    assert abs(n - claimed) / claimed <= 0.10, f"{name}: {n} vs claimed {claimed}"


def test_tiny_presets_are_tiny():
    for name, cfg in PRESETS.items():
        if "tiny" in name:
            with torch.device("meta"):
                assert count_params(build(name)) <= 100_000, name


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(UserError, match="unknown preset"):
        build("hg38-mamba-1.4")


def test_save_load_roundtrip_and_bad_files(tmp_path):
    torch.manual_seed(4)
    model = build("audio-tiny").eval()
    tokens = torch.randint(0, 256, (2, 33))
    save_pretrained(model, tmp_path / "m")
    again = from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(model(tokens), again(tokens))
    # truncated weights
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated"):
        from_pretrained(tmp_path / "m")
    # a foreign file: a pickle is never unpickled, it is refused
    torch.save(model.state_dict(), w)
    with pytest.raises(UserError):
        from_pretrained(tmp_path / "m")
    # a config for another architecture
    save_pretrained(build("tiny"), tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "m" / "config.json").read_text())
    with pytest.raises(UserError, match="do not match"):
        from_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        from_pretrained(tmp_path / "other")


@pytest.mark.parametrize("preset", ["tiny", "audio-tiny"])
def test_tiny_learns_periodic_sequence(preset):
    torch.manual_seed(5)
    vocab = 256 if preset == "audio-tiny" else 12
    model = build(preset, vocab_size=vocab)
    period = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]) % vocab
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(300):
        offs = torch.randint(0, len(period), (8,))
        idx = (offs[:, None] + torch.arange(65)) % len(period)
        seq = period[idx]
        logits = model(seq[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[:, 12:].reshape(-1, vocab), seq[:, 13:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05, f"{preset} did not learn: loss {loss.item():.3f} after {step + 1} steps"


def test_generate_all_backbones_and_determinism():
    torch.manual_seed(6)
    for cfg in (_cfg(layer="s6"), _cfg(arch="unet", pool=(2, 2), outer="s4", inner="s6")):
        model = build_model(cfg).eval()
        prompt = torch.zeros(3, 2, dtype=torch.long)
        g1 = model.generate(prompt, 10, temperature=1.0, top_p=0.9, top_k=5, generator=torch.Generator().manual_seed(7))
        g2 = model.generate(prompt, 10, temperature=1.0, top_p=0.9, top_k=5, generator=torch.Generator().manual_seed(7))
        assert g1.shape == (3, 12) and torch.equal(g1, g2)
        assert int(g1.max()) < cfg.vocab_size
        greedy = model.generate(prompt, 5, temperature=0)
        with torch.no_grad():  # greedy sampling agrees with the parallel model's argmax
            assert torch.equal(model(greedy[:, :-1])[:, 1:].argmax(-1), greedy[:, 2:])


@pytest.mark.parametrize("preset", ["tiny", "audio-tiny", "hg38-hyenadna-1.4m"])
def test_grad_checkpointing_same_loss_and_gradients(preset):
    """Per-layer activation checkpointing changes memory, not the function or its gradients."""
    from seqsuite.core import build, set_grad_checkpointing

    kw = {"d_model": 32, "n_layers": 2} if preset.startswith("hg38") else {}
    torch.manual_seed(0)
    model = build(preset, **kw).double()
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (2, 48))

    def loss_and_grads():
        model.zero_grad()
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain = loss_and_grads()
    assert set_grad_checkpointing(model, True) > 0
    ck_loss, ck = loss_and_grads()
    assert torch.allclose(plain_loss, ck_loss, rtol=1e-12, atol=1e-12)
    assert plain.keys() == ck.keys() and len(plain) > 0
    for name in plain:
        assert torch.allclose(plain[name], ck[name], rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("preset", ["tiny", "hg38-transformerpp-1.4m", "hg38-hyenadna-1.4m"])
@pytest.mark.parametrize("Lp", [2, 3, 37])
def test_prefill_matches_recurrent_steps(preset, Lp):
    """prefill(prompt) gives the logits and leaves the state that Lp step() calls would, so the
    next steps agree too (short prompts shorter than the conv window included)."""
    from seqsuite.core import build

    kw = {"d_model": 32, "n_layers": 2} if preset.startswith("hg38") else {}
    torch.manual_seed(0)
    model = build(preset, **kw).double().eval()
    assert model.can_prefill()
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (2, Lp + 4))
    with torch.no_grad():
        st_step = model.allocate_state(2, dtype=torch.float64, max_len=Lp + 4)
        for t in range(Lp):
            want = model.step(tokens[:, t], st_step)
        st_pre = model.allocate_state(2, dtype=torch.float64, max_len=Lp + 4)
        got = model.prefill(tokens[:, :Lp], st_pre)
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)
        for t in range(Lp, Lp + 4):
            a, b = model.step(tokens[:, t], st_step), model.step(tokens[:, t], st_pre)
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), t


def test_unet_has_no_prefill():
    from seqsuite.core import build

    model = build("audio-tiny")
    assert not model.can_prefill()
    with pytest.raises(NotImplementedError):
        model.prefill(torch.zeros(1, 8, dtype=torch.long), model.allocate_state(1))


def test_unpool_expand_into_matches_expand():
    """UpPool.expand_into (the side stream's unpool into up_buf, no temporary) writes what
    expand returns."""
    from seqsuite.core.backbone import UpPool

    torch.manual_seed(0)
    up = UpPool(12, 5, 4)
    x = torch.randn(3, 12)
    out = torch.full((3, 4, 5), float("nan"))
    with torch.no_grad():  # as the recurrent steps run
        assert up.expand_into(x, out) is out
        assert torch.allclose(out, up.expand(x), atol=1e-6)


def test_step_weight_cache_follows_parameter_updates():
    """S6.step keeps A and the folded Δ/B/C matrix between steps; an in-place update of the
    parameters (an optimizer step) must be seen by the next step, in the same tensors."""
    from seqsuite.core import build

    torch.manual_seed(0)
    model = build("tiny").double().eval()
    tokens = torch.randint(0, model.config.vocab_size, (2, 6))

    def run():
        st = model.allocate_state(2, dtype=torch.float64)
        return torch.stack([model.step(tokens[:, t], st) for t in range(tokens.shape[1])])

    with torch.no_grad():
        before = run()
        s6 = model.backbone.layers[0].mixer.mixer
        cached = s6._step_cache.tensors["Wx"]
        for p in (s6.A_log, s6.x_proj.weight, s6.dt_proj.weight):
            p.mul_(0.9)
        after = run()
        assert s6._step_cache.tensors["Wx"] is cached  # refreshed in place (CUDA graphs keep their pointers)
        with torch.no_grad():
            want = model(tokens)[:, -1]
    assert not torch.allclose(before[-1], after[-1])
    assert torch.allclose(after[-1], want, rtol=1e-9, atol=1e-9)
