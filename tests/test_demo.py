"""`seqsuite demo --quick` end to end on the CPU: every stage runs, the report folder holds its
files, and every number in it is present and finite."""
from __future__ import annotations

import json
import math

import pytest

from seqsuite.cli.main import main


def _numbers(x):
    if isinstance(x, bool):
        return
    if isinstance(x, (int, float)):
        yield float(x)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)


@pytest.mark.timeout(900)
def test_demo_quick_writes_a_complete_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEQSUITE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as done:
        main(["demo", "--quick", "--out", str(out), "--device", "cpu"])
    assert done.value.code in (0, None)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("report: ") and str(out / "report.md") in last

    for name in ("report.md", "report.html", "report.json", "dna_learning_curve.png",
                 "species_confusion.png", "species/apes_test.fa", "species/classify.tsv",
                 "music/continuation.wav", "music/continuation.png", "sc09/grid.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rep = json.loads((out / "report.json").read_text())
    s = rep["sections"]
    assert set(s) == {"data", "dna", "species", "sc09", "music"}
    for key in ("test_bits_per_base", "markov_bits_per_base"):
        assert math.isfinite(s["dna"][key]) and 0 < s["dna"][key] < 4, key
    assert 0 <= s["species"]["accuracy"] <= 1 and s["species"]["records"] == 5
    assert sum(map(sum, s["species"]["confusion"])) == 5
    assert len(s["sc09"]["wavs"]) == 2 and all((out / w).is_file() for w in s["sc09"]["wavs"])
    assert 0 < s["music"]["heldout_bits_per_sample"] < 16
    assert all(math.isfinite(v) for v in _numbers(rep))
    md = (out / "report.md").read_text()
    assert "bits per base" in md and "accuracy" in md and "sc09/sample_00000.wav" in md
    html = (out / "report.html").read_text()
    assert "<img" in html and 'href="music/continuation.wav"' in html


def test_demo_refuses_a_missing_shipped_model(tmp_path, monkeypatch):
    from seqsuite.audio import recipes
    from seqsuite.errors import UserError

    monkeypatch.setattr(recipes, "SHIPPED", {"sc09": "no-such-model", "music": "no-such-model"})
    with pytest.raises(UserError, match="no model shipped"):
        recipes.shipped_model("sc09")
