"""seqsuite.genomics: DNA data (FASTA, BED, species manifests), the demo genome and apes, the
language-modelling and species tasks, and the functions behind `seqsuite genomics ...`."""
from .data import Fasta, Tokenizer, read_bed, read_manifest
from .demo import make_demo
from .tasks import (GenomeLMTask, SpeciesTask, classify, classify_fasta, evaluate_lm, evaluate_run,
                    evaluate_species, finetune_species, fit_markov, load_model, pretrain)

__all__ = ["Tokenizer", "Fasta", "read_bed", "read_manifest", "make_demo", "GenomeLMTask",
           "SpeciesTask", "pretrain", "evaluate_lm", "evaluate_run", "fit_markov",
           "finetune_species", "evaluate_species", "classify_fasta", "classify", "load_model"]
