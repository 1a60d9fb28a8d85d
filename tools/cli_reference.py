"""Write ``docs/cli.md``, the command-line reference, from the ``pyrosequence`` parser itself.

    python tools/cli_reference.py            # rewrite docs/cli.md
    python tools/cli_reference.py --check    # exit 1 if docs/cli.md is not what the parser gives

Every command and subcommand gets its description, its usage line and a table of its arguments
(flags, default, choices, help), in the order ``pyrosequence --help`` lists them.
``tests/test_docs.py`` checks that the committed page is current.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
WIDTH = 100  # usage lines are wrapped at a fixed width, whatever the terminal

HEADER = """# Command-line reference

<!-- written by tools/cli_reference.py from the parser (pyrosequence/cli); do not edit by hand -->

Generated from the `pyrosequence` command's own parser, so it lists exactly what
`pyrosequence COMMAND --help` prints. The guides show the commands at work:
[getting started](getting-started.md), [training](training.md), [data](data.md),
[diagnostics](diagnostics.md), [reproducing the papers](reproducing.md),
[multiple processes](multiple-processes.md).
"""


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        params = {k: getattr(v, "__name__", v) for k, v in params.items()}
        text = text % params
    return text


def _flags(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{s}`" for s in action.option_strings)
        if action.nargs == 0:
            return names
        metavar = action.metavar or action.dest.upper()
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        arity = {None: metavar, "?": f"[{metavar}]", "*": f"[{metavar} ...]", "+": f"{metavar} [...]"}.get(
            action.nargs, " ".join([metavar] * action.nargs) if isinstance(action.nargs, int) else metavar)
        return f"{names} `{arity}`"
    metavar = action.metavar or action.dest
    return f"`{metavar}`" + (" (optional)" if action.nargs in ("?", "*") else "") + (" ..." if action.nargs in ("*", "+") else "")


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    value = action.default
    if isinstance(value, (list, tuple)):
        value = " ".join(map(str, value))
    return f"`{value}`" if value != "" else ""


def _section(parser: argparse.ArgumentParser, level: int, lines: list[str]) -> None:
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)
    lines += [f"{'#' * level} `{parser.prog}`", ""]
    if parser.description:
        lines += [parser.description, ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    rows, subcommands = [], None
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            subcommands = action
            continue
        choices = f" Choices: {', '.join(f'`{c}`' for c in action.choices)}." if action.choices else ""
        rows.append(f"| {_flags(action)} | {_default(action)} | {_cell(_help(action, parser.prog))}{_cell(choices)} |")
    if rows:
        lines += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    if subcommands is not None:
        helps = {a.dest: a.help for a in subcommands._choices_actions}
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| `{name}` | {_cell(helps.get(name, ''))} |" for name in subcommands.choices]
        lines.append("")
        for sub in subcommands.choices.values():
            _section(sub, min(level + 1, 4), lines)


def render() -> str:
    from pyrosequence.cli import build_parser

    lines = [HEADER]
    _section(build_parser(), 2, lines)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is stale, changing nothing")
    args = p.parse_args(argv)
    text = render()
    current = PAGE.read_text() if PAGE.is_file() else ""
    if args.check:
        if current != text:
            print(f"cli_reference: {PAGE.relative_to(ROOT)} is stale; run python tools/cli_reference.py", file=sys.stderr)
            return 1
        print("current")
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
