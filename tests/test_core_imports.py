"""`import seqsuite.core` (and building, running and generating with a model) needs only torch:
the domain dependencies are blocked in a subprocess and must not be imported."""
from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("pyfaidx", "librosa", "soundfile", "typer", "rich", "safetensors", "matplotlib",
           "sklearn", "tensorboard", "torchaudio", "seqsuite.genomics", "seqsuite.audio",
           "seqsuite.bytes", "seqsuite.cli")


def test_core_imports_with_only_torch():
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {BLOCKED!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError(f"blocked: {{name}}")
                return None
        sys.meta_path.insert(0, Block())
        import torch
        import seqsuite.core, seqsuite.kernels
        from seqsuite.core import build
        m = build("tiny").eval()
        x = torch.randint(0, m.config.vocab_size, (1, 16))
        assert m(x).shape[:2] == (1, 16)
        assert m.generate(x[:, :4], 4).shape == (1, 8)
        u = build("audio-tiny").eval()
        assert u.generate(torch.full((1, 1), 128), 8).shape == (1, 9)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
