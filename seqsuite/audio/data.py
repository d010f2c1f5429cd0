"""Audio files -> 16 kHz mono waveforms -> 8-bit mu-law tokens (256 classes).

Two layouts are read: a folder of music files (YouTubeMix style, split by file in sorted order
88/6/6) and the Speech Commands layout of SC09 (``zero/`` ... ``nine/`` with
``validation_list.txt`` and ``testing_list.txt``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqsuite.errors import UserError

log = logging.getLogger("seqsuite.audio")

SAMPLE_RATE = 16000
MU = 255
N_CLASSES = 256
SILENCE = 128
MAX_SEQ_LEN = 958464  # 468 * 2048, the longest YouTubeMix training length
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid",
                  "test": "test"}


def canonical_split(split: str) -> str:
    """Map 'val'/'validation' to 'valid'; reject unknown split names."""
    try:
        return _SPLIT_ALIASES[split]
    except KeyError:
        raise UserError(f"unknown split '{split}': use one of train, valid, test") from None


# ----------------------------------------------------------------------------- mu-law

def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Scale a clip linearly so that its minimum is -1 and its maximum +1 (silence stays 0)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if hi - lo < 1e-12:
        return np.zeros_like(x)
    return 2.0 * (x - lo) / (hi - lo) - 1.0


def mu_law_encode(x: np.ndarray, scale: bool = True) -> np.ndarray:
    """Waveform -> uint8 tokens: optional per-clip min-max scaling to [-1, 1], mu=255
    companding y = sign(x) ln(1 + mu|x|) / ln(1 + mu), then a mid-tread quantiser
    token = round(128 y) + 128, so that 0.0 is exactly token 128 (silence) and back.
    (SaShiMi's mid-rise quantiser puts silence on the 127/128 boundary instead; mid-tread has
    128 levels below zero and 127 above, so +1.0 is coded as its top level, 0.957.)"""
    x = minmax_scale(x) if scale else np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.clip(np.floor(y * 128.0 + 0.5) + SILENCE, 0, N_CLASSES - 1).astype(np.uint8)


def mu_law_decode(tokens: np.ndarray) -> np.ndarray:
    """uint8/int tokens -> float32 waveform in [-1, 1); token 128 decodes to exactly 0."""
    y = (np.asarray(tokens, dtype=np.float64) - SILENCE) / 128.0
    x = np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU
    return x.astype(np.float32)


# ----------------------------------------------------------------------------- decoding

def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read any file libsndfile can decode (wav, flac, ogg, mp3 with libsndfile >= 1.1), mix to
    mono and resample to `sample_rate`. Returns float32 samples; raises on undecodable input."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != sample_rate and mono.size:
        import torch
        import torchaudio.functional as AF

        mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), sr, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM wav through a temporary file and a rename."""
    import soundfile as sf

    from seqsuite.utils import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def list_audio_files(folder: str | os.PathLike) -> list[Path]:
    """All audio files under `folder` (recursively), in sorted order of their relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"audio folder '{folder}' does not exist: pass an existing folder with --data")
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


@dataclass
class SkipReport:
    """Files that were left out while loading, with the reason for each."""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str) -> None:
        self.skipped.append((str(path), reason))
        log.warning("skipping %s: %s", path, reason)

    def __len__(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        if not self.skipped:
            return "no file skipped"
        names = ", ".join(f"{Path(p).name} ({r})" for p, r in self.skipped[:10])
        more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
        return f"skipped {len(self.skipped)} file(s): {names}{more}"


def _decode_tokens(path: Path, min_samples: int, report: SkipReport) -> np.ndarray | None:
    """Decode one file into mu-law tokens, or record why it is unusable and return None."""
    try:
        audio = load_audio(path)
    except Exception as e:  # libsndfile raises several types for corrupt/unknown input
        report.add(path, f"cannot decode ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
        return None
    if audio.size == 0:
        report.add(path, "empty")
        return None
    if not np.isfinite(audio).all():
        report.add(path, "contains NaN/inf samples")
        return None
    if audio.size < min_samples:
        report.add(path, f"too short ({audio.size} samples < {min_samples})")
        return None
    return mu_law_encode(audio)


# ----------------------------------------------------------------------------- music folder

def split_by_file(n: int, fractions: tuple[float, float, float] = (0.88, 0.06, 0.06)) -> dict[str, range]:
    """Split n sorted files into train/valid/test ranges (241 -> 212/14/15, as in SaShiMi).
    With at least 3 files each split gets one."""
    n_train, n_valid = int(n * fractions[0]), int(n * fractions[1])
    if n >= 3:
        n_valid = max(n_valid, 1)
        n_train = min(n_train, n - n_valid - 1)
    return {"train": range(0, n_train), "valid": range(n_train, n_train + n_valid),
            "test": range(n_train + n_valid, n)}


class AudioFolder:
    """A YouTubeMix-style folder: files split by sorted order, decoded lazily per split into
    uint8 mu-law token arrays kept in memory."""

    def __init__(self, folder: str | os.PathLike, min_seconds: float = 0.1):
        self.folder = Path(folder)
        self.files = list_audio_files(self.folder)
        if not self.files:
            raise UserError(f"no audio file (wav/flac/mp3/ogg) found in '{self.folder}': "
                            "point --data at a folder of audio files")
        if len(self.files) < 3:
            raise UserError(f"'{self.folder}' holds {len(self.files)} audio file(s); train/valid/test "
                            "are split by file, so at least 3 are needed: add files")
        self.min_samples = max(2, int(min_seconds * SAMPLE_RATE))
        self.split_files = {s: [self.files[i] for i in r]
                            for s, r in split_by_file(len(self.files)).items()}
        self.report = SkipReport()
        self._tokens: dict[str, list[np.ndarray]] = {}
        self._names: dict[str, list[str]] = {}

    def tokens(self, split: str) -> list[np.ndarray]:
        """The split's clips as uint8 token arrays (decoded on first use)."""
        split = canonical_split(split)
        if split not in self._tokens:
            from tqdm import tqdm

            clips, names = [], []
            files = self.split_files[split]
            for path in tqdm(files, desc=f"decoding {split} audio", unit="file",
                             disable=len(files) < 8, leave=False):
                tok = _decode_tokens(path, self.min_samples, self.report)
                if tok is not None:
                    clips.append(tok)
                    names.append(str(path.relative_to(self.folder)))
            if not clips:
                if split == "train" or not any(self._tokens.values()):
                    raise UserError(f"no usable audio in the {split} split of '{self.folder}' "
                                    f"({len(files)} file(s); {self.report.summary()}): "
                                    "add decodable audio files of at least "
                                    f"{self.min_samples / SAMPLE_RATE:.2f} s")
            if self.report:
                log.warning("%s: %s", self.folder, self.report.summary())
            self._tokens[split], self._names[split] = clips, names
        return self._tokens[split]

    def names(self, split: str) -> list[str]:
        self.tokens(split)
        return self._names[canonical_split(split)]


