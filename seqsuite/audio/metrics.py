"""Sample-quality metrics for unconditional SC09 generation, as the field computes them.

All take classifier outputs: `features` (penultimate activations, [n, d]) and `probs`
(softmax class probabilities, [n, C]). Logs are natural; KL and entropy in nats.
"""
from __future__ import annotations

import math

import numpy as np

_EPS = 1e-12


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """FID = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), Gaussian fits of two feature
    sets. tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2)."""
    a = np.asarray(feat_a, dtype=np.float64)
    b = np.asarray(feat_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs two [n>=2, d] feature arrays of equal width")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = sqrt_a @ s_b @ sqrt_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    fid = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt)
    return max(fid, 0.0)


def _normalise(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 0, None)
    return p / p.sum(axis=1, keepdims=True)


def inception_score(probs: np.ndarray) -> float:
    """IS = exp(E_x KL(p(y|x) || p(y))) with p(y) the mean prediction over the set."""
    p = _normalise(probs)
    marginal = p.mean(0)
    kl = (p * (np.log(p + _EPS) - np.log(marginal + _EPS))).sum(1)
    return float(math.exp(kl.mean()))


def modified_inception_score(probs: np.ndarray) -> float:
    """mIS = exp(E_{x != x'} KL(p(y|x) || p(y|x'))), averaged exactly over all ordered pairs of
    distinct samples. Since sum_{i,j} KL(p_i||p_j) = n sum_i p_i.log p_i - (sum_i p_i).(sum_j log p_j)
    and KL(p_i||p_i) = 0, this costs O(n C) instead of O(n^2 C)."""
    p = _normalise(probs)
    n = len(p)
    if n < 2:
        raise ValueError("modified_inception_score needs at least two samples")
    logp = np.log(p + _EPS)
    total = n * (p * logp).sum() - p.sum(0) @ logp.sum(0)
    return float(math.exp(total / (n * (n - 1))))


def am_score(probs: np.ndarray, reference_marginal: np.ndarray) -> float:
    """AM = KL(p_ref(y) || p_gen(y)) + E_x H(p(y|x)), with p_ref(y) the classifier's mean
    prediction on the training set and p_gen(y) the mean prediction on the samples."""
    p = _normalise(probs)
    ref = np.asarray(reference_marginal, dtype=np.float64)
    ref = ref / ref.sum()
    gen = p.mean(0)
    kl = float((ref * (np.log(ref + _EPS) - np.log(gen + _EPS))).sum())
    entropy = float(-(p * np.log(p + _EPS)).sum(1).mean())
    return kl + entropy


def likelihood_filter(log_likelihood: np.ndarray, drop_low: float = 0.40,
                      drop_high: float = 0.05) -> np.ndarray:
    """Indices of samples kept after ranking by the model's own likelihood and dropping the
    least likely `drop_low` fraction and the most likely `drop_high` fraction (SaShiMi's
    protocol: 40% and 5%). Returned in ascending likelihood order."""
    ll = np.asarray(log_likelihood, dtype=np.float64)
    order = np.argsort(ll, kind="stable")
    n = len(ll)
    lo, hi = int(math.floor(drop_low * n)), n - int(math.floor(drop_high * n))
    return order[lo:hi]


def sample_metrics(features: np.ndarray, probs: np.ndarray, train_features: np.ndarray,
                   train_probs: np.ndarray) -> dict[str, float]:
    """The Table-4 metrics of a sample set against the training set's classifier outputs."""
    return {"fid": frechet_distance(features, train_features),
            "is": inception_score(probs),
            "mis": modified_inception_score(probs),
            "am": am_score(probs, _normalise(train_probs).mean(0)),
            "n": int(len(probs))}
