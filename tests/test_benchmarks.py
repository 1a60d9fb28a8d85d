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
                                "--eval-particles", "4", "--eval-rounds", "1", "--objective-rounds", "1",
                                "--objective-batch", "2", "--objective-steps", "6"])
    vrnn = result["training"]["vrnn-b4"]
    assert set(vrnn["ms_per_update"]) == {"fivo_eager", "fivo_compiled", "iwae", "plain"}
    assert set(result["training"]["vhrnn-b4"]["ms_per_update"]) == {"fivo_eager", "fivo_compiled", "iwae"}
    assert vrnn["ratio_compiled_vs_plain"] > 0 and vrnn["warmup"]["fivo_compiled_first_update_s"] >= 0
    objectives = result["objectives"]
    assert objectives["batch"] == 2 and objectives["steps"] == 6
    assert set(objectives["ms_per_update"]) == {"elbo_eager", "elbo_compiled", "iwae_eager", "iwae_compiled", "fivo_compiled"}
    assert objectives["ratio_iwae_compiled_vs_eager"] > 0 and objectives["ratio_fivo_compiled_vs_iwae_compiled"] > 0
    evaluation = result["evaluation"]
    assert evaluation["sequences"] == 2 and evaluation["ratio_compiled_vs_eager"] > 0
    assert evaluation["per_timestep"]["eager"] < 0 and evaluation["per_timestep"]["compiled"] < 0


def test_engine_benchmark_times_the_gradient_estimators(shared_data):
    """--estimators: part 1b also times iwae-dreg and elbo-stl eager and compiled, every compiled
    runner compiled (no fallback to the eager step)."""
    import warnings

    import bench_engine

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compile:", category=RuntimeWarning)
        result = bench_engine.main(["--rounds", "0", "--skip-eval", "--steps", "1", "--vrnn-dim", "3", "--backend",
                                    "aot_eager", "--data-root", str(shared_data), "--objective-rounds", "1",
                                    "--objective-batch", "2", "--objective-steps", "6", "--estimators"])
    objectives = result["objectives"]
    assert {"iwae_dreg_eager", "iwae_dreg_compiled", "elbo_stl_eager", "elbo_stl_compiled"} <= set(objectives["ms_per_update"])
    assert objectives["ratio_iwae_dreg_compiled_vs_eager"] > 0 and objectives["ratio_elbo_stl_compiled_vs_eager"] > 0


# ------------------------------------------------------------------------------------ the GPU check (issue 28)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
GPU_PARTS = ["install", "tests", "tests_compile", "vrnn_step", "fivo", "jsb_eval", "jsb_updates", "jsb_updates_compiled",
             "engine"]


