"""Bytes domain: file splits, UTF-8 streaming, compressor baselines, task sampling, evaluation."""
import gzip

import numpy as np
import pytest
import torch

from seqsuite.bytes import BytesLMTask, Utf8Stream, compressor_bpb, evaluate_bpb, load_bytes, make_demo
from seqsuite.bytes.data import list_files, named_files, split_files
from seqsuite.errors import UserError


def write_files(root, n, size=300, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = root / f"d{i % 3}" / f"f{i:02d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes(rng.integers(97, 123, size, dtype=np.uint8)))
        paths.append(p)
    return paths


def test_split_by_file_is_deterministic_and_disjoint(tmp_path, monkeypatch):
    write_files(tmp_path, 60)
    (tmp_path / ".hidden").write_text("skip me")
    named = named_files([tmp_path])
    assert len(named) == 60 and named[0][0] == "d0/f00.txt"
    a, b = split_files(named, 0.1, 0.1), split_files(list(reversed(named)), 0.1, 0.1)
    assert a == b
    assert sorted(a["train"] + a["valid"] + a["test"]) == [f for _, f in named]
    assert not set(a["train"]) & set(a["test"]) and not set(a["valid"]) & set(a["test"])
    assert 1 <= len(a["valid"]) <= 15 and 1 <= len(a["test"]) <= 15
    # adding files leaves every old file in its split
    write_files(tmp_path / "more", 10, seed=1)
    c = split_files(named_files([tmp_path]), 0.1, 0.1)
    for split in ("train", "valid", "test"):
        assert set(a[split]) <= set(c[split])
    # the same folder reached by another path gives the same split (names are relative to it)
    monkeypatch.chdir(tmp_path)
    far = {s: [f.name for f in v] for s, v in split_files(named_files([tmp_path / "d1"]), 0.2, 0.2).items()}
    near = {s: [f.name for f in v] for s, v in split_files(named_files(["d1"]), 0.2, 0.2).items()}
    assert far == near
    data = load_bytes([tmp_path], 0.1, 0.1)
    assert sum(data[s].size for s in ("train", "valid", "test")) == 70 * 300
    assert data["test"].dtype == np.uint8 and len(data.sources["test"]) >= 1


def test_split_few_files_gets_one_file_per_split(tmp_path):
    paths = write_files(tmp_path, 3)
    groups = split_files(named_files(paths), 0.05, 0.05)
    assert all(len(groups[s]) == 1 for s in ("train", "valid", "test"))


def test_split_single_file_by_offset(tmp_path):
    p = tmp_path / "one.bin"
    raw = bytes(range(256)) * 40
    p.write_bytes(raw)
    data = load_bytes([p])
    joined = np.concatenate([data["train"], data["valid"], data["test"]])
    assert joined.tobytes() == raw
    assert data["train"].size == int(len(raw) * 0.9)
    assert data.sources["test"][0].endswith(f"[{int(len(raw) * 0.95)}:{len(raw)}]")


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_bytes([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no files"):
        load_bytes([tmp_path / "empty"])


def test_utf8_stream_holds_back_partial_characters():
    text = "aé€😀 z"
    raw = text.encode("utf-8")
    dec = Utf8Stream()
    outs = [dec.feed(b) for b in raw]
    assert "".join(outs) + dec.finish() == text
    # the 4-byte emoji appears only when its last byte arrives
    i = raw.index("😀".encode())
    assert outs[i:i + 3] == ["", "", ""] and outs[i + 3] == "😀"
    # split in the middle of '€' across feeds of several bytes
    dec = Utf8Stream()
    assert dec.feed(raw[:4]) == "aé" and dec.feed(raw[4:6]) == "€"


def test_utf8_stream_replaces_invalid_and_unfinished():
    dec = Utf8Stream()
    out = dec.feed(b"ok\xff!") + dec.feed(b"\xe2\x82")
    assert out == "ok\ufffd!"
    assert dec.finish() == "\ufffd"


def test_compressor_baseline_matches_gzip():
    data = (b"the quick brown fox jumps over the lazy dog. " * 200) + bytes(range(256))
    bpb = compressor_bpb(data)
    assert bpb["gzip"] == pytest.approx(8 * len(gzip.compress(data, 9, mtime=0)) / len(data))
    assert 0 < bpb["gzip"] < 1.0 and 0 < bpb["lzma"] < 8 and 0 < bpb["bz2"] < 8
    noise = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8)
    assert compressor_bpb(noise, which=("gzip",))["gzip"] > 7.9


def test_task_sample_windows(tmp_path):
    write_files(tmp_path, 10, size=500)
    task = BytesLMTask.from_paths([tmp_path], 0.1, 0.1)
    ex = task.sample("train", np.random.default_rng(0), 64)
    assert ex["tokens"].dtype == np.int64 and ex["tokens"].shape == (64,)
    assert np.array_equal(ex["tokens"][1:], ex["targets"][:-1])
    again = task.sample("train", np.random.default_rng(0), 64)
    assert np.array_equal(ex["tokens"], again["tokens"])
    with pytest.raises(UserError, match="seq-len"):
        task.sample("test", np.random.default_rng(0), 5000)
    assert task.task_info()["data"]["paths"] == [str(tmp_path.resolve())]


class UniformLM(torch.nn.Module):
    """Predicts every byte with probability 1/256: exactly 8 bits per byte."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(256))

    def forward(self, tokens):
        return self.w.expand(*tokens.shape, 256)


@pytest.mark.parametrize("seq_len,context", [(16, 0), (16, 5), (1000, 0)])
def test_evaluate_bpb_scores_every_byte_once(seq_len, context):
    data = np.random.default_rng(1).integers(0, 256, 333, dtype=np.uint8)
    out = evaluate_bpb(UniformLM(), data, seq_len=seq_len, batch_size=3, context=context)
    assert out["n_bytes"] == 333
    assert out["bpb"] == pytest.approx(8.0)
    assert out["gzip_bpb"] > 7.5


def test_evaluate_bpb_per_file(tmp_path):
    paths = write_files(tmp_path, 4, size=200)
    (tmp_path / "d0" / "one.txt").write_bytes(b"x")  # a 1-byte file: 8 bits, nothing predicted
    out = evaluate_bpb(UniformLM(), [tmp_path], seq_len=64, batch_size=4, per_file=True)
    assert out["n_files"] == 5 and out["n_bytes"] == 801
    assert out["bpb"] == pytest.approx(8.0)
    stream = evaluate_bpb(UniformLM(), [tmp_path], seq_len=64, per_file=False)
    assert stream["n_files"] == 1 and stream["gzip_bpb"] < out["gzip_bpb"]  # gzip keeps history across files
    data = load_bytes(paths, 0.25, 0.25)
    segs = data.segments("train")
    sizes = [200] * len(data.sources["train"])
    assert segs == [(200 * i, 200 * (i + 1)) for i in range(len(sizes))]


def test_make_demo_is_deterministic(tmp_path):
    a = make_demo(tmp_path / "a", max_bytes=200_000, verbose=False)
    b = make_demo(tmp_path / "b", max_bytes=200_000, verbose=False)
    fa = [p.relative_to(a) for p in list_files([a])]
    assert fa == [p.relative_to(b) for p in list_files([b])]
    assert len(fa) >= 3
    assert any(str(p).startswith("stdlib") for p in fa)
    assert sum(p.stat().st_size for p in list_files([a])) <= 200_000
