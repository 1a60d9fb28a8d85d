"""Named paper configurations: every preset builds a model of the paper's size, and the CLI takes them."""

import json

import pytest

from pyrosequence.cli import main
from pyrosequence.training.presets import PRESETS, get_preset, preset_config
from pyrosequence.training.rundir import build_model

X_DIM = {"jsb": 88, "synthetic": 2, "stock": 5}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_the_papers_size(name):
    preset = PRESETS[name]
    config = preset.config()
    model = build_model(config, X_DIM[config.data])
    if preset.model == "hyperlstm":  # no latents: ELBO(1) is the exact log-likelihood (Table 5)
        assert (config.objective, config.particles, config.eval_bound, config.eval_particles) == ("elbo", 1, "elbo", 1)
        assert config.z_dim is None and preset.units == "data"
    elif preset.model != "dmm":  # the VHRNN paper's presets
        assert config.objective == "fivo" and config.particles == 4
        assert config.eval_particles == (1024 if config.data == "stock" else 128)  # appendix D
        assert config.model_options["architecture"] == "fivo"
    if "parameters" in preset.reported and config.data != "stock":
        paper = preset.reported["parameters"]
        assert abs(model.num_parameters() - paper) <= 0.02 * paper, (model.num_parameters(), paper)


#: Our counts for the stock presets (x = 5) beside Table 4's / Table 6's rounded ones. VRNN and
#: VHRNN-RNN agree within 4 % except VHRNN z = 12 (the paper's 16k breaks its own progression:
#: 16k, 18k, 23k, 28k for z = 12..18, where ours grows smoothly); VHRNN-MLP is 12-16 % below the
#: paper's, which describes its MLP hyper network only as "three-layer feed-forward".
STOCK_COUNTS = {
    "vrnn-stock-z20": 13490, "vrnn-stock-z24": 19258, "vrnn-stock-z28": 26050,
    "vhrnn-stock-z12": 14674, "vhrnn-stock-z14": 18448, "vhrnn-stock-z16": 22670, "vhrnn-stock-z18": 27340,
    "vhrnn-mlp-stock-z12": 13402, "vhrnn-mlp-stock-z14": 16712, "vhrnn-mlp-stock-z16": 20398,
    "vhrnn-mlp-stock-z18": 24460,
}
STOCK_COUNTS.update({f"{name}-wd": count for name, count in list(STOCK_COUNTS.items())})


@pytest.mark.parametrize("name", sorted(STOCK_COUNTS))
def test_stock_presets_count_parameters_as_recorded(name):
    preset = PRESETS[name]
    config = preset.config()
    assert (config.data, config.batch_size, config.center_inputs, config.model_options["likelihood"]) == (
        "stock", 4, False, "gaussian")
    count = build_model(config, 5).num_parameters()
    assert count == STOCK_COUNTS[name]
    paper = preset.reported["parameters"]
    limit = 0.17 if "mlp" in name else 0.09 if name.startswith("vhrnn-stock-z12") else 0.04
    assert abs(count - paper) <= limit * paper


#: Our counts for Table 5's stock HyperLSTMs ("hidden units" H: primary and hyper LSTM of H/2 each,
#: appendix G) beside the paper's: ours are 0.63-0.72 of them for every row. The paper's counts grow
#: by about 44 per (H/2)^2 where two LSTMs of H/2 units and a linear map to the row scales and bias
#: shifts give 24; the appendix describes its HyperLSTM only as "resembles the recurrence model of
#: VHRNN", so we keep Ha et al.'s cell and record the difference instead of inventing layers.
HYPERLSTM_COUNTS = {
    "hyperlstm-stock-h24-k3": 4701, "hyperlstm-stock-h28-k3": 6151, "hyperlstm-stock-h32-k3": 7793,
    "hyperlstm-stock-h36-k3": 9627, "hyperlstm-stock-h40-k3": 11653, "hyperlstm-stock-h48-k3": 16281,
    "hyperlstm-stock-h24-k5": 4987, "hyperlstm-stock-h28-k5": 6481, "hyperlstm-stock-h32-k5": 8167,
    "hyperlstm-stock-h36-k5": 10045, "hyperlstm-stock-h40-k5": 12115, "hyperlstm-stock-h48-k5": 16831,
}


