"""SC09 sample metrics against hand-computed values."""
import math

import numpy as np
import pytest

from seqsuite.audio.metrics import (am_score, frechet_distance, inception_score, likelihood_filter,
                                    modified_inception_score, sample_metrics)


def test_fid_identical_sets_is_zero_and_mean_shift_adds_its_square():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0, 0, 0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-6)


def test_fid_of_gaussians_closed_form():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20000, 2))            # N(0, I)
    b = 2.0 * rng.standard_normal((20000, 2))      # N(0, 4I)
    # tr(I + 4I - 2 * 2I) = 2 * (1 + 4 - 4) = 2
    assert frechet_distance(a, b) == pytest.approx(2.0, rel=0.05)


def test_inception_score_cases():
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)
    confident = np.eye(10)[np.arange(100) % 10]
    assert inception_score(confident) == pytest.approx(10.0, rel=1e-6)
    # two classes, p = [0.9, 0.1] and [0.1, 0.9] in equal numbers: exp(KL(p || [.5, .5]))
    p = np.array([[0.9, 0.1], [0.1, 0.9]] * 5)
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert inception_score(p) == pytest.approx(math.exp(kl))


def test_modified_inception_score_cases():
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    # both ordered pairs have KL = 0.8 ln 9
    assert modified_inception_score(p) == pytest.approx(9 ** 0.8)
    assert modified_inception_score(np.full((7, 4), 0.25)) == pytest.approx(1.0)
    # brute force over all distinct pairs on random predictions
    rng = np.random.default_rng(2)
    q = rng.dirichlet(np.ones(5), size=30)
    kls = [(q[i] * np.log(q[i] / q[j])).sum() for i in range(30) for j in range(30) if i != j]
    assert modified_inception_score(q) == pytest.approx(math.exp(np.mean(kls)), rel=1e-9)


def test_am_score_cases():
    confident = np.eye(10)[np.arange(100) % 10]
    assert am_score(confident, np.full(10, 0.1)) == pytest.approx(0.0, abs=1e-6)
    uniform = np.full((20, 10), 0.1)
    assert am_score(uniform, np.full(10, 0.1)) == pytest.approx(math.log(10))
    # all samples confidently class 0: KL(uniform || [1-9e, e, ...]) is large
    collapsed = np.eye(10)[np.zeros(20, dtype=int)] * 0.991 + 0.001
    expected = sum(0.1 * math.log(0.1 / g) for g in [0.991 + 0.001] + [0.001] * 9)
    h = -(0.992 * math.log(0.992) + 9 * 0.001 * math.log(0.001))
    assert am_score(collapsed, np.full(10, 0.1)) == pytest.approx(expected + h, rel=1e-3)


def test_likelihood_filter_drops_low_40_and_top_5_percent():
    ll = np.arange(100.0)[::-1]  # sample i has log-likelihood 99 - i
    keep = likelihood_filter(ll)
    assert len(keep) == 55
    kept_ll = set(ll[keep].tolist())
    assert min(kept_ll) == 40 and max(kept_ll) == 94


def test_sample_metrics_of_the_training_set_itself():
    rng = np.random.default_rng(3)
    labels = np.arange(200) % 10
    probs = np.eye(10)[labels] * 0.9 + 0.01
    feats = rng.standard_normal((200, 8)) + labels[:, None]
    m = sample_metrics(feats, probs, feats, probs)
    assert m["fid"] == pytest.approx(0.0, abs=1e-6)
    assert 5 < m["is"] <= 10 and m["mis"] > m["is"] and m["n"] == 200
