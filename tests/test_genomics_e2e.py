"""Genomics end to end on the tiny demo: pretrain -> evaluate, finetune-species -> classify, CLI."""
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from seqsuite.errors import UserError
from seqsuite.genomics.cli import app
from seqsuite.genomics.demo import SPECIES, make_demo
from seqsuite.genomics.tasks import classify, evaluate_run, finetune_species, pretrain


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    make_demo(out, size="tiny", seed=1, verbose=False)
    return out


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQSUITE_CACHE", str(tmp_path / "cache"))


FAST = dict(device="cpu", eval_every=0, eval_batches=1, save_every=0, progress=False,
            tensorboard=False, plot=False)


def test_pretrain_then_evaluate(demo, tmp_path):
    run = tmp_path / "lm"
    s = pretrain(demo / "genome.fa", demo / "intervals.bed", out=run, preset="tiny", steps=2,
                 seq_len=64, batch_size=2, lr=5e-3, **FAST)
    assert s["step"] == 2 and math.isfinite(s["final_loss"])
    r = evaluate_run(run, "test", seq_len=64, n_windows=2, batch_size=2, device="cpu")
    for key in ("loss", "bits_per_base", "perplexity", "markov_bits_per_base"):
        assert math.isfinite(r[key]) and r[key] > 0
    assert r["bases"] == 2 * 64
    # a species classifier initialised from this LM run: embedding and backbone copied
    from seqsuite.genomics.tasks import _model_for, load_model

    lm, info = load_model(run)
    assert info["kind"] == "genome_lm"
    clf = _model_for(None, 9, init=run, classify_labels=["a", "b"])
    assert clf.config.task == "classify" and clf.config.labels == ["a", "b"]
    assert (clf.embedding.weight == lm.embedding.weight).all()
    with pytest.raises(UserError, match="already holds a run"):
        pretrain(demo / "genome.fa", demo / "intervals.bed", out=run, preset="tiny", steps=2,
                 seq_len=64, batch_size=2, **FAST)


def test_finetune_species_then_classify(demo, tmp_path):
    run = tmp_path / "sp"
    s = finetune_species(demo / "manifest.tsv", out=run, preset="tiny", steps=2, seq_len=64,
                         batch_size=5, lr=1e-3, test_windows=10, **FAST)
    assert 0.0 <= s["test_accuracy"] <= 1.0 and (run / "confusion_test.png").exists()
    report = json.loads((run / "metrics_test.json").read_text())
    assert report["labels"] == list(SPECIES) and np.array(report["confusion"]).sum() == 10
    fa = tmp_path / "query.fa"
    lines = (demo / "apes" / "orangutan.fa").read_text().splitlines()[1:]
    first = next(i for i in range(len(lines)) if "N" not in "".join(lines[i:i + 29]).upper())
    body = "".join(lines[first:first + 29])
    fa.write_text(f">q1\n{body}\n>tiny\nACGT\n>gap\n{'N' * 200}\n")
    for model in (run, run / "export"):  # a run directory and an exported model folder
        text, rows = classify(fa, model, window=64, fmt="tsv", device="cpu")
        assert rows[0]["windows"] > 0 and rows[0]["predicted"] in SPECIES
        assert abs(sum(rows[0][f"prob_{sp}"] for sp in SPECIES) - 1) < 1e-4
        assert rows[1]["predicted"] is None and rows[2]["predicted"] is None
        assert "nan" not in text.lower()
    _, rows = classify(fa, run / "export", fmt="json", device="cpu")  # window from the model
    assert rows[0]["windows"] == -(-len(body) // 64)


def test_cli_make_demo_and_user_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["make-demo", str(tmp_path / "d"), "--size", "tiny"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "genome.fa.fai").exists() and "make-demo:" in res.output
    res = runner.invoke(app, ["pretrain", "--fasta", str(tmp_path / "missing.fa"), "--steps", "1",
                              "--out", str(tmp_path / "r")])
    assert isinstance(res.exception, UserError) and "not found" in str(res.exception)
    res = runner.invoke(app, ["classify", str(tmp_path / "d" / "genome.fa"), "--model", str(tmp_path / "nope")])
    assert isinstance(res.exception, UserError)
