"""The fused Mamba-S6 stack step (kernels/triton_mamba_step.py via core/fused_step.py) against
the layers' own `step`, on CPU under TRITON_INTERPRET=1 (tests/test_kernels_gpu.py runs it on
the GPU): logits and every state after several steps, isotropic and U-Net, widths that are not
powers of two."""
from __future__ import annotations

import pytest
import torch

from fused_steps import fused_and_layer_steps
from triton_interp import skip_on_gpu, use_interpreter

pytestmark = skip_on_gpu


@pytest.fixture(autouse=True)
def interp(monkeypatch):
    from seqsuite.kernels import triton_mamba_step

    use_interpreter(triton_mamba_step._mamba_stack_step_kernel)
    use_interpreter(triton_mamba_step._mamba_stack_step_oneshot_kernel)
    use_interpreter(triton_mamba_step._mamba_stack_step_split_kernel)
    monkeypatch.setenv("SEQSUITE_FUSED_STEP", "1")


def _flat(st):
    if isinstance(st, dict):
        return [t for k in sorted(st) for t in _flat(st[k])]
    if isinstance(st, list):
        return [t for v in st for t in _flat(v)]
    return [st] if isinstance(st, torch.Tensor) else []


def _perturb(model):
    """Random (not initial) values for every parameter, so D, biases and norms all matter."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.mark.parametrize("kernel", ["tiled", "oneshot", "split", "split-noprefetch", "oneshot-io0"])
@pytest.mark.parametrize("preset,overrides", [
    ("sc09-tiny", {}),
    ("bytes-tiny", {"d_model": 24, "n_layers": 2, "d_state": 5}),
])
def test_fused_stack_step_matches_layer_steps(monkeypatch, preset, overrides, kernel):
    """The three kernels: tiled (any width), one-shot (narrow stacks) and split (here with one
    program per sequence: the interpreter runs programs one after another, so more would wait
    forever at the first barrier; the GPU tests run several), the split kernel with and without
    the next layer's loads issued before the last barrier of a layer. model.step fuses the
    embedding gather into the first stack kernel and the final RMSNorm into the last
    (SEQSUITE_FUSED_IO=0 leaves them to torch); the layers' path does them in torch."""
    from seqsuite.core import build
    from seqsuite.core.fused_step import _stacked_states

    monkeypatch.setenv("SEQSUITE_FUSED_ONESHOT", "1" if kernel.startswith("oneshot") else "0")
    if kernel == "oneshot-io0":  # the embedding gather and final norm left to torch
        monkeypatch.setenv("SEQSUITE_FUSED_IO", "0")
    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT", "1" if kernel.startswith("split") else "0")
    if kernel == "split-noprefetch":
        monkeypatch.setenv("SEQSUITE_FUSED_SPLIT_PREFETCH", "0")

    torch.manual_seed(0)
    model = build(preset, **overrides).eval()
    _perturb(model)
    batch, steps = 3, 20
    st_f = model.allocate_state(batch)
    st_r = model.allocate_state(batch)
    assert _stacked_states(st_f["root"]["down"] if "root" in st_f else st_f["layers"]) is not None
    toks = torch.randint(0, model.config.vocab_size, (steps, batch), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for _, a, b in fused_and_layer_steps(monkeypatch, model, toks, st_f, st_r):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for x, y in zip(_flat(st_f), _flat(st_r)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_tile_override_keeps_values(monkeypatch):
    """SEQSUITE_FUSED_TILES (tuning sweeps) changes the tiling, not the result: small tiles
    force several iterations of every inner loop."""
    from seqsuite.core import build
    from seqsuite.kernels.triton_mamba_step import _tiles

    monkeypatch.setenv("SEQSUITE_FUSED_ONESHOT", "0")  # the tiles are the tiled kernel's
    monkeypatch.setenv("SEQSUITE_FUSED_TILES", "8,16,8,4")
    assert _tiles(24, 48, 5, 2) == [8, 16, 8, 4]
    torch.manual_seed(0)
    model = build("bytes-tiny", d_model=24, n_layers=2, d_state=5).eval()
    _perturb(model)
    st_f, st_r = model.allocate_state(2), model.allocate_state(2)
    toks = torch.randint(0, 256, (6, 2), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for _, a, b in fused_and_layer_steps(monkeypatch, model, toks, st_f, st_r):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    monkeypatch.setenv("SEQSUITE_FUSED_TILES", "8,16")
    with pytest.raises(ValueError, match="BI,BK,BKO,warps"):
        _tiles(24, 48, 5, 2)


def test_weight_cache_follows_parameter_updates(monkeypatch):
    from seqsuite.core import build

    monkeypatch.setenv("SEQSUITE_FUSED_ONESHOT", "0")  # the tiled kernel: it uses a scratch buffer

    torch.manual_seed(0)
    model = build("bytes-tiny", n_layers=2, d_model=16, d_state=4).eval()
    st = model.allocate_state(2)
    tok = torch.tensor([3, 7])
    with torch.no_grad():
        model.step(tok, st)
        cache = model.backbone.layers._fused_step_cache
        w_before = cache.weights.tensors["w_out"]
        model.backbone.layers[1].mixer.out_proj.weight.mul_(2.0)
        model.step(tok, st)
    assert cache.weights.tensors["w_out"] is w_before  # refreshed in place (a captured graph keeps its pointers)
    torch.testing.assert_close(cache.weights.tensors["w_out"][1], model.backbone.layers[1].mixer.out_proj.weight)
    key = ("scratch", (2, 96), torch.float32, tok.device)
    scratch = cache.buffers[key]
    buf = cache.buffer_fn(tok.device)
    assert buf("scratch", (2, 96), torch.float32) is scratch
    with torch.no_grad():  # another batch size gets its own buffers; the first ones stay
        model.step(torch.tensor([1, 2, 3]), model.allocate_state(3))
    assert buf("scratch", (2, 96), torch.float32) is scratch and len(cache.buffers) >= 2


def test_split_policy(monkeypatch):
    """Which stacks the split kernel takes: widths beyond the one-shot kernel, while batch x
    programs stays within what may run at once; SEQSUITE_FUSED_SPLIT forces or stops it."""
    from seqsuite.kernels.triton_mamba_step import SPLIT_MAX_PROGRAMS, split_programs

    assert split_programs(1, 64, 128) == 0  # one-shot width
    assert split_programs(1, 128, 256) == 8 and split_programs(1, 96, 192) == 8
    assert split_programs(SPLIT_MAX_PROGRAMS // 8, 128, 256) == 8
    assert split_programs(SPLIT_MAX_PROGRAMS // 8 + 1, 128, 256) == 0  # too many programs
    assert split_programs(1, 128, 256, interpreted=True) == 0
    monkeypatch.setenv("SEQSUITE_FUSED_ONESHOT", "0")
    assert split_programs(1, 64, 128) == 2
    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT", "4")
    assert split_programs(1000, 64, 128) == 4
    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT", "3")
    with pytest.raises(ValueError, match="power of two"):
        split_programs(1, 64, 128)


def test_split_policy_on_clusters(monkeypatch):
    """Where programs meet as clusters (Hopper): narrow stacks split too up to batch 16, and
    batch x programs may reach CLUSTER_MAX_PROGRAMS; beyond 16 programs per sequence (no
    cluster) the flag bound holds; SEQSUITE_FUSED_SPLIT_BARRIER=flags restores that policy."""
    import seqsuite.kernels.triton_mamba_step as m

    monkeypatch.setattr(m, "_cluster_barrier", lambda S, device: 0 if S > 16 else 2)
    assert m.split_programs(1, 64, 128) == 2 and m.split_programs(16, 64, 128) == 2
    assert m.split_programs(17, 64, 128) == 0  # the one-shot kernel
    assert m.split_programs(m.CLUSTER_MAX_PROGRAMS // 8, 128, 256) == 8
    assert m.split_programs(m.CLUSTER_MAX_PROGRAMS // 8 + 1, 128, 256) == 0
    assert m.split_programs(1, 256, 512) == 16  # one cluster at twice the tile, not 32 programs on flags
    assert m.split_programs(1, 512, 1024) == 64 and m.split_programs(m.SPLIT_MAX_PROGRAMS // 64 + 1, 512, 1024) == 0
    monkeypatch.setenv("SEQSUITE_FUSED_ONESHOT", "1")
    assert m.split_programs(1, 64, 128) == 0
    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT_MAX_PROGRAMS", "8")
    assert m.split_programs(1, 128, 256) == 8 and m.split_programs(2, 128, 256) == 0
    monkeypatch.undo()
    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT_BARRIER", "fast")
    with pytest.raises(ValueError, match="use flags"):
        m._cluster_barrier(8, "cpu")
    monkeypatch.setenv("SEQSUITE_FUSED_SPLIT_BARRIER", "cluster")
    assert m._cluster_barrier(8, "cpu") == 0 and m._cluster_barrier(8, None) == 0  # clusters are CUDA's
