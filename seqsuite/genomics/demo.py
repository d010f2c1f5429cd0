"""The demo DNA data: a structured synthetic genome and five great-ape-like species.

`make_demo(out_dir)` writes real-format files (FASTA + .fai, BED, manifest) so that every
genomics command can run without downloads. The genome has learnable structure: isochores of
varying GC content with CpG depletion, interspersed repeat families (copies mutated from a
consensus, LINE-like ones 5'-truncated), tandem repeats, N gaps, and soft-masked (lowercase)
repeats. The apes descend from one ancestral genome along the real phylogeny
(((human, (chimpanzee, bonobo)), gorilla), orangutan) with substitutions, small indels and
lineage-specific repeat subfamilies whose copies land on every chromosome; branch lengths
give ≈1.2% human–chimp, ≈0.4% chimp–bonobo, ≈1.6% to gorilla and ≈3% to orangutan
substitution divergence. All of it is vectorised numpy and deterministic per seed.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seqsuite.errors import UserError
from seqsuite.utils import atomic_path, atomic_write_text

A, C, G, T, N = 0, 1, 2, 3, 4
_UPPER = np.frombuffer(b"ACGTN", dtype=np.uint8)
_LOWER = np.frombuffer(b"acgtn", dtype=np.uint8)
_COMP = np.array([T, G, C, A, N], dtype=np.uint8)
_TRANSITION = np.array([G, T, A, C, N], dtype=np.uint8)

SPECIES = ("human", "chimpanzee", "bonobo", "gorilla", "orangutan")
# (parent, child, branch length in substitutions per site); ultrametric with split heights
# orangutan 1.5%, gorilla 0.8%, human-Pan 0.6%, chimp-bonobo 0.2%: pairwise = 2 * height.
TREE = (
    ("root", "orangutan", 0.015),
    ("root", "hpg", 0.007),
    ("hpg", "gorilla", 0.008),
    ("hpg", "hp", 0.002),
    ("hp", "human", 0.006),
    ("hp", "pan", 0.004),
    ("pan", "chimpanzee", 0.002),
    ("pan", "bonobo", 0.002),
)
TARGET_DIVERGENCE = {("human", "chimpanzee"): 0.012, ("chimpanzee", "bonobo"): 0.004,
                     ("human", "gorilla"): 0.016, ("human", "orangutan"): 0.030}


@dataclass
class DemoSize:
    """How big the demo is: genome chromosome lengths, ape chromosome lengths, BED interval
    length, and how many consecutive intervals share a split (a block)."""

    genome_chroms: tuple[int, ...]
    ape_chroms: tuple[int, ...]
    interval_len: int
    bed_block: int = 4


SIZES = {
    "tiny": DemoSize((120_000, 100_000, 80_000), (80_000, 70_000, 60_000), 4096),
    "small": DemoSize((1_000_000, 800_000, 700_000, 600_000, 500_000),
                      (500_000, 450_000, 400_000, 400_000, 350_000), 32768),
    "large": DemoSize((8_000_000, 7_000_000, 6_000_000, 5_000_000, 4_000_000, 3_000_000),
                      (4_000_000, 3_500_000, 3_000_000, 3_000_000, 2_500_000, 2_500_000), 131072,
                      bed_block=16),  # 2 Mb blocks: valid/test hold windows of 2^20
}


# ----------------------------------------------------------------------------------------------
# Small helpers over base codes (uint8 0..4)

def random_bases(rng: np.random.Generator, n: int, gc: float | np.ndarray = 0.5) -> np.ndarray:
    """i.i.d. bases with GC fraction `gc` (a scalar or one value per position)."""
    u = rng.random(n)
    at = (1.0 - np.asarray(gc)) / 2
    return np.where(u < at, A, np.where(u < 0.5, C, np.where(u < 0.5 + (0.5 - at), G, T))).astype(np.uint8)


def revcomp(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of base codes."""
    return _COMP[codes[::-1]]


def substitute(rng: np.random.Generator, codes: np.ndarray, rate: float | np.ndarray) -> np.ndarray:
    """Copy of `codes` with each non-N base substituted with probability `rate`.

    Transitions are twice as likely as the two transversions together (ti/tv ≈ 2).
    """
    out = codes.copy()
    hit = (rng.random(codes.size) < rate) & (codes < N)
    idx = np.flatnonzero(hit)
    old = codes[idx]
    u = rng.random(idx.size)
    trans = _TRANSITION[old]
    # the two transversions of a base: the bases not equal to it nor its transition partner
    purine = (old == A) | (old == G)
    tv = np.where(purine, np.where(u < 5 / 6, C, T), np.where(u < 5 / 6, A, G))
    out[idx] = np.where(u < 2 / 3, trans, tv).astype(np.uint8)
    return out


