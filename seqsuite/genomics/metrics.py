"""Genomics metrics: bits per base, an order-k Markov baseline, and classification scores."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2.0)


def bits_per_base(loss_nats: float) -> float:
    """Mean cross-entropy in nats per base to bits per base."""
    return loss_nats / LN2


def perplexity(loss_nats: float) -> float:
    return math.exp(min(loss_nats, 50.0))


# ----------------------------------------------------------------------------------------------
# Order-k Markov baseline

@dataclass
class MarkovModel:
    """Order-k Markov chain over the base alphabet (token ids offset..offset+A-1).

    `logp[j]` holds log P(next | previous j bases) for every order j = 0..k, shape (A**j, A),
    with add-`alpha` smoothing. Lower orders serve the first positions of a window, which have
    fewer than k bases of context (the neural model sees the same context).
    """

    order: int
    alphabet: int
    offset: int
    alpha: float
    logp: list[np.ndarray]

    @classmethod
    def fit(cls, chunks, order: int, alphabet: int, offset: int, alpha: float = 0.1) -> "MarkovModel":
        """Count (k+1)-mers over an iterable of token-id arrays and derive all lower orders."""
        A, k = alphabet, order
        counts = np.zeros(A ** (k + 1), dtype=np.int64)
        for ids in chunks:
            s = _to_alphabet(np.asarray(ids), offset, A)
            if s.size <= k:
                continue
            idx = _rolling_index(s, k + 1, A)
            counts += np.bincount(idx, minlength=counts.size)
        full = counts.reshape((A,) * (k + 1))
        logp = []
        for j in range(k + 1):
            c = full.sum(axis=tuple(range(k - j))) if j < k else full
            c = c.reshape(A ** j, A).astype(np.float64) + alpha
            logp.append(np.log(c / c.sum(axis=1, keepdims=True)))
        return cls(order=k, alphabet=A, offset=offset, alpha=alpha, logp=logp)

    def token_logprobs(self, tokens: np.ndarray, targets: np.ndarray, order: int | None = None) -> np.ndarray:
        """log P(targets[t] | tokens[..t]) for batches (B, L) of next-token pairs (nats).

        Positions whose target is negative (ignored padding) get 0 and should be masked out.
        """
        k = self.order if order is None else min(order, self.order)
        A = self.alphabet
        tokens, targets = np.atleast_2d(tokens), np.atleast_2d(targets)
        B, L = targets.shape
        seq = np.concatenate([tokens[:, :1], np.where(targets < 0, tokens, targets)], axis=1)
        s = _to_alphabet(seq, self.offset, A)  # (B, L+1): s[:, t+1] is the target of position t
        out = np.zeros((B, L), dtype=np.float64)
        ctx = np.zeros((B, L), dtype=np.int64)
        t = np.arange(L)
        for j in range(0, k + 1):
            # order-j context of target t is s[t+1-j .. t]; valid only where t+1 >= j
            use = (np.minimum(t + 1, k) == j)
            if use.any():
                out[:, use] = self.logp[j][ctx[:, use], s[:, 1:][:, use]]
            # extend contexts by one older symbol for the next order
            if j < k:
                older = np.zeros((B, L), dtype=np.int64)
                src = t - j  # position of the symbol j steps back from t
                ok = src >= 0
                older[:, ok] = s[:, src[ok]]
                ctx = ctx + older * (A ** j)
        out[targets < 0] = 0.0
        return out


def _to_alphabet(ids: np.ndarray, offset: int, A: int) -> np.ndarray:
    """Token ids to 0..A-1; special tokens (below `offset`) are read as the last symbol (N)."""
    s = ids.astype(np.int64) - offset
    return np.where((s < 0) | (s >= A), A - 1, s)


def _rolling_index(s: np.ndarray, width: int, A: int) -> np.ndarray:
    """Base-A index of every length-`width` window of a 1-D symbol array (oldest = most significant)."""
    n = s.size - width + 1
    idx = np.zeros(n, dtype=np.int64)
    for j in range(width):
        idx = idx * A + s[j:j + n]
    return idx


def max_markov_order(alphabet: int, max_table: int = 1 << 22) -> int:
    """The largest order whose (k+1)-mer table has at most `max_table` entries."""
    k = 0
    while alphabet ** (k + 2) <= max_table:
        k += 1
    return k


# ----------------------------------------------------------------------------------------------
# Classification

def classification_report(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro-F1 and the confusion matrix (rows: true, columns: predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    ids = list(range(len(labels)))
    cm = confusion_matrix(y_true, y_pred, labels=ids)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
            "confusion": cm.tolist(), "labels": list(labels), "n": int(len(y_true))}


def plot_confusion(report: dict, path, title: str = "") -> None:
    """Save the confusion matrix of `classification_report` as a PNG (row-normalised colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqsuite.utils import atomic_path

    cm = np.array(report["confusion"], dtype=np.float64)
    labels = report["labels"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 1.0 * len(labels) + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
