"""Genomics tasks for the training loop, and the functions behind the CLI commands.

* `GenomeLMTask`: next-base prediction on windows of a FASTA (BED splits or held-out
  chromosomes).
* `SpeciesTask`: which species does a window come from (species uniform, chromosome uniform,
  window uniform; validation and test on held-out chromosomes or regions).
* `pretrain`, `evaluate_lm`, `finetune_species`, `evaluate_species`, `classify_fasta`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqsuite.errors import UserError

from .data import (IGNORE_INDEX, SPLITS, Fasta, Interval, Tokenizer, chromosome_splits,
                   merge_intervals, read_bed, read_manifest)
from .metrics import (MarkovModel, bits_per_base, classification_report, max_markov_order,
                      perplexity, plot_confusion)

# the loop's fixed validation/test seed tag; test windows use their own tag
TEST_SEED_TAG = 2**32 - 2


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use train, valid or test")
    return split


def _weighted_pick(rng: np.random.Generator, cum: np.ndarray) -> int:
    """Index i with probability proportional to the i-th increment of the cumulative array."""
    return int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))


# ----------------------------------------------------------------------------------------------
# Language modelling on a genome

class GenomeLMTask:
    """Next-base prediction on windows of length L sampled inside a genome's split regions.

    Regions: the BED intervals of the split, with overlapping or touching intervals of the same
    split joined into one region (Basenji intervals tile the genome, so windows longer than
    one interval stay inside the split); without a BED, whole chromosomes (`valid_chroms` and
    `test_chroms` held out, all others train). A region is picked with probability proportional
    to its length, then a uniform window of L+1 bases inside it (tokens = first L, targets = the
    next base of each). Regions shorter than L+1 are padded at the end with PAD, whose targets
    are ignored; a window longer than every region of the split is an error. Windows with more
    than `max_n_frac` N are skipped and redrawn (counted in `self.skipped_n`). Training windows
    are reverse-complemented with probability 1/2 when `rc_aug`.
    """

    def __init__(self, fasta: str | Path, bed: str | Path | None = None,
                 valid_chroms: list[str] | None = None, test_chroms: list[str] | None = None,
                 rc_aug: bool = True, keep_case: bool = False, max_n_frac: float = 0.5,
                 max_tries: int = 64):
        self.tokenizer = Tokenizer(keep_case=keep_case)
        self.fasta = Fasta(fasta, self.tokenizer)
        self.fasta_path = str(Path(fasta).resolve())
        self.bed_path = str(Path(bed).resolve()) if bed else None
        self.valid_chroms, self.test_chroms = list(valid_chroms or []), list(test_chroms or [])
        if bed:
            splits = read_bed(bed, self.fasta.lengths)
        else:
            splits = chromosome_splits(self.fasta.lengths, valid_chroms, test_chroms)
        self.regions = {s: merge_intervals(v) for s, v in splits.items()}
        self.rc_aug, self.max_n_frac, self.max_tries = rc_aug, max_n_frac, max_tries
        self.vocab_size = self.tokenizer.vocab_size
        self.skipped_n = 0
        self._cum: dict[str, np.ndarray] = {}
        self._longest: dict[str, int] = {}

    def info(self) -> dict:
        """What a checkpoint stores to rebuild this task (config.json "task")."""
        return {"kind": "genome_lm", "fasta": self.fasta_path, "bed": self.bed_path,
                "valid_chroms": self.valid_chroms, "test_chroms": self.test_chroms,
                "rc_aug": self.rc_aug, "max_n_frac": self.max_n_frac,
                "tokenizer": self.tokenizer.to_dict(), "vocab_size": self.vocab_size}

    def describe(self, seq_len: int) -> str:
        """One line on the data: regions and bases per split, and how short regions are handled."""
        parts = []
        for split, regions in self.regions.items():
            total = sum(len(r) for r in regions)
            short = sum(1 for r in regions if len(r) < seq_len + 1)
            parts.append(f"{split} {len(regions)} regions / {total / 1e6:.2f} Mb"
                         + (f" ({short} shorter than L+1, padded)" if short else ""))
        how = "BED intervals, touching ones of a split joined" if self.bed_path else "held-out chromosomes"
        return f"data: {self.fasta.path} ({how}): " + "; ".join(parts)

    def split_regions(self, split: str, seq_len: int) -> list[Interval]:
        """The regions of a split, checked to be non-empty and long enough for `seq_len`."""
        regions = self.regions[_check_split(split)]
        if not regions:
            how = (f"no BED interval has split '{split}'" if self.bed_path
                   else f"no chromosome is held out for '{split}'; pass --{split}-chroms or --bed")
            raise UserError(f"split '{split}' is empty: {how}")
        if split not in self._longest:
            self._longest[split] = max(len(r) for r in regions)
        longest = self._longest[split]
        if seq_len > longest:
            raise UserError(f"window of {seq_len} bases is longer than every '{split}' interval "
                            f"(longest {longest}); use --seq-len <= {longest}")
        return regions

    def sample(self, split: str, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """One window: {"tokens": int64[L], "targets": int64[L]} (targets of padding = -100)."""
        regions = self.split_regions(split, seq_len)
        if split not in self._cum:
            self._cum[split] = np.cumsum([len(r) for r in regions])
        need = seq_len + 1
        for attempt in range(self.max_tries):
            r = regions[_weighted_pick(rng, self._cum[split])]
            if len(r) >= need:
                start = r.start + int(rng.integers(0, len(r) - need + 1))
                ids = self.fasta.fetch(r.chrom, start, start + need)
            else:
                ids = self.fasta.fetch(r.chrom, r.start, r.end)
            if self.tokenizer.is_n(ids).mean() <= self.max_n_frac:
                break
            self.skipped_n += 1
        else:
            raise UserError(f"{self.max_tries} windows in a row of split '{split}' were mostly N; "
                            f"the regions of {self.fasta.path} are mostly gaps (check the BED)")
        if split == "train" and self.rc_aug and rng.random() < 0.5:
            ids = self.tokenizer.reverse_complement(ids)
        n = ids.size
        if n < need:
            ids = np.concatenate([ids, np.full(need - n, self.tokenizer.vocab["PAD"], np.int64)])
        tokens, targets = ids[:-1].copy(), ids[1:].copy()
        targets[n - 1:] = IGNORE_INDEX
        return {"tokens": tokens, "targets": targets}

    def loss(self, model, batch):
        """Mean next-base cross-entropy (nats) over non-padding targets, plus accuracy."""
        logits = model(batch["tokens"]).float()
        targets = batch["targets"]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        with torch.no_grad():
            keep = targets != IGNORE_INDEX
            acc = ((logits.argmax(-1) == targets) & keep).sum() / keep.sum().clamp(min=1)
        return loss, {"accuracy": float(acc)}

    def base_chunks(self, split: str = "train", max_bases: int = 20_000_000, chunk: int = 1 << 22,
                    seed: int = 0):
        """Yield token arrays covering the split's regions (a random subset up to `max_bases`)."""
        regions = list(self.regions[_check_split(split)])
        order = np.random.default_rng(seed).permutation(len(regions))
        total = 0
        for i in order:
            r = regions[i]
            for s in range(r.start, r.end, chunk):
                take = min(r.end - s, chunk, max_bases - total)
                if take <= 0:
                    return
                yield self.fasta.fetch(r.chrom, s, s + take)
                total += take


