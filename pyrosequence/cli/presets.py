"""``pyrosequence presets``: the named configurations of the papers' experiments."""

from __future__ import annotations

def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the named configurations of the papers' experiments",
                       description="List the presets `pyrosequence train --preset NAME` takes, with the paper's figures.")
    p.set_defaults(command=run_presets)


def run_presets(args) -> int:
    from pyrosequence.presets import PRESETS

    for preset in PRESETS.values():
        reported = ", ".join(f"{k} {v}" for k, v in preset.reported.items())
        print(f"{preset.name:24s} {preset.model} z={preset.z_dim} on {preset.training['data']}; {preset.paper}: {reported}")
    return 0
