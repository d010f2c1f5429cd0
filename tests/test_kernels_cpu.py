"""The CPU training scan (sequential recurrence, hand-written backward) against the float64
closed-form reference: values, last state and every gradient, for each B/C layout."""
from __future__ import annotations

import pytest
import torch

from seqsuite.kernels import backend_for, selective_scan
from seqsuite.kernels.cpu_scan import selective_scan_cpu
from seqsuite.kernels.reference import selective_scan_ref

ORDER = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def make(batch, dim, L, N, layout, G=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x = dict(u=r(batch, dim, L), delta=r(batch, dim, L) * 0.5,
             A=-torch.rand(dim, N, generator=g) * 2 - 0.1, D=r(dim), z=r(batch, dim, L),
             delta_bias=r(dim) * 0.3, initial_state=r(batch, dim, N))
    if layout == "vary":
        x["B"], x["C"] = r(batch, N, L), r(batch, N, L)
    elif layout == "group":
        x["B"], x["C"] = r(batch, G, N, L), r(batch, G, N, L)
    elif layout == "mixed":
        x["B"], x["C"] = r(dim, N), r(batch, G, N, L)
    else:
        x["B"], x["C"] = r(dim, N), r(dim, N)
    return x


@pytest.mark.parametrize("layout", ["vary", "group", "mixed", "invariant"])
@pytest.mark.parametrize("chunk", [7, 64])
def test_cpu_scan_matches_reference(layout, chunk):
    x = make(2, 4, 37, 3, layout)
    res = {}
    for name, fn, cast in (("cpu", selective_scan_cpu, lambda t: t),
                           ("ref", selective_scan_ref, lambda t: t.double())):
        args = {k: cast(v).clone().requires_grad_() for k, v in x.items()}
        y, last = fn(**args, delta_softplus=True, return_last_state=True, chunk_size=chunk)
        g = torch.Generator().manual_seed(1)
        gy, gl = torch.randn(y.shape, generator=g), torch.randn(last.shape, generator=g)
        ((y.double() * gy.double()).sum() + (last.double() * gl.double()).sum()).backward()
        res[name] = (y, last, {k: a.grad for k, a in args.items()})
    (y, last, grads), (yr, lr, gr) = res["cpu"], res["ref"]
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), yr, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last.double(), lr, rtol=1e-4, atol=1e-5)
    for k in ORDER:
        assert grads[k] is not None and grads[k].shape == gr[k].shape, k
        torch.testing.assert_close(grads[k].double(), gr[k], rtol=1e-4, atol=1e-4, msg=k)


def test_dispatch_uses_cpu_scan_and_matches_reference():
    x = make(1, 4, 50, 5, "vary")
    x.pop("initial_state")
    assert backend_for(x["u"], x["A"], x["B"], x["C"]) == "cpu"
    torch.testing.assert_close(selective_scan(**x, delta_softplus=True),
                               selective_scan_ref(**x, delta_softplus=True), rtol=1e-4, atol=1e-5)


def test_cpu_scan_bf16_inputs_without_optional_args():
    x = make(2, 4, 20, 3, "vary")
    u, delta = x["u"].bfloat16().requires_grad_(), x["delta"].bfloat16().requires_grad_()
    B = x["B"].bfloat16().requires_grad_()
    y = selective_scan_cpu(u, delta, x["A"], B, x["C"])
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert u.grad.dtype == torch.bfloat16 and B.grad.dtype == torch.bfloat16
    ref = selective_scan_ref(u.detach().float(), delta.detach().float(), x["A"],
                             B.detach().float(), x["C"])
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2)


def test_cpu_scan_rejects_complex():
    x = make(1, 2, 5, 2, "vary")
    with pytest.raises(ValueError, match="real"):
        selective_scan_cpu(x["u"], x["delta"], x["A"].to(torch.complex64), x["B"], x["C"])