@pytest.mark.parametrize("name", sorted(HYPERLSTM_COUNTS))
def test_hyperlstm_stock_presets_count_parameters_as_recorded(name):
    preset = PRESETS[name]
    count = build_model(preset.config(), 5).num_parameters()
    assert count == HYPERLSTM_COUNTS[name]
    assert 0.6 <= count / preset.reported["parameters"] <= 0.75
    units, components = (int(part[1:]) for part in name.split("-")[2:])
    options = preset.config().model_options
    assert (options["hidden_dim"], options["hyper_dim"], options["components"]) == (units // 2, units // 2, components)


def test_every_stock_row_of_the_paper_has_a_preset():
    assert {n for n in PRESETS if n.startswith("hyperlstm-stock-")} == set(HYPERLSTM_COUNTS)
    assert PRESETS["hyperlstm-stock-h24-k5"].reported == {"elbo": 8.61, "parameters": 7_000}
    stock = {n for n in PRESETS if "-stock-" in n and not n.startswith("hyperlstm")}
    assert stock == set(STOCK_COUNTS)
    assert PRESETS["vhrnn-stock-z14"].reported["fivo"] == 9.34 and PRESETS["vrnn-stock-z24"].reported["fivo"] == 9.21


def test_stock_wd_presets_are_the_reference_rows_with_the_weight_decay_recipe():
    for name in (n for n in STOCK_COUNTS if "mlp" not in n and not n.endswith("-wd")):
        base, wd = preset_config(name), preset_config(f"{name}-wd")
        assert (wd.optimizer, wd.lr, wd.optimizer_options["weight_decay"], wd.grad_clip, wd.patience) == (
            "adamw", 3e-4, 0.125, 10.0, 120)
        assert wd.model_options == base.model_options and PRESETS[f"{name}-wd"].reported == PRESETS[name].reported
        differ = {k for k, v in vars(wd).items() if vars(base)[k] != v}
        assert differ == {"optimizer", "lr", "optimizer_options", "grad_clip", "patience"}


def test_jsb_presets_follow_the_papers_protocol():
    config = preset_config("vhrnn-jsb-z14")
    assert (config.batch_size, config.resampler, config.ess_threshold, config.center_inputs) == (4, "multinomial", 0.5, True)
    assert (config.valid_bound, config.eval_bound) == ("fivo", "fivo")
    latent = preset_config("vhrnn-jsb-z14-latent")
    assert latent.model_options["hyper_input"] == "latent"
    assert build_model(latent, 88).decoder[0].generator[0].out_features == 64  # omega MLPs of 64 units (appendix B)


def test_jsb_presets_take_the_reference_codes_protocol_and_v1_keeps_the_old_one():
    config = preset_config("vrnn-jsb-z32")
    assert (config.optimizer, config.lr, config.grad_clip, config.init) == ("adam", 1e-4, None, "fivo")
    assert config.optimizer_options == {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
    assert config.schedule == [] and config.keep_best
    options = config.model_options
    assert (options["proposal"], options["scale_offset"], options["proposal_input"], options["initial_step"]) == (
        "filtering", 0.5, "raw", True)
    for name in ("vrnn-jsb-z32-v1", "vhrnn-jsb-z14-v1", "vhrnn-jsb-z14-latent-v1"):
        old = preset_config(name)
        assert (old.lr, old.grad_clip, old.init, old.epochs) == (1e-3, 10.0, "default", 300)
        assert "proposal" not in old.model_options and "scale_offset" not in old.model_options
    assert preset_config("vhrnn-jsb-z14-latent-v1").model_options["hyper_input"] == "latent"


def test_wd_presets_add_weight_decay_to_the_reference_protocol():
    for name in ("vrnn-jsb-z32", "vhrnn-jsb-z14", "vhrnn-jsb-z14-latent"):
        reference, regularised = preset_config(name), preset_config(name + "-wd")
        assert (regularised.optimizer, regularised.lr, regularised.patience) == ("adamw", 3e-4, 150)
        assert regularised.optimizer_options["weight_decay"] == 0.125
        assert regularised.model_options == reference.model_options
        assert (regularised.init, regularised.grad_clip, regularised.keep_best) == ("fivo", None, True)


def test_overrides_replace_fields_and_merge_model_options():
    config = preset_config("vrnn-jsb-z32", epochs=7, lr=3e-4, proposal="smoothing", data_root="/data")
    assert (config.epochs, config.lr, config.data_root) == (7, 3e-4, "/data")
    assert config.model_options == {"architecture": "fivo", "proposal": "smoothing", "likelihood": "bernoulli",
                                    "scale_offset": 0.5, "proposal_input": "raw", "initial_step": True}
    with pytest.raises(ValueError, match="does not take option.*nonsense"):
        preset_config("vrnn-jsb-z32", nonsense=1)
    with pytest.raises(ValueError, match="unknown preset 'vrnn-z32'; choose one of: .*vrnn-jsb-z32"):
        get_preset("vrnn-z32")


def test_cli_trains_a_preset_with_overrides(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--preset", "vhrnn-synthetic-z4", "--epochs", "1", "--eval-particles", "2", "--no-progress",
            "--train-subset", "64", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "vhrnn" and config["z_dim"] == 4 and config["epochs"] == 1
    assert config["model_options"]["architecture"] == "fivo" and config["model_options"]["omega_dim"] == 8
    assert "1572 parameters" in capsys.readouterr().out
    assert main(["train", "--preset", "table-9"]) == 1
    assert "unknown preset 'table-9'" in capsys.readouterr().err
    assert main(["presets"]) == 0
    assert "vhrnn-jsb-z14 " in capsys.readouterr().out


def test_dmm_preset_is_pyros_2017_recipe():
    config = preset_config("dmm-jsb")
    assert (config.optimizer, config.lr, config.grad_clip, config.loss_reduction) == ("clipped-adam", 4e-4, None, "sum")
    assert config.optimizer_options == {"betas": [0.96, 0.999], "eps": 1e-8, "clip_norm": 20.0, "lrd": 0.99996, "weight_decay": 0.6}
    assert (config.batch_size, config.epochs, config.objective, config.eval_bound, config.eval_particles) == (20, 5000, "elbo", "elbo", 1)
    # Pyro's annealing factor at update k (from 1) is 0.1 + 0.9 k / (1000 epochs x 12 mini-batches)
    from pyrosequence.inference.scaling import KLAnnealing

    anneal = KLAnnealing(config.anneal_start, config.anneal_increment)
    for k in (1, 2, 6000, 12_000, 20_000):
        assert anneal(k - 1) == pytest.approx(min(1.0, 0.1 + 0.9 * k / 12_000), abs=1e-12)


def test_presets_name_prints_the_full_settings(capsys):
    from pyrosequence.training.config import TrainConfig

    assert main(["presets", "vrnn-jsb-z32"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vrnn-jsb-z32: Deng et al. 2020, Table 4")
    assert "the paper's figures: fivo -6.92, parameters 39000" in out
    assert 'fixed by the paper: data="jsb", objective="fivo", particles=4, batch_size=4' in out
    assert 'our choice where the paper is silent: optimizer="adam", lr=0.0001, grad_clip=null, init="fivo"' in out
    config = preset_config("vrnn-jsb-z32")
    for key in config.__dataclass_fields__:  # every field, not a summary
        assert f"\n    {key} " in out, key
    assert main(["presets", "dmm-jsb", "--json"]) == 0
    assert TrainConfig.from_dict(json.loads(capsys.readouterr().out)) == preset_config("dmm-jsb")
    assert main(["presets", "vrnn-z32"]) == 1
    assert "unknown preset 'vrnn-z32'" in capsys.readouterr().err
    assert main(["presets", "--json"]) == 1
    assert "--json needs a preset NAME" in capsys.readouterr().err
