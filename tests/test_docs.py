"""The documentation: the site builds with ``mkdocs build --strict`` (every page, link and API
block; skipped, saying why, where the ``[docs]`` extra is not installed), the generated pages and
tables are what their scripts write from the committed code and runs, and the README's tour runs."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_what_the_parser_gives():
    script = load_script(ROOT / "tools" / "cli_reference.py")
    assert (ROOT / "docs" / "cli.md").read_text() == script.render(), (
        "docs/cli.md is stale: run python tools/cli_reference.py")


def test_the_cli_reference_lists_every_command_and_flag():
    from pyrosequence.cli import COMMANDS, build_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert len(sub.choices) == len(COMMANDS)
    for name, command in sub.choices.items():
        assert f"`pyrosequence {name}`" in text, name
        for action in command._actions:
            if action.__class__.__name__ == "_HelpAction":
                continue
            for flag in action.option_strings:
                assert f"`{flag}`" in text, (name, flag)


def test_the_results_tables_are_what_the_shipped_runs_say():
    script = load_script(ROOT / "experiments" / "results_table.py")
    block = script.render()
    runs = script.shipped_runs()
    assert runs and all(f"`{run.name}`" in block for run in runs)
    for name in script.TARGETS:
        text = (ROOT / name).read_text()
        assert block in text, f"the results table in {name} is stale: run python experiments/results_table.py"


def test_the_results_table_reads_its_numbers_from_the_run_files(tmp_path):
    import json
    import shutil

    script = load_script(ROOT / "experiments" / "results_table.py")
    # a run scored with its best weights, whose own end-of-run figure (results.json) is shown too
    run = next(r for r in script.shipped_runs() if json.loads((r / "verification.json").read_text())["weights"] == "best")
    copy = tmp_path / run.name
    copy.mkdir()
    for name in ("verification.json", "results.json"):
        shutil.copy(run / name, copy / name)
    record = json.loads((copy / "verification.json").read_text())
    record["per_timestep"] = -1.23456
    (copy / "verification.json").write_text(json.dumps(record))
    [row] = script.rows(tmp_path)[2:]
    assert "**-1.2346**" in row and f"({record['spread_sd']:.4f})" in row
    result = json.loads((copy / "results.json").read_text())
    assert f"{result['per_timestep']:.4f} ({result['bound']}({result['particles']}), training seed 0)" in row


def test_the_readme_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## A five-minute tour"):readme.index("## Documentation")]
    [code] = re.findall(r"^```python\n(.*?)^```", tour, flags=re.S | re.M)
    namespace = {"__name__": "readme"}
    exec(compile(code, "README.md tour", "exec"), namespace)


def test_the_readme_keeps_the_two_setup_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text()
    setup = readme[readme.index("## Set-up: the two commands"):readme.index("## A five-minute tour")]
    commands = re.findall(r"^```bash\n(.*?)\n```", setup, flags=re.S | re.M)
    assert commands[:2] == ["pip install torch==2.13.0 && pip install -e . && pyrosequence train",
                            'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q']
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_the_site_builds_strictly(tmp_path):
    missing = [name for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
               if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the [docs] extra is not installed (no {', '.join(missing)}): pip install -e \".[docs]\"")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("index.html", "cli/index.html", "models/vrnn/index.html", "reproducing/index.html", "api/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    assert "Generative story" in (tmp_path / "site" / "models" / "vrnn" / "index.html").read_text()
