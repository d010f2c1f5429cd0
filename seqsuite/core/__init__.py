"""seqsuite core: S6 and S4 layers, the Mamba block, isotropic and U-Net backbones, heads,
recurrent inference and presets. Needs only torch (and triton on GPU)."""
from .backbone import set_grad_checkpointing
from .config import ModelConfig
from .io import from_pretrained, save_pretrained
from .model import ClassifierModel, LMModel, build_model
from .presets import CLAIMED_PARAMS, PRESETS, build, count_params, get_config

__all__ = [
    "ModelConfig", "LMModel", "ClassifierModel", "build", "build_model", "get_config", "PRESETS",
    "CLAIMED_PARAMS", "count_params", "save_pretrained", "from_pretrained", "set_grad_checkpointing",
]
