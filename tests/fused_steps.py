"""Shared by the fused-step tests (interpreter and GPU): one model stepped twice in lockstep."""
from __future__ import annotations


def fused_and_layer_steps(monkeypatch, model, toks, st_fused, st_layers):
    """Step `model` over toks (steps, batch) on two states, with the fused stack step forced
    on (st_fused) and off (st_layers); yields (t, fused logits, per-layer logits)."""
    for t in range(toks.shape[0]):
        monkeypatch.setenv("SEQSUITE_FUSED_STEP", "1")
        a = model.step(toks[t], st_fused)
        monkeypatch.setenv("SEQSUITE_FUSED_STEP", "0")
        b = model.step(toks[t], st_layers)
        yield t, a, b
