"""`seqsuite demo`: the main job on the built-in demo data, end to end, with a report.

Stages (each prints a header and shows progress; numbers go to OUT/report.json):
1. data      the demo genome + five apes, synthetic piano music and (with espeak-ng) spoken
             digits in the Speech Commands layout, written under OUT/data;
2. dna       a `tiny` Mamba pretrained on the demo genome for a short while, then test
             bits per base next to the best order-k Markov chain on the same windows;
3. species   held-out windows of the five apes written to a FASTA and classified with the
             shipped species model (seqsuite/assets/genomics-species): accuracy, macro-F1,
             confusion matrix;
4. sc09      a few spoken digits generated from silence by the shipped SC09 model;
5. music     a continuation of a held-out demo piece by the shipped music model, and the
             model's bits per sample on held-out crops;
then OUT/report.md and OUT/report.html with the numbers and the figures.
"""
from __future__ import annotations

import html
import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .utils import atomic_write_text, resolve_device


@dataclass(frozen=True)
class DemoPlan:
    dna_steps: int
    dna_seq_len: int
    dna_batch: int
    dna_eval_windows: int
    species_windows: int
    species_window: int
    sc09_num: int
    sc09_seconds: float
    music_prompt_seconds: float
    music_seconds: float
    music_eval_crops: int
    sc09_speakers: int
    music_pieces: int
    music_piece_seconds: float


FULL = DemoPlan(dna_steps=150, dna_seq_len=512, dna_batch=8, dna_eval_windows=32,
                species_windows=20, species_window=1024, sc09_num=4, sc09_seconds=1.0,
                music_prompt_seconds=0.25, music_seconds=0.75, music_eval_crops=4,
                sc09_speakers=30, music_pieces=6, music_piece_seconds=8.0)
QUICK = DemoPlan(dna_steps=12, dna_seq_len=128, dna_batch=4, dna_eval_windows=4,
                 species_windows=5, species_window=1024, sc09_num=2, sc09_seconds=0.05,
                 music_prompt_seconds=0.02, music_seconds=0.05, music_eval_crops=2,
                 sc09_speakers=3, music_pieces=2, music_piece_seconds=2.0)


class _Report:
    def __init__(self, out: Path, console):
        self.out, self.console = out, console
        self.data: dict = {"sections": {}}
        self.t0 = time.time()

    def stage(self, name: str, title: str):
        self.console.rule(f"[bold]{title}")
        self.data["sections"][name] = {"title": title, "started_s": round(time.time() - self.t0, 1)}
        return self.data["sections"][name]


def _device_line(device: str) -> str:
    if device.startswith("cuda"):
        return f"GPU: {torch.cuda.get_device_name(torch.device(device))}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


# ---------------------------------------------------------------------------------------------
# stages

def _stage_data(rep: _Report, plan: DemoPlan) -> dict:
    from .audio.demo import espeak_available, make_demo_music, make_demo_sc09
    from .genomics.demo import make_demo

    sec = rep.stage("data", "1/5  demo data")
    root = rep.out / "data"
    paths = {"genomics": make_demo(root / "genomics", size="small", seed=0)}
    make_demo_music(root / "music", pieces=plan.music_pieces, seconds=plan.music_piece_seconds, seed=0)
    paths["music"] = root / "music"
    if espeak_available():
        make_demo_sc09(root / "sc09", speakers=plan.sc09_speakers, seed=0)
        paths["sc09"] = root / "sc09"
        sec["sc09_data"] = f"{plan.sc09_speakers} espeak-ng voices × 10 digits"
    else:
        sec["sc09_data"] = "skipped: espeak-ng is not installed (apt-get install -y espeak-ng)"
        rep.console.print(f"[yellow]{sec['sc09_data']}")
    sec["folder"] = str(root)
    return paths


