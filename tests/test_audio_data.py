"""Audio data layer: mu-law, folder loading (skips, errors, resampling), SC09 layout, the task."""
import numpy as np
import pytest
import soundfile as sf

from seqsuite.audio.data import (DIGITS, SC09, SILENCE, AudioFolder, load_audio, minmax_scale,
                                 mu_law_decode, mu_law_encode, split_by_file)
from seqsuite.audio.tasks import AudioLMTask, unigram_baseline
from seqsuite.errors import UserError


def _tone(seconds, sr=16000, f=440.0, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * f * t)
    return np.stack([x, 0.3 * x], 1) if channels == 2 else x


def test_mulaw_silence_is_128_both_ways():
    assert mu_law_encode(np.zeros(5), scale=False).tolist() == [SILENCE] * 5
    assert mu_law_decode(np.array([SILENCE]))[0] == 0.0
    # a clip symmetric around zero keeps its zeros at 128 after min-max scaling
    x = np.array([-1.0, 0.0, 0.5, 1.0, 0.0])
    tok = mu_law_encode(x)
    assert tok[1] == SILENCE and tok[4] == SILENCE
    assert tok[0] == 0 and tok[3] == 255
    assert mu_law_encode(np.zeros(7)).tolist() == [SILENCE] * 7  # constant clip


def test_mulaw_round_trip_and_monotone():
    x = np.linspace(-1, 1, 20001)
    tok = mu_law_encode(x, scale=False)
    assert tok.dtype == np.uint8 and tok.min() == 0 and tok.max() == 255
    assert np.all(np.diff(tok.astype(int)) >= 0)
    y = mu_law_decode(tok)
    # error bounded by half a companded step: small near 0, larger at full scale
    err = np.abs(y - x)
    assert err[np.abs(x) < 0.001].max() < 1.2e-4
    assert err[x < 0.95].max() < 0.025
    # mid-tread: 128 levels below zero, 127 above, so the top level is 256^(127/128) ~ 0.957
    assert mu_law_decode(np.array([255]))[0] == pytest.approx((256 ** (127 / 128) - 1) / 255)
    assert mu_law_decode(np.array([0]))[0] == pytest.approx(-1.0)
    # tokens survive decode -> encode exactly
    all_tok = np.arange(256, dtype=np.uint8)
    assert np.array_equal(mu_law_encode(mu_law_decode(all_tok), scale=False), all_tok)


def test_minmax_scale_range():
    x = np.array([2.0, 4.0, 3.0])
    assert np.allclose(minmax_scale(x), [-1, 1, 0])


def test_split_by_file_matches_youtubemix():
    s = split_by_file(241)
    assert (len(s["train"]), len(s["valid"]), len(s["test"])) == (212, 14, 15)
    s = split_by_file(10)
    assert len(s["valid"]) >= 1 and len(s["test"]) >= 1 and sum(map(len, s.values())) == 10


def test_loader_skips_bad_files_and_resamples(tmp_path, caplog):
    for i in range(8):
        sf.write(tmp_path / f"a{i}.wav", _tone(0.5, f=200 + 50 * i), 16000)
    sf.write(tmp_path / "b_stereo44k.flac", _tone(0.5, sr=44100, channels=2), 44100)
    (tmp_path / "c_corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(tmp_path / "d_empty.wav", np.zeros(0), 16000)
    sf.write(tmp_path / "e_short.wav", _tone(0.01), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    folder = AudioFolder(tmp_path)
    assert len(folder.files) == 12
    clips = [c for s in ("train", "valid", "test") for c in folder.tokens(s)]
    assert len(clips) == 9
    assert len(folder.report) == 3
    reasons = " ".join(r for _, r in folder.report.skipped)
    assert "cannot decode" in reasons and "empty" in reasons and "too short" in reasons
    assert "c_corrupt.wav" in folder.report.summary()


def test_resample_44k_stereo_to_16k_mono(tmp_path):
    sf.write(tmp_path / "x.wav", _tone(1.0, sr=44100, f=1000, channels=2), 44100)
    y = load_audio(tmp_path / "x.wav")
    assert y.ndim == 1 and abs(len(y) - 16000) <= 1
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spec) * 16000 / len(y) - 1000) < 3  # still a 1 kHz tone
    assert abs(np.abs(y).max() - 0.325) < 0.01                # mean of 0.5 and 0.15


def test_empty_or_unusable_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no audio file"):
        AudioFolder(tmp_path)
    (tmp_path / "bad.wav").write_bytes(b"nope")
    (tmp_path / "bad2.wav").write_bytes(b"nope")
    (tmp_path / "bad3.wav").write_bytes(b"nope")
    with pytest.raises(UserError, match="no usable audio"):
        AudioFolder(tmp_path).tokens("train")
    with pytest.raises(UserError, match="does not exist"):
        AudioFolder(tmp_path / "missing")


def make_sc09(root, per_digit=3, sr=16000):
    """A tiny Speech Commands layout of tone bursts (digit d -> 200 + 100 d Hz)."""
    valid, test = [], []
    for d, word in enumerate(DIGITS):
        (root / word).mkdir(parents=True)
        for k in range(per_digit):
            n = sr // 2 if k == 0 else sr + 300 if k == 1 else sr  # short, long, exact
            x = np.zeros(n)
            x[: sr // 3] = _tone(1 / 3, sr, 200 + 100 * d)[: sr // 3]
            sf.write(root / word / f"spk{k}_nohash_0.wav", x, sr)
            (valid if k == 1 else test if k == 2 else []).append(f"{word}/spk{k}_nohash_0.wav")
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "_background_noise_").mkdir()
    return root


def test_sc09_layout(tmp_path):
    data = SC09(make_sc09(tmp_path / "sc09"))
    tok, lab, names = data.load("train")
    assert tok.shape == (10, 16000) and sorted(lab.tolist()) == list(range(10))
    assert np.all(tok[:, 8000:] == SILENCE)  # the 0.5 s clips are padded with silence
    vtok, vlab, vnames = data.load("valid")
    assert vtok.shape == (10, 16000) and all(n.startswith(DIGITS[l]) for n, l in zip(vnames, vlab))
    assert data.load("test")[0].shape == (10, 16000)
    with pytest.raises(UserError):
        SC09(tmp_path / "nothing")


def test_audio_task_windows_and_baseline(tmp_path):
    task = AudioLMTask.from_sc09(make_sc09(tmp_path / "sc09"))
    ex = task.sample("train", np.random.default_rng(0), 16000)
    assert ex["tokens"][0] == SILENCE and ex["tokens"].shape == (16000,)
    assert np.array_equal(ex["tokens"][1:], ex["targets"][:-1])
    ex2 = task.sample("train", np.random.default_rng(0), 16000)
    assert np.array_equal(ex["tokens"], ex2["tokens"])  # a pure function of the seed
    short = task.sample("valid", np.random.default_rng(1), 64)
    assert short["tokens"].shape == (64,) and short["tokens"].dtype == np.int64
    with pytest.raises(UserError, match="seq_len"):
        task.sample("train", np.random.default_rng(0), 20000)
    base = unigram_baseline(task, "test")
    assert 0 < base["bits_per_sample"] < 8 and base["samples"] == 10 * 16000
