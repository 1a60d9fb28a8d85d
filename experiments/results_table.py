"""Write the paper-vs-ours results table from the shipped runs (``pretrained/*/``) into the files
that show it, between their markers.

    python experiments/results_table.py            # rewrite the tables
    python experiments/results_table.py --check    # exit 1, naming the file, if one is stale

Every figure comes from a file of the run: the paper's number and parameter count from
``verification.json`` (recorded from the preset when the run was shipped), "ours" from the same
file: the test bound (the one the paper reports: FIVO(128) for the VHRNN paper, ELBO(1) for Pyro's
DMM) that ``pyrosequence evaluate pretrained/NAME --bound B --particles K --weights W --split test``
prints with its default evaluation seed 0, and the standard deviation of that
estimate over 8 further evaluation seeds; the last column is ``results.json``, the test figure
``train`` printed at the end of the run. The two are two draws of the same estimator on the same
weights: ``train`` seeds its final evaluation from the *training* seed (``results.json``'s
"seed"), ``evaluate`` from its own ``--seed``, so they differ by Monte Carlo error (a few of the
standard deviations shown). ``tests/test_results_table.py`` checks that the committed tables are
what this script writes from the committed runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
#: The files that show the table, relative to the repository root.
TARGETS = ("README.md", "docs/reproducing.md")
BEGIN = "<!-- results table: written by experiments/results_table.py from pretrained/*/; do not edit by hand -->"
END = "<!-- end of results table -->"


def shipped_runs(folder: Path = PRETRAINED) -> list[Path]:
    """The shipped run directories: those with a ``verification.json``."""
    return sorted(p.parent for p in folder.glob("*/verification.json"))


def rows(folder: Path = PRETRAINED) -> list[str]:
    lines = [
        "| model (`pretrained/NAME`, preset) | paper | paper: test bound | ours: the same bound, `evaluate` seed 0 "
        "(sd over 8 seeds) | gap | parameters (paper) | `train`'s own test figure (`results.json`) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in shipped_runs(folder):
        v = json.loads((run / "verification.json").read_text())
        results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else None
        paper = v["paper_value"]
        scored = f"{v['bound']}({v['particles']}), {v['weights']} weights"
        ours = f"**{v['per_timestep']:.4f}** ({v['spread_sd']:.4f}) {scored}"
        comparable = v["per_timestep"]
        if v.get("paper_units") == "data":  # the paper's figure is in the raw data's units: compare there
            comparable = v["per_timestep_data_units"]
            ours += f"; **{comparable:.4f}** in the raw data's units"
        gap = f"{paper - comparable:.2f}" if paper is not None else ""
        paper_params = f"{v['paper_parameters']:,}" if v["paper_parameters"] else "not given"
        if results and results.get("bound") == v["bound"] and results.get("split") == v["split"] and (
                v["weights"] == "best" or results.get("selected_epoch") in (None, results.get("epochs"))):
            own = f"{results['per_timestep']:.4f} ({results['bound']}({results['particles']}), training seed {results['seed']})"
        else:
            own = "none"
        lines.append(
            f"| `{v['name']}` (`{v['preset']}`) | {v['paper']} | {paper if paper is not None else 'not given'} | "
            f"{ours} | {gap} | {v['parameters']:,} ({paper_params}) | {own} |"
        )
    return lines


def render(folder: Path = PRETRAINED) -> str:
    """The block between the markers, markers included."""
    return "\n".join([BEGIN, *rows(folder), END])


def replace_block(text: str, block: str, name: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{name} must hold the results table's markers exactly once: {BEGIN!r} ... {END!r}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from what it would write")
    args = p.parse_args(argv)
    block = render()
    stale = []
    for name in TARGETS:
        path = ROOT / name
        text = path.read_text()
        new = replace_block(text, block, name)
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"results_table: stale in {', '.join(stale)}; run python experiments/results_table.py", file=sys.stderr)
        return 1
    print(("stale: " if args.check else "rewrote: ") + (", ".join(stale) or "nothing") if stale else "current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