def _stage_dna(rep: _Report, plan: DemoPlan, paths: dict, device: str) -> None:
    from .genomics import evaluate_run, pretrain

    sec = rep.stage("dna", "2/5  DNA: pretrain a tiny Mamba, compare with a Markov chain")
    run = rep.out / "dna-run"
    g = paths["genomics"]
    t = time.time()
    summary = pretrain(g["genome"], g["bed"], out=run, preset="tiny", steps=plan.dna_steps,
                       seq_len=plan.dna_seq_len, batch_size=plan.dna_batch, lr=8e-3,
                       device=device, eval_every=max(1, plan.dna_steps // 5),
                       save_every=plan.dna_steps)
    train_s = time.time() - t
    r = evaluate_run(run, split="test", seq_len=plan.dna_seq_len, n_windows=plan.dna_eval_windows,
                     batch_size=8, device=device)
    sec.update(preset="tiny", steps=plan.dna_steps, seq_len=plan.dna_seq_len,
               batch_size=plan.dna_batch, train_seconds=round(train_s, 1),
               tokens_per_s=summary.get("tokens_per_s"),
               test_bits_per_base=r["bits_per_base"], test_perplexity=r["perplexity"],
               markov_order=r["markov_order"], markov_bits_per_base=r["markov_bits_per_base"],
               test_windows=r["windows"], run=str(run))
    curve = run / "learning_curve.png"
    if curve.exists():
        shutil.copy(curve, rep.out / "dna_learning_curve.png")
        sec["learning_curve"] = "dna_learning_curve.png"
    rep.console.print(f"test bits/base: model {r['bits_per_base']:.4f}, "
                      f"order-{r['markov_order']} Markov {r['markov_bits_per_base']:.4f}")


def _stage_species(rep: _Report, plan: DemoPlan, paths: dict, device: str) -> None:
    from .genomics.data import Tokenizer
    from .genomics.metrics import classification_report, plot_confusion
    from .genomics.tasks import SpeciesTask, classify, default_species_model, fixed_windows

    sec = rep.stage("species", "3/5  great apes: classify held-out DNA with the shipped model")
    model_dir = default_species_model()
    if not (model_dir / "model.safetensors").exists():
        raise UserError(f"the shipped species model is missing ({model_dir}): reinstall seqsuite")
    info = json.loads((model_dir / "config.json").read_text())
    extra = info.get("extra") or {}
    window = int(extra.get("window") or plan.species_window)
    task = SpeciesTask(paths["genomics"]["manifest"])
    tok = Tokenizer.from_dict(task.info()["tokenizer"])
    windows = fixed_windows(task, "test", window, plan.species_windows, seed=7)
    folder = rep.out / "species"
    folder.mkdir(parents=True, exist_ok=True)
    fasta = folder / "apes_test.fa"
    lines = []
    for i, w in enumerate(windows):
        seq = tok.decode(np.asarray(w["tokens"]))
        lines.append(f">window{i:03d}_{task.species[int(w['label'])]}\n")
        lines += [seq[j:j + 60] + "\n" for j in range(0, len(seq), 60)]
    atomic_write_text(fasta, "".join(lines))
    t = time.time()
    _, rows = classify(fasta, model_path=model_dir, window=window, fmt="tsv",
                       out=folder / "classify.tsv", device=device)
    labels = task.species
    truth = [labels.index(r["record"].split("_", 1)[1]) for r in rows]
    pred = [labels.index(r["predicted"]) for r in rows]
    report = classification_report(np.array(truth), np.array(pred), labels)
    plot_confusion(report, rep.out / "species_confusion.png",
                   f"demo apes, held-out chromosomes, L={window}: accuracy {report['accuracy']:.3f}")
    sec.update(model=str(model_dir), window=window, records=len(rows),
               accuracy=report["accuracy"], macro_f1=report["macro_f1"],
               chance=1 / len(labels), confusion=report["confusion"], labels=labels,
               model_test_accuracy=extra.get("test_accuracy"), seconds=round(time.time() - t, 1),
               fasta=str(fasta.relative_to(rep.out)), table="species/classify.tsv",
               confusion_png="species_confusion.png")
    rep.console.print(f"accuracy {report['accuracy']:.3f} on {len(rows)} held-out windows "
                      f"(chance {1 / len(labels):.3f})")


def _stage_sc09(rep: _Report, plan: DemoPlan, device: str) -> None:
    from .audio.generate import generate_audio
    from .audio.recipes import load_model, shipped_model

    sec = rep.stage("sc09", "4/5  speech: SC09 digits from the shipped model")
    model, _ = load_model(shipped_model("sc09"), device)
    model = model.float()
    m = generate_audio(model, plan.sc09_num, seconds=plan.sc09_seconds, batch=plan.sc09_num,
                       temperature=0.9, top_p=0.95, out_dir=rep.out / "sc09", seed=0,
                       model_name="shipped sc09-small")
    sec.update(num=plan.sc09_num, seconds=plan.sc09_seconds,
               samples_per_s=m["samples_per_s"], real_time_factor=m["real_time_factor"],
               generation_seconds=m["generation_seconds"],
               nll_bits_per_sample=[s["nll_bits_per_sample"] for s in m["samples"]],
               wavs=[f"sc09/{s['file']}" for s in m["samples"]], grid="sc09/grid.png")


def _stage_music(rep: _Report, plan: DemoPlan, paths: dict, device: str) -> None:
    from .audio.data import SAMPLE_RATE, SILENCE, list_audio_files, load_audio, mu_law_decode, mu_law_encode, write_wav
    from .audio.generate import generate_tokens, save_spectrogram_png
    from .audio.recipes import load_model, shipped_model
    from .audio.tasks import sequence_nll

    sec = rep.stage("music", "5/5  music: continue a held-out piece with the shipped model")
    model, _ = load_model(shipped_model("music"), device)
    model = model.float()
    files = list_audio_files(paths["music"])
    piece = load_audio(files[-1])
    tokens = mu_law_encode(piece).astype(np.int64)
    n_prompt = max(1, int(plan.music_prompt_seconds * SAMPLE_RATE))
    n_new = max(1, int(plan.music_seconds * SAMPLE_RATE))
    prompt = torch.from_numpy(np.concatenate([[SILENCE], tokens[:n_prompt]]))[None]
    t = time.time()
    out = generate_tokens(model, 1, n_new, temperature=0.9, top_p=0.95, batch=1, seed=0, prompt=prompt)
    gen_s = time.time() - t
    folder = rep.out / "music"
    folder.mkdir(parents=True, exist_ok=True)
    audio = mu_law_decode(out[0, 1:])
    write_wav(folder / "continuation.wav", audio)
    write_wav(folder / "original.wav", mu_law_decode(tokens[:n_prompt + n_new].astype(np.uint8)))
    save_spectrogram_png(folder / "continuation.png", audio)
    # bits per sample on held-out crops (the model's training length is far longer)
    crop = max(n_prompt + n_new, 256)
    starts = np.linspace(0, max(0, len(tokens) - crop - 1), plan.music_eval_crops).astype(int)
    crops = np.stack([np.concatenate([[SILENCE], tokens[s:s + crop]]) for s in starts])
    nll = sequence_nll(model, crops, batch_size=plan.music_eval_crops)
    sec.update(piece=files[-1].name, prompt_seconds=n_prompt / SAMPLE_RATE,
               continuation_seconds=n_new / SAMPLE_RATE, generation_seconds=round(gen_s, 2),
               samples_per_s=(n_prompt + n_new) / gen_s,
               heldout_bits_per_sample=float(np.mean(nll)), heldout_crop_samples=int(crop),
               wav="music/continuation.wav", original="music/original.wav",
               spectrogram="music/continuation.png")
    rep.console.print(f"held-out bits/sample {np.mean(nll):.3f} (8 = uniform over 256 levels)")


# ---------------------------------------------------------------------------------------------
# report

def _fmt(x, nd=4):
    return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _markdown(d: dict) -> str:
    s = d["sections"]
    out = [f"# seqsuite demo report", "",
           f"{d['date']} · {d['device']} · seqsuite {d['version']} · torch {d['torch']} · "
           f"{'quick' if d['quick'] else 'full'} run in {d['seconds']:.0f} s", ""]
    if "dna" in s:
        x = s["dna"]
        out += ["## DNA pretraining (demo genome)", "",
                f"`tiny` Mamba, {x['steps']} steps × {x['batch_size']} windows of {x['seq_len']} bases "
                f"({x['train_seconds']} s). Test split, {x['test_windows']} fixed windows:", "",
                "| model | bits per base | perplexity |", "|---|---|---|",
                f"| Mamba `tiny` | {_fmt(x['test_bits_per_base'])} | {_fmt(x['test_perplexity'])} |",
                f"| order-{x['markov_order']} Markov (fit on train) | {_fmt(x['markov_bits_per_base'])} | |", ""]
        if x.get("learning_curve"):
            out += [f"![learning curve]({x['learning_curve']})", ""]
        gap = x["markov_bits_per_base"] - x["test_bits_per_base"]
        out += [(f"The model beats the Markov chain by {gap:.4f} bits per base." if gap > 0 else
                 f"After this short run the Markov chain is still ahead by {-gap:.4f} bits per base; "
                 "train longer (`seqsuite genomics pretrain --steps N`) to compare properly."), ""]
    if "species" in s:
        x = s["species"]
        out += ["## Great-ape species classification", "",
                f"{x['records']} windows of {x['window']} bases from the held-out chromosome of each "
                f"ape, written to [{x['fasta']}]({x['fasta']}) and classified with the shipped model "
                f"([{x['table']}]({x['table']})).", "",
                f"* accuracy **{_fmt(x['accuracy'], 3)}** (chance {_fmt(x['chance'], 3)}), "
                f"macro-F1 {_fmt(x['macro_f1'], 3)}",
                f"* the shipped model's own test accuracy when it was trained: {_fmt(x['model_test_accuracy'], 3)}",
                "", f"![confusion matrix]({x['confusion_png']})", ""]
    if "sc09" in s:
        x = s["sc09"]
        out += ["## SC09 digits from the shipped model", "",
                f"{x['num']} clips of {x['seconds']} s from silence (temperature 0.9, top-p 0.95): {_fmt(x['samples_per_s'], 0)} "
                f"samples/s ({_fmt(x['real_time_factor'], 3)}× real time).", ""]
        out += [f"* [{w}]({w}): {b:.3f} bits/sample" for w, b in zip(x["wavs"], x["nll_bits_per_sample"])]
        out += ["", f"![spectrograms]({x['grid']})", ""]
    if "music" in s:
        x = s["music"]
        out += ["## Music continuation from the shipped model", "",
                f"Prompt: the first {x['prompt_seconds']:.2f} s of `{x['piece']}`; continuation "
                f"{x['continuation_seconds']:.2f} s ([{x['wav']}]({x['wav']}); the original: "
                f"[{x['original']}]({x['original']})). Held-out bits/sample "
                f"{_fmt(x['heldout_bits_per_sample'], 3)} on crops of {x['heldout_crop_samples']} samples "
                f"(8 = uniform).", "", f"![continuation]({x['spectrogram']})", ""]
    out += ["## Notes", "",
            "The shipped models are small and were trained on this demo data (synthetic apes, "
            "synthetic piano, espeak-ng digits), not on hg38, YouTubeMix or SC09; the README says how "
            "to train on the real datasets.", ""]
    return "\n".join(out)


def _html(md: str) -> str:
    """A self-contained HTML page from the report's markdown subset (headings, lists, tables,
    images, links, bold, code)."""
    import re

    def inline(t: str) -> str:
        t = html.escape(t, quote=False)
        t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2" style="max-width:100%">', t)
        t = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)
        t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)

    body, in_list, in_table = [], False, False
    for line in md.splitlines():
        if in_list and not line.startswith("* "):
            body.append("</ul>")
            in_list = False
        if in_table and not line.startswith("|"):
            body.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("* "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{inline(line[2:])}</li>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append('<table border="1" cellpadding="4" style="border-collapse:collapse">')
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    if in_list:
        body.append("</ul>")
    if in_table:
        body.append("</table>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>seqsuite demo</title></head>"
            "<body style='font-family:sans-serif;max-width:60em;margin:auto'>\n"
            + "\n".join(body) + "\n</body></html>\n")


def run_demo(out: str | Path = "seqsuite-demo", quick: bool = False, device: str = "auto") -> Path:
    """Run every stage and write OUT/report.md, OUT/report.html and OUT/report.json."""
    from rich.console import Console

    import seqsuite

    console = Console(stderr=False)
    device = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = QUICK if quick else FULL
    rep = _Report(out, console)
    console.print(f"[bold]seqsuite demo[/bold] ({'quick' if quick else 'full'}) on {_device_line(device)}"
                  f"{'  (using the GPU)' if device.startswith('cuda') else ''}; writing to {out}")
    torch.manual_seed(0)
    paths = _stage_data(rep, plan)
    _stage_dna(rep, plan, paths, device)
    _stage_species(rep, plan, paths, device)
    _stage_sc09(rep, plan, device)
    _stage_music(rep, plan, paths, device)
    rep.data.update(date=time.strftime("%Y-%m-%d %H:%M"), device=_device_line(device),
                    version=seqsuite.__version__, torch=torch.__version__, quick=quick,
                    seconds=time.time() - rep.t0)
    atomic_write_text(out / "report.json", json.dumps(rep.data, indent=2, default=float) + "\n")
    md = _markdown(rep.data)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", _html(md))
    print(f"report: {out / 'report.md'} (and report.html) after {rep.data['seconds']:.0f} s", flush=True)
    return out / "report.md"
