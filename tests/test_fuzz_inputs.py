"""Seeded fuzzing of what users hand boq-edge: checkpoint headers, bundle manifests, calibration manifests,
gate rules. Every mutated input must end in a clean exit 0/1/2 — never a traceback, never a memory blow-up,
never a file written outside the output path.

Each kind runs its cases in one subprocess (one torch import), under an address-space limit, through the
CLI's own entry point (``boq_edge.cli.app``), so the whole module stays within a couple of minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CASES = 200
MEMORY_LIMIT = 3 << 30  # bytes of address space per fuzzing process

RUNNER = textwrap.dedent(r'''
    import contextlib, io, json, math, random, resource, sys, traceback
    from pathlib import Path

    kind, seed_file, extra, work, n, limit = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), \
        int(sys.argv[5]), int(sys.argv[6])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from boq_edge.cli import _load_commands, app
    _load_commands()
    rng = random.Random(1234)
    ODD = [None, True, False, 0, -1, 1e308, -1e308, float("nan"), float("inf"), 10**7, 2**63, "", "x" * 5000,
           "NaN", [], {}, [1, 2], {"a": {"b": {}}}, 3.5, "../../etc/passwd", "/"]

    def paths(node, prefix=()):
        yield prefix
        if isinstance(node, dict):
            for k, v in node.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node[:6]):
                yield from paths(v, prefix + (i,))

    def mutate_tree(tree):
        tree = json.loads(json.dumps(tree))
        for _ in range(rng.randint(1, 3)):
            where = rng.choice([p for p in paths(tree) if p])
            parent = tree
            for k in where[:-1]:
                parent = parent[k]
            op = rng.random()
            if op < 0.25 and isinstance(parent, dict):
                del parent[where[-1]]
            elif op < 0.35 and isinstance(parent, dict):
                parent["unexpected_" + str(rng.randint(0, 9))] = rng.choice(ODD)
            else:
                parent[where[-1]] = rng.choice(ODD)
        return tree

    def mutate_bytes(data):
        data = bytearray(data)
        op = rng.random()
        if op < 0.3:
            return bytes(data[: rng.randint(0, len(data))])
        if op < 0.6:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            return bytes(data)
        if op < 0.8:
            pos = rng.randint(0, len(data))
            return bytes(data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[pos:])
        return b""

    def checkpoint_case(i):
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file
        out = work / f"c{i}.boq"
        if rng.random() < 0.25:
            out.write_bytes(mutate_bytes(seed_file.read_bytes()))
        else:
            with safe_open(str(seed_file), framework="pt") as f:
                meta = dict(f.metadata())
            key = rng.choice(["config", "config", "config", "meta", "format", "format_version"])
            if key in ("config", "meta"):
                meta[key] = json.dumps(mutate_tree(json.loads(meta[key])))
            else:
                meta[key] = str(rng.choice(ODD))
            save_file(load_file(str(seed_file)), str(out), metadata=meta)
        return ["info", str(out)]

    def json_case(i, name, args):
        out = work / f"j{i}" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if name == "manifest.json":
            import shutil
            shutil.copytree(seed_file.parent, out.parent, dirs_exist_ok=True)
        text = seed_file.read_bytes()
        if rng.random() < 0.3:
            out.write_bytes(mutate_bytes(text))
        else:
            out.write_text(json.dumps(mutate_tree(json.loads(text)), allow_nan=True))
        return args(out)

    def rules_case(i):
        out = work / f"r{i}.toml"
        seed = seed_file.read_text()
        if rng.random() < 0.4:
            out.write_bytes(mutate_bytes(seed.encode()))
        else:
            lines = []
            for _ in range(rng.randint(0, 4)):
                table = rng.choice(["[gate]", "[gates]", "[artifact.good]", "[artifact.nope]", "gate = 5", ""])
                lines.append(table)
                for _ in range(rng.randint(0, 3)):
                    key = rng.choice(["max_r1_drop", "min_cosine", "max_r1_drop_upper", "bogus", "max_latency_ms"])
                    val = rng.choice(["0.5", "-1", "nan", "inf", "\"x\"", "true", "[1]", "{a=1}", "1e400"])
                    lines.append(f"{key} = {val}")
            out.write_text("\n".join(lines) + "\n")
        return ["gate", extra, "--rules", str(out)]

    make = {
        "checkpoint": checkpoint_case,
        "manifest": lambda i: json_case(i, "manifest.json", lambda p: ["info", str(p.parent)]),
        "calibration": lambda i: json_case(i, "calib.json", lambda p: ["info", str(p)]),
        "rules": rules_case,
    }[kind]
    codes, crashes = {}, []
    for i in range(n):
        args = make(i)
        buf = io.StringIO()
        code = None
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                app(args, prog_name="boq-edge", standalone_mode=True)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                crashes.append({"case": i, "args": args, "error": traceback.format_exc()[-1500:]})
        text = buf.getvalue()
        if code is not None and (code not in (0, 1, 2) or "Traceback" in text):
            crashes.append({"case": i, "args": args, "code": code, "output": text[-1500:]})
        codes[str(code)] = codes.get(str(code), 0) + 1
    print(json.dumps({"kind": kind, "codes": codes, "crashes": crashes[:12], "num_crashes": len(crashes)}))
''')


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, write_image) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")
    from boq_edge.calibration import calibration_set_from_paths, save_calibration_set
    from boq_edge.export.api import export_model
    from boq_edge.export.options import ExportOptions

    tmp = tmp_path_factory.mktemp("fuzz-seeds")
    bundle = export_model(tiny_checkpoint, tmp / "bundle", ExportOptions("onnx"))
    imgs = [write_image(tmp / "imgs" / f"{i}.png", seed=i) for i in range(4)]
    calib = save_calibration_set(calibration_set_from_paths(imgs), tmp / "calib.json").manifest_path
    report = tmp / "report.json"
    report.write_text(json.dumps({"artifacts": [{"name": "good", "status": "ok", "recall_drop_pp": {"1": 0.2},
                                                 "cosine": {"min": 0.99, "mean": 0.995}}]}))
    rules = tmp / "gates.toml"
    rules.write_text("[gate]\nmax_r1_drop = 0.5\nmin_cosine = 0.9\n[artifact.good]\nmin_cosine = 0.95\n")
    return {"checkpoint": tiny_checkpoint, "manifest": bundle / "manifest.json", "calibration": calib,
            "rules": rules, "report": report}


def _digest(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["checkpoint", "manifest", "calibration", "rules"])
def test_mutated_inputs_exit_cleanly(kind: str, seeds: dict[str, Path], tmp_path: Path) -> None:
    seed = seeds[kind]
    seed_folder = seed.parent
    before = _digest(seed_folder)
    work, cwd = tmp_path / "cases", tmp_path / "cwd"
    work.mkdir()
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, kind, str(seed), str(seeds["report"]), str(work), str(CASES),
         str(MEMORY_LIMIT)], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"fuzz {kind}: {CASES} cases, exit codes {result['codes']}")
    summary = [(c["case"], (c.get("error") or c.get("output", "")).strip().splitlines()[-4:])
               for c in result["crashes"]]
    assert result["num_crashes"] == 0, f"{result['num_crashes']} crashes, e.g. {summary}"
    assert sum(result["codes"].values()) == CASES and set(result["codes"]) <= {"0", "1", "2"}
    assert list(cwd.iterdir()) == []  # nothing written where it was not asked for
    assert _digest(seed_folder) == before  # the inputs are untouched
