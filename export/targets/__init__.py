"""Export targets: one module per target behind :class:`Target`, and the one registry, :data:`TARGETS`.

Built-in: ``onnx`` (ONNX Runtime), ``openvino`` (OpenVINO IR) and ``tensorrt`` (the ONNX a
device builds an engine from). Another target registers itself with :func:`register_target`
or, installed as a package, through an entry point in the ``boq_edge.targets`` group
whose value is a :class:`Target` subclass or instance::

    [project.entry-points."boq_edge.targets"]
    mytarget = "mypkg.mytarget:MyTarget"
"""

from __future__ import annotations

import warnings
from importlib import metadata

from boq_edge.export.targets.base import ExportError, Target
from boq_edge.export.targets.onnx import OnnxTarget
from boq_edge.export.targets.openvino import OpenVINOTarget
from boq_edge.export.targets.tensorrt import TensorRTTarget

ENTRY_POINT_GROUP = "boq_edge.targets"
TARGETS: dict[str, Target] = {}


def register_target(target: Target | type[Target], *, replace: bool = False) -> Target:
    """Add a target (instance or class) to :data:`TARGETS`; its name and aliases must be new."""
    from boq_edge.runtime import BACKENDS

    t = target() if isinstance(target, type) else target
    if not isinstance(t, Target):
        raise TypeError(f"{target!r} is not a boq_edge Target")
    if any(k != k.lower() for k in (t.name, *t.aliases)):
        raise ValueError(f"target names and aliases are lower case: {type(t).__name__} has {(t.name, *t.aliases)}")
    if t.default_backend not in BACKENDS:
        raise ValueError(f"{type(t).__name__}.default_backend {t.default_backend!r} is not a runtime backend "
                         f"({', '.join(BACKENDS)})")
    taken = {alias: name for name, other in TARGETS.items() for alias in (name, *other.aliases)
             if not (replace and name == t.name)}
    for key in (t.name, *t.aliases):
        if key.lower() in taken:
            raise ValueError(f"target name {key!r} of {type(t).__name__} is already used by target "
                             f"{taken[key.lower()]!r}")
    TARGETS[t.name] = t
    return t


def get_target(name: str) -> Target:
    """The target for what users type (a name or an alias, any case)."""
    key = name.lower()
    for t in TARGETS.values():
        if key == t.name or key in t.aliases:
            return t
    aliases = ", ".join(sorted(a for t in TARGETS.values() for a in t.aliases))
    raise ExportError(f"unknown target {name!r}; choose from {', '.join(TARGETS)} (aliases: {aliases})")


def owner_of(options_type: type) -> str:
    """The name of the target whose own options are ``options_type`` (for error messages)."""
    return next((t.name for t in TARGETS.values() if t.options_type is options_type), "?")


def _load_entry_points() -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register_target(ep.load())
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not take the built-in targets down
            warnings.warn(f"boq-edge target plug-in {ep.name!r} ({ep.value}) was not loaded: {e}", stacklevel=2)


for _builtin in (OnnxTarget, OpenVINOTarget, TensorRTTarget):
    register_target(_builtin)
_load_entry_points()

__all__ = ["ENTRY_POINT_GROUP", "TARGETS", "ExportError", "Target", "get_target", "owner_of", "register_target"]
