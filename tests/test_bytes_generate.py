"""Bytes generation: streaming UTF-8 through a model's recurrent step; the CLI end to end."""
import numpy as np
import pytest
import torch

from seqsuite.bytes import generate_text, stream_bytes


class ScriptLM(torch.nn.Module):
    """A stand-in LM whose step puts all mass on the next byte of a fixed script (state in place)."""

    def __init__(self, script: bytes):
        super().__init__()
        self.script = torch.tensor(list(script), dtype=torch.long)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def allocate_state(self, batch, device=None, dtype=None, max_len=None):
        self.max_len_seen = max_len
        return {"t": torch.zeros((), dtype=torch.long), "seen": torch.zeros(batch, 0, dtype=torch.long)}

    def step(self, token, state):
        nxt = self.script[int(state["t"]) % len(self.script)]
        state["t"].add_(1)
        logits = torch.full((token.shape[0], 256), -1e9)
        logits[:, nxt] = 0.0
        return logits


def test_generate_streams_whole_characters_only():
    text = "ab€c😀d\n"
    script = b"P" + text.encode()  # the first step consumes the 1-byte prompt
    model = ScriptLM(script[1:] * 3)
    chunks = []
    out = generate_text(model, "P", max_bytes=len(text.encode()), temperature=0.0, on_text=chunks.append)
    assert out == text
    assert "".join(chunks) == text
    assert "€" in chunks and "😀" in chunks  # multi-byte characters arrive whole, in one chunk
    assert model.max_len_seen == 1 + len(text.encode())


def test_generate_cut_mid_character_is_replaced_at_the_end():
    model = ScriptLM("x€".encode())
    chunks = []
    out = generate_text(model, "x", max_bytes=3, temperature=0.0, on_text=chunks.append)
    # 'x' then the first two of the three bytes of '€': held back, then replaced at the end
    assert chunks == ["x", "\ufffd"] and out == "x\ufffd"


def test_sampling_is_seeded():
    torch.manual_seed(0)
    from seqsuite.core import build

    model = build("bytes-tiny", layer="attn", n_heads=2, max_len=64)
    a = list(stream_bytes(model, "def ", 20, temperature=1.0, top_p=0.9, seed=5))
    b = list(stream_bytes(model, "def ", 20, temperature=1.0, top_p=0.9, seed=5))
    c = list(stream_bytes(model, "def ", 20, temperature=1.0, top_p=0.9, seed=6))
    assert a == b and a != c and all(0 <= x < 256 for x in a)


def test_cli_pretrain_evaluate_generate(tmp_path):
    """`seqsuite bytes pretrain / evaluate / generate` end to end on a few small files (CPU, seconds)."""
    from typer.testing import CliRunner

    from seqsuite.bytes.cli import app

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "délta", "€uro"]
    for i in range(6):
        (data / f"f{i}.txt").write_text(" ".join(rng.choice(words, 150)))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["pretrain", str(data), "--out", str(run), "--steps", "2", "--seq-len", "16",
                                 "--batch-size", "2", "--device", "cpu", "--preset", "bytes-tiny"])
    assert r.exit_code == 0, r.output
    assert "pretrain: 2 steps" in r.output and (run / "last" / "model.safetensors").exists()
    r = CliRunner().invoke(app, ["evaluate", str(run), "--seq-len", "64", "--batch-size", "32"])
    assert r.exit_code == 0, r.output
    assert "bits/byte" in r.output and "gzip" in r.output
    r = CliRunner().invoke(app, ["evaluate", str(run), str(data / "f0.txt"), "--json", "--seq-len", "64",
                                 "--batch-size", "32"])
    assert r.exit_code == 0 and '"bpb"' in r.output
    r = CliRunner().invoke(app, ["generate", str(run), "--prompt", "gam", "--max-bytes", "12", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("gam") and "generate: 12 bytes" in r.output
