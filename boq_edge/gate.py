"""Accuracy and latency gates: turn a validation report into a CI verdict.

A gate is a small set of limits (``max_r1_drop`` in percentage points, ``min_cosine``,
``max_latency_ms`` …) checked against every artifact in a ``report.json`` written by
``boq-edge validate``. Violations are returned as data, printed with measured vs allowed
values, and can be written as JUnit XML so CI systems show each rule as a test case.
Torch-free: gates run on the device as well as in CI.

Rules file (TOML)::

    [gate]                      # defaults for every artifact
    max_r1_drop_upper = 0.5     # upper end of the 95 % interval of the Recall@1 drop (recommended)
    min_cosine = 0.97

    [artifact."trt-int8"]       # overrides for one artifact (by its report name)
    max_latency_ms = 5

A file with no rule, an unknown table or rule, or overrides for an artifact the report
does not have, is an error (exit 2): a gate that checks nothing must not pass. An artifact
that failed to run in ``validate`` fails every rule.
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
    Rule("max_r1_drop_upper", ("recall_drop_stats", "1", "upper"), "max", "pp",
         "upper end of the paired-bootstrap 95 % interval of the Recall@1 drop"),
    Rule("max_r5_drop_upper", ("recall_drop_stats", "5", "upper"), "max", "pp",
         "upper end of the paired-bootstrap 95 % interval of the Recall@5 drop"),
    Rule("max_cross_r1_drop", ("cross_recall_drop_pp", "1"), "max", "pp",
         "Recall@1 drop when artifact and FP32 descriptors are mixed (the worse direction)"),
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
class GateRules:
    """Rules for every artifact, and per-artifact overrides (by report name)."""

    defaults: dict[str, float]
    per_artifact: dict[str, dict[str, float]]

    def for_artifact(self, name: str) -> dict[str, float]:
        return {**self.defaults, **self.per_artifact.get(name, {})}


@dataclass(frozen=True)
class Check:
    artifact: str
    rule: Rule
    allowed: float
    measured: float | None
    failure: str | None = None  # the artifact did not run: why
    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.allowed if self.rule.kind == "max" else self.measured >= self.allowed

    def describe(self) -> str:
        op = "≤" if self.rule.kind == "max" else "≥"
        got = "not measured" if self.measured is None else f"{self.measured:.4g}{self.rule.unit}"
        if self.failure:
            got = f"not measured (the artifact failed: {self.failure})"
        return (f"{self.artifact}: {self.rule.key} — {self.rule.description}: measured {got}, "
                f"allowed {op} {self.allowed:g}{self.rule.unit}")


def _rule_table(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, Mapping):
        raise GateError(f"{where} must be a table of rules (e.g. max_r1_drop = 0.5), got {table!r}")
    unknown = sorted(set(table) - set(RULES))
    if unknown:
        raise GateError(f"unknown gate rule(s) {unknown} in {where}; known: {sorted(RULES)}")
    out = {}
    for k, v in table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise GateError(f"gate rule {k} in {where} must be a number, got {v!r}")
        out[k] = float(v)
    return out


def parse_rules(rules: Mapping[str, Any]) -> GateRules:
    """Validate a rules mapping: ``{"gate": {...}, "artifact": {name: {...}}}`` (TOML) or flat rules (CLI flags)."""
    if not isinstance(rules, Mapping):
        raise GateError(f"gate rules must be a table, got {type(rules).__name__}")
    tables = sorted(k for k, v in rules.items() if isinstance(v, Mapping) and k not in ("gate", "artifact"))
    if tables:
        raise GateError(f"unknown table(s) {tables} in the rules; use [gate] and [artifact.NAME]")
    if "gate" not in rules and "artifact" not in rules:
        defaults, per = _rule_table(rules, "the rules"), {}
    else:
        unknown = sorted(set(rules) - {"gate", "artifact"})
        if unknown:
            raise GateError(f"unknown table(s) {unknown} in the rules; use [gate] and [artifact.NAME]")
        defaults = _rule_table(rules.get("gate", {}), "[gate]")
        arts = rules.get("artifact", {})
        if not isinstance(arts, Mapping):
            raise GateError("[artifact] must hold one table per artifact, e.g. [artifact.\"ov-int8\"]")
        per = {str(n): _rule_table(t, f"[artifact.{n}]") for n, t in arts.items()}
    if not defaults and not any(per.values()):
        raise GateError("the rules set no limit; a gate that checks nothing would always pass (e.g. "
                        "[gate] max_r1_drop_upper = 0.5)")
    return GateRules(defaults, per)


def load_rules(path: str | os.PathLike) -> GateRules:
    p = Path(path)
    if p.is_dir():
        raise GateError(f"rules file {p} is a folder; give the TOML file")
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise GateError(f"rules file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GateError(f"rules file {path} is not valid TOML: {e}") from None
    return parse_rules(data)


def _lookup(entry: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    cur: Any = entry
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    try:
        return None if cur is None or isinstance(cur, bool) else float(cur)
    except (TypeError, ValueError):
        return None


def check_report(report: Mapping[str, Any], rules: GateRules | Mapping[str, Any]) -> list[Check]:
    """Every rule against every artifact of a validation report. A missing value, or a failed artifact, fails."""
    gate = rules if isinstance(rules, GateRules) else parse_rules(rules)
    artifacts = report.get("artifacts") if isinstance(report, Mapping) else None
    if not isinstance(artifacts, list) or not artifacts or not all(isinstance(a, Mapping) for a in artifacts):
        raise GateError("report has no artifacts to check (is it a `boq-edge validate` report.json?)")
    names = [str(art.get("name", art.get("bundle", "artifact"))) for art in artifacts]
    missing = sorted(set(gate.per_artifact) - set(names))
    if missing:
        raise GateError(f"rules name artifact(s) {missing} that the report does not have (it has {names})")
    checks = []
    for name, art in zip(names, artifacts, strict=True):
        failure = str(art.get("reason") or "failed") if art.get("status") == "failed" else None
        for key, allowed in gate.for_artifact(name).items():
            measured = None if failure else _lookup(art, RULES[key].path)
            checks.append(Check(name, RULES[key], allowed, measured, failure))
    return checks


def gate_summary(checks: list[Check]) -> dict[str, Any]:
    """The verdict as data, for report.json."""
    return {"passed": all(c.passed for c in checks), "failed": sum(not c.passed for c in checks),
            "checks": [{"artifact": c.artifact, "rule": c.rule.key, "allowed": c.allowed, "measured": c.measured,
                        "passed": c.passed, "text": c.describe()} for c in checks]}


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateError(f"report {path} not found") from None
    except IsADirectoryError:
        raise GateError(f"report {path} is a folder; give its report.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GateError(f"report {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise GateError(f"report {path} is not a `boq-edge validate` report (not a JSON object)")
    return data


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
