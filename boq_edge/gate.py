"""Accuracy and latency gates: turn a validation report into a CI verdict.

A gate is a small set of limits (``max_r1_drop`` in percentage points, ``min_cosine``,
``max_latency_ms`` …) checked against every artifact in a ``report.json`` written by
``boq-edge validate``. Violations are returned as data, printed with measured vs allowed
values, and can be written as JUnit XML so CI systems show each rule as a test case.
Torch-free: gates run on the device as well as in CI.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Rule:
    """One limit: ``key`` names it in gates.toml, ``path`` finds the measured value in an artifact entry."""

    key: str
    path: tuple[str, ...]
    kind: str  # "max" or "min"
    unit: str
    description: str


RULES: dict[str, Rule] = {r.key: r for r in (
    Rule("max_r1_drop", ("recall_drop_pp", "1"), "max", "pp", "Recall@1 drop vs the FP32 reference"),
    Rule("max_r5_drop", ("recall_drop_pp", "5"), "max", "pp", "Recall@5 drop vs the FP32 reference"),
    Rule("min_r1", ("recall", "1"), "min", "%", "Recall@1 of the artifact"),
    Rule("min_cosine", ("cosine", "min"), "min", "", "lowest descriptor cosine to the reference"),
    Rule("min_mean_cosine", ("cosine", "mean"), "min", "", "mean descriptor cosine to the reference"),
    Rule("min_top1_agreement", ("top1_agreement",), "min", "%", "queries whose top-1 match equals the reference's"),
    Rule("max_latency_ms", ("latency_ms", "p50"), "max", "ms", "median latency"),
    Rule("max_p99_latency_ms", ("latency_ms", "p99"), "max", "ms", "99th-percentile latency"),
    Rule("min_speedup", ("speedup",), "min", "×", "speedup over the reference (p50)"),
)}


class GateError(ValueError):
    """A rules file or report that cannot be checked."""


@dataclass(frozen=True)
class Check:
    artifact: str
    rule: Rule
    allowed: float
    measured: float | None

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.allowed if self.rule.kind == "max" else self.measured >= self.allowed

    def describe(self) -> str:
        op = "≤" if self.rule.kind == "max" else "≥"
        got = "not measured" if self.measured is None else f"{self.measured:.4g}{self.rule.unit}"
        return (f"{self.artifact}: {self.rule.key} — {self.rule.description}: measured {got}, "
                f"allowed {op} {self.allowed:g}{self.rule.unit}")


def parse_rules(rules: Mapping[str, Any]) -> dict[str, float]:
    """Validate a rules mapping (from TOML ``[gate]`` or CLI flags); unknown keys are errors."""
    table = rules.get("gate", rules)
    unknown = sorted(set(table) - set(RULES))
    if unknown:
        raise GateError(f"unknown gate rule(s) {unknown}; known: {sorted(RULES)}")
    out = {}
    for k, v in table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise GateError(f"gate rule {k} must be a number, got {v!r}")
        out[k] = float(v)
    return out


def load_rules(path: str | os.PathLike) -> dict[str, float]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise GateError(f"rules file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise GateError(f"rules file {path} is not valid TOML: {e}") from None
    return parse_rules(data)


def _lookup(entry: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = entry
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return None if cur is None else float(cur)


def check_report(report: Mapping[str, Any], rules: Mapping[str, float]) -> list[Check]:
    """Every rule against every artifact of a validation report. A value that is missing fails."""
    artifacts = report.get("artifacts")
    if not isinstance(artifacts, list) or not artifacts:
        raise GateError("report has no artifacts to check (is it a `boq-edge validate` report.json?)")
    checks = []
    for art in artifacts:
        name = str(art.get("name", art.get("bundle", "artifact")))
        for key, allowed in rules.items():
            checks.append(Check(name, RULES[key], allowed, _lookup(art, RULES[key].path)))
    return checks


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GateError(f"report {path} not found") from None
    except json.JSONDecodeError as e:
        raise GateError(f"report {path} is not valid JSON: {e}") from None


def junit_xml(checks: list[Check], suite: str = "boq-edge-gate") -> str:
    """One test case per (artifact, rule); failures carry measured vs allowed."""
    failures = sum(not c.passed for c in checks)
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             f'<testsuite name={quoteattr(suite)} tests="{len(checks)}" failures="{failures}" errors="0">']
    for c in checks:
        head = f'  <testcase classname={quoteattr(c.artifact)} name={quoteattr(c.rule.key)}'
        if c.passed:
            lines.append(head + f"><system-out>{escape(c.describe())}</system-out></testcase>")
        else:
            lines.append(head + f"><failure message={quoteattr(c.describe())}/></testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"
