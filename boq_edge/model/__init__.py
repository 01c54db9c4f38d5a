"""BoQ models in plain torch: backbones, the aggregator, presets and checkpoint I/O."""

from boq_edge.model.checkpoint import (
    CheckpointError,
    import_official,
    load_checkpoint,
    read_checkpoint_header,
    save_checkpoint,
)
from boq_edge.model.presets import PRESETS, ModelConfig, get_preset
from boq_edge.model.vpr import VPRModel, build_model, load_backbone_weights

__all__ = [
    "PRESETS", "CheckpointError", "ModelConfig", "VPRModel", "build_model", "get_preset",
    "import_official", "load_backbone_weights", "load_checkpoint", "read_checkpoint_header", "save_checkpoint",
]
