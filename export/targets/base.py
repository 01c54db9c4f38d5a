"""The one interface every export target implements.

A target is one module: its name and aliases, the runtime backend its bundles run on by
default, its own options, its float emit (FP32 / FP16) and its INT8 path. The export
stage (:func:`boq_edge.export.api.export_model`) and the INT8 pipeline
(:func:`boq_edge.calibration.quantize_model`) call these methods and never compare target
names; adding a target is one module plus one :func:`~boq_edge.export.targets.register_target`
call (or a ``boq_edge.targets`` entry point).

Nothing here imports torch, onnx or a runtime: the device reads manifests through the
registry, so target modules import their heavy libraries inside methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from boq_edge.export.onnx_export import ExportError

if TYPE_CHECKING:
    from boq_edge.calibration.pipeline import Int8Job, Int8Outcome
    from boq_edge.export.bundle import ManifestDraft
    from boq_edge.export.options import ExportOptions

    from boq_edge.runtime.manifest import Manifest


class Target(ABC):
    """An export target: what ``--target NAME`` makes and how its bundles run."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    default_backend: ClassVar[str]  # a name in boq_edge.runtime.BACKENDS
    summary: ClassVar[str] = ""
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    options_type: ClassVar[type | None] = None  # the target's own options dataclass, if it has one

    def check(self, options: ExportOptions) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Refuse, before any work, what this machine or these options cannot do (default: nothing)."""

    def prepare(self, draft: ManifestDraft, options: ExportOptions, out_dir: Path) -> None:  # noqa: B027
        """Manifest fields this target owns whatever the precision (default: none)."""

    @abstractmethod
    def emit(self, folded: Any, stage: Path, options: ExportOptions, draft: ManifestDraft, work: Path) -> None:
        """Write the FP32 or FP16 model into ``stage``; record artifacts and the ONNX used in ``draft``.

        ``work`` is a scratch folder removed after the export.
        """

    def quantize(self, job: Int8Job) -> Int8Outcome:
        """Make the INT8 model for ``job`` (PTQ, QAT or accuracy control) under ``job.work``."""
        raise ExportError(f"target {self.name} has no INT8 path")

    def finish(self, bundle: Path, options: ExportOptions) -> None:  # noqa: B027
        """Work after the bundle is published (TensorRT: build the engine where it can be built)."""

    def describe(self, manifest: Manifest) -> list[tuple[str, str]]:
        """Extra ``(label, value)`` rows for ``boq-edge info`` (default: none)."""
        return []

    def next_step(self, manifest: Manifest) -> str | None:
        """What the user must still do with a fresh bundle, if anything (printed after export)."""
        return None

    def __repr__(self) -> str:
        return f"<target {self.name}>"


__all__ = ["ExportError", "Target"]
