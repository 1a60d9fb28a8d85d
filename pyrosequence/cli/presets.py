"""``pyrosequence presets [NAME]``: the named configurations of the papers' experiments.

Without a name it lists them, one line each; with one it prints that preset's full settings: the
paper's figures, what the paper fixes, what this library chose where the paper is silent, and every
field of the :class:`~pyrosequence.training.config.TrainConfig` that ``pyrosequence train --preset NAME``
starts from (``--json`` prints that configuration alone, as ``config.json`` records it).
"""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list the named configurations of the papers' experiments, or show one",
                       description="Without NAME, list the presets `pyrosequence train --preset NAME` takes, with the "
                                   "paper's figures; with NAME, print that preset's full settings.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a preset to show in full (its every training setting)")
    p.add_argument("--json", action="store_true",
                   help="with NAME: print only the training configuration, as JSON (the fields of config.json)")
    p.set_defaults(command=run_presets)


def _settings(values: dict) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in values.items()) or "(none)"


def _reported(preset) -> str:
    """The paper's figures, e.g. ``fivo 9.34, parameters 18000 (bounds in the raw data's units)``."""
    figures = ", ".join(f"{k} {v}" for k, v in preset.reported.items())
    return figures + (" (bounds in the raw data's units)" if figures and preset.units == "data" else "")


def run_presets(args) -> int:
    from pyrosequence.training.presets import PRESETS, get_preset

    if args.name is None:
        if args.json:
            raise ValueError("--json needs a preset NAME")
        for preset in PRESETS.values():
            reported = _reported(preset)
            latents = "no latents" if preset.z_dim is None else f"z={preset.z_dim}"
            print(f"{preset.name:24s} {preset.model} {latents} on {preset.training['data']}; {preset.paper}: {reported}")
        print("\n`pyrosequence presets NAME` prints a preset's full settings.")
        return 0
    preset = get_preset(args.name)
    config = preset.config()
    if args.json:
        print(config.to_json())
        return 0
    reported = _reported(preset) or "none"
    print(f"{preset.name}: {preset.paper}")
    print(f"  the paper's figures: {reported}")
    print(f"  model: {preset.model}, z_dim={preset.z_dim}, options: {_settings(preset.model_options)}")
    print(f"  fixed by the paper: {_settings(preset.training)}")
    print(f"  our choice where the paper is silent: {_settings(preset.ours)}")
    print("  every training setting (`pyrosequence train --preset NAME` starts from these; any flag overrides one;")
    print("  model options the data decides, such as the likelihood, are completed when the run starts):")
    for key, value in json.loads(config.to_json()).items():
        print(f"    {key:22s} {json.dumps(value)}")
    print(f"  train it: pyrosequence train --preset {preset.name} --data-root DIR --out runs/{preset.name}")
    return 0
