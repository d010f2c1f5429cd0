"""A tiny byte model trained on the demo corpus with the shared loop: held-out bits per byte.

Prints the model's figure beside gzip/bz2/xz and an order-0 model on the same held-out bytes.
On CPU in well under a minute the model beats the order-0 floor by a wide margin; beating
gzip needs far more training than a unit test can afford (see the bytes report for figures).
"""
import numpy as np
import pytest
import torch

from seqsuite.bytes import BytesLMTask, evaluate_bpb, make_demo, unigram_bpb


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("bytes-demo"), max_bytes=300_000, verbose=False)


def test_tiny_transformer_learns_bytes(corpus, tmp_path):
    from seqsuite.core import build, count_params
    from seqsuite.train import TrainConfig, train

    torch.manual_seed(0)
    task = BytesLMTask.from_paths([corpus], valid_frac=0.1, test_frac=0.1)
    model = build("bytes-tiny", layer="attn", n_heads=2, max_len=64)
    assert count_params(model) <= 100_000
    cfg = TrainConfig(steps=80, batch_size=8, seq_len=64, lr=1e-2, device="cpu", out_dir=str(tmp_path / "run"),
                      eval_every=0, eval_batches=1, save_every=0, progress=False, tensorboard=False, plot=False)
    summary = train(model, task, cfg, task_info=task.task_info())
    assert summary["step"] == 80
    held_out = task.data["test"][:8_000]
    r = evaluate_bpb(model, held_out, seq_len=64, batch_size=64, context=16)
    floor = unigram_bpb(task.data["train"], held_out)
    print(f"\nheld-out {held_out.size} bytes: model {r['bpb']:.3f} bits/byte, order-0 {floor:.3f}, "
          f"gzip {r['gzip_bpb']:.3f}, bz2 {r['bz2_bpb']:.3f}, xz {r['lzma_bpb']:.3f}")
    assert 3.0 < floor < 6.5 and r["gzip_bpb"] < floor
    assert r["bpb"] < floor - 0.4
