"""The command line: defaults, one-line errors, help, and never losing a user's files."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from pyrosequence.cli import main

FAST = ["--epochs", "1", "--z-dim", "4", "--batch-size", "64", "--eval-particles", "2", "--no-progress"]


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test iwae(2) per time step:" in printed
    assert main(["evaluate", str(out), "--bound", "iwae", "--particles", "4", "--split", "noiseless"]) == 0
    assert "noiseless iwae(4) per time step:" in capsys.readouterr().out
    assert (out / "evaluations.jsonl").read_text().count("\n") == 1


def test_resume_extends_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "epoch 2/2" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["epochs"] == 2  # the run's config says how far it ran
    assert main(["train", "--out", str(out), "--resume", "--batch-size", "3"]) == 1
    assert "keeps its model, data and objective" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--lr", "0.001", "--epochs", "3", "--no-progress"]) == 0  # a new rate is fine
    assert json.loads((out / "config.json").read_text())["lr"] == 0.001


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--model", "transformer"], "unknown model 'transformer'; choose one of: delta-rnn, delta-rnn-random, dmm, frnn"),
        (["train", "--objective", "fivo9"], "unknown objective 'fivo9'; choose one of: elbo, elbo-stl, fivo, iwae, iwae-dreg, mean-field"),
        (["train", "--data", "mnist"], "unknown dataset 'mnist'; choose one of: synthetic"),
        (["train", "--likelihood", "poisson"], "unknown likelihood 'poisson'"),
        (["train", "--likelihood", "bernoulli"], "must be binary (0/1) for a Bernoulli emission"),
        (["train", "--model", "lgssm", "--cell", "gru"], "does not take option(s) cell"),
        (["train", "--model", "hyperlstm", "--z-dim", "4"], "has no latent variables"),
        (["train", "--model", "vhrnn", "--hyper-input", "both"], "unknown hyper_input 'both'"),
        (["train", "--particles", "0"], "particles must be a positive integer"),
        (["train", "--objective", "fivo", "--resampler", "bootstrap"], "unknown resampler 'bootstrap'"),
        (["train", "--objective", "fivo", "--ess-threshold", "2"], "ess_threshold must lie in [0, 1]"),
        (["train", "--eval-bound", "exact"], "unknown bound 'exact'; choose one of: elbo, fivo, iwae"),
        (["train", "--device", "cuda:7"], "CUDA is not available"),
        (["evaluate", "/nonexistent/run"], "no run directory at /nonexistent/run"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "cuda" in " ".join(argv):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()  # nothing was created before the error


def test_missing_and_corrupt_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(out)]) == 1
    assert "corrupt" in capsys.readouterr().err
    (out / "checkpoint.pt").unlink()
    assert main(["evaluate", str(out)]) == 1
    assert "no checkpoint at" in capsys.readouterr().err


def test_non_empty_out_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["train", *FAST, "--out", str(out)]) == 1
    assert "--resume" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious" and len(list(out.iterdir())) == 1
    assert main(["train", *FAST, "--out", str(out), "--force"]) == 0
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["backtest"]])
def test_help(command):
    result = subprocess.run([sys.executable, "-m", "pyrosequence", *command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: pyrosequence" in result.stdout


def test_fivo_end_to_end(tmp_path, capsys):
    out = tmp_path / "fivo"
    argv = ["train", *FAST, "--objective", "fivo", "--particles", "4", "--resampler", "systematic",
            "--valid-bound", "fivo", "--valid-particles", "4", "--eval-bound", "fivo", "--out", str(out)]
    assert main(argv) == 0
    assert "test fivo(2) per time step:" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--bound", "fivo", "--particles", "16", "--resampler", "residual",
                 "--ess-threshold", "1"]) == 0
    assert "test fivo(16) per time step:" in capsys.readouterr().out
    record = (out / "evaluations.jsonl").read_text()
    assert '"resampler": "residual"' in record and '"ess_threshold": 1.0' in record


@pytest.mark.parametrize("objective", ["iwae-dreg", "elbo-stl"])
def test_gradient_estimators_train_from_the_command_line_with_kl_annealing(objective, tmp_path, capsys):
    out = tmp_path / objective
    argv = ["train", *FAST, "--train-subset", "64", "--objective", objective, "--particles", "3", "--kl-anneal",
            "--out", str(out)]
    assert main(argv) == 0
    assert '"objective": "%s"' % objective in (out / "config.json").read_text()


def test_vhrnn_and_hyperlstm_from_the_command_line(tmp_path, capsys):
    base = ["--epochs", "1", "--batch-size", "64", "--eval-particles", "2", "--no-progress", "--train-subset", "64"]
    assert main(["train", "--model", "vhrnn", "--z-dim", "4", "--layers", "2", "--omega-dim", "8",
                 "--hyper-net", "mlp", *base, "--out", str(tmp_path / "v")]) == 0
    assert main(["train", "--model", "hyperlstm", "--hidden-dim", "8", "--likelihood", "mixture",
                 "--components", "3", *base, "--out", str(tmp_path / "h")]) == 0
    out = capsys.readouterr().out
    assert out.count("test iwae(2) per time step:") == 2 and "HyperLSTM" in out and "VHRNN" in out


def test_data_describe(capsys, shared_data):
    assert main(["data", "describe", "jsb", "--data-root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "train        229  13807" in out and "x_dim" in out
    assert main(["data", "describe", "mnist"]) == 1
    assert "unknown dataset 'mnist'" in capsys.readouterr().err
    assert main(["data", "describe", "jsb", "--data-root", "/nonexistent"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_data_describe_synthetic(capsys):
    assert main(["data", "describe", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "train            800  80000" in out and "long             100  20000      200      200" in out


def test_data_fetch_reports_where_to_put_the_file(tmp_path, capsys):
    code = main(["data", "fetch", "jsb", "--root", str(tmp_path)])
    if code == 0:  # this machine reached the public address (and the download matched its checksum)
        assert (tmp_path / "JSB_Chorales.mat").is_file()
    else:
        err = capsys.readouterr().err
        assert code == 1 and "JSB_Chorales.mat" in err and "sha256" in err and str(tmp_path) in err and err.count("\n") == 1


def test_data_root_overrides_the_folder_a_run_recorded(tmp_path, capsys, shared_data):
    out = tmp_path / "run"
    argv = ["train", "--data", "jsb", "--data-root", str(shared_data), "--z-dim", "4", "--epochs", "1",
            "--train-subset", "8", "--batch-size", "8", "--eval-particles", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    config["data_root"] = str(tmp_path / "elsewhere")  # as if trained on another machine
    (out / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["evaluate", str(out), "--split", "valid"]) == 1
    assert "elsewhere" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--split", "valid", "--data-root", str(shared_data)]) == 0
    assert "valid elbo(1) per time step:" in capsys.readouterr().out
    for command in (["plot", str(out), "--kind", "training"], ["report", str(out)], ["sample", str(out)]):
        assert "--data-root" in _help(command[0], capsys)


def _help(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_compile_flag_reaches_training_and_evaluation(tmp_path, capsys, monkeypatch):
    """--compile sets TrainConfig.compile (a setting a resumed run may change) and hands compile=True
    to the evaluation's bound; the compiled engine itself is tested in tests/inference/test_engine.py."""
    import pyrosequence.cli.evaluate as cli_evaluate
    import pyrosequence.cli.train as cli_train
    from pyrosequence.inference.evaluate import make_bound

    out = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["compile"] is False
    seen = {}

    def spy_train(config, **kwargs):  # the resumed configuration, not run: compiling takes a minute on a CPU
        seen["config"] = config.compile
        return SimpleNamespace(run_dir=kwargs["out"], stopped="epochs")

    monkeypatch.setattr(cli_train, "train", spy_train)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--compile", "--no-progress"]) == 0
    assert seen["config"] is True

    def spy_bound(*args, **kwargs):
        seen["bound"] = kwargs.get("compile")
        return make_bound(*args)  # scored eagerly here: compiling takes a minute on a CPU

    monkeypatch.setattr(cli_evaluate, "make_bound", spy_bound)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--bound", "iwae", "--particles", "2", "--compile"]) == 0
    assert seen["bound"] is True
    record = json.loads((out / "evaluations.jsonl").read_text().splitlines()[-1])
    assert record["compile"] is True
