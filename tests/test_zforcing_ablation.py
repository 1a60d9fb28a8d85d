"""The Z-Forcing ablation script runs end to end at a tiny budget and records what it promises."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import zforcing_ablation  # noqa: E402
from pyrosequence.models.zforcing import ZForcing  # noqa: E402


def test_kl_per_step_is_the_masked_mean_of_per_sequence_kls():
    m = ZForcing(3, 2, hidden_dim=4, likelihood="gaussian")
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    curve, mean = zforcing_ablation.kl_per_step(m, x, lengths, samples=2, batch=2)
    assert curve.shape == (5,) and bool((curve > 0).all())
    counts = torch.tensor([3.0, 3, 2, 2, 1])
    assert mean == pytest.approx(float((curve * counts).sum() / counts.sum()), rel=1e-5)


def test_ablation_tiny(tmp_path, shared_data):
    records = zforcing_ablation.main(["--tiny", "--jobs", "1", "--out", str(tmp_path), "--data-root", str(shared_data)])
    assert [r["name"] for r in records] == ["plain", "aux", "kla", "aux+kla"]
    assert all(r["iwae"] < 0 and len(r["kl"]) == 160 for r in records)
    # one validation KL per epoch, at the update count the checkpoint reached
    assert all([h["update"] for h in r["kl_history"]] == [r["updates"]] for r in records)
    configs = {r["name"]: json.loads((tmp_path / r["name"] / "config.json").read_text()) for r in records}
    assert configs["aux"]["model_options"]["aux_alpha"] > 0 and configs["plain"]["model_options"]["aux_alpha"] == 0
    assert configs["kla"]["kl_anneal"] and not configs["aux"]["kl_anneal"]
    assert "| aux+kla | yes | yes |" in (tmp_path / "ablation.md").read_text()
    assert (tmp_path / "kl_per_step.png").stat().st_size > 0