def fit_markov(task: GenomeLMTask, order: int | None = None, max_bases: int = 20_000_000,
               alpha: float = 0.1) -> MarkovModel:
    """Fit the order-k Markov baseline on (up to `max_bases` of) the training split."""
    tok = task.tokenizer
    A = tok.vocab_size - tok.n_specials
    k = max_markov_order(A) if order is None else order
    if k > max_markov_order(A):
        raise UserError(f"Markov order {k} is too large for a {A}-letter alphabet "
                        f"(at most {max_markov_order(A)})")
    return MarkovModel.fit(task.base_chunks("train", max_bases), k, A, tok.n_specials, alpha)


def fixed_windows(task, split: str, seq_len: int, n: int, seed: int = 0) -> list[dict]:
    """`n` evaluation examples drawn from fixed seeds (the same for every model)."""
    return [task.sample(split, np.random.default_rng([TEST_SEED_TAG, seed, i]), seq_len)
            for i in range(n)]


@torch.no_grad()
def evaluate_lm(model, task: GenomeLMTask, split: str = "test", seq_len: int = 1024,
                n_windows: int = 64, batch_size: int = 8, device: str = "cpu",
                markov_order: int | None = None, markov: MarkovModel | None = None,
                seed: int = 0, progress: bool = True) -> dict:
    """Loss (nats), bits per base and perplexity of `model` on fixed windows of `split`, next
    to an order-k Markov chain fitted on the training split and scored on the same windows.

    markov_order=None fits up to the largest order the count table allows (8 for A C G T N) and
    keeps the order with the lowest loss on fixed *validation* windows (if the task has a
    validation split), so the baseline is as strong as the training data supports.
    """
    from tqdm.auto import tqdm

    skipped_before = task.skipped_n
    windows = fixed_windows(task, split, seq_len, n_windows, seed)
    skipped = task.skipped_n - skipped_before
    if markov is None:
        markov = fit_markov(task, order=markov_order)
        if markov_order is None and task.regions["valid"]:
            try:
                markov.order = _best_markov_order(markov, task, seq_len, seed)
            except UserError:  # validation regions shorter than the window: keep the top order
                pass
    model.eval()
    model.to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") \
        else torch.autocast("cpu", enabled=False)
    nll, mk_nll, count = 0.0, 0.0, 0
    batches = range(0, len(windows), batch_size)
    for b in tqdm(batches, desc=f"evaluate {split}", disable=not progress, leave=False):
        chunk = windows[b:b + batch_size]
        tokens = np.stack([w["tokens"] for w in chunk])
        targets = np.stack([w["targets"] for w in chunk])
        t = torch.from_numpy(targets).to(device)
        with amp:
            logits = model(torch.from_numpy(tokens).to(device))
        nll += float(F.cross_entropy(logits.float().flatten(0, 1), t.flatten(),
                                     ignore_index=IGNORE_INDEX, reduction="sum"))
        mk_nll -= float(markov.token_logprobs(tokens, targets).sum())
        count += int((targets != IGNORE_INDEX).sum())
    loss, mk_loss = nll / max(count, 1), mk_nll / max(count, 1)
    return {"split": split, "seq_len": seq_len, "windows": len(windows), "bases": count,
            "loss": loss, "bits_per_base": bits_per_base(loss), "perplexity": perplexity(loss),
            "markov_order": markov.order, "markov_loss": mk_loss,
            "markov_bits_per_base": bits_per_base(mk_loss), "markov_perplexity": perplexity(mk_loss),
            "skipped_n_windows": skipped}


