"""`pyrosequence plot --kind ...` and `pyrosequence report` on a tiny trained run."""

import re

import pytest

from pyrosequence.cli import main
from pyrosequence.training.config import TrainConfig
from pyrosequence.diagnostics.kinds import PLOT_KINDS
from pyrosequence.training.loop import train

SMALL = ["--sequences", "3", "--draws", "20", "--particles", "8"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "run"
    config = TrainConfig(epochs=2, z_dim=3, batch_size=16, train_subset=32, eval_particles=2, lr=3e-3)
    train(config, out=out, progress=False, log=lambda s: None)
    return out


def test_the_registry_holds_the_documented_kinds():
    assert set(PLOT_KINDS) == {"kl", "variance", "ppc", "ess", "calibration", "training"}


@pytest.mark.parametrize("kind", sorted(PLOT_KINDS))
def test_each_kind_writes_a_png(run_dir, tmp_path, kind, capsys):
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(run_dir), "--kind", kind, *SMALL, "--samples", "2", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000


def test_plot_rejects_bad_input(run_dir, tmp_path, capsys):
    out = tmp_path / "x.png"
    cases = [
        (["plot", str(run_dir), "--kind", "violin", "--out", str(out)], "unknown plot kind 'violin'; choose one of: dynamics, kl,"),
        (["plot", str(tmp_path / "nope"), "--kind", "kl", "--out", str(out)], "no run directory at"),
        (["plot", str(run_dir), str(run_dir), "--kind", "ess", "--out", str(out)], "--kind ess plots one run; got 2"),
        (["plot", str(run_dir), "--kind", "ppc", "--index", "5", *SMALL, "--out", str(out)], "--index 5 is out of range"),
        (["plot", str(run_dir), "--kind", "ess", "--draws", "0", "--out", str(out)], "draws must be a positive integer"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    out.write_bytes(b"mine")
    assert main(["plot", str(run_dir), "--kind", "training", "--out", str(out)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"mine"
    assert main(["plot", str(run_dir), "--kind", "training", "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:8] == PNG


def test_report_embeds_every_plot(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(run_dir), "--out", str(out), *SMALL, "--psis-particles", "50"]) == 0
    text = (out / "report.md").read_text()
    images = re.findall(r"!\[(\w+)\]\(([^)]+)\)", text)
    assert {kind for kind, _ in images} == set(PLOT_KINDS)
    for _, name in images:
        assert (out / name).read_bytes()[:8] == PNG
    for needed in ("## Results", "per_timestep", "coverage of the central 90% interval", "PSIS k-hat",
                   "active latent units", "## Configuration", "| objective | elbo |"):
        assert needed in text, needed
    # the draws are seeded: the plot command redraws the report's figure exactly
    again = tmp_path / "calibration.png"
    assert main(["plot", str(run_dir), "--kind", "calibration", *SMALL, "--out", str(again)]) == 0
    assert again.read_bytes() == (out / "calibration.png").read_bytes()
    # never overwrite without --force; a missing run is one line
    before = (out / "report.md").read_text()
    assert main(["report", str(run_dir), "--out", str(out)]) == 1
    assert "is not empty; pass --force" in capsys.readouterr().err
    assert (out / "report.md").read_text() == before
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r2")]) == 1
    assert "no run directory at" in capsys.readouterr().err and not (tmp_path / "r2").exists()


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """A VRNN with a Bernoulli emission on a small file of 0/1 rolls."""
    import numpy as np

    folder = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(0)
    np.savez(folder / "rolls.npz", *[(rng.random((int(n), 6)) < 0.3).astype(np.float32) for n in rng.integers(8, 14, 40)])
    out = folder / "run"
    config = TrainConfig(data=str(folder / "rolls.npz"), epochs=1, z_dim=2, batch_size=16, eval_particles=2)
    train(config, out=out, progress=False, log=lambda s: None)
    return out


def test_report_of_a_binary_emission_checks_probabilities_not_intervals(binary_run, tmp_path, capsys):
    import json

    assert json.loads((binary_run / "config.json").read_text())["model_options"]["likelihood"] == "bernoulli"
    out = tmp_path / "report"
    assert main(["report", str(binary_run), "--out", str(out), *SMALL, "--psis-particles", "20"]) == 0
    text = (out / "report.md").read_text()
    assert "Brier score of P(x_t = 1 | x_<t)" in text and "reliability (bins of 0.1)" in text
    assert "coverage of the central" not in text
    assert "Reliability of the predicted probabilities" in text
    # every figure says which evaluation it comes from
    assert "one FIVO particle-filter pass, K = 8, 20 predictive draws; seed 0" in text
    assert "2 posterior draws" not in text and "16 posterior draws per sequence" in text
    assert (out / "calibration.png").read_bytes()[:8] == PNG
