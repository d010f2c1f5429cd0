"""Shared set-up for the Triton-interpreter test modules (CPU CI): import this module first.

Without CUDA it sets TRITON_INTERPRET=1, which must precede the first import of a kernel
module (triton.jit reads it at decoration time), and `use_interpreter()` patches triton 3.6's
interpreter for numpy >= 2.4 and skips a test whose kernel was imported before the variable
was set (run that module in its own pytest process then)."""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

skip_on_gpu = pytest.mark.skipif(torch.cuda.is_available(),
                                 reason="interpreter tests; the GPU runs test_kernels_gpu.py")


def _patch_interpreter() -> None:
    """triton 3.6's interpreter calls int() on 1-element arrays, which numpy >= 2.4 rejects."""
    from triton.runtime import interpreter as itp

    if getattr(itp, "_seqsuite_patched", False):
        return
    orig = itp._patch_lang_tensor

    def patched(tensor, scope):
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    itp._patch_lang_tensor = patched
    itp._seqsuite_patched = True


def use_interpreter(kernel) -> None:
    """Patch the interpreter, and skip unless `kernel` (a @triton.jit function) is interpreted."""
    _patch_interpreter()
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(kernel, InterpretedFunction):
        pytest.skip("the kernels were imported before TRITON_INTERPRET=1 was set; "
                    "run this module in its own pytest process")
