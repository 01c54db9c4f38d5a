"""Evaluation: descriptor extraction, faiss Recall@k, and the benchmark report.

Torch-free at import: devices evaluate artifacts with the same code.
"""

from boq_edge.evaluate.extract import Extraction, extract_descriptors, iter_batches, torch_embed_fn
from boq_edge.evaluate.recall import DEFAULT_K, RecallResult, compute_recall, recall_from_predictions, search
from boq_edge.evaluate.run import EvalReport, evaluate_benchmark

__all__ = [
    "DEFAULT_K",
    "EvalReport",
    "Extraction",
    "RecallResult",
    "compute_recall",
    "evaluate_benchmark",
    "extract_descriptors",
    "iter_batches",
    "recall_from_predictions",
    "search",
    "torch_embed_fn",
]
