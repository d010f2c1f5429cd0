"""Small shared helpers: atomic writes and device selection."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path` atomically.

    On error the temporary file is removed and `path` is left untouched, so a reader never sees
    a half-written output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give the usual 0666 & ~umask
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def resolve_device(device: str | None = "auto") -> str:
    """'auto' picks CUDA when available, else CPU; other strings pass through."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def cache_dir() -> Path:
    """The folder for generated demo data, FASTA indexes, decompressed files and derived
    models: `$SEQSUITE_CACHE` if set, else `~/.cache/seqsuite`."""
    env = os.environ.get("SEQSUITE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "seqsuite"


def cached_demo(name: str, doing: str, make: Callable[[Path], object]) -> Path:
    """`cache_dir()/demo/<name>`, made by `make(folder)` on first use (saying `doing ... once
    into <folder>`). A folder counts as made once its demo.json exists, which every demo
    writer writes last."""
    out = cache_dir() / "demo" / name
    if not (out / "demo.json").exists():
        print(f"{doing} once into {out}")
        make(out)
    return out
