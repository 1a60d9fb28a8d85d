"""Every experiment entry point runs end to end with tiny sizes."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import synthetic_study  # noqa: E402


def test_synthetic_study_tiny(tmp_path):
    records = synthetic_study.main(["--tiny", "--out", str(tmp_path)])
    assert [r["name"] for r in records] == ["VRNN z=4", "VHRNN z=4"]
    for r in records:
        assert set(r["fivo"]) == set(synthetic_study.COLUMNS)
        assert all(isinstance(v, float) for v in r["fivo"].values())
    table = (tmp_path / "table.md").read_text()
    assert "| VHRNN z=4 | 1292 (1568) |" in table
    assert json.loads((tmp_path / "results.json").read_text())[0]["parameters"] == records[0]["parameters"]
    # a second call reuses the finished runs
    again = synthetic_study.main(["--tiny", "--out", str(tmp_path), "--only", "VRNN z=4"])
    assert again[0]["train_seconds"] < records[0]["train_seconds"] + 1
