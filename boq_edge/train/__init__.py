"""Training: GSV-Cities-style place batches, Multi-Similarity loss, AdamW, resumable, data-parallel.

``train(TrainConfig(...))`` is the whole API; ``boq-edge train`` is a thin wrapper over it.
Imports torch (training is workstation-side).
"""

from boq_edge.train.config import TrainConfig, read_config_file
from boq_edge.train.datasets import PlaceImages, PlaceSet, read_aligned_places, read_gsv_cities, read_training_set
from boq_edge.train.loss import MultiSimilarityLoss, multi_similarity_mine
from boq_edge.train.sampler import PlaceBatchSampler
from boq_edge.train.state import ResumeError, load_state
from boq_edge.train.trainer import TrainError, TrainResult, WarmupStepSchedule, train

__all__ = [
    "MultiSimilarityLoss", "PlaceBatchSampler", "PlaceImages", "PlaceSet", "ResumeError", "TrainConfig", "TrainError",
    "TrainResult", "WarmupStepSchedule", "load_state", "multi_similarity_mine", "read_aligned_places",
    "read_config_file", "read_gsv_cities", "read_training_set", "train",
]
