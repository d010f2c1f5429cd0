"""DNA files to token arrays: the tokenizer, an indexed FASTA reader and the BED interval reader.

Everything a user can get wrong here (missing or gzip FASTA, unwritable index, malformed BED)
ends in `UserError` with one line naming the file and the fix.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqsuite.errors import UserError
from seqsuite.utils import cache_dir

# ----------------------------------------------------------------------------------------------
# Tokenizer

SPECIALS = ("PAD", "BOS", "EOS", "MASK")
BASES = ("A", "C", "G", "T", "N")
IUPAC = "RYSWKMBDHVU"  # ambiguity codes (and RNA's U), all read as N
IGNORE_INDEX = -100     # target value the losses skip (padding)


@dataclass
class Tokenizer:
    """Characters to ids: PAD BOS EOS MASK, then A C G T N; with `keep_case`, a c g t n follow.

    Soft-masked (lowercase) bases are case-folded unless `keep_case` is set, in which case they
    get their own ids (so a model can learn the masking). IUPAC ambiguity codes and any other
    character become N.
    """

    keep_case: bool = False

    def __post_init__(self) -> None:
        names = list(SPECIALS) + list(BASES)
        if self.keep_case:
            names += [b.lower() for b in BASES]
        self.vocab = {name: i for i, name in enumerate(names)}
        n_id = self.vocab["N"]
        lut = np.full(256, n_id, dtype=np.uint8)
        for b in BASES:
            lut[ord(b)] = self.vocab[b]
            lut[ord(b.lower())] = self.vocab[b.lower()] if self.keep_case else self.vocab[b]
        if self.keep_case:
            for c in IUPAC:
                lut[ord(c.lower())] = self.vocab["n"]
        self._lut = lut
        # complement table over ids (specials map to themselves)
        comp = np.arange(len(names), dtype=np.int64)
        pairs = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
        for b, c in pairs.items():
            comp[self.vocab[b]] = self.vocab[c]
            if self.keep_case:
                comp[self.vocab[b.lower()]] = self.vocab[c.lower()]
        self._comp = comp
        self._chars = np.array([ord(n) if len(n) == 1 else ord("?") for n in names], dtype=np.uint8)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def n_specials(self) -> int:
        """Ids below this are special tokens; ids from here on are bases."""
        return len(SPECIALS)

    def is_n(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask of N (either case) positions."""
        mask = ids == self.vocab["N"]
        if self.keep_case:
            mask |= ids == self.vocab["n"]
        return mask

    def encode(self, seq: str | bytes) -> np.ndarray:
        """A DNA string to an int64 id array (no BOS/EOS added)."""
        if isinstance(seq, str):
            seq = seq.encode("ascii", errors="replace")
        return self._lut[np.frombuffer(seq, dtype=np.uint8)].astype(np.int64)

    def decode(self, ids: np.ndarray) -> str:
        """Ids back to a string; special tokens print as '?'."""
        return self._chars[np.asarray(ids, dtype=np.int64)].tobytes().decode("ascii")

    def reverse_complement(self, ids: np.ndarray) -> np.ndarray:
        """The reverse complement of an id array (N and specials stay themselves)."""
        return self._comp[np.asarray(ids)[::-1]]

    def to_dict(self) -> dict:
        """What a checkpoint stores to rebuild this tokenizer."""
        return {"keep_case": self.keep_case, "vocab": dict(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        tok = cls(keep_case=bool(d.get("keep_case", False)))
        if "vocab" in d and dict(d["vocab"]) != tok.vocab:
            raise UserError("checkpoint vocabulary differs from this seqsuite version's DNA tokenizer")
        return tok


# ----------------------------------------------------------------------------------------------
# Cache folder and FASTA

def _compression(path: Path) -> str:
    """'plain', 'gzip' or 'bgzip' from the file's first bytes (BGZF = gzip with a 'BC' field)."""
    with open(path, "rb") as f:
        head = f.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    if len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzip"
    return "gzip"


def _writable_dir(d: Path) -> bool:
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK)


def _file_key(path: Path) -> str:
    """A short id of a file's absolute path, size and mtime (names cached derivatives)."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


class Fasta:
    """Random access to an indexed FASTA (plain or bgzip), returning token ids.

    The pyfaidx index (.fai) is written beside the FASTA when that folder is writable, else
    in the cache folder. A bgzip FASTA is read through Biopython when it is installed; without
    it, the file is decompressed once into the cache folder (a log line says so). Plain gzip is
    refused because it cannot be read at random positions. CRLF line ends and lowercase bases
    are accepted.
    """

    def __init__(self, path: str | os.PathLike, tokenizer: Tokenizer | None = None,
                 verbose: bool = True):
        self.path = Path(path)
        self.tokenizer = tokenizer or Tokenizer()
        if not self.path.exists():
            raise UserError(f"FASTA file not found: {self.path} (check the path)")
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder, not a FASTA file")
        kind = _compression(self.path)
        source = self.path
        if kind == "gzip":
            raise UserError(
                f"{self.path} is gzip-compressed, which cannot be read at random positions: "
                f"recompress it with `gunzip -c {self.path} | bgzip > {self.path.stem}.fa.gz` "
                f"(bgzip is in htslib/samtools) or decompress it with gunzip")
        if kind == "bgzip":
            try:
                import Bio  # noqa: F401  (pyfaidx reads bgzip through Biopython)
            except ImportError:
                source = self._decompress_to_cache(verbose)
        if source.stat().st_size == 0:
            raise UserError(f"FASTA file {self.path} is empty")
        self.source = source
        self._fa = self._open_pyfaidx(source)
        self.names = list(self._fa.keys())
        if not self.names:
            raise UserError(f"FASTA file {self.path} has no records (no line starting with '>')")
        self.lengths = {name: len(self._fa[name]) for name in self.names}

    def _decompress_to_cache(self, verbose: bool) -> Path:
        out = cache_dir() / "fasta" / f"{self.path.name.removesuffix('.gz').removesuffix('.bgz')}-{_file_key(self.path)}.fa"
        if not out.exists():
            if verbose:
                print(f"note: {self.path} is bgzip; Biopython is not installed, so it is "
                      f"decompressed once to {out}")
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".fa.tmp")
                with gzip.open(self.path, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                os.replace(tmp, out)
            except OSError as e:
                raise UserError(f"cannot decompress bgzip FASTA {self.path} into {out.parent}: {e}; "
                                f"set SEQSUITE_CACHE to a writable folder") from None
        return out

    def _index_name(self, source: Path) -> str:
        """Where the .fai lives: beside the FASTA if present or writable, else in the cache."""
        beside = Path(str(source) + ".fai")
        if beside.exists() and beside.stat().st_mtime >= source.stat().st_mtime:
            return str(beside)
        if _writable_dir(source.parent):
            return str(beside)
        cached = cache_dir() / "fai" / f"{source.name}-{_file_key(source)}.fai"
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        if not _writable_dir(cached.parent):
            raise UserError(
                f"cannot write a FASTA index for {source}: its folder is not writable and neither "
                f"is the cache {cached.parent}; run `samtools faidx {source}` where you can write "
                f"or set SEQSUITE_CACHE to a writable folder")
        return str(cached)

    def _open_pyfaidx(self, source: Path):
        import pyfaidx

        index = self._index_name(source)
        try:
            return pyfaidx.Fasta(str(source), indexname=index, as_raw=True,
                                 sequence_always_upper=False, rebuild=True)
        except pyfaidx.FastaIndexingError as e:
            hint = (" (lines of one record must have equal length; reformat it, e.g. "
                    "`seqkit seq -w 60`)" if "line length" in str(e).lower() else "")
            if Path(index).exists() and Path(index).stat().st_size == 0:
                Path(index).unlink()
            raise UserError(f"cannot index FASTA {source}: {e}{hint}") from None
        except ValueError as e:
            raise UserError(f"cannot read FASTA {source}: {e}") from None
        except OSError as e:
            raise UserError(f"cannot read or index FASTA {source}: {e}") from None

    def fetch(self, name: str, start: int, end: int) -> np.ndarray:
        """Token ids of bases [start, end) (0-based, half-open) of record `name`."""
        if start >= end:
            return np.zeros(0, dtype=np.int64)
        seq = self._fa[name][start:end]
        return self.tokenizer.encode(seq)

    def record(self, name: str) -> np.ndarray:
        """Token ids of a whole record."""
        return self.fetch(name, 0, self.lengths[name])

    def close(self) -> None:
        self._fa.close()


# ----------------------------------------------------------------------------------------------
# BED intervals and hold-out splits

SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid",
                  "test": "test"}


@dataclass(frozen=True)
class Interval:
    """A 0-based half-open region [start, end) of one chromosome."""

    chrom: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def read_bed(path: str | os.PathLike, lengths: dict[str, int]) -> dict[str, list[Interval]]:
    """Read a `chrom start end split` BED (Basenji sequences_human.bed layout, no header).

    Returns intervals per split. Every line is checked against the FASTA's record `lengths`;
    the first bad line raises UserError naming the file, the line and the problem. Comment,
    `track` and `browser` lines are skipped. Split names: train, valid (or validation/val), test.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"BED file not found: {path}")
    out: dict[str, list[Interval]] = {s: [] for s in SPLITS}
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            where = f"{path}:{lineno}"
            if len(cols) < 4:
                raise UserError(f"{where}: expected 4 columns `chrom start end split`, got {len(cols)}")
            chrom, s, e, split = cols[0], cols[1], cols[2], cols[3].strip()
            try:
                start, end = int(s), int(e)
            except ValueError:
                raise UserError(f"{where}: start/end must be integers, got {s!r} {e!r}") from None
            if chrom not in lengths:
                some = ", ".join(list(lengths)[:5])
                raise UserError(f"{where}: chromosome {chrom!r} is not in the FASTA (it has {some}"
                                f"{', ...' if len(lengths) > 5 else ''}); use the BED of this genome")
            if start < 0 or start >= end:
                raise UserError(f"{where}: start must be >= 0 and < end, got start={start} end={end}")
            if end > lengths[chrom]:
                raise UserError(f"{where}: end {end} is past the end of {chrom} "
                                f"(length {lengths[chrom]}); is the BED for another assembly?")
            key = _SPLIT_ALIASES.get(split.lower())
            if key is None:
                raise UserError(f"{where}: unknown split {split!r}; use train, valid or test")
            out[key].append(Interval(chrom, start, end))
    if not any(out.values()):
        raise UserError(f"BED file {path} has no intervals")
    return out


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Join overlapping or touching intervals of one split into longer regions."""
    merged: list[Interval] = []
    for iv in sorted(intervals, key=lambda i: (i.chrom, i.start)):
        if merged and merged[-1].chrom == iv.chrom and iv.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Interval(last.chrom, last.start, max(last.end, iv.end))
        else:
            merged.append(iv)
    return merged


def chromosome_splits(lengths: dict[str, int], valid_chroms: list[str] | None,
                      test_chroms: list[str] | None) -> dict[str, list[Interval]]:
    """Without a BED: whole chromosomes per split; named valid/test ones held out, rest train."""
    valid, test = list(valid_chroms or []), list(test_chroms or [])
    for name in valid + test:
        if name not in lengths:
            raise UserError(f"held-out chromosome {name!r} is not in the FASTA "
                            f"(it has {', '.join(list(lengths)[:8])})")
    both = set(valid) & set(test)
    if both:
        raise UserError(f"chromosome(s) {sorted(both)} are in both --valid-chroms and --test-chroms")
    held = set(valid) | set(test)
    return {"train": [Interval(c, 0, n) for c, n in lengths.items() if c not in held],
            "valid": [Interval(c, 0, lengths[c]) for c in valid],
            "test": [Interval(c, 0, lengths[c]) for c in test]}


def parse_chroms(text: str | None) -> list[str]:
    """'chr8,chr9' (or space separated) to a list."""
    return [c for c in re.split(r"[,\s]+", text or "") if c]


def read_manifest(path: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """Read `species<TAB>path` lines; path is a FASTA or a folder of FASTAs (relative paths are
    taken from the manifest's folder). Returns (species, [fasta files]) in file order."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"species manifest not found: {path}")
    entries: list[tuple[str, list[Path]]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 2 or not cols[0].strip() or not cols[1].strip():
                raise UserError(f"{path}:{lineno}: expected `species<TAB>path`, got {line!r}")
            species, p = cols[0].strip(), Path(cols[1].strip()).expanduser()
            if species in seen:
                raise UserError(f"{path}:{lineno}: species {species!r} is listed twice")
            seen.add(species)
            if not p.is_absolute():
                p = path.parent / p
            if p.is_dir():
                files = sorted(q for q in p.iterdir()
                               if re.search(r"\.(fa|fasta|fna)(\.gz|\.bgz)?$", q.name, re.I))
                if not files:
                    raise UserError(f"{path}:{lineno}: folder {p} holds no .fa/.fasta/.fna files")
            elif p.exists():
                files = [p]
            else:
                raise UserError(f"{path}:{lineno}: {p} does not exist")
            entries.append((species, files))
    if len(entries) < 2:
        raise UserError(f"species manifest {path} lists {len(entries)} species; classification needs at least 2")
    return entries
