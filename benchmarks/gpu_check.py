"""Helpers of benchmarks/gpu_check.sh: a benchmark to JSON, the machine, the one summary JSON.

Runs one benchmark into a JSON file, describes the machine, and gathers every part's status and
results into the one ``gpu_check.json``.

    python benchmarks/gpu_check.py bench MODULE OUT.json [-- ARGS...]   # benchmarks/MODULE.main(ARGS)
    python benchmarks/gpu_check.py env OUT.json                         # GPU, driver, versions
    python benchmarks/gpu_check.py summary STATE_DIR OUT.json           # status.tsv + parts -> one JSON

``STATE_DIR`` holds what the shell script wrote: ``status.tsv`` (one line per part: name, status,
exit code, seconds, note), ``env.json``, ``NAME.json`` (a benchmark's result) and ``NAME.xml``
(a pytest part's JUnit report, summarised as counts and the failing tests' first lines; test
modules that failed to import, e.g. for a package the machine lacks, are listed apart, and a
pytest part whose only problems they are counts as ok, with a note).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_bench(module: str, out: Path, argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    result = importlib.import_module(module).main(argv)
    out.write_text(json.dumps(result, indent=2, default=str))
    return 0


def environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        import torch

        env.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                       gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                       cudnn=torch.backends.cudnn.version(), nccl=".".join(map(str, torch.cuda.nccl.version())))
    except Exception as error:  # noqa: BLE001 - the description must not fail
        env["torch_error"] = f"{type(error).__name__}: {error}"
    for name in ("pyro", "arviz"):
        try:
            env[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001
            env[name] = None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        env["nvidia_smi"] = f"not available ({type(error).__name__})"
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE,
                                           timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        env["git_commit"] = None
    return env


def junit_summary(path: Path) -> dict:
    """Counts of a pytest JUnit report and, for each failure or error, the test and its first line."""
    root = ET.parse(path).getroot()
    counts = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "xfailed": 0}
    failures, skip_reasons, collection = [], {}, []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag == "error" and child.get("message") == "collection failure":
                lines = [line for line in (child.text or "").splitlines() if line.startswith("E ")]
                collection.append({"module": case.get("name", ""), "message": lines[-1][1:].strip()[:300] if lines else ""})
                outcome = None
            elif child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "errors"
                message = (child.get("message") or child.text or "").strip().splitlines()
                failures.append({"test": name, "kind": child.tag, "message": message[0][:500] if message else ""})
            elif child.tag == "skipped":
                if child.get("type") == "pytest.xfail":
                    outcome = "xfailed"
                else:
                    outcome = "skipped"
                    reason = (child.get("message") or "").strip()[:200]
                    skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
        if outcome is not None:
            counts["tests"] += 1
            counts[outcome] += 1
    return {**counts, "failures": failures, "skip_reasons": skip_reasons, "collection_errors": collection}


def summary(state: Path, out: Path) -> dict:
    parts = {}
    status = state / "status.tsv"
    for line in status.read_text().splitlines() if status.is_file() else []:
        fields = line.split("\t")
        if len(fields) < 5:
            continue
        name, state_, rc, seconds, note = fields[:5]
        part = {"status": state_, "exit_code": int(rc) if rc.lstrip("-").isdigit() else None,
                "seconds": float(seconds) if seconds else None}
        if note:
            part["note"] = note
        result, report = state / f"{name}.json", state / f"{name}.xml"
        if result.is_file():
            try:
                part["result"] = json.loads(result.read_text())
            except json.JSONDecodeError as error:
                part["result_error"] = f"unreadable {result.name}: {error}"
        if report.is_file():
            try:
                tests = part["tests"] = junit_summary(report)
                if (part["status"] == "failed" and tests["collection_errors"] and not tests["failed"]
                        and not tests["errors"]):
                    part["status"] = "ok"
                    part["note"] = (f"every selected test passed or skipped; {len(tests['collection_errors'])} test "
                                    "module(s) could not be imported (see tests.collection_errors)")
            except ET.ParseError as error:
                part["tests_error"] = f"unreadable {report.name}: {error}"
        parts[name] = part
    env_file = state / "env.json"
    document = {
        "script": "benchmarks/gpu_check.sh",
        "environment": json.loads(env_file.read_text()) if env_file.is_file() else None,
        "parts": parts,
        "all_ok": bool(parts) and all(p["status"] in ("ok", "dry-run") for p in parts.values()),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.write_text(json.dumps(document, indent=2, default=str))
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run benchmarks/MODULE.py's main(ARGS) and write its result as JSON")
    bench.add_argument("module", help="a benchmark module in benchmarks/ (bench_fivo, bench_engine, ...)")
    bench.add_argument("out", type=Path)
    bench.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own arguments (after --)")
    env = sub.add_parser("env", help="write the machine's description (GPU, driver, versions) as JSON")
    env.add_argument("out", type=Path)
    summ = sub.add_parser("summary", help="gather the parts' status and results into one JSON")
    summ.add_argument("state", type=Path)
    summ.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "bench":
        rest = args.args[1:] if args.args[:1] == ["--"] else args.args
        return run_bench(args.module, args.out, rest)
    if args.command == "env":
        args.out.write_text(json.dumps(environment(), indent=2))
        return 0
    summary(args.state, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
