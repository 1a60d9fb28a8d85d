"""What every ``pyrosequence`` command shares: one-line argument errors, the errors shown as one line, the
particle-filter options."""

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
