"""Audio models end to end on CPU at toy sizes: recurrent step vs parallel forward, seeded
generation, a few training steps through the recipe, outputs of generate, the classifier and
the sample metrics, and the CLI."""
import json

import numpy as np
import pytest
import torch
from test_audio_data import make_sc09
from typer.testing import CliRunner

from seqsuite.audio.classifier import (ClassifierConfig, ClassifierTrainConfig, classify,
                                       load_classifier, train_classifier)
from seqsuite.audio.cli import app
from seqsuite.audio.data import SILENCE
from seqsuite.audio.generate import generate_audio, generate_tokens
from seqsuite.audio.recipes import (PretrainOptions, audio_preset, build_audio_model, evaluate_run,
                                    evaluate_samples, export_model, format_table, is_samples_dir,
                                    load_model, pretrain)
from seqsuite.core import build
from seqsuite.errors import UserError

SMALL_CLS = ClassifierConfig(width=4, blocks=(1, 1))


@pytest.fixture(scope="module")
def sc09_dir(tmp_path_factory):
    return make_sc09(tmp_path_factory.mktemp("audio") / "sc09")


@pytest.fixture(scope="module")
def run_dir(sc09_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("audio") / "run"
    # `tiny` is the dataset's tiny U-Net in the audio commands (sc09-tiny here)
    res = pretrain(PretrainOptions(dataset="sc09", data=str(sc09_dir), preset="tiny", out=str(out),
                                   steps=3, seq_len=64, batch_size=2, device="cpu", eval_every=3,
                                   eval_samples=256, preview=False))
    assert np.isfinite(res["valid"]["bits_per_sample"]) and res["valid"]["samples"] == 256
    return out


def test_tiny_means_the_datasets_tiny_unet():
    assert audio_preset("tiny", "youtubemix") == "audio-tiny"
    assert audio_preset("tiny", "sc09") == "sc09-tiny"
    assert audio_preset(None, "youtubemix") == "youtubemix-unet"
    assert audio_preset("sc09-unet-large", "sc09") == "sc09-unet-large"
    with pytest.raises(UserError, match="not 256 mu-law classes"):
        build_audio_model("genomics-tiny")


def test_step_matches_parallel_forward_on_a_teacher_forced_prefix():
    torch.manual_seed(0)
    model = build("sc09-tiny").eval()
    tokens = torch.randint(0, 256, (2, 48))
    tokens[:, 0] = SILENCE
    with torch.no_grad():
        full = model(tokens)
        state = model.allocate_state(2)
        steps = torch.stack([model.step(tokens[:, t], state) for t in range(48)], 1)
    assert torch.allclose(full, steps, atol=1e-4, rtol=1e-4)


def test_generation_is_deterministic_per_seed():
    torch.manual_seed(0)
    model = build("sc09-tiny").eval()
    a = generate_tokens(model, 3, 20, batch=2, seed=5, progress=False)
    b = generate_tokens(model, 3, 20, batch=2, seed=5, progress=False)
    c = generate_tokens(model, 3, 20, batch=2, seed=6, progress=False)
    assert a.shape == (3, 21) and np.all(a[:, 0] == SILENCE)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_pretrain_writes_a_run_that_evaluates(run_dir, sc09_dir, tmp_path):
    summary = json.loads((run_dir / "audio_eval.json").read_text())
    assert summary["preset"] == "sc09-tiny" and summary["unigram_valid"]["samples"] == 256
    model, info = load_model(run_dir)
    assert info["task"]["dataset"] == "sc09"
    res = evaluate_run(run_dir, split="test", seq_len=64, max_samples=200, device="cpu")
    assert res["samples"] == 200 and 0 < res["bits_per_sample"] < 12
    assert not is_samples_dir(run_dir)
    exported = export_model(run_dir, tmp_path / "exported")
    again, _ = load_model(tmp_path / "exported")
    tokens = torch.randint(0, 256, (1, 32))
    with torch.no_grad():
        # bf16 storage: the exported model agrees with the run to bf16 precision
        assert torch.allclose(model(tokens).softmax(-1), again(tokens).softmax(-1), atol=2e-2)
    assert exported["bytes"] < 4 * exported["params"]


def test_generate_audio_outputs_and_sample_metrics(run_dir, sc09_dir, tmp_path):
    model, _ = load_model(run_dir)
    out = tmp_path / "samples"
    man = generate_audio(model, num=5, seconds=0.002, batch=3, out_dir=out, seed=1,
                         model_name="tiny", progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.endswith(".wav")] == [f"sample_{i:05d}.wav" for i in range(5)]
    assert len([n for n in names if n.startswith("sample_") and n.endswith(".png")]) == 5
    assert {"grid.png", "manifest.json", "tokens.npy"} <= set(names)
    assert man["samples_per_s"] > 0 and len(man["samples"]) == 5 and man["seed"] == 1
    assert np.load(out / "tokens.npy").shape == (5, 33)
    assert is_samples_dir(out)

    cls = tmp_path / "cls"
    m = train_classifier(sc09_dir, cls, ClassifierTrainConfig(steps=3, batch_size=8, device="cpu",
                                                             model=SMALL_CLS))
    assert 0 <= m["test_accuracy"] <= 1 and m["test_clips"] == 10
    res = evaluate_samples(out, classifier=str(cls), reference=str(sc09_dir), device="cpu")
    rows = res["rows"]
    assert rows["samples"]["n"] == 5 and rows["samples (likelihood-filtered)"]["n"] == 3
    assert rows["real train set"]["fid"] == pytest.approx(0.0, abs=1e-6)
    assert "FID" in format_table(res) and (out / "metrics.json").exists()


def test_classifier_save_load_round_trip(sc09_dir, tmp_path):
    train_classifier(sc09_dir, tmp_path / "c", ClassifierTrainConfig(steps=2, batch_size=4, device="cpu",
                                                                     model=SMALL_CLS))
    a, b = load_classifier(tmp_path / "c"), load_classifier(tmp_path / "c")
    waves = np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32) * 0.1
    fa, pa = classify(a, waves)
    fb, pb = classify(b, waves)
    assert fa.shape == (3, a.feature_dim) and pa.shape == (3, 10)
    assert np.allclose(pa.sum(1), 1) and np.allclose(fa, fb) and np.allclose(pa, pb)


def test_cli_evaluate_detects_run_vs_samples_and_errors_cleanly(run_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(run_dir), "--seq-len", "64", "--max-samples", "128",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "bits/sample" in r.output and "unigram" in r.output
    r = runner.invoke(app, ["make-demo", "music", str(tmp_path / "m"), "--pieces", "2", "--seconds", "1.5"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "m").glob("*.wav"))) == 2
    r = runner.invoke(app, ["make-demo", "drums", str(tmp_path / "x")])
    assert r.exit_code != 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generation_is_deterministic_and_writes_outputs(tmp_path):
    torch.manual_seed(0)
    model = build("sc09-tiny").cuda().eval()
    a = generate_tokens(model, 4, 256, batch=4, seed=3, progress=False)
    b = generate_tokens(model, 4, 256, batch=4, seed=3, progress=False)
    assert np.array_equal(a, b)
    man = generate_audio(model, num=4, seconds=0.05, batch=4, out_dir=tmp_path, seed=0, progress=False)
    assert man["samples_per_s"] > 0 and (tmp_path / "grid.png").exists()
