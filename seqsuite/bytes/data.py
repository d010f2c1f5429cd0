"""Bytes as tokens: any files or folders become a stream of byte values (256 classes).

Splits are by file (by a hash of each file's relative path, so a file is wholly in one split and
keeps it when files are added)
or, with fewer than three files, by offset (the first 90% train, then 5% valid, 5% test).
Also: a streaming UTF-8 decoder that never prints half a character.
"""
from __future__ import annotations

import codecs
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqsuite.errors import UserError

VOCAB_SIZE = 256
SPLITS = ("train", "valid", "test")


def named_files(paths) -> list[tuple[str, Path]]:
    """Expand files and folders (recursively; hidden entries and __pycache__ skipped) to sorted
    (name, path) pairs; a file's name is its path relative to the folder that was passed."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: dict[Path, str] = {}
    for p in map(Path, paths):
        if p.is_file():
            out.setdefault(p, p.name)
        elif p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                for f in files:
                    if not f.startswith("."):
                        out.setdefault(Path(root) / f, (Path(root) / f).relative_to(p).as_posix())
        else:
            raise UserError(f"{p} does not exist: pass existing files or folders")
    if not out:
        raise UserError(f"no files found under {', '.join(map(str, paths))}: pass a folder holding files")
    return sorted(((name, f) for f, name in out.items()), key=lambda t: t[1])


def list_files(paths) -> list[Path]:
    """Expand files and folders to a sorted file list (see named_files)."""
    return [f for _, f in named_files(paths)]


def read_bytes(files) -> np.ndarray:
    """The bytes of the files, concatenated in order, as uint8."""
    parts = []
    for f in files:
        try:
            parts.append(np.fromfile(f, dtype=np.uint8))
        except OSError as e:
            raise UserError(f"cannot read {f} ({e.strerror}): check the path and permissions") from None
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)


@dataclass
class ByteData:
    """Byte streams per split, where they came from (file paths, or 'path[start:end]'), and the
    offset where each source starts in its split's stream."""

    splits: dict[str, np.ndarray]
    sources: dict[str, list[str]] = field(default_factory=dict)
    starts: dict[str, list[int]] = field(default_factory=dict)

    def segments(self, split: str) -> list[tuple[int, int]]:
        """(start, end) of each source file within the split's stream (the whole stream if unknown)."""
        n = self[split].size
        starts = self.starts.get(split) or [0]
        ends = list(starts[1:]) + [n]
        return [(a, b) for a, b in zip(starts, ends) if b > a]

    def __getitem__(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}: use one of {', '.join(self.splits)}")
        return self.splits[split]

    def summary(self) -> str:
        """One line: bytes and files per split."""
        return ", ".join(f"{s} {self.splits[s].size:,} bytes / {len(self.sources.get(s, []))} files"
                         for s in self.splits)


def _unit_hash(name: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, name)."""
    digest = hashlib.sha1(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(named: list[tuple[str, Path]], valid_frac: float = 0.05, test_frac: float = 0.05,
                seed: int = 0) -> dict[str, list[Path]]:
    """Assign whole files to splits by a hash of their name (relative path): a file keeps its split
    when others are added or removed. Each split gets at least one file."""
    n = len(named)
    if n < 3:
        raise UserError(f"splitting by file needs at least 3 files, got {n}: split by offset instead")
    scored = sorted((_unit_hash(name, seed), str(f), f) for name, f in named)
    groups: dict[str, list] = {"train": [], "valid": [], "test": []}
    for h, _, f in scored:
        split = "valid" if h < valid_frac else "test" if h < valid_frac + test_frac else "train"
        groups[split].append((h, f))
    for split in ("valid", "test"):  # too few files for the fractions: take train's lowest-hash file
        if not groups[split]:
            groups[split].append(groups["train"].pop(0))
    if not groups["train"]:
        raise UserError(f"{n} files are too few for valid/test fractions {valid_frac}/{test_frac}")
    return {s: sorted(f for _, f in groups[s]) for s in SPLITS}


def load_bytes(paths, valid_frac: float = 0.05, test_frac: float = 0.05, seed: int = 0) -> ByteData:
    """Read files/folders and split them by file (≥ 3 files) or by offset (fewer)."""
    named = named_files(paths)
    files = [f for _, f in named]
    if len(files) >= 3:
        groups = split_files(named, valid_frac, test_frac, seed)
        splits = {s: read_bytes(groups[s]) for s in SPLITS}
        sources = {s: [str(f) for f in groups[s]] for s in SPLITS}
        starts = {s: [0] + np.cumsum([f.stat().st_size for f in groups[s]])[:-1].tolist() for s in SPLITS}
    else:
        data = read_bytes(files)
        n = data.size
        a, b = int(n * (1 - valid_frac - test_frac)), int(n * (1 - test_frac))
        splits = {"train": data[:a], "valid": data[a:b], "test": data[b:]}
        names = "+".join(str(f) for f in files)
        sources = {s: [f"{names}[{lo}:{hi}]"] for s, (lo, hi) in
                   zip(SPLITS, ((0, a), (a, b), (b, n)))}
        starts = {s: [0] for s in SPLITS}
    for s in SPLITS:
        if splits[s].size < 2:
            raise UserError(f"the {s} split of {', '.join(map(str, files[:3]))} has {splits[s].size} bytes: "
                            "pass more or larger files")
    return ByteData(splits, sources, starts)


def encode(text: str | bytes) -> np.ndarray:
    """Text (UTF-8) or bytes -> int64 token array."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(raw, dtype=np.uint8).astype(np.int64)


class Utf8Stream:
    """Turn a stream of bytes into text as soon as whole characters are known.

    Incomplete multi-byte sequences are held back until their last byte arrives; invalid bytes
    become U+FFFD; `finish()` flushes what is left (an unfinished tail becomes U+FFFD).
    """

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes | int) -> str:
        """Add bytes (or one byte value); return the text completed by them (maybe '')."""
        if isinstance(data, int):
            data = bytes((data,))
        return self._decoder.decode(data, final=False)

    def finish(self) -> str:
        """Flush: any held-back incomplete sequence is replaced."""
        return self._decoder.decode(b"", final=True)
