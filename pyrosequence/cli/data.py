"""``pyrosequence data describe|fetch``: what a data set holds, and downloading the music sets."""

from __future__ import annotations

from pyrosequence.cli.common import Parser


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="describe or fetch data sets", description="Describe or fetch data sets.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    describe = actions.add_parser("describe", help="splits, sequence counts, lengths and dimensions of a data set")
    describe.add_argument("name", help="data set name (see `pyrosequence train --help`) or a path to your own data")
    describe.add_argument("--data-root", dest="data_root", help="folder holding the data set's files")
    describe.add_argument("--data-option", dest="data_option", action="append", metavar="KEY=VALUE",
                          help="how a PATH is read and split (as for `pyrosequence train --data-option`)")
    describe.set_defaults(command=run_describe)
    fetch = actions.add_parser("fetch", help="download a polyphonic music set, verified by its SHA-256 (needs internet)")
    fetch.add_argument("name", help="jsb, piano, nottingham or muse")
    fetch.add_argument("--root", required=True, help="folder to put the file in")
    fetch.add_argument("--force", action="store_true", help="download again over an existing file")
    fetch.add_argument("--url", help="another address to download from (e.g. the authors' original pickle)")
    fetch.add_argument("--sha256", help="the expected SHA-256 of the file at --url (required where the library knows none)")
    fetch.set_defaults(command=run_fetch)
    p.set_defaults(command=lambda args: (p.print_help(), 2)[1])


def run_describe(args) -> int:
    from pyrosequence.cli.train import model_options
    from pyrosequence.data.describe import describe

    print(describe(args.name, args.data_root, model_options(args.data_option or [], flag="--data-option")))
    return 0


def run_fetch(args) -> int:
    from pyrosequence.data.fetch import fetch_music

    print(f"wrote {fetch_music(args.name, args.root, url=args.url, force=args.force, sha256=args.sha256)}")
    return 0
