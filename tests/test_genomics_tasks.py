"""Genomics demo data, tasks (sampling without leaks), Markov baseline and classify edge cases."""
import json

import numpy as np
import pytest
import torch

from seqsuite.errors import UserError
from seqsuite.genomics.data import IGNORE_INDEX
from seqsuite.genomics.demo import SPECIES, make_demo, mash_distance
from seqsuite.genomics.metrics import MarkovModel, classification_report
from seqsuite.genomics.tasks import (GenomeLMTask, SpeciesTask, classify_fasta, evaluate_lm,
                                     format_rows)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQSUITE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    make_demo(out, size="tiny", seed=0, verbose=False)
    return out


def write(path, text):
    path.write_text(text)
    return path


def fasta_codes(path):
    """Records of a FASTA as base codes 0..4 (case folded)."""
    lut = np.full(256, 4, np.uint8)
    for i, c in enumerate(b"ACGT"):
        lut[c] = lut[c + 32] = i
    recs, name = {}, None
    for line in open(path, "rb"):
        line = line.strip()
        if line.startswith(b">"):
            name = line[1:].decode()
            recs[name] = []
        else:
            recs[name].append(line)
    return {k: lut[np.frombuffer(b"".join(v), np.uint8)] for k, v in recs.items()}


# ---------------------------------------------------------------- demo

def test_demo_files_and_determinism(demo, tmp_path):
    for name in ("genome.fa", "genome.fa.fai", "intervals.bed", "manifest.tsv", "demo.json"):
        assert (demo / name).exists()
    assert [line.split("\t")[0] for line in (demo / "manifest.tsv").read_text().splitlines()] == list(SPECIES)
    text = (demo / "genome.fa").read_text()
    assert any(c.islower() for c in text[:20000]) and "N" in text  # soft-masked repeats, gaps
    splits = {line.split("\t")[3] for line in (demo / "intervals.bed").read_text().splitlines()}
    assert splits == {"train", "valid", "test"}
    again = tmp_path / "again"
    make_demo(again, size="tiny", seed=0, verbose=False)
    assert (again / "genome.fa").read_bytes() == (demo / "genome.fa").read_bytes()
    assert (again / "apes" / "bonobo.fa").read_bytes() == (demo / "apes" / "bonobo.fa").read_bytes()


def test_demo_ape_divergence_near_targets(demo):
    seqs = {s: np.concatenate(list(fasta_codes(demo / "apes" / f"{s}.fa").values())) for s in SPECIES}
    d = lambda a, b: mash_distance(seqs[a], seqs[b])
    # substitution targets 1.2 / 0.4 / 1.6 / 3.0 %; k-mer distances also see the indels
    assert 0.010 <= d("human", "chimpanzee") <= 0.016
    assert 0.003 <= d("chimpanzee", "bonobo") <= 0.006
    assert 0.014 <= d("human", "gorilla") <= 0.021
    assert 0.027 <= d("human", "orangutan") <= 0.038
    assert d("chimpanzee", "bonobo") < d("human", "chimpanzee") < d("human", "gorilla") < d("human", "orangutan")


def test_demo_substitution_divergence_on_target():
    from seqsuite.genomics.demo import TARGET_DIVERGENCE, make_apes

    apes = make_apes(np.random.default_rng(0), (200_000,), lineage_cover=0.0, indel_ratio=0.0)
    for (a, b), target in TARGET_DIVERGENCE.items():
        x, y = apes[a]["chr1"][0], apes[b]["chr1"][0]
        assert x.size == y.size  # no indels, no insertions: sites align
        d = float((x != y)[x < 4].mean())
        assert abs(d - target) < 0.15 * target, (a, b, d, target)


# ---------------------------------------------------------------- LM task

def split_genome(tmp_path):
    """chr1 = 300 A | 300 C | 300 G (train | valid | test), chr2 = 40 A then N gap, 40 A."""
    fa = write(tmp_path / "g.fa", ">chr1\n" + "A" * 300 + "C" * 300 + "G" * 300 + "\n>chr2\n"
               + "A" * 40 + "N" * 200 + "A" * 40 + "\n")
    bed = write(tmp_path / "g.bed", "chr1\t0\t150\ttrain\nchr1\t150\t300\ttrain\n"
                                    "chr1\t300\t600\tvalid\nchr1\t600\t900\ttest\n")
    return fa, bed


def test_lm_windows_stay_in_their_split(tmp_path):
    fa, bed = split_genome(tmp_path)
    task = GenomeLMTask(fa, bed, rc_aug=True)
    v = task.tokenizer.vocab
    allowed = {"train": {v["A"], v["T"]}, "valid": {v["C"]}, "test": {v["G"]}}
    for split, ok in allowed.items():
        for i in range(20):
            ex = task.sample(split, np.random.default_rng([i]), 200)  # > one 150-base interval
            assert ex["tokens"].dtype == np.int64 and ex["tokens"].shape == (200,)
            assert set(ex["tokens"].tolist()) <= ok
            assert np.array_equal(ex["tokens"][1:], ex["targets"][:-1])
    seen = {frozenset(task.sample("train", np.random.default_rng([i]), 50)["tokens"].tolist())
            for i in range(20)}
    assert frozenset({v["T"]}) in seen and frozenset({v["A"]}) in seen  # reverse complement used


