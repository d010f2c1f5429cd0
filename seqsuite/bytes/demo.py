"""The demo corpus: source files already on this machine, copied into one folder.

It holds the Python sources of seqsuite itself and a deterministic selection of Python's
standard library (`sysconfig.get_paths()['stdlib']`, site-packages and test suites left out),
up to a size cap. Nothing is downloaded. The selection orders stdlib files by a hash of their
relative path (so it samples the whole library rather than the first folders alphabetically).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sysconfig
import time
from pathlib import Path

from seqsuite.errors import UserError
from seqsuite.utils import atomic_write_text

from seqsuite.utils import cached_demo

SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "__pycache__", "idle_test"}
MAX_FILE_BYTES = 200_000  # skip very large generated files (e.g. unicode tables)
SIZES = {"small": 1_000_000, "medium": 4_000_000, "large": 16_000_000}


def _python_files(root: Path) -> list[Path]:
    """Sorted .py files under root outside SKIP_DIRS and hidden folders, no larger than MAX_FILE_BYTES."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        for name in files:
            p = Path(folder) / name
            if name.endswith(".py") and not p.is_symlink() and 0 < p.stat().st_size <= MAX_FILE_BYTES:
                out.append(p)
    return sorted(out)


def _hash_order(root: Path, files: list[Path]) -> list[Path]:
    return sorted(files, key=lambda p: hashlib.sha1(str(p.relative_to(root)).encode()).hexdigest())


def make_demo(out_dir: str | Path, max_bytes: int = SIZES["small"], verbose: bool = True) -> Path:
    """Copy the project's sources and a stdlib selection (≤ max_bytes in all) into out_dir.

    Returns out_dir. Writes demo.json listing every copied file (in the folder's parent is not
    touched; the corpus is out_dir/seqsuite/… and out_dir/stdlib/…).
    """
    import seqsuite

    out = Path(out_dir)
    t0 = time.time()
    project = Path(seqsuite.__file__).parent
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chosen: list[tuple[str, Path, Path]] = []  # (group, root, file)
    total = 0
    for group, root, files in (("seqsuite", project, _python_files(project)),
                               ("stdlib", stdlib, _hash_order(stdlib, _python_files(stdlib)))):
        for f in files:
            size = f.stat().st_size
            if total + size > max_bytes:
                continue
            chosen.append((group, root, f))
            total += size
    if total == 0:
        raise UserError(f"found no Python sources under {project} or {stdlib} to build the bytes demo corpus")
    corpus = out / "corpus"
    if corpus.exists():
        shutil.rmtree(corpus)
    for group, root, f in chosen:
        dst = corpus / group / f.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    info = {"max_bytes": max_bytes, "bytes": total, "files": len(chosen),
            "sources": {"seqsuite": str(project), "stdlib": str(stdlib)},
            "list": [f"{g}/{f.relative_to(r)}" for g, r, f in chosen]}
    atomic_write_text(out / "demo.json", json.dumps(info, indent=1))
    if verbose:
        print(f"bytes demo corpus: {len(chosen)} files, {total / 1e6:.2f} MB in {corpus} "
              f"({time.time() - t0:.1f}s)")
    return corpus


def demo_corpus(size: str = "small") -> Path:
    """The cached demo corpus folder (`$SEQSUITE_CACHE/demo/bytes-<size>/corpus`), built on first use."""
    if size not in SIZES:
        raise UserError(f"unknown demo size {size!r}: use one of {', '.join(SIZES)}")
    out = cached_demo(f"bytes-{size}", "building the bytes demo corpus",
                      lambda out: make_demo(out, SIZES[size]))
    return out / "corpus"
