"""What every ``pyrosequence`` command shares: one-line argument errors, the errors shown as one line, the
particle-filter options, and the options of commands that score a bound on a trained run's split."""

from __future__ import annotations

import argparse

USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, ImportError, RecursionError)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and no abbreviated flags (``--epoch`` is not ``--epochs``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def filter_arguments(p, defaults: bool) -> None:
    p.add_argument("--resampler", default="multinomial" if defaults else None,
                   help="FIVO resampler: multinomial, systematic, stratified or residual")
    p.add_argument("--ess-threshold", dest="ess_threshold", type=float, default=0.5 if defaults else None,
                   help="FIVO resamples when ESS < threshold * K (0 = never, 1 = always; default 0.5)")


def bound_arguments(p, data_root_help: str) -> None:
    """``--bound --particles`` (with the filter's options), ``--split --data-root --device``: what a
    command scoring a bound on a trained run's split takes (``evaluate``, ``compare``)."""
    p.add_argument("--bound", default="elbo", help="elbo, iwae or fivo")
    p.add_argument("--particles", type=int, default=1)
    filter_arguments(p, defaults=True)
    p.add_argument("--split", default="test")
    p.add_argument("--data-root", dest="data_root", help=data_root_help)
    p.add_argument("--device", default="cpu")
