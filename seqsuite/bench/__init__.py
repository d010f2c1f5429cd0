"""Benchmarks of the Mamba paper's efficiency section (§4.5 and Appendix E.5) on this machine:
ops (scan vs attention vs FFT conv), train (tokens/s), generate (inference throughput) and
memory (peak training memory). Each `run_*` returns a `Report`; `seqsuite bench` drives them."""
from .common import Report
from .generate import GenerateSettings, run_generate
from .memory import MemorySettings, run_memory
from .ops import OpsSettings, run_ops
from .train import TrainSettings, run_train

__all__ = ["Report", "OpsSettings", "run_ops", "TrainSettings", "run_train", "GenerateSettings", "run_generate",
           "MemorySettings", "run_memory"]
