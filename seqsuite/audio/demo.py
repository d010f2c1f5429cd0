"""Demo data in real layouts: synthesised piano music and espeak-ng spoken digits (SC09 layout)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from seqsuite.errors import UserError
from seqsuite.utils import cached_demo

from .data import DIGITS, SAMPLE_RATE, write_wav

# ----------------------------------------------------------------------------- music

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 3, 5, 4), (1, 4, 0, 0))


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12.0)


def piano_note(midi: float, seconds: float, velocity: float, sr: int = SAMPLE_RATE,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """One piano-like tone: stretched harmonic partials (string inharmonicity), a few-ms attack,
    a two-stage exponential decay that is faster for higher partials, and a release at the end."""
    rng = rng or np.random.default_rng(0)
    f0 = _midi_hz(midi)
    ring = seconds + 0.25 + 0.6 * (1 - (midi - 36) / 60)  # low notes ring on after release
    n = int(ring * sr)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)  # float32: numpy's SIMD exp/sin
    inharm = 1e-4 * 2 ** ((midi - 60) / 24)
    out = np.zeros(n, dtype=np.float32)
    for k in range(1, 9):
        fk = k * f0 * np.sqrt(1 + inharm * k * k)
        if fk > 0.45 * sr:
            break
        amp = velocity ** (1 + 0.15 * k) / k ** 1.2 * (1.0 if k == 1 else 0.8)
        decay = (0.6 + 0.5 * k) * (fk / 440.0) ** 0.35
        env = 0.7 * np.exp(np.float32(-decay * 2.5) * t) + 0.3 * np.exp(np.float32(-decay * 0.5) * t)
        phase = np.float32(2 * np.pi * fk) * t + np.float32(rng.uniform(0, 2 * np.pi))
        out += np.float32(amp) * env * np.sin(phase)
    attack = max(1, int(0.004 * sr))
    out[:attack] *= np.linspace(0, 1, attack)
    rel_start = int(seconds * sr)
    if rel_start < n:
        out[rel_start:] *= np.exp(-np.arange(n - rel_start, dtype=np.float32) / np.float32(0.08 * sr))
    return out


def synth_piece(seconds: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A piano piece: key, mode and tempo at random; a chord progression in the left hand
    (bass note + broken or block chord) and a stepwise melody in the right hand."""
    n = int(seconds * sr)
    buf = np.zeros(n + 4 * sr)
    root = int(rng.integers(48, 60))
    scale = _MAJOR if rng.random() < 0.65 else _MINOR
    bpm = float(rng.uniform(66, 150))
    beat = 60.0 / bpm
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    style = rng.choice(["block", "broken", "alberti"])
    sub = int(rng.choice([2, 2, 3, 4]))  # melody subdivisions per beat
    deg = int(rng.integers(0, 7))        # melody position on the scale

    def pitch(degree: int, octave: int = 0) -> int:
        return root + 12 * (octave + degree // 7) + scale[degree % 7]

    def add(midi: float, start: float, dur: float, vel: float) -> None:
        i = int(start * sr)
        if i >= n:
            return
        tone = piano_note(midi, dur, vel, sr, rng)
        j = min(len(buf), i + len(tone))
        buf[i:j] += tone[: j - i]

    t, bar = 0.0, 0
    while t < seconds:
        chord = prog[bar % len(prog)]
        vel_bar = float(rng.uniform(0.45, 0.9))
        add(pitch(chord, -1), t, 4 * beat, 0.8 * vel_bar)  # bass
        tones = [pitch(chord + i) for i in (0, 2, 4)]
        if style == "block":
            for b in range(4):
                for m in tones:
                    add(m, t + b * beat, beat * 0.9, 0.5 * vel_bar)
        elif style == "broken":
            for b in range(8):
                add(tones[b % 3], t + b * beat / 2, beat, 0.45 * vel_bar)
        else:  # alberti bass: low-high-middle-high
            for b in range(8):
                add(tones[(0, 2, 1, 2)[b % 4]], t + b * beat / 2, beat / 2, 0.45 * vel_bar)
        s = 0
        while s < 4 * sub:
            dur = beat / sub * int(rng.choice([1, 1, 2, 2, 3, 4]))
            if rng.random() < 0.1:          # rest
                s += 1
                continue
            if rng.random() < 0.35:         # land on a chord tone
                deg = chord + 2 * int(rng.integers(0, 3)) + 7
            else:
                deg += int(rng.choice([-2, -1, -1, 1, 1, 2, 0]))
            deg = int(np.clip(deg, 5, 19))
            add(pitch(deg, 0), t + s * beat / sub, dur, float(rng.uniform(0.5, 1.0)) * vel_bar)
            s += max(1, int(round(dur * sub / beat)))
        t += 4 * beat
        bar += 1
    # a little room: two early reflections and a short diffuse tail
    for delay, gain in ((0.023, 0.25), (0.041, 0.15), (0.067, 0.08)):
        d = int(delay * sr)
        buf[d:] += gain * buf[:-d]
    out = buf[:n]
    fade = int(0.5 * sr)
    out[-fade:] *= np.linspace(1, 0, fade)
    return (0.9 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def make_demo_music(out: str | os.PathLike, pieces: int = 32, seconds: float = 64.0,
                    seed: int = 0) -> Path:
    """Write `pieces` synthesised piano pieces of `seconds` each as 16 kHz wavs into `out`.
    64 s per piece leaves room for the longest YouTubeMix crop (958464 samples)."""
    from tqdm import tqdm

    if pieces < 1 or seconds <= 0:
        raise UserError("make-demo music needs --pieces >= 1 and --seconds > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for i in tqdm(range(pieces), desc="synthesising piano pieces", unit="piece"):
        audio = synth_piece(seconds, np.random.default_rng([seed, i]))
        write_wav(out / f"piece_{i:03d}.wav", audio)
    _write_marker(out, {"kind": "music", "pieces": pieces, "seconds": seconds, "seed": seed,
                        "build_seconds": round(time.time() - t0, 1)})
    return out


# ----------------------------------------------------------------------------- SC09 digits

# English voices of espeak-ng and the voice variants (timbre/gender presets) mixed with them.
_LANGS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
          "en-gb-x-gbclan", "en-gb-x-gbcwmd")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
             "klatt", "klatt2", "klatt3", "klatt4", "croak", "grandma", "grandpa", "Andy",
             "Annie", "adam", "david", "linda", "steph", "max", "paul", "rob", "shelby")


def espeak_available() -> str | None:
    """Path of the espeak-ng executable, or None."""
    return shutil.which("espeak-ng")


def _speaker(rng: np.random.Generator) -> dict:
    return {"voice": f"{_LANGS[rng.integers(len(_LANGS))]}+{_VARIANTS[rng.integers(len(_VARIANTS))]}",
            "pitch": int(rng.integers(15, 86)), "speed": int(rng.integers(130, 221))}


def speak(word: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    """Run espeak-ng and return (float32 samples, sample rate)."""
    import soundfile as sf

    exe = espeak_available()
    if exe is None:
        raise UserError("espeak-ng is not installed: install it (Debian/Ubuntu: "
                        "apt-get install -y espeak-ng) or pass real SC09 data with --data")
    res = subprocess.run([exe, "-v", voice, "-p", str(pitch), "-s", str(speed),
                          "--stdout", word], capture_output=True, check=False, timeout=60)
    if res.returncode != 0 or len(res.stdout) < 64:
        raise RuntimeError(f"espeak-ng failed for voice {voice}: {res.stderr.decode()[:200]}")
    audio, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    return audio, sr


def _digit_clip(word: str, spk: dict, rng: np.random.Generator) -> np.ndarray:
    """One 1 s, 16 kHz clip: the spoken word trimmed, resampled, placed at a random offset,
    with random gain and light background noise."""
    import torch
    import torchaudio.functional as AF

    audio, sr = speak(word, spk["voice"], spk["pitch"], spk["speed"])
    audio = AF.resample(torch.from_numpy(audio), sr, SAMPLE_RATE).numpy()
    loud = np.flatnonzero(np.abs(audio) > 0.02 * (np.abs(audio).max() + 1e-9))
    if loud.size:
        audio = audio[max(0, loud[0] - 160): loud[-1] + 320]
    if len(audio) > SAMPLE_RATE:  # a slow voice: keep the first second, fade the cut
        audio = audio[:SAMPLE_RATE].copy()
        audio[-400:] *= np.linspace(1, 0, 400)
    clip = np.zeros(SAMPLE_RATE, dtype=np.float32)
    start = int(rng.integers(0, SAMPLE_RATE - len(audio) + 1))
    clip[start:start + len(audio)] = audio
    clip *= float(rng.uniform(0.25, 0.9)) / (np.abs(clip).max() + 1e-9)
    noise_db = float(rng.uniform(-60, -38))
    clip += (10 ** (noise_db / 20) * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    return np.clip(clip, -1, 1)


def make_demo_sc09(out: str | os.PathLike, speakers: int = 200, takes: int = 1,
                   seed: int = 0, workers: int | None = None) -> Path:
    """Write spoken digits from `speakers` random espeak-ng voices (language accent x variant x
    pitch x speed), `takes` takes of each digit per speaker, in the Speech
    Commands layout; 10%/10% of the speakers are listed for validation/testing."""
    from tqdm import tqdm

    if espeak_available() is None:
        raise UserError("espeak-ng is not installed: install it (Debian/Ubuntu: "
                        "apt-get install -y espeak-ng) or pass real SC09 data with --data")
    if speakers < 3 or takes < 1:
        raise UserError("make-demo sc09 needs --speakers >= 3 and --takes >= 1")
    t0 = time.time()
    out = Path(out)
    for d in DIGITS:
        (out / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jobs, split_of = [], {}
    for s in range(speakers):
        spk = _speaker(rng)
        sid = hashlib.sha1(f"{seed}-{s}-{json.dumps(spk, sort_keys=True)}".encode()).hexdigest()[:8]
        split_of[sid] = "valid" if s % 10 == 8 else "test" if s % 10 == 9 else "train"
        for label, word in enumerate(DIGITS):
            for k in range(takes):
                take = dict(spk, speed=int(np.clip(spk["speed"] + rng.integers(-15, 16), 110, 240)))
                jobs.append((word, take, f"{word}/{sid}_nohash_{k}.wav", sid, [seed, s, label, k]))

    def render(job):
        word, spk, rel, _, key = job
        write_wav(out / rel, _digit_clip(word, spk, np.random.default_rng(key)))
        return rel

    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(render, jobs), total=len(jobs), desc="speaking digits", unit="clip"))
    valid = sorted(rel for _, _, rel, sid, _ in jobs if split_of[sid] == "valid")
    test = sorted(rel for _, _, rel, sid, _ in jobs if split_of[sid] == "test")
    from seqsuite.utils import atomic_write_text

    atomic_write_text(out / "validation_list.txt", "\n".join(valid) + "\n")
    atomic_write_text(out / "testing_list.txt", "\n".join(test) + "\n")
    _write_marker(out, {"kind": "sc09", "speakers": speakers, "takes": takes, "seed": seed,
                        "clips": len(jobs), "valid": len(valid), "test": len(test),
                        "build_seconds": round(time.time() - t0, 1)})
    return out


# ----------------------------------------------------------------------------- cached defaults

# name -> keyword arguments of the generator
MUSIC_SIZES = {"small": {"pieces": 32, "seconds": 64.0}, "tiny": {"pieces": 6, "seconds": 8.0}}
SC09_SIZES = {"small": {"speakers": 200}, "tiny": {"speakers": 30}}


def _write_marker(out: Path, info: dict) -> None:
    from seqsuite.utils import atomic_write_text

    atomic_write_text(out / "demo.json", json.dumps(info, indent=1) + "\n")


def demo_music_dir(size: str = "small") -> Path:
    """The cached demo music folder (`$SEQSUITE_CACHE/demo/audio-music-<size>`), made on first use."""
    if size not in MUSIC_SIZES:
        raise UserError(f"unknown demo size {size!r}: use one of {', '.join(MUSIC_SIZES)}")
    return cached_demo(f"audio-music-{size}", "synthesising the demo music",
                       lambda out: make_demo_music(out, **MUSIC_SIZES[size]))


def demo_sc09_dir(size: str = "small") -> Path:
    """The cached demo SC09 folder (`$SEQSUITE_CACHE/demo/audio-sc09-<size>`), made on first use."""
    if size not in SC09_SIZES:
        raise UserError(f"unknown demo size {size!r}: use one of {', '.join(SC09_SIZES)}")
    return cached_demo(f"audio-sc09-{size}", "speaking the demo digits",
                       lambda out: make_demo_sc09(out, **SC09_SIZES[size]))
