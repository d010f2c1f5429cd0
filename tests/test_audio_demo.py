"""Demo data generators: piano music and espeak-ng digits in the Speech Commands layout."""
import shutil

import numpy as np
import pytest

from seqsuite.audio import demo
from seqsuite.audio.data import DIGITS, SC09, AudioFolder, load_audio
from seqsuite.errors import UserError


def test_demo_music_is_piano_like(tmp_path):
    demo.make_demo_music(tmp_path, pieces=3, seconds=4.0, seed=1)
    folder = AudioFolder(tmp_path)
    assert len(folder.files) == 3 and (tmp_path / "demo.json").exists()
    x = load_audio(folder.files[0])
    assert len(x) == 64000 and 0.5 < np.abs(x).max() <= 0.91
    # notes: energy concentrated in a few spectral peaks, not noise
    spec = np.abs(np.fft.rfft(x[:32768] * np.hanning(32768))) ** 2
    top = np.sort(spec)[::-1]
    assert top[:200].sum() > 0.5 * spec.sum()
    # different seeds give different pieces
    demo.make_demo_music(tmp_path / "b", pieces=1, seconds=4.0, seed=2)
    assert not np.allclose(load_audio(tmp_path / "b" / "piece_000.wav"), x)


def test_single_piano_note_decays():
    tone = demo.piano_note(60, 0.5, 0.8)
    head, tail = np.abs(tone[:2000]).max(), np.abs(tone[-2000:]).max()
    assert tail < 0.1 * head


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_demo_sc09_layout_from_espeak(tmp_path):
    demo.make_demo_sc09(tmp_path, speakers=10, seed=0)
    for d in DIGITS:
        assert len(list((tmp_path / d).glob("*_nohash_*.wav"))) == 10
    data = SC09(tmp_path)
    tr, lab, _ = data.load("train")
    va, te = data.load("valid")[0], data.load("test")[0]
    assert len(tr) == 80 and len(va) == 10 and len(te) == 10
    assert tr.shape[1] == 16000 and np.bincount(lab).tolist() == [8] * 10
    x = load_audio(tmp_path / "seven" / sorted(p.name for p in (tmp_path / "seven").iterdir())[0])
    assert len(x) == 16000 and np.abs(x).max() > 0.2


def test_demo_sc09_without_espeak_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="espeak-ng"):
        demo.make_demo_sc09(tmp_path)