def test_gpu_check_script_is_valid_bash_and_its_dry_run_writes_the_json(tmp_path):
    """benchmarks/gpu_check.sh parses, documents itself, refuses an unknown part, and its dry run
    (every part's command printed, nothing run) writes gpu_check.json with every part."""
    import json
    import subprocess

    script = BENCHMARKS / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    helped = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "carry=[\".whl\"]" in helped.stdout
    bad = subprocess.run(["bash", str(script), "warp"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown part 'warp'" in bad.stderr
    env = {**__import__("os").environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    dry = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=300, env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert list(summary["parts"]) == GPU_PARTS and summary["all_ok"]
    assert all(part["status"] == "dry-run" for part in summary["parts"].values())
    assert "--device cuda" in summary["parts"]["fivo"]["note"] and "--cuda-graphs" in summary["parts"]["engine"]["note"]
    assert summary["parts"]["jsb_updates_compiled"]["note"].endswith("--compile")
    assert (tmp_path / "out" / "gpu_check.log").read_text().count("start (limit") == len(GPU_PARTS)


def test_gpu_check_helper_parses_its_arguments_and_summarises_parts(tmp_path, capsys):
    import json

    import gpu_check

    for argv in (["--help"], ["bench", "--help"], ["summary", "--help"]):
        try:
            gpu_check.main(argv)
        except SystemExit as done:
            assert done.code == 0
    assert "summary" in capsys.readouterr().out
    state = tmp_path / "state"
    state.mkdir()
    (state / "status.tsv").write_text("tests\tfailed\t1\t12\tsee gpu_check.log\nfivo\tok\t0\t30\t\nengine\ttimeout\t124\t300\tlimit\n")
    (state / "tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="" name="tests.test_x"><error message="collection failure">'
        "E   ModuleNotFoundError: No module named 'music21'</error></testcase>"
        '<testcase classname="test_cuda" name="test_a"/><testcase classname="test_cuda" name="test_b">'
        '<skipped type="pytest.xfail" message="known"/></testcase></testsuite></testsuites>'
    )
    assert gpu_check.main(["bench", "bench_fivo", str(state / "fivo.json"), "--", "--rounds", "1", "--steps", "1",
                           "--batch", "2", "--time", "3", "--x-dim", "5", "--dim", "3", "--skip-eval"]) == 0
    assert gpu_check.main(["summary", str(state), str(tmp_path / "gpu_check.json")]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    tests = summary["parts"]["tests"]
    # only a module that could not be imported failed: the selected tests themselves passed
    assert tests["status"] == "ok" and tests["tests"]["passed"] == 1 and tests["tests"]["xfailed"] == 1
    assert tests["tests"]["collection_errors"] == [{"module": "tests.test_x", "message": "ModuleNotFoundError: No module named 'music21'"}]
    assert summary["parts"]["fivo"]["result"]["training"]["ratio_fivo_vs_iwae"] > 0
    assert summary["parts"]["engine"]["status"] == "timeout" and not summary["all_ok"]


def test_preset_benchmark_runs_with_tiny_sizes():
    """Part 1 with the compiled engine (the eager default differs only in compile=False)."""
    import bench_preset

    result = bench_preset.main(["--preset", "vrnn-synthetic-z4", "--batches", "2", "--updates", "2", "--epochs", "1",
                                "--eval-particles", "0", "--compile"])
    (row,) = result["updates"]
    assert row["batch"] == 2 and row["updates_timed"] == 2 and row["updates_per_second_with_validation"] > 0
    assert row["compiled"] is True and row["updates_per_second"] > 0
    assert "evaluation" not in result


def test_preset_benchmark_scores_the_pretrained_run(shared_data):
    import bench_preset

    result = bench_preset.main(["--data-root", str(shared_data), "--skip-updates", "--eval-particles", "2",
                                "--check-particles", "0"])
    evaluation = result["evaluation"]
    assert evaluation["sequences"] == 77 and evaluation["particles"] == 2 and evaluation["per_timestep"] < 0
    assert "updates" not in result


def test_engine_benchmark_times_cuda_graphs_when_asked():
    """--cuda-graphs adds compile="reduce-overhead" (on a CPU the mode has no CUDA-graph effect)."""
    import bench_engine

    result = bench_engine.main(["--rounds", "1", "--steps", "1", "--batch", "2", "--time", "6", "--x-dim", "88",
                                "--vrnn-dim", "3", "--configs", "vrnn-b4", "--backend", "aot_eager", "--skip-eval",
                                "--skip-objectives", "--cuda-graphs", "--device", "cpu"])
    vrnn = result["training"]["vrnn-b4"]
    assert set(vrnn["ms_per_update"]) == {"fivo_eager", "fivo_compiled", "fivo_cuda_graphs", "iwae", "plain"}
    assert vrnn["ratio_cuda_graphs_vs_eager"] > 0 and result["device"] == "cpu"


def test_gradient_benchmark_runs_with_tiny_sizes(tmp_path, capsys):
    import json

    import bench_gradients

    out = tmp_path / "g.json"
    result = bench_gradients.main(["--cases", "lgssm", "--draws", "2", "--particles", "1", "2", "--batch", "2",
                                   "--steps", "3", "--warmup", "1", "--json", str(out), "--plot", str(tmp_path / "g.png")])
    rows = result["cases"]["lgssm"]["results"]
    assert {(r["objective"], r["K"]) for r in rows} == {(o, k) for o in bench_gradients.OBJECTIVES for k in (1, 2)}
    assert all(r["snr_model"] > 0 and r["snr_guide"] > 0 and r["ms_per_update"] > 0 for r in rows)
    assert result["cases"]["lgssm"]["groups"] == {"model": 2 * 2 + 2 + 2 + 3 * 2 + 3, "guide": 2 * 2 + 2 * 2 * 3 + 2 * 2 + 2 * 2}
    assert json.loads(out.read_text())["cases"]["lgssm"]["results"] == rows
    assert (tmp_path / "g.png").stat().st_size > 0


def test_gradient_benchmark_groups_put_shared_vrnn_parameters_with_the_model():
    import bench_gradients

    m = VRNN(5, 3)
    groups = bench_gradients.parameter_groups(m, (torch.rand(2, 4, 5) < 0.3).float())
    # the recurrence and feature extractors are shared: the model's; the encoder is the guide's alone
    assert {n.split(".")[0] for n in groups["guide"]} == {"encoder_net", "encoder_head"}
    assert {"rnn", "phi_x", "phi_z", "prior_net", "prior_head", "decoder_net", "decoder_head"} <= {n.split(".")[0] for n in groups["model"]}


def test_gradient_benchmark_skips_jsb_without_data_in_one_line(tmp_path, capsys):
    import bench_gradients

    result = bench_gradients.main(["--cases", "vrnn-jsb", "--data-root", str(tmp_path / "none"), "--draws", "2",
                                   "--json", str(tmp_path / "g.json"), "--plot", str(tmp_path / "g.png")])
    assert result["cases"] == {} and not (tmp_path / "g.png").exists()
    assert capsys.readouterr().out == f"vrnn-jsb skipped: no JSB data under {tmp_path / 'none'} (pass --data-root)\n"