def test_lm_short_region_padding_and_errors(tmp_path):
    fa, _ = split_genome(tmp_path)
    bed = write(tmp_path / "s.bed", "chr1\t0\t100\ttrain\nchr1\t300\t400\tvalid\n")
    task = GenomeLMTask(fa, bed)
    ex = task.sample("train", np.random.default_rng(0), 100)  # region of 100 < L + 1
    assert ex["targets"][-1] == IGNORE_INDEX and (ex["targets"][:-1] != IGNORE_INDEX).all()
    with pytest.raises(UserError, match="longer than every 'train' interval"):
        task.sample("train", np.random.default_rng(0), 101)
    with pytest.raises(UserError, match="split 'test' is empty"):
        task.sample("test", np.random.default_rng(0), 10)
    with pytest.raises(UserError, match="no chromosome is held out"):
        GenomeLMTask(fa).sample("valid", np.random.default_rng(0), 10)


def test_lm_mostly_n_windows_skipped_and_counted(tmp_path):
    fa, _ = split_genome(tmp_path)
    task = GenomeLMTask(fa, valid_chroms=["chr2"], test_chroms=["chr1"])
    for i in range(10):
        ex = task.sample("valid", np.random.default_rng([i]), 60)
        assert task.tokenizer.is_n(ex["tokens"]).mean() <= 0.5
    assert task.skipped_n > 0


def test_lm_loss_ignores_padding():
    class Uniform(torch.nn.Module):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, 9)

    from seqsuite.genomics.tasks import GenomeLMTask as T

    batch = {"tokens": torch.zeros(2, 5, dtype=torch.long),
             "targets": torch.tensor([[4, 5, 6, 7, IGNORE_INDEX]] * 2)}
    loss, extra = T.loss(None, Uniform(), batch)
    assert abs(float(loss) - np.log(9)) < 1e-6


# ---------------------------------------------------------------- Markov baseline

def test_markov_matches_brute_force_and_learns_period():
    rng = np.random.default_rng(0)
    seq = rng.integers(4, 9, 5000)
    m = MarkovModel.fit([seq], order=2, alphabet=5, offset=4, alpha=0.5)
    toks, tg = seq[None, :20], seq[None, 1:21]
    got = m.token_logprobs(toks, tg)[0]
    s = seq - 4
    counts = {}
    for i in range(2, len(s)):
        counts.setdefault((s[i - 2], s[i - 1]), np.zeros(5))[s[i]] += 1
    c = counts[(s[1], s[2])] + 0.5
    assert abs(got[2] - np.log(c[s[3]] / c.sum())) < 1e-9  # target index 2 = s[3], context s[1], s[2]
    periodic = np.tile(np.array([4, 5, 6, 7, 7, 6]), 500)
    m = MarkovModel.fit([periodic], order=3, alphabet=5, offset=4)
    lp = m.token_logprobs(periodic[None, :-1], periodic[None, 1:])
    assert -lp[0, 3:].mean() < 0.01 and -lp.mean() < 0.1


def test_evaluate_lm_reports_model_and_markov(tmp_path):
    fa, bed = split_genome(tmp_path)
    task = GenomeLMTask(fa, bed)

    class Uniform(torch.nn.Module):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, task.vocab_size)

    r = evaluate_lm(Uniform(), task, "test", seq_len=64, n_windows=4, batch_size=2, progress=False)
    assert abs(r["bits_per_base"] - np.log2(task.vocab_size)) < 1e-6
    assert r["markov_bits_per_base"] < r["bits_per_base"] and np.isfinite(r["perplexity"])


# ---------------------------------------------------------------- species task

def test_species_sampling_holds_out_chromosomes_and_regions(tmp_path):
    # species "a": three chromosomes (chr3 test, chr2 valid); species "b": one chromosome (regions)
    write(tmp_path / "a.fa", ">chr1\n" + "A" * 200 + "\n>chr2\n" + "C" * 200 + "\n>chr3\n" + "G" * 200 + "\n")
    write(tmp_path / "b.fa", ">chr1\n" + "A" * 800 + "C" * 100 + "G" * 100 + "\n")
    task = SpeciesTask(write(tmp_path / "m.tsv", "a\ta.fa\nb\tb.fa\n"))
    v = task.tokenizer.vocab
    want = {"train": v["A"], "valid": v["C"], "test": v["G"]}
    labels = set()
    for split, base in want.items():
        for i in range(30):
            ex = task.sample(split, np.random.default_rng([i]), 50)
            assert set(ex["tokens"].tolist()) == {base}, split
            labels.add(int(ex["label"]))
    assert labels == {0, 1}
    with pytest.raises(UserError, match="no 'valid' chromosome or region holds a window"):
        task.sample("valid", np.random.default_rng(0), 150)