def cpg_deplete(rng: np.random.Generator, codes: np.ndarray, frac: float = 0.75) -> None:
    """Turn a fraction of CpG dinucleotides into TpG or CpA in place (methylation decay)."""
    cg = np.flatnonzero((codes[:-1] == C) & (codes[1:] == G))
    cg = cg[rng.random(cg.size) < frac]
    to_t = rng.random(cg.size) < 0.5
    codes[cg[to_t]] = T
    codes[cg[~to_t] + 1] = A


# ----------------------------------------------------------------------------------------------
# Ancestral genome

@dataclass
class RepeatFamily:
    """An interspersed repeat: consensus, copy divergence, whether copies are 5'-truncated."""

    name: str
    consensus: np.ndarray
    divergence: float
    truncated: bool
    weight: float


def make_families(rng: np.random.Generator, n: int = 12) -> list[RepeatFamily]:
    """Repeat families: Alu-like SINEs with poly-A tails, LINE-like long elements, DNA transposons."""
    fams = []
    for i in range(n):
        kind = ("sine", "line", "dna")[i % 3]
        if kind == "sine":
            body = random_bases(rng, int(rng.integers(260, 320)), gc=0.58)
            cons = np.concatenate([body, np.full(int(rng.integers(12, 30)), A, np.uint8)])
            fams.append(RepeatFamily(f"SINE{i}", cons, float(rng.uniform(0.02, 0.15)), False, 3.0))
        elif kind == "line":
            cons = random_bases(rng, int(rng.integers(3000, 6000)), gc=0.40)
            fams.append(RepeatFamily(f"LINE{i}", cons, float(rng.uniform(0.03, 0.20)), True, 2.0))
        else:
            body = random_bases(rng, int(rng.integers(200, 1200)), gc=0.45)
            tir = random_bases(rng, 25)
            cons = np.concatenate([tir, body, revcomp(tir)])  # terminal inverted repeats
            fams.append(RepeatFamily(f"DNA{i}", cons, float(rng.uniform(0.05, 0.20)), False, 1.0))
    return fams


def _repeat_copy(rng: np.random.Generator, fam: RepeatFamily) -> np.ndarray:
    """One copy of a family: maybe 5'-truncated, maybe on the minus strand (not yet mutated)."""
    cons = fam.consensus
    if fam.truncated:
        keep = int(min(cons.size, max(150, rng.exponential(900))))
        cons = cons[cons.size - keep:]
    return revcomp(cons) if rng.random() < 0.5 else cons


