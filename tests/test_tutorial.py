"""docs/writing-a-model.md runs: its Python blocks in order in one namespace, its shell commands
through the CLI's main(), its pyproject snippet parses."""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

from pyrosequence.cli import main
from pyrosequence.models import REGISTRY

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "writing-a-model.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TUTORIAL.read_text(), flags=re.S | re.M)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("mymodels", None)
    REGISTRY.unregister("gru-ssm")


def test_the_tutorial_has_what_it_promises():
    text = TUTORIAL.read_text()
    for needle in ("initial_state", "transition", "proposal_context", "latent_features", "stacked over time",
                   "At `t = 0`", "backward_pass", "reverse_padded", "register_model", "--model-option",
                   "emission_support", "PyroProgram", "PiecesRequiredError", "entry-points"):
        assert needle in text, needle
    assert len(blocks("python")) >= 8


def test_python_blocks_run_in_order(workdir, capsys):
    namespace = {"__name__": "tutorial"}
    for number, code in enumerate(blocks("python")):
        first = code.splitlines()[0]
        if first.startswith("# file: "):
            (workdir / first[len("# file: "):].strip()).write_text(code)
            continue
        exec(compile(code, f"{TUTORIAL.name} python block {number}", "exec"), namespace)
    assert (workdir / "runs" / "cli" / "results.json").is_file()
    assert "does not take option(s) hidden" in capsys.readouterr().err


def test_shell_commands_run(workdir):
    module = next(code for code in blocks("python") if code.startswith("# file: mymodels.py"))
    (workdir / "mymodels.py").write_text(module)
    sys.path.insert(0, str(workdir))
    toy_data = next(code for code in blocks("python") if "jsb-chorales-quarter.json" in code)
    exec(compile(toy_data, f"{TUTORIAL.name} toy data block", "exec"), {"__name__": "tutorial"})
    [shell] = blocks("bash")
    commands = [shlex.split(line) for line in shell.replace("\\\n", " ").splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["pyrosequence", "train"], ["pyrosequence", "evaluate"], ["pyrosequence", "train"]]
    for argv in commands:
        argv = argv[1:] + (["--no-progress"] if argv[1] == "train" else [])
        assert main(argv) == 0, argv
    assert (workdir / "runs" / "cli" / "evaluations.jsonl").read_text().count("\n") == 1


def test_the_entry_point_snippet_parses():
    [snippet] = blocks("toml")
    group = tomllib.loads(snippet)["project"]["entry-points"]["pyrosequence.models"]
    assert group == {"gru-ssm": "mymodels:GRUStateSpace"}
