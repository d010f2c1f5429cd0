"""seqsuite.train: the one training loop (loop.py) with its config, schedules, checkpoints,
logs and torchrun/DDP support. See docs/ARCHITECTURE.md, "Training loop contract"."""
from seqsuite.train.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from seqsuite.train.config import TrainConfig
from seqsuite.train.logging import plot_learning_curve, read_metrics
from seqsuite.train.loop import Task, TrainingDiverged, evaluate, param_groups, train
from seqsuite.train.schedule import lr_at, seq_len_schedule, seq_len_stages

__all__ = ["TrainConfig", "train", "Task", "TrainingDiverged", "evaluate", "param_groups",
           "load_checkpoint", "save_checkpoint", "verify_checkpoint", "read_metrics",
           "plot_learning_curve", "lr_at", "seq_len_schedule", "seq_len_stages"]
