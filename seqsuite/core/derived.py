"""Tensors derived from parameters for the recurrent step, kept between steps for CUDA graphs."""
from __future__ import annotations

from typing import Callable

import torch


class DerivedTensors:
    """Tensors computed from some parameters (e.g. A = -exp(A_log), stacked or folded weights),
    recomputed only when one of them changes (in-place updates bump `_version`; `.to()` changes
    `data_ptr`) and then copied into the same buffers when their layout is unchanged, so a CUDA
    graph that captured them stays valid."""

    def __init__(self):
        self.key = None
        self.tensors: dict[str, torch.Tensor] | None = None

    def get(self, params, make: Callable[[], dict[str, torch.Tensor]], extra=()) -> dict[str, torch.Tensor]:
        """The tensors `make()` returns for the current `params`; `extra` joins the cache key."""
        key = (tuple((p._version, p.data_ptr()) for p in params), extra)
        if key == self.key:
            return self.tensors
        with torch.no_grad():
            new = make()
        old = self.tensors
        if old is not None and old.keys() == new.keys() and all(
                old[k].shape == v.shape and old[k].dtype == v.dtype and old[k].device == v.device
                for k, v in new.items()):
            for k, v in new.items():
                old[k].copy_(v)
        else:
            self.tensors = new
        self.key = key
        return self.tensors
