"""The ``pyrosequence`` command: a thin layer over :class:`TrainConfig`, :func:`train` and :func:`evaluate`.

Errors print one line (``pyrosequence: error: ...``) and exit non-zero; nothing on disk is
removed or overwritten unless ``--force`` says so. An unexpected error (one raised inside a user's
model code, say) prints one line too, naming its type and where it was raised; set
``PYROSEQUENCE_TRACEBACK=1`` for the full traceback.

Run as a command (the ``pyrosequence`` script, ``main()`` without arguments), the current folder is
put first on ``sys.path``, as ``python -m`` does, so that ``--model mymodels:MyModel`` (and a data
loader's ``package.module:function``) imports a module that lies in the folder the command is run
from. ``main(argv)`` called from Python leaves ``sys.path`` alone.

``SIGTERM`` (``kill``, a scheduler stopping or pre-empting a job) unwinds a command as Ctrl-C does:
the run directory's lock is released, no temporary file is left, the last completed epoch's
checkpoint stays for ``--resume``, and the command prints one line and exits with 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from pyrosequence.cli import backtest, compare, data, evaluate, plot, presets, rd_curve, report, sample, sweep, train
from pyrosequence.atomic import first_line, raised_at
from pyrosequence.cli.common import USER_ERRORS, Parser

#: The commands, in the order ``pyrosequence --help`` lists them; each module has ``add_parser(sub)``.
COMMANDS = (train, sweep, evaluate, compare, plot, data, rd_curve, report, sample, backtest, presets)


def build_parser() -> Parser:
    parser = Parser(prog="pyrosequence", description="Probabilistic sequence models on Pyro.")
    sub = parser.add_subparsers(dest="name", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def current_folder_importable() -> None:
    """Put the current folder first on ``sys.path`` unless it is there already (as ``python -m``
    and ``python -c`` do; a console script's ``sys.path[0]`` is the folder of the script instead)."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or ".") == here for entry in sys.path):
        sys.path.insert(0, here)


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler :func:`main` installs: it unwinds like Ctrl-C (and whatever
    handles an interruption handles it), but is reported as a termination."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_unwinds():
    """While active, SIGTERM raises :class:`Terminated` (Python handles signals in the main thread
    only: elsewhere nothing changes); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    with sigterm_unwinds():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    if argv is None:  # the command line: `pyrosequence ...` imports from the folder it runs in
        current_folder_importable()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) is None:
        parser.print_help()
        return 2
    try:
        return args.command(args)
    except USER_ERRORS as error:
        if not getattr(error, "raised_on_main", False):  # under torchrun process 0 prints an error they share
            print(f"pyrosequence: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interruption:
        terminated = isinstance(interruption, Terminated)
        print(f"pyrosequence: {'terminated (SIGTERM)' if terminated else 'interrupted'}; the last completed "
              "epoch's checkpoint is kept", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as error:  # noqa: BLE001 - anything else (a user's model code, say): one line, where it arose
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        if not getattr(error, "raised_on_main", False):
            print(f"pyrosequence: error: {type(error).__name__} {raised_at(error)}: {first_line(error)} "
                  f"(set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 1


#: Set to 1 for the full traceback of an unexpected error instead of its one line.
TRACEBACK_ENV = "PYROSEQUENCE_TRACEBACK"


if __name__ == "__main__":
    sys.exit(main())
