from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boq_edge.cli import _load_commands, app
from boq_edge.gate import GateError, check_report, parse_rules

_load_commands()
runner = CliRunner()


def _report(drop: float, cos_min: float = 0.999, p50: float = 10.0) -> dict:
    return {"artifacts": [{
        "name": "openvino-int8", "recall": {"1": 60.0 - drop}, "reference_recall": {"1": 60.0},
        "recall_drop_pp": {"1": drop}, "cosine": {"mean": 0.9995, "min": cos_min}, "top1_agreement": 97.0,
        "latency_ms": {"p50": p50, "p99": p50 * 1.5}, "speedup": 8.0,
    }]}


def _write(tmp: Path, report: dict, rules: str) -> tuple[Path, Path]:
    rp, gp = tmp / "report.json", tmp / "gates.toml"
    rp.write_text(json.dumps(report))
    gp.write_text(rules)
    return rp, gp


def test_gate_passes_within_rules(tmp_path: Path) -> None:
    rp, gp = _write(tmp_path, _report(0.3), "[gate]\nmax_r1_drop = 0.5\nmin_cosine = 0.99\nmax_latency_ms = 20\n")
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp)])
    assert r.exit_code == 0, r.output
    assert r.output.count("PASS") == 3


def test_gate_fails_naming_rule_measured_and_allowed(tmp_path: Path) -> None:
    rp, gp = _write(tmp_path, _report(1.2, p50=25.0), "[gate]\nmax_r1_drop = 0.5\nmax_latency_ms = 20\n")
    junit = tmp_path / "gate.xml"
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp), "--junit", str(junit)])
    assert r.exit_code == 1
    assert "openvino-int8: max_r1_drop" in r.output and "measured 1.2pp, allowed ≤ 0.5pp" in r.output
    assert "max_latency_ms" in r.output and "measured 25ms" in r.output
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "2"
    assert all(tc.find("failure") is not None for tc in suite.iter("testcase"))


def test_missing_measurement_fails_not_passes() -> None:
    report = {"artifacts": [{"name": "x", "recall_drop_pp": {}}]}
    (check,) = check_report(report, {"max_r1_drop": 0.5})
    assert not check.passed and "not measured" in check.describe()


def test_bad_rules_and_reports_are_clear(tmp_path: Path) -> None:
    with pytest.raises(GateError, match="unknown gate rule"):
        parse_rules({"gate": {"max_r1_dorp": 0.5}})
    with pytest.raises(GateError, match="must be a number"):
        parse_rules({"max_r1_drop": "half"})
    rp, gp = _write(tmp_path, {"artifacts": []}, "[gate]\nmax_r1_drop = 0.5\n")
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp)])
    assert r.exit_code == 2 and "no artifacts" in r.output
    gp.write_text("max_r1_drop = = 1")
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp)])
    assert r.exit_code == 2 and "not valid TOML" in r.output


@pytest.mark.parametrize("text,message", [
    ("", "set no limit"),
    ("[gate]\n", "set no limit"),
    ("gate = 5\n", "must be a table"),
    ("[gates]\nmax_r1_drop = 1\n", "unknown table"),
    ("[gate]\nmax_r1_drop = nan\n", "must be a number"),
    ("[gate]\nmax_r1_drop = 1\n[artifact.nope]\nmin_cosine = 0.9\n", "does not have"),
    ("[gate]\nmax_r1_drop = 1\n[artifact]\nx = 1\n", "must be a table of rules"),
])
def test_rules_that_check_nothing_or_are_malformed_exit_2(tmp_path: Path, text: str, message: str) -> None:
    rp, gp = _write(tmp_path, _report(0.3), text)
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp)])
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_binary_or_folder_rules_and_report_exit_2(tmp_path: Path) -> None:
    rp, gp = _write(tmp_path, _report(0.3), "")
    gp.write_bytes(b"\x00\xff\xfe binary")
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp)])
    assert r.exit_code == 2 and "not valid TOML" in r.output
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in r.output
    gp.write_text("[gate]\nmax_r1_drop = 1\n")
    r = runner.invoke(app, ["gate", str(tmp_path), "--rules", str(gp)])
    assert r.exit_code == 2 and "is a folder" in r.output
    rp.write_text("[1, 2]")
    r = runner.invoke(app, ["gate", str(rp), "--rules", str(gp)])
    assert r.exit_code == 2 and "not a `boq-edge validate` report" in r.output


def test_per_artifact_overrides_interval_rule_and_failed_rows(tmp_path: Path) -> None:
    report = _report(0.3)
    report["artifacts"][0]["recall_drop_stats"] = {"1": {"drop_pp": 0.3, "lower": -0.4, "upper": 1.1}}
    report["artifacts"].append({"name": "trt-int8", "status": "failed", "reason": "engine pending"})
    rules = parse_rules({"gate": {"max_r1_drop_upper": 1.5}, "artifact": {"openvino-int8": {"max_r1_drop_upper": 0.5}}})
    by = {(c.artifact, c.rule.key): c for c in check_report(report, rules)}
    assert not by[("openvino-int8", "max_r1_drop_upper")].passed  # 1.1 > the override 0.5
    failed = by[("trt-int8", "max_r1_drop_upper")]
    assert not failed.passed and "the artifact failed: engine pending" in failed.describe()
