"""boq-edge: Bag-of-Queries visual place recognition, from checkpoint to proven edge artifact.

Importing this package must never import torch: the device runtime (``boq_edge.runtime``)
and the preprocessing it shares with the reference model live under the same namespace.
"""

__version__ = "0.1.0"