def test_species_classification_metrics():
    r = classification_report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(0.6) and r["confusion"][0] == [1, 1, 0]
    assert 0 < r["macro_f1"] < 1


# ---------------------------------------------------------------- classify

class GCClassifier(torch.nn.Module):
    """Predicts 'gc' for GC-rich windows, 'at' otherwise (a stand-in classifier)."""

    def forward(self, tokens):
        gc = ((tokens == 5) | (tokens == 6)).float().mean(1)
        return torch.stack([(0.5 - gc) * 10, (gc - 0.5) * 10], dim=1)


def test_classify_edge_cases(tmp_path):
    fa = write(tmp_path / "in.fa", ">gcrich\n" + "GCGCGCAT" * 40 + "\n>atrich\n" + "ATATATGC" * 40
               + "\n>short\nACGT\n>allN\n" + "N" * 300 + "\n")
    rows = classify_fasta(GCClassifier(), fa, 64, ["at", "gc"], progress=False)
    by = {r["record"]: r for r in rows}
    assert by["gcrich"]["predicted"] == "gc" and by["gcrich"]["windows"] == 5
    assert by["atrich"]["predicted"] == "at"
    assert abs(by["gcrich"]["prob_at"] + by["gcrich"]["prob_gc"] - 1) < 1e-5
    assert by["short"]["windows"] == 0 and by["short"]["predicted"] is None and "shorter" in by["short"]["note"]
    assert by["allN"]["windows"] == 0 and "mostly N" in by["allN"]["note"]
    tsv = format_rows(rows, ["at", "gc"], "tsv")
    assert tsv.splitlines()[0].split("\t") == ["record", "length", "windows", "predicted",
                                               "prob_at", "prob_gc", "note"]
    assert "nan" not in tsv.lower()
    data = json.loads(format_rows(rows, ["at", "gc"], "json"))
    assert data[2]["prob_gc"] is None
    class NaNModel(torch.nn.Module):
        def forward(self, tokens):
            return torch.full((tokens.shape[0], 2), float("nan"))

    rows = classify_fasta(NaNModel(), fa, 64, ["at", "gc"], progress=False)
    assert rows[0]["predicted"] is None and "non-finite" in rows[0]["note"]
    assert "nan" not in format_rows(rows, ["at", "gc"], "tsv").lower()
    with pytest.raises(UserError, match="empty"):
        classify_fasta(GCClassifier(), write(tmp_path / "empty.fa", ""), 64, ["at", "gc"], progress=False)


def test_hyena_presets_take_the_run_length_as_max_len(tmp_path):
    """HyenaDNA's implicit filters are functions of t / max_len, so a run builds them for its
    own window length (HyenaDNA's l_max); other layers keep the preset's max_len."""
    from seqsuite.core.io import save_pretrained
    from seqsuite.genomics.tasks import _check_hyena_window, _model_for, classify

    small = dict(d_model=16, n_layers=1, classify_labels=["at", "gc"])
    hyena = _model_for("hg38-hyenadna-1.4m", 12, seq_len=256, **small)
    assert hyena.config.max_len == 256 and hyena.config.task == "classify"
    assert _model_for("hg38-hyenadna-1.4m", 12, seq_len=256, max_len=512, **small).config.max_len == 512
    assert _model_for("tiny", 12, seq_len=256).config.max_len == 1 << 20
    save_pretrained(hyena, tmp_path / "hy", extra={"task": {"species": ["at", "gc"]}, "window": 256})
    assert _model_for(None, 12, init=tmp_path / "hy", seq_len=128,
                      classify_labels=["at", "gc"]).config.max_len == 256
    with pytest.raises(UserError, match="--seq-len 256 or less"):
        _model_for(None, 12, init=tmp_path / "hy", seq_len=1024, classify_labels=["at", "gc"])
    with pytest.raises(UserError, match="--max-len cannot change"):
        _model_for(None, 12, init=tmp_path / "hy", seq_len=128, max_len=1024, classify_labels=["at", "gc"])
    with pytest.raises(UserError, match="--max-len 512 or more"):
        _model_for("hg38-hyenadna-1.4m", 12, seq_len=512, max_len=256, **small)
    fa = write(tmp_path / "in.fa", ">r\n" + "ACGT" * 200 + "\n")
    text, rows = classify(fa, tmp_path / "hy", device="cpu")
    assert rows[0]["windows"] >= 3 and rows[0]["predicted"] in ("at", "gc")
    with pytest.raises(UserError, match="--window 256 or less"):
        classify(fa, tmp_path / "hy", window=512, device="cpu")
    with pytest.raises(UserError, match="--seq-len 256 or less"):  # genomics evaluate's check
        _check_hyena_window(hyena, 512, "--seq-len")
    _check_hyena_window(hyena, 256, "--seq-len")