def _tandem_repeat(rng: np.random.Generator) -> np.ndarray:
    """A micro- or minisatellite: a short unit repeated, with a few mutations."""
    unit = int(rng.choice([1, 2, 2, 3, 4, 4, 5, 6, 12, 24, 36]))
    total = int(rng.integers(24, 240 if unit < 10 else 600))
    tile = np.tile(random_bases(rng, unit), total // unit + 1)[:total]
    return substitute(rng, tile, 0.03)


def make_chromosome(rng: np.random.Generator, length: int, families: list[RepeatFamily],
                    repeat_cover: float = 0.40) -> tuple[np.ndarray, np.ndarray]:
    """One chromosome of about `length` bases: (codes uint8, soft-mask bool)."""
    # isochores: blocks of exponential length with their own GC fraction
    n_blocks = max(1, int(length / 60_000 * 2))
    sizes = rng.exponential(1.0, n_blocks)
    bounds = np.floor(np.cumsum(sizes) / sizes.sum() * length).astype(np.int64)
    bounds[-1] = length
    gc_block = np.clip(rng.normal(0.42, 0.06, n_blocks), 0.30, 0.60)
    gc = np.repeat(gc_block, np.diff(np.concatenate([[0], bounds])))
    # insert repeats (and tandem repeats) between background pieces; keep the total ≈ length
    weights = np.array([f.weight for f in families])
    weights /= weights.sum()
    mean_rep = float(sum(w * (min(f.consensus.size, 900) if f.truncated else f.consensus.size)
                         for w, f in zip(weights, families)))
    n_rep = int(length * repeat_cover / mean_rep)
    n_tr = int(length / 4_000)
    fam_ids = rng.choice(len(families), n_rep, p=weights)
    copies = [_repeat_copy(rng, families[fi]) for fi in fam_ids]
    inserts: list[np.ndarray] = []
    if copies:  # mutate all interspersed copies at their family divergence in one call
        rates = np.concatenate([np.full(c.size, families[fi].divergence) for c, fi in zip(copies, fam_ids)])
        flat = substitute(rng, np.concatenate(copies), rates)
        cpg_deplete(rng, flat, frac=0.5)
        inserts = np.split(flat, np.cumsum([c.size for c in copies])[:-1])
    inserts += [_tandem_repeat(rng) for _ in range(n_tr)]
    inserts = [inserts[i] for i in rng.permutation(len(inserts))]
    ins_len = sum(x.size for x in inserts)
    bg_len = max(length - ins_len, length // 4)
    background = random_bases(rng, bg_len, gc[np.linspace(0, length - 1, bg_len).astype(np.int64)])
    cpg_deplete(rng, background)
    cuts = np.sort(rng.integers(0, bg_len, len(inserts)))
    pieces, mask_pieces, prev = [], [], 0
    for cut, ins in zip(cuts, inserts):
        pieces += [background[prev:cut], ins]
        mask_pieces += [np.zeros(cut - prev, bool), np.ones(ins.size, bool)]
        prev = cut
    pieces.append(background[prev:])
    mask_pieces.append(np.zeros(bg_len - prev, bool))
    codes, mask = np.concatenate(pieces), np.concatenate(mask_pieces)
    local_duplications(rng, codes, mask)
    # N gaps: a telomere-like run at the start, a centromere-like gap, a few small gaps
    n = codes.size
    gaps = [(0, max(200, n // 100))]
    mid = int(n * rng.uniform(0.35, 0.6))
    gaps.append((mid, mid + max(500, n // 40)))
    for s in rng.integers(0, n, 3):
        gaps.append((int(s), int(s) + int(rng.integers(100, 2000))))
    for s, e in gaps:
        codes[s:e] = N
        mask[s:e] = False
    return codes, mask


def local_duplications(rng: np.random.Generator, codes: np.ndarray, mask: np.ndarray,
                       cover: float = 0.08, max_back: int = 6000) -> None:
    """Overwrite `cover` of the chromosome with copies (2% diverged) of sequence from at most
    `max_back` bases upstream: tandem and nearby segmental duplications, in place. They are
    what a long-context model can copy and an order-k Markov chain cannot."""
    n = codes.size
    lens = rng.integers(200, 2000, int(n * cover / 1100))
    for ln in lens:
        ln = int(ln)
        dst = int(rng.integers(max_back, max(max_back + 1, n - ln)))
        src = dst - int(rng.integers(ln, max_back + 1))
        codes[dst:dst + ln] = substitute(rng, codes[src:src + ln], 0.02)
        mask[dst:dst + ln] = mask[src:src + ln]


def make_genome(rng: np.random.Generator, lengths: tuple[int, ...],
                families: list[RepeatFamily] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Chromosomes chr1..chrK of the given lengths: name -> (codes, soft-mask)."""
    families = families if families is not None else make_families(rng)
    return {f"chr{i + 1}": make_chromosome(rng, n, families) for i, n in enumerate(lengths)}


# ----------------------------------------------------------------------------------------------
# Evolution along the ape phylogeny

def _subfamily(rng: np.random.Generator, parent: np.ndarray) -> np.ndarray:
    """A lineage-specific repeat subfamily: 4% diagnostic substitutions and a short insertion."""
    child = substitute(rng, parent, 0.04)
    at = int(rng.integers(20, child.size - 20))
    return np.concatenate([child[:at], random_bases(rng, int(rng.integers(8, 20))), child[at:]])


def evolve(rng: np.random.Generator, codes: np.ndarray, mask: np.ndarray, branch: float,
           subfamily: np.ndarray, indel_ratio: float = 0.1,
           lineage_cover: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """One chromosome along one branch of `branch` substitutions per site.

    Substitutions (ti/tv 2), small indels (`indel_ratio` per substitution, lengths 1..20,
    geometric) and new copies of the lineage's repeat subfamily covering
    `lineage_cover * branch` of the chromosome. N runs are left alone.
    """
    codes = substitute(rng, codes, branch)
    n = codes.size
    # deletions
    n_del = rng.poisson(n * branch * indel_ratio / 2)
    starts = rng.integers(0, n, n_del)
    lens = np.minimum(rng.geometric(0.5, n_del), 20)
    depth = np.zeros(n + 1, np.int64)  # how many deletions cover each base
    np.add.at(depth, starts, 1)
    np.add.at(depth, np.minimum(starts + lens, n), -1)
    keep = (np.cumsum(depth[:n]) == 0) | (codes == N)
    codes, mask = codes[keep], mask[keep]
    n = codes.size
    # insertions: random short ones and lineage repeat copies, all through one np.insert
    n_ins = rng.poisson(n * branch * indel_ratio / 2)
    ins_pos = rng.integers(0, n, n_ins)
    ins_len = np.minimum(rng.geometric(0.5, n_ins), 20)
    n_rep = rng.poisson(n * branch * lineage_cover / subfamily.size)
    rep_pos = rng.integers(0, n, n_rep)
    copies = [subfamily if rng.random() < 0.5 else revcomp(subfamily) for _ in range(n_rep)]
    rep_codes = substitute(rng, np.concatenate(copies), 0.005) if copies else np.zeros(0, np.uint8)
    pos = np.concatenate([np.repeat(ins_pos, ins_len), np.repeat(rep_pos, subfamily.size)])
    vals = np.concatenate([random_bases(rng, int(ins_len.sum())), rep_codes]).astype(np.uint8)
    vmask = np.concatenate([np.zeros(int(ins_len.sum()), bool), np.ones(rep_codes.size, bool)])
    # keep each inserted block contiguous: stable order by position then block
    block = np.concatenate([np.repeat(np.arange(n_ins), ins_len),
                            n_ins + np.repeat(np.arange(n_rep), subfamily.size)])
    order = np.lexsort((block, pos))
    codes = np.insert(codes, pos[order], vals[order])
    mask = np.insert(mask, pos[order], vmask[order])
    return codes, mask


def make_apes(rng: np.random.Generator, lengths: tuple[int, ...], lineage_cover: float = 10.0,
              indel_ratio: float = 0.1) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Five species' genomes evolved from one ancestor along TREE: species -> chrom -> arrays."""
    families = make_families(rng)
    ancestor = make_genome(rng, lengths, families)
    sines = [f for f in families if f.name.startswith("SINE")]
    genomes = {"root": ancestor}
    active = {"root": sines[0].consensus}
    for parent, child, branch in TREE:
        sub = _subfamily(rng, active[parent])
        active[child] = sub
        genomes[child] = {name: evolve(rng, c, m, branch, sub, indel_ratio, lineage_cover)
                          for name, (c, m) in genomes[parent].items()}
    return {s: genomes[s] for s in SPECIES}


# ----------------------------------------------------------------------------------------------
# Writing files

def write_fasta(path: Path, records: dict[str, tuple[np.ndarray, np.ndarray]], width: int = 60) -> None:
    """Write records (codes, soft-mask) as FASTA with `width`-base lines, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for name, (codes, mask) in records.items():
            text = np.where(mask, _LOWER[codes], _UPPER[codes]).astype(np.uint8)
            full = text.size // width * width
            body = np.concatenate([text[:full].reshape(-1, width),
                                   np.full((full // width, 1), ord("\n"), np.uint8)], axis=1).ravel()
            f.write(f">{name}\n".encode())
            f.write(body.tobytes())
            if text.size > full:
                f.write(text[full:].tobytes() + b"\n")


def make_bed(records: dict[str, tuple[np.ndarray, np.ndarray]], interval_len: int,
             rng: np.random.Generator, block: int = 4) -> str:
    """Tile chromosomes with `interval_len` intervals (skipping mostly-N ones) and give blocks
    of `block` consecutive intervals the split train/valid/test with odds 8:1:1 (each split at
    least one block). Returns the BED text."""
    rows = []
    for name, (codes, _) in records.items():
        for s in range(0, codes.size - interval_len + 1, interval_len):
            if (codes[s:s + interval_len] == N).mean() < 0.5:
                rows.append((name, s, s + interval_len))
    blocks = np.arange(len(rows)) // block
    n_blocks = int(blocks.max()) + 1 if rows else 0
    if n_blocks < 3:
        raise UserError("demo genome too small for train/valid/test intervals")
    split_of = rng.choice(3, n_blocks, p=[0.8, 0.1, 0.1])
    for k in (1, 2):
        if not (split_of == k).any():
            split_of[rng.choice(np.flatnonzero(split_of == 0))] = k
    names = ("train", "valid", "test")
    return "".join(f"{c}\t{s}\t{e}\t{names[split_of[b]]}\n" for (c, s, e), b in zip(rows, blocks))


def make_demo(out_dir: str | Path, size: str = "small", seed: int = 0, verbose: bool = True,
              lineage_cover: float = 10.0) -> dict[str, Path]:
    """Write the demo data into `out_dir`: genome.fa (+.fai), intervals.bed, apes/<species>.fa
    (+.fai) and manifest.tsv (`species<TAB>path`). Returns the paths. Deterministic per seed.

    `lineage_cover`: new copies of each lineage's repeat subfamily cover lineage_cover x branch
    length of the genome (10: the human branch adds 6%, one copy per ~5.5 kb; chimpanzee and
    bonobo 2% each). These copies are the evidence a classifier can find on held-out
    chromosomes, so accuracy rises with the window length; real genomes are far sparser
    (hence the paper's 1 Mb windows), the demo is denser so that short CPU runs learn.
    """
    if size not in SIZES:
        raise UserError(f"unknown demo size {size!r}: use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rng = np.random.default_rng([seed, 1])
    genome = make_genome(rng, spec.genome_chroms)
    write_fasta(out / "genome.fa", genome)
    atomic_write_text(out / "intervals.bed", make_bed(genome, spec.interval_len, rng, spec.bed_block))
    apes = make_apes(np.random.default_rng([seed, 2]), spec.ape_chroms, lineage_cover)
    (out / "apes").mkdir(exist_ok=True)
    for species, recs in apes.items():
        write_fasta(out / "apes" / f"{species}.fa", recs)
    atomic_write_text(out / "manifest.tsv", "".join(f"{s}\tapes/{s}.fa\n" for s in SPECIES))
    # build the .fai indexes now (pyfaidx), so readers of the folder find them
    from .data import Fasta

    for fa in [out / "genome.fa"] + [out / "apes" / f"{s}.fa" for s in SPECIES]:
        Fasta(fa).close()
    info = {"size": size, "seed": seed, "spec": asdict(spec), "species": list(SPECIES),
            "lineage_cover": lineage_cover,
            "tree": [list(e) for e in TREE],
            "genome_bases": int(sum(c.size for c, _ in genome.values())),
            "ape_bases": {s: int(sum(c.size for c, _ in r.values())) for s, r in apes.items()}}
    atomic_write_text(out / "demo.json", json.dumps(info, indent=2))
    if verbose:
        print(f"demo data ({size}, seed {seed}) written to {out} in {time.time() - t0:.1f}s: "
              f"genome {info['genome_bases'] / 1e6:.2f} Mb, 5 apes × "
              f"{info['ape_bases']['human'] / 1e6:.2f} Mb")
    return {"genome": out / "genome.fa", "bed": out / "intervals.bed",
            "manifest": out / "manifest.tsv", "apes": out / "apes"}


def demo_dir(size: str = "small", seed: int = 0) -> dict[str, Path]:
    """The cached demo data (`$SEQSUITE_CACHE/demo/<size>-<seed>`), generated on first use."""
    from seqsuite.utils import cached_demo

    out = cached_demo(f"genomics-{size}-{seed}", "generating the genomics demo data",
                      lambda out: make_demo(out, size=size, seed=seed))
    return {"genome": out / "genome.fa", "bed": out / "intervals.bed",
            "manifest": out / "manifest.tsv", "apes": out / "apes"}


# ----------------------------------------------------------------------------------------------
# Divergence check (alignment-free)

def kmer_set(codes: np.ndarray, k: int = 16) -> np.ndarray:
    """Sorted unique forward-strand k-mer codes (2 bits per base) of the k-mers without N."""
    codes = codes.astype(np.int64)
    n = codes.size - k + 1
    if n <= 0:
        return np.zeros(0, np.int64)
    h = np.zeros(n, np.int64)
    bad = np.zeros(n, bool)
    for j in range(k):
        part = codes[j:j + n]
        h = (h << 2) | np.minimum(part, 3)
        bad |= part == N
    return np.unique(h[~bad])


def mash_distance(a: np.ndarray, b: np.ndarray, k: int = 16) -> float:
    """Per-base mutation distance estimated from k-mer Jaccard (Mash: -ln(2j/(1+j))/k)."""
    sa, sb = kmer_set(a, k), kmer_set(b, k)
    inter = np.intersect1d(sa, sb, assume_unique=True).size
    j = inter / max(1, sa.size + sb.size - inter)
    return float(-np.log(2 * j / (1 + j)) / k) if j > 0 else 1.0
