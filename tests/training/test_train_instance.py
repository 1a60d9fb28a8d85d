"""train(config, model=instance): the run directory records how to rebuild the instance, or why it
cannot, and every command that reopens the run follows that record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import torch

import pyro.distributions as dist

from pyrosequence import SequenceModel
from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.models import VRNN, Flattened
from pyrosequence.models.multi_rate import multi_rate
from pyrosequence.models.core.rebuild import recipe
from pyrosequence.training.rundir import load_run
from pyrosequence.training.loop import train

QUICK = dict(epochs=1, batch_size=256, eval_particles=2, train_subset=64)
quiet = lambda s: None  # noqa: E731


class Glide(SequenceModel):
    """A model of this (importable) test module: z_t ~ N(decay z_{t-1} + shift, 1), x_t ~ N(W z_t, 1),
    q(z_t | x_t) = N(B x_t, 1)."""

    def __init__(self, x_dim, z_dim, decay=0.5, widths=(3,), name=None):
        super().__init__(x_dim, z_dim, name=name)
        self.decay = decay
        self.shift = torch.nn.Parameter(torch.zeros(z_dim))
        self.out = torch.nn.Linear(z_dim, x_dim)
        self.enc = torch.nn.Sequential(torch.nn.Linear(x_dim, widths[0]), torch.nn.Tanh(), torch.nn.Linear(widths[0], z_dim))

    def initial_state(self, batch_shape, x):
        return x.new_zeros(tuple(batch_shape) + (self.z_dim,))

    def transition(self, state, t):
        return dist.Normal(self.decay * state + self.shift, 1.0).to_event(1)

    def emission(self, state, z):
        return dist.Normal(self.out(z), 1.0).to_event(1)

    def update(self, state, z, x_t, t):
        return z

    def proposal(self, state, t, x_t):
        return dist.Normal(self.enc(x_t).expand(state.shape), 1.0).to_event(1)


def test_an_instance_of_a_user_model_trains_and_its_run_reopens(tmp_path):
    instance = Glide(2, 3, decay=0.25, widths=[5])
    config = TrainConfig(**QUICK)  # model="vrnn" by default: the instance replaces it
    result = train(config, out=tmp_path / "run", progress=False, log=quiet, model=instance)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == f"{Glide.__module__}:Glide" and saved["z_dim"] == 3
    assert saved["model_options"] == {"decay": 0.25, "widths": [5]} and saved["model_not_rebuildable"] is None
    config, model, data, _ = load_run(tmp_path / "run", "test")
    assert type(model) is Glide and model is not instance and model.decay == 0.25 and model.enc[0].out_features == 5
    trained = instance.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in model.state_dict().items())
    assert result.test["per_timestep"] < 0
    # evaluate reopens it through the CLI; resume rebuilds it from config.json (no instance given)
    assert main(["evaluate", str(tmp_path / "run"), "--bound", "iwae", "--particles", "2"]) == 0
    more = train(replace(config, epochs=2), out=tmp_path / "run", resume=True, progress=False, log=quiet)
    assert more.epochs_completed == 2 and [r["epoch"] for r in more.history] == [1, 2]


def test_resuming_with_the_instance_itself(tmp_path):
    instance = Glide(2, 2)
    train(TrainConfig(**QUICK), out=tmp_path / "run", progress=False, log=quiet, model=instance)
    config = TrainConfig.load(tmp_path / "run" / "config.json")
    more = train(replace(config, epochs=2), out=tmp_path / "run", resume=True, progress=False, log=quiet, model=Glide(2, 2))
    assert more.epochs_completed == 2


def test_a_built_in_instance_is_recorded_by_name():
    found = recipe(VRNN(2, 3, hidden_dim=6, likelihood="gaussian"))
    assert found.reason is None and found.model == "vrnn" and found.z_dim == 3
    assert found.model_options["hidden_dim"] == 6 and found.model_options["likelihood"] == "gaussian"


def test_an_instance_that_cannot_be_rebuilt_trains_and_its_run_is_refused_in_one_line(tmp_path, capsys):
    class Local(Glide):  # defined inside a function: no import path reaches it
        pass

    lines = []
    train(TrainConfig(**QUICK), out=tmp_path / "run", progress=False, log=lines.append, model=Local(2, 2))
    assert any("cannot be rebuilt" in line for line in lines)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "defined inside a function" in saved["model_not_rebuildable"]
    with pytest.raises(ValueError, match=r"its model cannot be rebuilt: its class .*Local is defined inside a function"):
        load_run(tmp_path / "run", "test")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert "defined inside a function" in err and len(err.splitlines()) == 1
    config = TrainConfig.load(tmp_path / "run" / "config.json")
    with pytest.raises(ValueError, match="cannot be rebuilt from its configuration"):
        train(replace(config, epochs=2), out=tmp_path / "run", resume=True, progress=False, log=quiet)
    # the instance itself can still continue the run
    more = train(replace(config, epochs=2), out=tmp_path / "run", resume=True, progress=False, log=quiet, model=Local(2, 2))
    assert more.epochs_completed == 2


def test_reasons_an_instance_cannot_be_rebuilt():
    changed = Glide(2, 2)
    changed.out = torch.nn.Linear(2, 2, bias=False)  # changed after it was built
    assert "gives other weights (out.bias: rebuilt (2,), instance missing)" in recipe(changed).reason
    wrapper = Flattened(Glide(1, 2), 2)
    assert "constructor takes (inner, x_dim, name)" in recipe(wrapper).reason
    odd = Glide(2, 2, decay=torch.tensor(0.5))
    assert "decay=Tensor is not a JSON value" in recipe(odd).reason
    assert "was made multi-rate" in recipe(multi_rate(VRNN(2, 2, hidden_dim=4, likelihood="gaussian"))).reason


def test_bad_instances_are_refused(tmp_path):
    with pytest.raises(ValueError, match="the model instance has x_dim 3 but the data set 'synthetic' has x_dim 2"):
        train(TrainConfig(**QUICK), out=tmp_path / "a", progress=False, log=quiet, model=Glide(3, 2))
    with pytest.raises(TypeError, match="needs a SequenceModel or PyroProgram instance, got Linear"):
        train(TrainConfig(**QUICK), out=tmp_path / "b", progress=False, log=quiet, model=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="set multi_rate=True in the config"):
        train(TrainConfig(**QUICK), out=tmp_path / "c", progress=False, log=quiet, model=multi_rate(VRNN(2, 2, hidden_dim=4, likelihood="gaussian")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_multi_rate_config_gates_the_instance_and_the_run_reopens_gated(tmp_path):
    instance = VRNN(2, 2, hidden_dim=4, likelihood="gaussian")
    train(TrainConfig(**QUICK, multi_rate=True), out=tmp_path / "run", progress=False, log=quiet, model=instance)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"] == "vrnn"
    _, model, _, _ = load_run(tmp_path / "run", "test")
    assert type(model) is VRNN and hasattr(model, "beta_conditioner") and hasattr(instance, "beta_conditioner")


USER_MODULE = textwrap.dedent('''
    import torch
    import pyro.distributions as dist
    from pyrosequence import SequenceModel

    class Lag(SequenceModel):
        """z_t ~ N(a z_{t-1}, 1), x_t ~ N(W z_t, s^2); q(z_t | x_t) = N(B x_t, 1)."""
        def __init__(self, x_dim, z_dim, s=1.0):
            super().__init__(x_dim, z_dim)
            self.a = torch.nn.Parameter(torch.full((z_dim,), 0.5))
            self.w = torch.nn.Linear(z_dim, x_dim)
            self.b = torch.nn.Linear(x_dim, z_dim)
            self.s = s
        def initial_state(self, batch_shape, x): return x.new_zeros(tuple(batch_shape) + (self.z_dim,))
        def transition(self, state, t): return dist.Normal(self.a * state, 1.0).to_event(1)
        def emission(self, state, z): return dist.Normal(self.w(z), self.s).to_event(1)
        def update(self, state, z, x_t, t): return z
        def proposal(self, state, t, x_t): return dist.Normal(self.b(x_t).expand(state.shape), 1.0).to_event(1)
''')


def test_another_process_reopens_a_run_trained_from_an_instance(tmp_path, monkeypatch):
    (tmp_path / "lagmodels.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from lagmodels import Lag

    run = tmp_path / "run"
    train(TrainConfig(**QUICK), out=run, progress=False, log=quiet, model=Lag(2, 2, s=0.75))
    assert json.loads((run / "config.json").read_text())["model"] == "lagmodels:Lag"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "pyrosequence", "evaluate", str(run), "--bound", "iwae", "--particles", "2"],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-500:]
    record = json.loads((run / "evaluations.jsonl").read_text().splitlines()[-1])
    assert record["bound"] == "iwae" and record["per_timestep"] < 0


def test_a_plain_pyro_program_instance_trains_and_is_recorded_as_not_rebuildable(tmp_path):
    import pyro
    from pyro import poutine

    from pyrosequence import PyroProgram

    def model(x, lengths):
        w = pyro.param("w", torch.zeros(2))
        with pyro.plate("sequences", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=t < lengths):
                    z = pyro.sample(f"z_{t}", dist.Normal(0.0, 1.0))
                    pyro.sample(f"x_{t}", dist.Normal(w * z[..., None], 1.0).to_event(1), obs=x[:, t])

    def guide(x, lengths):
        with pyro.plate("sequences", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                with poutine.mask(mask=t < lengths):
                    pyro.sample(f"z_{t}", dist.Normal(0.0, 1.0))

    program = PyroProgram(model, guide, x_dim=2)
    result = train(TrainConfig(**QUICK), out=tmp_path / "run", progress=False, log=quiet, model=program)
    assert result.test["per_timestep"] < 0 and not torch.equal(program.state_dict()["param:w"], torch.zeros(2))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "PyroProgram is not a SequenceModel subclass" in saved["model_not_rebuildable"]
    with pytest.raises(ValueError, match="its model cannot be rebuilt: PyroProgram is not a SequenceModel"):
        load_run(tmp_path / "run", "test")
