"""Bringing your own model: register_model, package.module:Class, plugins, --model-option."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import pyro.distributions as dist

from pyrosequence import SequenceModel, register_model
from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.models import REGISTRY, model_class
from pyrosequence.models.core import registry as registry_module
from pyrosequence.training.rundir import load_run
from pyrosequence.training.loop import train

USER_MODULE = textwrap.dedent('''
    import torch
    import pyro.distributions as dist
    from pyrosequence import SequenceModel

    class Drift(SequenceModel):
        """z_t ~ N(a z_{t-1}, scale^2), x_t ~ N(W z_t, 1); proposal q(z_t | x_t) = N(B x_t, c^2)."""
        def __init__(self, x_dim, z_dim, scale=1.0):
            super().__init__(x_dim, z_dim)
            self.a = torch.nn.Parameter(torch.full((z_dim,), 0.5))
            self.w = torch.nn.Linear(z_dim, x_dim)
            self.b = torch.nn.Linear(x_dim, z_dim)
            self.log_c = torch.nn.Parameter(torch.zeros(z_dim))
            self.scale = scale
        def initial_state(self, batch_shape, x): return x.new_zeros(tuple(batch_shape) + (self.z_dim,))
        def transition(self, state, t): return dist.Normal(self.a * state, self.scale).to_event(1)
        def emission(self, state, z): return dist.Normal(self.w(z), 1.0).to_event(1)
        def update(self, state, z, x_t, t): return z
        def proposal(self, state, t, x_t): return dist.Normal(self.b(x_t).expand(state.shape), self.log_c.exp()).to_event(1)
''')


class Walk(SequenceModel):
    """A model of this test module: z_t ~ N(z_{t-1}, 1), x_t ~ N(z_t, 1), q(z_t | x_t) = N(x_t / 2, 1)."""

    def __init__(self, x_dim, z_dim, width=1):
        super().__init__(x_dim, z_dim)
        self.shift = torch.nn.Parameter(torch.zeros(z_dim))
        self.width = width

    def initial_state(self, batch_shape, x):
        return x.new_zeros(tuple(batch_shape) + (self.z_dim,))

    def transition(self, state, t):
        return dist.Normal(state + self.shift, 1.0).to_event(1)

    def emission(self, state, z):
        return dist.Normal(z[..., : self.x_dim].expand(z.shape[:-1] + (self.x_dim,)), 1.0).to_event(1)

    def update(self, state, z, x_t, t):
        return z

    def proposal(self, state, t, x_t):
        return dist.Normal((x_t[..., : self.z_dim] / 2).expand(state.shape), 1.0).to_event(1)


@pytest.fixture
def registered():
    register_model("walk", Walk)
    yield "walk"
    REGISTRY.unregister("walk")


def test_a_registered_model_trains_and_its_run_reopens(registered, tmp_path):
    config = TrainConfig(model=registered, z_dim=2, epochs=1, batch_size=256, eval_particles=2, model_options={"width": 3})
    assert config.model == f"{Walk.__module__}:Walk"  # recorded by import path
    result = train(config, out=tmp_path / "run", progress=False, log=lambda s: None)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == f"{Walk.__module__}:Walk" and saved["model_options"] == {"width": 3}
    _, model, _, _ = load_run(tmp_path / "run", "test")
    assert isinstance(model, Walk) and model.width == 3 and result.test["per_timestep"] < 0


def test_registration_refusals(registered):
    with pytest.raises(ValueError, match="'vrnn' is a built-in model"):
        register_model("vrnn", Walk)
    with pytest.raises(TypeError, match="needs a SequenceModel subclass"):
        register_model("thing", torch.nn.Linear)
    with pytest.raises(ValueError, match="already registered"):
        register_model("walk", type("Other", (Walk,), {}))
    local = type("Local", (Walk,), {"__module__": "__main__"})
    register_model("local", local)
    try:
        with pytest.raises(ValueError, match="defined in a script"):
            TrainConfig(model="local", z_dim=2)
    finally:
        REGISTRY.unregister("local")
    with pytest.raises(ValueError, match="unknown model 'nope'; choose one of: .*walk.*package.module:Class"):
        model_class("nope")


def test_import_paths_are_checked():
    assert model_class(f"{Walk.__module__}:Walk") is Walk
    with pytest.raises(ValueError, match="cannot import the module"):
        model_class("no_such_module_xyz:Model")
    with pytest.raises(ValueError, match="has no 'Missing'"):
        model_class("pyrosequence.models.vrnn:Missing")
    with pytest.raises(TypeError, match="not a SequenceModel subclass"):
        model_class("torch.nn:Linear")
    with pytest.raises(ValueError, match="looks like package.module:Class"):
        model_class(":Walk")


def test_installed_plugins_are_found_by_name(monkeypatch):
    class EntryPoint:
        name, value = "walk-plugin", f"{Walk.__module__}:Walk"

        def load(self):
            return Walk

    monkeypatch.setattr(registry_module, "_entry_points", lambda: [EntryPoint()])
    assert model_class("walk-plugin") is Walk
    assert "walk-plugin" in REGISTRY.names()
    assert TrainConfig(model="walk-plugin", z_dim=2).model == "walk-plugin"


def test_model_options_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--z-dim", "2", "--epochs", "1", "--batch-size", "256", "--eval-particles", "1", "--no-progress",
            "--model-option", "cell=gru", "--model-option", "feature_dim=3", "--out", str(out)]
    assert main(argv) == 0
    options = json.loads((out / "config.json").read_text())["model_options"]
    assert options["cell"] == "gru" and options["feature_dim"] == 3
    capsys.readouterr()
    assert main(["train", "--model-option", "colour=red", "--out", str(tmp_path / "b")]) == 1
    assert "does not take option(s) colour" in capsys.readouterr().err
    assert main(["train", "--model-option", "nokey", "--out", str(tmp_path / "c")]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["train", "--hidden-dim", "4", "--model-option", "hidden_dim=5", "--out", str(tmp_path / "d")]) == 1
    assert "contradicts --hidden-dim" in capsys.readouterr().err


def test_a_model_outside_the_package_works_through_every_command(tmp_path):
    (tmp_path / "usermodels.py").write_text(USER_MODULE)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    run = tmp_path / "run"
    cli = lambda *a: subprocess.run([sys.executable, "-m", "pyrosequence", *a], env=env, capture_output=True, text=True, cwd=tmp_path)  # noqa: E731
    common = ["--model", "usermodels:Drift", "--z-dim", "2", "--model-option", "scale=0.5", "--batch-size", "256",
              "--eval-particles", "2", "--no-progress", "--out", str(run)]
    steps = [
        ["train", *common, "--epochs", "1"],
        ["train", *common, "--epochs", "2", "--resume"],
        ["evaluate", str(run), "--bound", "fivo", "--particles", "4"],
        ["plot", str(run), "--kind", "training", "--out", str(tmp_path / "curve.png")],
        ["sample", str(run), "--num", "2", "--steps", "3", "--out", str(tmp_path / "samples")],
    ]
    for argv in steps:
        done = cli(*argv)
        assert done.returncode == 0, (argv[0], done.stderr[-500:])
        if argv[:1] == ["train"] and "--resume" in argv:
            assert "epoch 2/2" in done.stdout  # the resumed run continued from its checkpoint
    assert (tmp_path / "curve.png").is_file() and (tmp_path / "samples").is_dir()
    assert json.loads((run / "config.json").read_text())["model"] == "usermodels:Drift"