# ----------------------------------------------------------------------------- SC09

def _read_list(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}


class SC09:
    """The Speech Commands layout restricted to the ten digits: 1 s, 16 kHz clips (shorter ones
    padded with silence, longer ones cut) as uint8 mu-law tokens, with labels 0-9."""

    def __init__(self, root: str | os.PathLike, clip_samples: int = SAMPLE_RATE):
        self.root = Path(root)
        self.clip_samples = clip_samples
        if not self.root.is_dir():
            raise UserError(f"SC09 folder '{self.root}' does not exist: pass the Speech Commands "
                            "folder (zero/ ... nine/, validation_list.txt, testing_list.txt)")
        present = [d for d in DIGITS if (self.root / d).is_dir()]
        if not present:
            raise UserError(f"'{self.root}' has none of the folders zero/ ... nine/: pass a folder "
                            "in the Speech Commands layout")
        valid, test = _read_list(self.root / "validation_list.txt"), _read_list(self.root / "testing_list.txt")
        if not valid and not test:
            log.warning("%s has no validation_list.txt/testing_list.txt: every clip is training data",
                        self.root)
        self.split_items: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
        for label, digit in enumerate(DIGITS):
            d = self.root / digit
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                if not (p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS):
                    continue
                rel = f"{digit}/{p.name}"
                split = "test" if rel in test else "valid" if rel in valid else "train"
                self.split_items[split].append((rel, label))
        if not self.split_items["train"]:
            raise UserError(f"no training clip found under '{self.root}'/zero ... nine/: add wav files")
        self.report = SkipReport()
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(tokens uint8[n, clip_samples], labels int64[n], relative names) of a split."""
        split = canonical_split(split)
        if split not in self._cache:
            from tqdm import tqdm

            toks, labels, names = [], [], []
            items = self.split_items[split]
            for rel, label in tqdm(items, desc=f"decoding SC09 {split}", unit="clip",
                                   disable=len(items) < 200, leave=False):
                tok = _decode_tokens(self.root / rel, 2, self.report)
                if tok is None:
                    continue
                toks.append(fit_length(tok, self.clip_samples))
                labels.append(label)
                names.append(rel)
            if self.report:
                log.warning("%s: %s", self.root, self.report.summary())
            arr = np.stack(toks) if toks else np.zeros((0, self.clip_samples), np.uint8)
            if split == "train" and len(arr) == 0:
                raise UserError(f"no usable SC09 training clip in '{self.root}' "
                                f"({self.report.summary()})")
            self._cache[split] = (arr, np.asarray(labels, dtype=np.int64), names)
        return self._cache[split]


def fit_length(tokens: np.ndarray, n: int) -> np.ndarray:
    """Pad with silence (token 128) at the end or cut to exactly n samples."""
    if len(tokens) >= n:
        return tokens[:n]
    return np.concatenate([tokens, np.full(n - len(tokens), SILENCE, dtype=tokens.dtype)])
