"""Reliability, round two (issue 25): bad inputs that printed tracebacks now fail in one line.

* a ``--model`` module with a ``SyntaxError`` (train and evaluate) names the file and line, and so
  does a ``--data`` module;
* an error raised inside a user's model code names its type and where it arose;
* a garbage file named like the JSB pickle is refused naming the file (it raised MemoryError);
* an objective a program cannot use, refused at the first update, leaves no run directory behind.

Every test here failed before its fix.
"""

import json
import textwrap

from pyrosequence.cli import main
from pyrosequence.data.registry import load_split
from test_reliability import _one_line_error

import pytest

PROGRAMS = textwrap.dedent(
    '''
    import torch
    import pyro
    import pyro.distributions as dist
    from torch.distributions import constraints
    from pyrosequence import PyroProgram


    def model(x, lengths):
        scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
        steps = (torch.arange(x.shape[1]) < lengths.unsqueeze(-1)).unsqueeze(-1)  # (batch, time, 1)
        with pyro.plate("sequences", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            loc = z[..., None, None].expand(z.shape + x.shape[1:])
            pyro.sample("x", dist.Normal(loc, scale).mask(steps).to_event(2), obs=x)


    def guide(x, lengths):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("sequences", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0))


    class Working(PyroProgram):
        def __init__(self, x_dim, z_dim=1):
            super().__init__(model, guide, x_dim=x_dim)


    def failing(x, lengths):
        raise RuntimeError("the user's model broke")


    class Failing(PyroProgram):
        def __init__(self, x_dim, z_dim=1):
            super().__init__(failing, guide, x_dim=x_dim)
    '''
)

FAST = ["--epochs", "1", "--batch-size", "50", "--train-subset", "50", "--eval-particles", "2", "--no-progress"]


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    (tmp_path / "user_programs.py").write_text(PROGRAMS)
    (tmp_path / "broken_model.py").write_text("import torch\n\ndef model(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_model_module_with_a_syntax_error_fails_in_one_line(user_modules, tmp_path, capsys):
    line = _one_line_error(["train", "--model", "broken_model:Model", "--out", str(tmp_path / "run")], capsys, "SyntaxError")
    assert str(user_modules / "broken_model.py") in line and "line 3" in line
    assert not (tmp_path / "run").exists()
    run = tmp_path / "recorded"  # a run directory whose config names the module (evaluate imports it too)
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "broken_model:Model"}))
    line = _one_line_error(["evaluate", str(run)], capsys, "SyntaxError")
    assert "broken_model.py" in line


def test_a_data_module_with_a_syntax_error_fails_in_one_line(user_modules, tmp_path, capsys):
    # the data registry imports user loaders through the same helper as the model registry
    line = _one_line_error(["train", "--data", "broken_model:load", "--out", str(tmp_path / "run")], capsys, "SyntaxError")
    assert "data set 'broken_model:load'" in line and str(user_modules / "broken_model.py") in line and "line 3" in line
    assert not (tmp_path / "run").exists()


def test_an_error_inside_user_model_code_is_one_line_naming_where(user_modules, tmp_path, capsys):
    line = _one_line_error(["train", "--model", "user_programs:Failing", *FAST, "--out", str(tmp_path / "run")], capsys,
                           "RuntimeError")
    assert "the user's model broke" in line and f"{user_modules / 'user_programs.py'}:" in line and "in failing" in line
    assert "PYROSEQUENCE_TRACEBACK" in line


def test_an_objective_a_program_cannot_use_leaves_no_run_behind(user_modules, tmp_path, capsys):
    out = tmp_path / "run"
    _one_line_error(["train", "--model", "user_programs:Working", "--objective", "fivo", *FAST, "--out", str(out)], capsys,
                    "per-step pieces")
    assert not out.exists()
    # the corrected command runs as it is (no --force needed)
    assert main(["train", "--model", "user_programs:Working", *FAST, "--out", str(out)]) == 0


def test_a_garbage_file_named_like_the_jsb_pickle_is_refused_naming_it(tmp_path, capsys):
    # 27 bytes: protocol 4, then a FRAME declaring a terabyte
    (tmp_path / "JSB Chorales.pickle").write_bytes(b"\x80\x04\x95" + (2**40).to_bytes(8, "little") + b"x" * 16)
    with pytest.raises(ValueError, match="JSB Chorales.pickle: not a readable polyphonic-music pickle"):
        load_split("jsb", "train", str(tmp_path))
    line = _one_line_error(["train", "--data", "jsb", "--data-root", str(tmp_path), "--out", str(tmp_path / "run")], capsys,
                           "not a readable polyphonic-music pickle")
    assert str(tmp_path / "JSB Chorales.pickle") in line
