"""seqsuite.audio: mu-law audio language modelling (YouTubeMix-style music, SC09 digits),
generation from silence, and the SC09 sample metrics (FID, IS, mIS, AM).

    from seqsuite.audio import AudioLMTask, evaluate_nll, generate_audio
    task = AudioLMTask.from_sc09("sc09/")          # or .from_folder("music/")

Modules: data (files -> mu-law tokens), demo (synthetic music / espeak-ng digits), tasks (Task
protocol, bits per sample), generate (WAV/PNG/manifest output), classifier (log-mel ResNet),
metrics (FID/IS/mIS/AM, likelihood filter), recipes (what the CLI runs), cli (typer app).
"""
from .data import (MAX_SEQ_LEN, SAMPLE_RATE, SC09, SILENCE, AudioFolder, load_audio, mu_law_decode,
                   mu_law_encode)
from .tasks import AudioLMTask, evaluate_nll, sequence_nll, unigram_baseline

__all__ = ["AudioFolder", "SC09", "AudioLMTask", "evaluate_nll", "sequence_nll", "unigram_baseline",
           "mu_law_encode", "mu_law_decode", "load_audio", "SAMPLE_RATE", "SILENCE", "MAX_SEQ_LEN",
           "generate_audio"]


def generate_audio(*args, **kwargs):
    """See seqsuite.audio.generate.generate_audio (imported lazily: it pulls in matplotlib)."""
    from .generate import generate_audio as _generate_audio

    return _generate_audio(*args, **kwargs)
