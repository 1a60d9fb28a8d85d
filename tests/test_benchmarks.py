"""The benchmark entry point runs (tiny sizes); its figures are recorded in benchmarks/README.md."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_fivo  # noqa: E402
import bench_vrnn_step  # noqa: E402
from plain_vrnn import plain_vrnn_loss  # noqa: E402

from pyrosequence import VRNN  # noqa: E402


def test_step_benchmark_runs_with_tiny_sizes(capsys):
    result = bench_vrnn_step.main(["--rounds", "1", "--steps", "1", "--batch", "2", "--time", "3", "--x-dim", "5", "--dim", "3"])
    assert set(result["ms_per_step"]) == {"plain", "pyrosequence", "pyro_svi", "no_state_reuse"}
    assert all(v > 0 for v in result["ms_per_step"].values())
    assert "ratio_pyrosequence_vs_plain" in capsys.readouterr().out


def test_plain_baseline_computes_the_same_estimator():
    """With the noise fixed, the plain loop's loss equals pyrosequence's Trace_ELBO loss."""
    import pyro
    from pyro.infer import Trace_ELBO

    m = VRNN(5, 3)
    x = (torch.rand(4, 6, 5) < 0.3).float()
    pyro.set_rng_seed(0)
    ours = Trace_ELBO().loss(m.model, m.guide, x)
    pyro.set_rng_seed(0)
    plain = float(plain_vrnn_loss(m, x).detach())
    assert abs(ours - plain) < 1e-4 * abs(plain)


def test_fivo_benchmark_runs_with_tiny_sizes():
    result = bench_fivo.main(["--rounds", "1", "--steps", "1", "--batch", "2", "--time", "3", "--x-dim", "5",
                              "--dim", "3", "--eval-particles", "4"])
    assert result["training"]["ratio_fivo_vs_iwae"] > 0
    assert [r["bound"] for r in result["evaluation"]] == ["fivo", "iwae"]
    assert all(r["peak_rss_mib"] > 0 and r["per_timestep"] < 0 for r in result["evaluation"])


def test_new_models_benchmark_runs_with_tiny_sizes(capsys):
    import bench_new_models

    result = bench_new_models.main(["--rounds", "1", "--steps", "1", "--batch", "2", "--time", "4", "--x-dim", "6", "--z-dim", "3", "--hidden", "4"])
    assert set(result["simplified_srnn"]["update_ms"]) == {"fast", "per_step"}
    gates = result["multi_rate_vrnn"]
    assert gates["gate_parameters"] > 0 and gates["parameter_overhead"] == gates["gate_parameters"] / gates["parameters"]


def test_length_bucket_benchmark_runs(shared_data, capsys):
    import bench_length_buckets

    result = bench_length_buckets.main(["--data-root", str(shared_data), "--datasets", "jsb", "--batches", "4",
                                        "--pools", "8", "--epochs", "1"])
    row = result["counts"]["jsb/batch4"]
    assert row["pool_8"]["loop_steps"] < row["plain"]["loop_steps"] and row["real_steps"] > 0


def test_engine_benchmark_runs_with_tiny_sizes(shared_data):
    import bench_engine

    result = bench_engine.main(["--rounds", "1", "--steps", "1", "--batch", "2", "--time", "6", "--x-dim", "88",
                                "--vrnn-dim", "3", "--vhrnn-z", "3", "--vhrnn-h", "4", "--omega-dim", "4",
                                "--backend", "aot_eager", "--data-root", str(shared_data), "--eval-sequences", "2",
                                "--eval-particles", "4", "--eval-rounds", "1"])
    vrnn = result["training"]["vrnn-b4"]
    assert set(vrnn["ms_per_update"]) == {"fivo_eager", "fivo_compiled", "iwae", "plain"}
    assert set(result["training"]["vhrnn-b4"]["ms_per_update"]) == {"fivo_eager", "fivo_compiled", "iwae"}
    assert vrnn["ratio_compiled_vs_plain"] > 0 and vrnn["warmup"]["fivo_compiled_first_update_s"] >= 0
    evaluation = result["evaluation"]
    assert evaluation["sequences"] == 2 and evaluation["ratio_compiled_vs_eager"] > 0
    assert evaluation["per_timestep"]["eager"] < 0 and evaluation["per_timestep"]["compiled"] < 0