def _best_markov_order(markov: MarkovModel, task: GenomeLMTask, seq_len: int, seed: int,
                       n: int = 16) -> int:
    """The Markov order with the lowest loss on fixed validation windows."""
    val = fixed_windows(task, "valid", seq_len, n, seed + 1)
    tokens = np.stack([w["tokens"] for w in val])
    targets = np.stack([w["targets"] for w in val])
    losses = [-markov.token_logprobs(tokens, targets, order=k).sum() for k in range(markov.order + 1)]
    return int(np.argmin(losses))


def format_lm_report(r: dict) -> str:
    """Model and Markov baseline side by side, as a small table."""
    rows = [("model", r["loss"], r["bits_per_base"], r["perplexity"]),
            (f"order-{r['markov_order']} Markov", r["markov_loss"], r["markov_bits_per_base"],
             r["markov_perplexity"])]
    out = [f"{r['split']} split: {r['windows']} windows of {r['seq_len']} bases "
           f"({r['bases']} bases scored, {r['skipped_n_windows']} mostly-N windows skipped)",
           f"{'':22s} {'loss (nats)':>12s} {'bits/base':>10s} {'perplexity':>11s}"]
    out += [f"{name:22s} {loss:12.4f} {bpb:10.4f} {ppl:11.4f}" for name, loss, bpb, ppl in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Species classification

@dataclass(frozen=True)
class SpeciesRegion:
    """A region of one species' chromosome: (file index, record name, start, end)."""

    file: int
    chrom: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class SpeciesTask:
    """Which species does a window of DNA come from.

    Sampling (Mamba paper, great apes): species uniform, then one of its chromosomes uniform
    (among those holding a window of L bases), then a uniform window; windows with more than
    `max_n_frac` N are redrawn (counted in `self.skipped_n`). Held-out data: the chromosomes
    named in `valid_chroms` / `test_chroms`; by default, for a species with three or more
    chromosomes, the last one (natural sort order) is test and the one before it valid; a
    species with fewer chromosomes has every chromosome cut into regions, the first 80% train,
    the next 10% valid, the last 10% test. Windows lie inside one region, so none leaks.
    """

    def __init__(self, manifest: str | Path, valid_chroms: list[str] | None = None,
                 test_chroms: list[str] | None = None, keep_case: bool = False,
                 max_n_frac: float = 0.5, max_tries: int = 64):
        self.manifest = str(Path(manifest).resolve())
        self.tokenizer = Tokenizer(keep_case=keep_case)
        entries = read_manifest(manifest)
        self.species = [s for s, _ in entries]
        self.n_classes = len(self.species)
        self.vocab_size = self.tokenizer.vocab_size
        self.valid_chroms, self.test_chroms = list(valid_chroms or []), list(test_chroms or [])
        self.max_n_frac, self.max_tries = max_n_frac, max_tries
        self.skipped_n = 0
        self.files: list[list[Fasta]] = []
        self.regions: list[dict[str, list[SpeciesRegion]]] = []
        for species, paths in entries:
            fastas = [Fasta(p, self.tokenizer, verbose=False) for p in paths]
            self.files.append(fastas)
            self.regions.append(self._split(species, fastas))
        self._usable: dict[tuple[str, int], list[list[SpeciesRegion]]] = {}

    def _split(self, species: str, fastas: list[Fasta]) -> dict[str, list[SpeciesRegion]]:
        chroms = [(i, name, fa.lengths[name]) for i, fa in enumerate(fastas) for name in fa.names]
        names = [c[1] for c in chroms]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise UserError(f"species {species}: chromosome name(s) {sorted(dup)[:3]} appear in "
                            f"more than one file; names must be unique per species")
        out: dict[str, list[SpeciesRegion]] = {s: [] for s in SPLITS}
        if self.valid_chroms or self.test_chroms:
            for name in self.valid_chroms + self.test_chroms:
                if name not in names:
                    raise UserError(f"species {species} has no chromosome {name!r} "
                                    f"(it has {', '.join(sorted(names, key=_natural_key)[:8])})")
            for i, name, n in chroms:
                split = ("valid" if name in self.valid_chroms
                         else "test" if name in self.test_chroms else "train")
                out[split].append(SpeciesRegion(i, name, 0, n))
        elif len(chroms) >= 3:
            ordered = sorted(chroms, key=lambda c: _natural_key(c[1]))
            for j, (i, name, n) in enumerate(ordered):
                split = "test" if j == len(ordered) - 1 else "valid" if j == len(ordered) - 2 else "train"
                out[split].append(SpeciesRegion(i, name, 0, n))
        else:
            for i, name, n in chroms:
                a, b = int(n * 0.8), int(n * 0.9)
                out["train"].append(SpeciesRegion(i, name, 0, a))
                out["valid"].append(SpeciesRegion(i, name, a, b))
                out["test"].append(SpeciesRegion(i, name, b, n))
        return out

    def info(self) -> dict:
        return {"kind": "species", "manifest": self.manifest, "species": self.species,
                "valid_chroms": self.valid_chroms, "test_chroms": self.test_chroms,
                "max_n_frac": self.max_n_frac, "tokenizer": self.tokenizer.to_dict(),
                "vocab_size": self.vocab_size, "n_classes": self.n_classes}

    def usable(self, split: str, seq_len: int) -> list[list[SpeciesRegion]]:
        """Per species, the split's regions that hold a window of `seq_len` bases."""
        key = (_check_split(split), seq_len)
        if key not in self._usable:
            per = []
            for species, regions in zip(self.species, self.regions):
                ok = [r for r in regions[split] if len(r) >= seq_len]
                if not ok:
                    longest = max((len(r) for r in regions[split]), default=0)
                    raise UserError(f"species {species}: no '{split}' chromosome or region holds a "
                                    f"window of {seq_len} bases (longest {longest}); lower --seq-len")
                per.append(ok)
            self._usable[key] = per
        return self._usable[key]

    def sample(self, split: str, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
        """One window: {"tokens": int64[L], "label": int64 species index}."""
        per = self.usable(split, seq_len)
        label = int(rng.integers(self.n_classes))
        for attempt in range(self.max_tries):
            r = per[label][int(rng.integers(len(per[label])))]
            start = r.start + int(rng.integers(0, len(r) - seq_len + 1))
            ids = self.files[label][r.file].fetch(r.chrom, start, start + seq_len)
            if self.tokenizer.is_n(ids).mean() <= self.max_n_frac:
                break
            self.skipped_n += 1
        else:
            raise UserError(f"species {self.species[label]}: {self.max_tries} windows in a row of "
                            f"split '{split}' were mostly N")
        return {"tokens": ids, "label": np.int64(label)}

    def loss(self, model, batch):
        """Cross-entropy of the species logits, plus accuracy."""
        logits = model(batch["tokens"]).float()
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        return loss, {"accuracy": float(acc)}


@torch.no_grad()
def predict_windows(model, tokens: np.ndarray, batch_size: int, device: str) -> np.ndarray:
    """Log-probabilities (n, classes) of a classifier over windows (n, L)."""
    model.eval()
    out = []
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") \
        else torch.autocast("cpu", enabled=False)
    for b in range(0, len(tokens), batch_size):
        with amp:
            logits = model(torch.from_numpy(np.ascontiguousarray(tokens[b:b + batch_size])).to(device))
        out.append(torch.log_softmax(logits.float(), -1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def evaluate_species(model, task: SpeciesTask, split: str = "test", seq_len: int = 1024,
                     n_windows: int = 500, batch_size: int = 16, device: str = "cpu",
                     seed: int = 0, out_dir: str | Path | None = None) -> dict:
    """Accuracy, macro-F1 and confusion matrix on fixed windows of `split` (PNG + JSON in out_dir)."""
    windows = fixed_windows(task, split, seq_len, n_windows, seed)
    model.to(device)
    logp = predict_windows(model, np.stack([w["tokens"] for w in windows]), batch_size, device)
    y_true = np.array([int(w["label"]) for w in windows])
    report = classification_report(y_true, logp.argmax(-1), task.species)
    report.update(split=split, seq_len=seq_len, windows=len(windows))
    if out_dir is not None:
        from seqsuite.utils import atomic_write_text

        out_dir = Path(out_dir)
        plot_confusion(report, out_dir / f"confusion_{split}.png",
                       f"{split}, L={seq_len}: accuracy {report['accuracy']:.3f}, "
                       f"macro-F1 {report['macro_f1']:.3f}")
        atomic_write_text(out_dir / f"metrics_{split}.json", json.dumps(report, indent=2))
    return report


# ----------------------------------------------------------------------------------------------
# Classifying any FASTA

def classify_fasta(model, fasta: str | Path, window: int, labels: list[str],
                   batch_size: int = 16, device: str = "cpu", max_n_frac: float = 0.5,
                   keep_case: bool = False, progress: bool = True) -> list[dict]:
    """Per record of `fasta`: species probabilities from its windows.

    The record is cut into non-overlapping windows of `window` bases (the last one aligned to
    the record's end); windows with more than `max_n_frac` N are skipped. The record's
    probabilities are the softmax of the *mean of the windows' log-probabilities* (a normalised
    geometric mean: independent evidence adds up). Records shorter than one window, or whose
    windows are all mostly N, get windows=0, no prediction and a note; never a NaN.
    """
    from tqdm.auto import tqdm

    tok = Tokenizer(keep_case=keep_case)
    fa = Fasta(fasta, tok, verbose=progress)
    rows = []
    for name in tqdm(fa.names, desc="classify", disable=not progress, leave=False):
        n = fa.lengths[name]
        row = {"record": name, "length": n, "windows": 0, "predicted": None,
               **{f"prob_{s}": None for s in labels}, "note": ""}
        if n < window:
            row["note"] = f"shorter than one window ({window} bases); use --window {max(n, 1)} or less"
            rows.append(row)
            continue
        starts = list(range(0, n - window + 1, window))
        if starts[-1] + window < n:
            starts.append(n - window)
        total, used, skipped = None, 0, 0
        for b in range(0, len(starts), 64 * batch_size):  # stream: a chromosome never sits in memory
            wins = np.stack([fa.fetch(name, s0, s0 + window) for s0 in starts[b:b + 64 * batch_size]])
            good = tok.is_n(wins).mean(axis=1) <= max_n_frac
            skipped += int((~good).sum())
            if good.any():
                logp = predict_windows(model, wins[good], batch_size, device).astype(np.float64)
                total = logp.sum(axis=0) if total is None else total + logp.sum(axis=0)
                used += int(good.sum())
        if used == 0:
            row["note"] = "all windows mostly N; no prediction"
            rows.append(row)
            continue
        mean = total / used
        if not np.isfinite(mean).all():
            row["note"] = "the model returned non-finite scores; no prediction"
            rows.append(row)
            continue
        probs = np.exp(mean - mean.max())
        probs /= probs.sum()
        row.update(windows=used, predicted=labels[int(probs.argmax())],
                   **{f"prob_{s}": round(float(p), 6) for s, p in zip(labels, probs)})
        if skipped:
            row["note"] = f"{skipped} mostly-N window(s) skipped"
        rows.append(row)
    fa.close()
    return rows


def format_rows(rows: list[dict], labels: list[str], fmt: str = "tsv") -> str:
    """Classification rows as TSV (NA for missing values) or JSON (null)."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt != "tsv":
        raise UserError(f"unknown format {fmt!r}: use tsv or json")
    cols = ["record", "length", "windows", "predicted"] + [f"prob_{s}" for s in labels] + ["note"]
    lines = ["\t".join(cols)]
    for r in rows:
        lines.append("\t".join("NA" if r.get(c) is None else str(r.get(c)) for c in cols))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Runs: build, load, pretrain, finetune

def _train_api():
    try:
        from seqsuite.train import TrainConfig, train
    except ImportError as e:  # pragma: no cover - the training package ships with seqsuite
        raise UserError(f"seqsuite.train is not available ({e})") from None
    return TrainConfig, train


def load_model(path: str | Path, device: str = "cpu", checkpoint: str = "last"):
    """A model and its task info from a run directory (RUN/last or RUN/best, written by the
    training loop) or a model folder written by `save_pretrained`. Returns (model, task_info)."""
    from seqsuite.core import ModelConfig, build
    from seqsuite.core.io import CONFIG as MODEL_CONFIG, from_pretrained

    path = Path(path)
    if not path.exists():
        raise UserError(f"model {path} does not exist; pass a run directory from pretrain/finetune-species")
    if (path / "model.safetensors").exists() and not (path / "trainer_state.json").exists():
        meta = json.loads((path / MODEL_CONFIG).read_text()) if (path / MODEL_CONFIG).exists() else {}
        if meta.get("format") == "seqsuite-model-v1":
            model = from_pretrained(path, device)
            extra = getattr(model, "extra", None) or {}
            info = dict(extra.get("task") or {})
            if extra.get("window"):
                info["window"] = extra["window"]
            return model, info
    from seqsuite.train import load_checkpoint
    from seqsuite.train.checkpoint import find_checkpoint

    ck = path / checkpoint if (path / checkpoint / "trainer_state.json").exists() else find_checkpoint(path)
    loaded = load_checkpoint(ck, device="cpu")
    cfg = loaded["config"]
    if not cfg.get("model"):
        raise UserError(f"{ck}: the checkpoint has no model config; it was not written by seqsuite")
    model = build(ModelConfig.from_dict(cfg["model"]))
    model.load_state_dict(loaded["model_state"])
    return model.to(device), dict(cfg.get("task") or {})


def _check_hyena_window(model, length: int | None, option: str, prefix: str = "", hint: str = "") -> None:
    """A HyenaDNA model's filters end at max_len: say so in one line instead of a traceback."""
    cfg = model.config
    if cfg.layer == "hyena" and length and length > cfg.max_len:
        raise UserError(f"{prefix}{option} {length} is longer than this HyenaDNA model's filters "
                        f"(max_len {cfg.max_len}): use {option} {cfg.max_len} or less{hint}")


def _model_for(preset: str | None, task_vocab: int, init: str | Path | None = None,
               classify_labels: list[str] | None = None, seq_len: int | None = None, **overrides):
    """Build the model: a preset (vocab widened to the tokenizer's if needed), or a classifier
    initialised from a pretrained LM run (embedding and backbone copied, head new).

    A HyenaDNA preset gets `max_len = seq_len`, the run's longest window, as HyenaDNA sets its
    l_max to the training length: the implicit filters and their decay windows are functions
    of t / max_len, so a model built for 2^20 would have near-constant filters over a 2^12
    window.
    """
    from seqsuite.core import build, get_config

    if init is not None:
        lm, _ = load_model(init)
        cfg = lm.config
    else:
        cfg = get_config(preset or "genomics-tiny")
    changes = dict(overrides)
    if init is not None and changes.get("max_len"):
        raise UserError(f"--max-len cannot change the model given by --init {init}; drop --max-len")
    if init is None and seq_len and cfg.layer == "hyena" and not changes.get("max_len"):
        changes["max_len"] = int(seq_len)
    if cfg.vocab_size < task_vocab:
        changes["vocab_size"] = task_vocab
    if classify_labels is not None:
        changes.update(task="classify", n_classes=len(classify_labels), labels=list(classify_labels))
    model = build(cfg, **changes) if changes else build(cfg)
    _check_hyena_window(model, seq_len, "--seq-len", prefix=f"--init {init}: " if init is not None else "",
                        hint="" if init is not None else f", or --max-len {seq_len} or more")
    if init is not None:
        state = {k: v for k, v in lm.state_dict().items() if not k.startswith("head.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("head.")]
        if bad or unexpected:
            raise UserError(f"--init {init}: its weights do not fit the classifier "
                            f"(missing {bad[:3]}, unexpected {unexpected[:3]})")
    return model


def pretrain(fasta: str | Path | None = None, bed: str | Path | None = None, out: str | Path = "runs/genomics-lm",
             preset: str = "tiny", steps: int = 1000, seq_len: int = 1024, batch_size: int = 16,
             lr: float = 8e-3, seq_len_warmup: int | None = None, valid_chroms: list[str] | None = None,
             test_chroms: list[str] | None = None, rc_aug: bool = True, keep_case: bool = False,
             resume: bool | str = False, device: str = "auto", seed: int = 0,
             model_overrides: dict | None = None, **train_overrides) -> dict:
    """Next-base pretraining (Mamba paper recipe: AdamW 0.9/0.95, wd 0.1, 10% warm-up, cosine).

    Without `fasta`, the demo genome (generated once into the cache) and its BED are used.
    `model_overrides` change the preset (e.g. {"d_model": 64}); other keyword arguments go to
    TrainConfig (eval_every, save_every, warmup_frac, ...).
    """
    if fasta is None:
        from .demo import demo_dir

        d = demo_dir()
        fasta, bed = d["genome"], bed or d["bed"]
    task = GenomeLMTask(fasta, bed, valid_chroms, test_chroms, rc_aug=rc_aug, keep_case=keep_case)
    task.split_regions("train", seq_len)
    print(task.describe(seq_len))
    has_valid = bool(task.regions["valid"])
    if has_valid:
        task.split_regions("valid", seq_len)
    TrainConfig, train = _train_api()
    if not has_valid:
        print(f"note: no validation split (no 'valid' BED intervals or --valid-chroms); "
              f"training without validation")
        train_overrides["eval_batches"] = 0
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr,
                      seq_len_warmup=seq_len_warmup, device=device, seed=seed, out_dir=str(out),
                      **train_overrides)
    model = _model_for(preset, task.vocab_size, seq_len=seq_len, **(model_overrides or {}))
    summary = train(model, task, cfg, resume=resume, task_info=task.info())
    summary["skipped_n_windows"] = task.skipped_n
    return summary


def lm_task_from_info(info: dict, fasta=None, bed=None, valid_chroms=None, test_chroms=None) -> GenomeLMTask:
    """Rebuild the task a run was trained on (paths may be overridden)."""
    if info.get("kind") not in (None, "genome_lm"):
        raise UserError(f"this run was trained for {info.get('kind')!r}, not genome language modelling")
    fasta = fasta or info.get("fasta")
    if fasta is None:
        raise UserError("the run does not record its FASTA; pass --fasta (and --bed)")
    if bed is None and not (valid_chroms or test_chroms):
        bed = info.get("bed")
        valid_chroms, test_chroms = info.get("valid_chroms"), info.get("test_chroms")
    keep_case = bool((info.get("tokenizer") or {}).get("keep_case", False))
    return GenomeLMTask(fasta, bed, valid_chroms, test_chroms, rc_aug=False, keep_case=keep_case)


def evaluate_run(run: str | Path, split: str = "test", fasta=None, bed=None, valid_chroms=None,
                 test_chroms=None, seq_len: int | None = None, n_windows: int = 64,
                 batch_size: int = 8, device: str = "auto", markov_order: int | None = None,
                 checkpoint: str = "last", seed: int = 0) -> dict:
    """`evaluate RUN`: the run's model vs the Markov baseline on fixed windows of `split`."""
    from seqsuite.utils import resolve_device

    device = resolve_device(device)
    model, info = load_model(run, device, checkpoint)
    task = lm_task_from_info(info, fasta, bed, valid_chroms, test_chroms)
    if seq_len is None:
        seq_len = int(_run_train_cfg(run).get("seq_len", 1024))
    _check_hyena_window(model, seq_len, "--seq-len")
    return evaluate_lm(model, task, split, seq_len, n_windows, batch_size, device, markov_order, seed=seed)


def _run_train_cfg(run: str | Path) -> dict:
    """The train config recorded in RUN/last/config.json (empty for model folders)."""
    for name in ("last", "best", "."):
        p = Path(run) / name / "config.json"
        if p.exists():
            try:
                return json.loads(p.read_text()).get("train") or {}
            except (ValueError, AttributeError):
                return {}
    return {}


def finetune_species(manifest: str | Path | None = None, out: str | Path = "runs/genomics-species",
                     init: str | Path | None = None, preset: str = "genomics-tiny",
                     steps: int = 10240, seq_len: int = 1024, batch_size: int = 64, lr: float = 1e-4,
                     warmup_frac: float = 0.5, valid_chroms: list[str] | None = None,
                     test_chroms: list[str] | None = None, resume: bool | str = False,
                     device: str = "auto", seed: int = 0, test_windows: int = 500,
                     model_overrides: dict | None = None, **train_overrides) -> dict:
    """Species classification (Mamba paper, great apes): 10 epochs x 1024 steps x batch 64,
    lr 1e-4, 5 epochs warm-up then cosine (the defaults). Then accuracy, macro-F1 and a
    confusion matrix PNG on the test split, written into the run directory.

    Without `manifest`, the demo apes (generated once into the cache) are used. `init` is a
    pretrained LM run whose embedding and backbone start the classifier.
    """
    from seqsuite.utils import resolve_device

    if manifest is None:
        from .demo import demo_dir

        manifest = demo_dir()["manifest"]
    task = SpeciesTask(manifest, valid_chroms, test_chroms)
    for split in SPLITS:
        task.usable(split, seq_len)
    TrainConfig, train = _train_api()
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr,
                      warmup_frac=warmup_frac, device=device, seed=seed, out_dir=str(out),
                      **train_overrides)
    model = _model_for(preset, task.vocab_size, init=init, classify_labels=task.species, seq_len=seq_len,
                       **(model_overrides or {}))
    summary = train(model, task, cfg, resume=resume, task_info=task.info())
    report = evaluate_species(model, task, "test", seq_len, test_windows,
                              batch_size=min(batch_size, 32), device=resolve_device(device),
                              seed=seed, out_dir=out)
    summary.update(test_accuracy=report["accuracy"], test_macro_f1=report["macro_f1"],
                   confusion_png=str(Path(out) / "confusion_test.png"),
                   skipped_n_windows=task.skipped_n)
    export_model(model, Path(out) / "export", task.info(), window=seq_len,
                 test_accuracy=report["accuracy"])
    summary["export"] = str(Path(out) / "export")
    return summary


def export_model(model, out: str | Path, task_info: dict, window: int, **notes) -> Path:
    """Write a self-contained model folder (safetensors + config.json via save_pretrained) that
    `classify --model` reads; the task info, window and notes go in config.json "extra"."""
    from seqsuite.core.io import save_pretrained

    return save_pretrained(model.cpu(), out, extra={"task": task_info, "window": int(window), **notes})


def default_species_model() -> Path:
    """The small species classifier shipped in the package (seqsuite/assets/genomics-species)."""
    import seqsuite.assets

    return Path(seqsuite.assets.__file__).parent / "genomics-species"


def classify(input_fasta: str | Path, model_path: str | Path | None = None, window: int | None = None,
             fmt: str = "tsv", out: str | Path | None = None, batch_size: int = 16,
             device: str = "auto", checkpoint: str = "last") -> tuple[str, list[dict]]:
    """`classify INPUT.fa`: per-record species probabilities as TSV or JSON text (also written to
    `out` when given). Without `model_path`, the shipped demo-apes model is used."""
    from seqsuite.utils import atomic_write_text, resolve_device

    if fmt not in ("tsv", "json"):
        raise UserError(f"unknown format {fmt!r}: use tsv or json")
    device = resolve_device(device)
    if model_path is None:
        model_path = default_species_model()
        if not (model_path / "model.safetensors").exists():
            raise UserError("no species model ships with this install; pass --model RUN "
                            "(a run of `seqsuite genomics finetune-species`)")
    model, info = load_model(model_path, device, checkpoint)
    if getattr(model.config, "task", "") != "classify":
        raise UserError(f"{model_path} is a language model, not a species classifier; "
                        f"pass a run of finetune-species")
    labels = list(model.config.labels) or list(info.get("species") or [])
    if len(labels) != model.config.n_classes:
        labels = [f"class{i}" for i in range(model.config.n_classes)]
    if window is None:
        window = int(info.get("window") or _run_train_cfg(model_path).get("seq_len") or 1024)
    if window < 1:
        raise UserError(f"--window must be >= 1, got {window}")
    _check_hyena_window(model, window, "--window")
    keep_case = bool((info.get("tokenizer") or {}).get("keep_case", False))
    rows = classify_fasta(model, input_fasta, window, labels, batch_size, device,
                          keep_case=keep_case)
    text = format_rows(rows, labels, fmt)
    if out is not None:
        atomic_write_text(out, text)
    return text, rows
