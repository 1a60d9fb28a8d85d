"""docs/writing-a-model.md runs: its Python blocks in order in one namespace, its shell commands
as typed (a subprocess, from a temporary folder, through the `pyrosequence` command), its
pyproject snippet parses."""

from __future__ import annotations

import json
import re
import os
import shlex
import subprocess
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


REPOSITORY = TUTORIAL.parents[1]

#: What setuptools writes as the `pyrosequence` console script: ``sys.path[0]`` is the script's
#: folder, not the current one, which is what the command must make up for.
CONSOLE_SCRIPT = "import sys\nfrom pyrosequence.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"


def pyrosequence_command(folder: Path) -> Path:
    """The environment's installed `pyrosequence` script, or where it is absent (a checkout run
    without `pip install`), an identical one written into ``folder``."""
    installed = Path(sys.executable).parent / "pyrosequence"
    if installed.is_file():
        return installed.parent
    folder.mkdir()
    script = folder / "pyrosequence"
    script.write_text(f"#!{sys.executable}\n{CONSOLE_SCRIPT}")
    script.chmod(0o755)
    return folder


def test_shell_commands_run_as_typed(tmp_path):
    """The bash block, unchanged, in a shell whose current folder holds only what the tutorial told
    the reader to write there (mymodels.py, music/)."""
    work = tmp_path / "work"
    work.mkdir()
    module = next(code for code in blocks("python") if code.startswith("# file: mymodels.py"))
    (work / "mymodels.py").write_text(module)
    toy_data = next(code for code in blocks("python") if "jsb-chorales-quarter.json" in code)
    subprocess.run([sys.executable, "-c", toy_data], cwd=work, check=True)
    [shell] = blocks("bash")
    commands = [shlex.split(line) for line in shell.replace("\\\n", " ").splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["pyrosequence", "train"], ["pyrosequence", "evaluate"], ["pyrosequence", "train"]]
    env = dict(os.environ)
    env["PATH"] = f"{pyrosequence_command(tmp_path / 'bin')}{os.pathsep}{env.get('PATH', '')}"
    # this checkout's package (which the installed command then imports); no relative entries, which
    # would put the temporary folder on the path and hide what is tested
    kept = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(entry)]
    env["PYTHONPATH"] = os.pathsep.join([str(REPOSITORY), *kept])
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run(["bash", "-e", "-c", shell], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "per time step" in done.stdout
    assert (work / "runs" / "cli" / "evaluations.jsonl").read_text().count("\n") == 1
    assert json.loads((work / "runs" / "cli" / "config.json").read_text())["model"] == "mymodels:GRUStateSpace"


def test_the_command_imports_from_the_current_folder_but_main_leaves_sys_path_alone(tmp_path, monkeypatch):
    from pyrosequence.cli import current_folder_importable

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    before = list(sys.path)
    assert main(["presets"]) == 0
    assert sys.path == before
    current_folder_importable()
    assert sys.path == [str(tmp_path), *before]
    current_folder_importable()  # once only
    assert sys.path == [str(tmp_path), *before]


def test_the_entry_point_snippet_parses():
    [snippet] = blocks("toml")
    group = tomllib.loads(snippet)["project"]["entry-points"]["pyrosequence.models"]
    assert group == {"gru-ssm": "mymodels:GRUStateSpace"}
