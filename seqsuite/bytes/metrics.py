"""Bits per byte of a model, and of general-purpose compressors on the same bytes."""
from __future__ import annotations

import bz2
import gzip
import lzma
import math

import numpy as np

LN2 = math.log(2.0)


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Total negative log-likelihood (nats) over n_bytes predicted bytes -> bits per byte."""
    return nll_nats / LN2 / max(int(n_bytes), 1)


def compressor_bpb(data, which=("gzip", "bz2", "lzma"), segments=None) -> dict[str, float]:
    """Bits per byte of gzip -9, bz2 -9 and xz (lzma preset 9e) on `data`: compressed bits / bytes.

    Without `segments` the whole of `data` is one stream (the compressors' best case: history
    spanning files); with segments [(start, end), ...] each one (a file) is compressed alone.
    """
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    n = max(len(raw), 1)
    parts = [raw] if segments is None else [raw[a:b] for a, b in segments]
    coders = {
        "gzip": lambda b: gzip.compress(b, compresslevel=9, mtime=0),
        "bz2": lambda b: bz2.compress(b, compresslevel=9),
        "lzma": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
    }
    unknown = [w for w in which if w not in coders]
    if unknown:
        raise ValueError(f"unknown compressor(s) {unknown}: use gzip, bz2 or lzma")
    return {w: 8.0 * sum(len(coders[w](p)) for p in parts) / n for w in which}


def unigram_bpb(train, held_out) -> float:
    """Bits per byte of an order-0 model (byte frequencies of `train`, add-one smoothed) on `held_out`.

    The floor any model that uses context must beat.
    """
    tr = np.frombuffer(bytes(train), dtype=np.uint8) if not isinstance(train, np.ndarray) else train
    ho = np.frombuffer(bytes(held_out), dtype=np.uint8) if not isinstance(held_out, np.ndarray) else held_out
    counts = np.bincount(tr.astype(np.int64), minlength=256) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[ho.astype(np.int64)].sum() / max(ho.size, 1))
