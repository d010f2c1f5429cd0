"""`seqsuite bench …` on the CPU at tiny shapes: every subcommand measures finite positive
numbers, writes valid JSON and, with --plot, a PNG. Timings themselves are never asserted."""
from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from seqsuite.cli.bench import app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_PAIR = ["--d-model", "16", "--n-layers", "2"]


def _invoke(args):
    result = CliRunner().invoke(app, args + ["--device", "cpu"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_outputs(tmp_path, name):
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert data["env"]["commit"] and data["env"]["torch"] == torch.__version__
    assert data["rows"] and all(r["status"] == "ok" for r in data["rows"]), data["rows"]
    return data


def test_bench_ops(tmp_path):
    out = _invoke(["ops", "--lengths", "32", "--dim", "16", "--heads", "2", "--budget", "0.01",
                   "--out", str(tmp_path / "ops.json"), "--plot"])
    assert "commit" in out and "bench ops: 6 cases measured" in out
    data = _check_outputs(tmp_path, "ops")
    assert {(r["op"], r["mode"]) for r in data["rows"]} == {
        (op, m) for op in ("scan", "attention", "fftconv") for m in ("fwd", "fwd+bwd")}
    assert all(_positive(r["ms"]) and r["repeats"] >= 1 for r in data["rows"])


def test_bench_train(tmp_path):
    _invoke(["train", "--lengths", "16,32", "--tokens", "64", *TINY_PAIR, "--budget", "0.01",
             "--out", str(tmp_path / "train.json"), "--plot"])
    data = _check_outputs(tmp_path, "train")
    rows = data["rows"]
    assert {r["family"] for r in rows} == {"mamba", "transformer++"}
    assert [r["batch"] for r in rows if r["family"] == "mamba"] == [4, 2]  # constant tokens per step
    assert all(_positive(r["tokens_per_s"]) and _positive(r["ms"]) for r in rows)


def test_bench_generate(tmp_path):
    _invoke(["generate", "--batches", "1,2", "--prompt-len", "4", "--gen-len", "3", *TINY_PAIR,
             "--audio", "sc09-tiny", "--audio-batches", "2", "--audio-samples", "20", "--budget", "0.01",
             "--out", str(tmp_path / "gen.json"), "--plot"])
    data = _check_outputs(tmp_path, "gen")
    lm = [r for r in data["rows"] if r["kind"] == "lm"]
    audio = [r for r in data["rows"] if r["kind"] == "audio"]
    assert len(lm) == 4 and len(audio) == 1
    assert all(_positive(r["tokens_per_s"]) and r["decode_tokens_per_s"] >= r["tokens_per_s"] for r in lm)
    a = audio[0]
    assert _positive(a["samples_per_s"]) and _positive(a["rtf"])
    assert a["x_realtime_total"] == pytest.approx(a["batch"] / a["rtf"])


def test_bench_memory(tmp_path):
    _invoke(["memory", "--batches", "1,2", "--seq-len", "16", *TINY_PAIR, "--vocab", "32",
             "--out", str(tmp_path / "mem.json"), "--plot"])
    data = _check_outputs(tmp_path, "mem")
    for r in data["rows"]:
        assert r["peak_gb"] is None  # the CPU has no peak counter: reported as n/a, not invented
        assert _positive(r["estimate_gb"]) and _positive(r["activations_gb"])
    for family in ("mamba", "transformer++"):  # saved activations grow with the batch
        acts = [r["activations_gb"] for r in data["rows"] if r["family"] == family]
        assert acts[1] > acts[0]


def test_bench_all_cpu(tmp_path, monkeypatch):
    """`all` runs every benchmark (scan is skipped without CUDA) into one JSON, plus PNGs."""
    from seqsuite.bench import generate, memory, ops, train

    monkeypatch.setattr(ops.OpsSettings, "default", classmethod(
        lambda cls, dev: cls(lengths=[32], dim=16, heads=2, repeats=1, budget_s=0.01)))
    monkeypatch.setattr(train.TrainSettings, "default", classmethod(
        lambda cls, dev: cls(lengths=[16], tokens=32, pairs=[("tiny", "tiny")], repeats=1, budget_s=0.01)))
    monkeypatch.setattr(generate.GenerateSettings, "default", classmethod(
        lambda cls, dev: cls(batches=[1], prompt_len=2, gen_len=2, pair=("tiny", "tiny"), audio=[],
                             graphs=False, repeats=1, budget_s=0.01)))
    monkeypatch.setattr(memory.MemorySettings, "default", classmethod(
        lambda cls, dev: cls(batches=[1], seq_len=16, d_model=16, n_layers=2, vocab=32)))
    out = _invoke(["all", "--out", str(tmp_path / "all.json"), "--plot"])
    data = json.loads((tmp_path / "all.json").read_text())
    assert data["scan"]["status"].startswith("skipped")
    for name in ("ops", "train", "generate", "memory"):
        assert data[name]["rows"] and all(r["status"] == "ok" for r in data[name]["rows"]), name
        assert (tmp_path / f"all-{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert "bench all: 4 of 5 benchmarks ran" in out


def test_bench_scan_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(app, ["scan"])
    assert result.exit_code != 0 and "CUDA" in str(result.exception)


def test_guarded_reports_oom_and_errors():
    from seqsuite.bench.common import guarded

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def broken():
        raise ValueError("bad shape")

    cpu = torch.device("cpu")
    assert guarded(oom, cpu) == {"status": "OOM"}
    assert guarded(broken, cpu)["status"].startswith("error: ValueError: bad shape")
    assert guarded(lambda: {"ms": 1.0}, cpu) == {"ms": 1.0, "status": "ok"}


def test_oom_skips_longer_lengths(monkeypatch):
    """After an OOM at some length, longer lengths of that op are reported as OOM, not run."""
    from seqsuite.bench import ops

    calls = []

    def fake_attention(s, L, device, mode):
        calls.append(L)
        if L >= 64:
            raise torch.OutOfMemoryError("out of memory")
        return lambda: None

    monkeypatch.setitem(ops.CASES, "attention", fake_attention)
    for op in ("scan", "fftconv"):  # only attention matters here
        monkeypatch.setitem(ops.CASES, op, lambda s, L, device, mode: (lambda: None))
    s = ops.OpsSettings(lengths=[32, 64, 128], dim=16, heads=2, repeats=1, budget_s=0.01)
    report = ops.run_ops(s, torch.device("cpu"))
    att = [r for r in report.rows if r["op"] == "attention" and r["mode"] == "fwd"]
    assert [r["status"] for r in att] == ["ok", "OOM", "OOM"]
    assert calls == [32, 64, 32, 64]  # fwd then fwd+bwd; 128 never tried
    assert "OOM" in report.table[-1]


def test_parse_lists_and_equal_size_pair():
    from seqsuite.bench.common import equal_size_configs, parse_int_list
    from seqsuite.core import build, count_params
    from seqsuite.errors import UserError

    assert parse_int_list("2^9..2^11") == [512, 1024, 2048]
    assert parse_int_list("9..10") == [512, 1024]
    assert parse_int_list("1, 16,64") == [1, 16, 64]
    assert parse_int_list(None) is None
    with pytest.raises(UserError):
        parse_int_list("a,b")
    m, a = equal_size_configs(128, 8, vocab_size=12)
    assert a.layer == "attn" and a.n_layers == 4 and a.n_heads == 2
    with torch.device("meta"):
        pm, pa = count_params(build(m)), count_params(build(a))
    assert 0.8 < pm / pa < 1.25


def test_reset_state_zeroes_in_place():
    from seqsuite.bench.generate import reset_state

    k = torch.ones(2, 3)
    st = {"t": 5, "root": {"down": [{"h": k}], "pos": torch.tensor(7)}}
    reset_state(st)
    assert st["t"] == 0 and int(st["root"]["pos"]) == 0
    assert st["root"]["down"][0]["h"] is k and k.abs().sum() == 0


def test_cuda_without_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from seqsuite.bench.common import pick_device
    from seqsuite.errors import UserError

    with pytest.raises(UserError):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_gpu_smoke(tmp_path):
    """Every GPU path (flash attention, Triton scan, bf16 autocast, CUDA graphs, peak memory) at
    small shapes, so `pytest -m gpu` checks the harness before a full `bench all` run."""
    cuda = ["--device", "cuda"]
    runner = CliRunner()
    cmds = {
        "ops": ["ops", "--lengths", "512,1024", "--dim", "128", "--heads", "2", "--budget", "0.05"],
        "train": ["train", "--lengths", "256,512", "--tokens", "1024", "--pairs",
                  "hg38-mamba-1.4m:hg38-transformerpp-1.4m", "--budget", "0.05"],
        "generate": ["generate", "--batches", "1,4", "--prompt-len", "32", "--gen-len", "8", "--pair",
                     "hg38-mamba-1.4m:hg38-transformerpp-1.4m", "--audio", "sc09-tiny", "--audio-batches", "2",
                     "--audio-samples", "64", "--budget", "0.05"],
        "memory": ["memory", "--batches", "1,2", "--seq-len", "256", "--d-model", "128", "--n-layers", "2",
                   "--vocab", "256"],
    }
    for name, args in cmds.items():
        result = runner.invoke(app, args + cuda + ["--out", str(tmp_path / f"{name}.json"), "--plot"])
        assert result.exit_code == 0, f"{name}: {result.output}\n{result.exception!r}"
        data = _check_outputs(tmp_path, name)
        assert data["env"]["device_type"] == "cuda"
    mem = json.loads((tmp_path / "memory.json").read_text())
    assert all(_positive(r["peak_gb"]) for r in mem["rows"])
    gen = json.loads((tmp_path / "generate.json").read_text())
    assert gen["settings"]["cuda_graphs"] is True


def test_git_commit_names_the_checkout(monkeypatch):
    """The banner's commit: $SEQSUITE_COMMIT when set; else the checkout's short hash, with
    '+changes' when tracked files differ from it (a stale copy's .git, uncommitted edits)."""
    import re

    from seqsuite.bench.common import git_commit

    monkeypatch.setenv("SEQSUITE_COMMIT", "abc1234")
    assert git_commit() == "abc1234"
    monkeypatch.delenv("SEQSUITE_COMMIT")
    assert re.fullmatch(r"[0-9a-f]{4,40}(\+changes)?|unknown", git_commit())
