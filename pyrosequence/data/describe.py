"""A text summary of any registered data set (for ``pyrosequence data describe NAME``)."""

from __future__ import annotations

from pyrosequence.data.registry import data_source, load_split


def describe(name: str, root=None, options: dict | None = None) -> str:
    """Load every split of the registered data set ``name`` and summarise it as a table.

    One row per split: number of sequences, total steps, shortest and longest sequence, and
    ``x_dim``; the header gives the data set's description and natural likelihood. ``root`` is
    passed to the loader as for :func:`~pyrosequence.data.registry.load_split` (see
    :data:`~pyrosequence.data.registry.DATASETS` for what each data set expects there). ``name``
    may be a path to the user's data, read with ``options`` (see :mod:`pyrosequence.data.from_path`).
    """
    source = data_source(name, options)
    header = ("split", "sequences", "steps", "min_len", "max_len", "x_dim")
    rows = []
    for split in source.splits:
        data = load_split(name, split, root, source.options)
        lengths = data.lengths
        rows.append((split, len(data), data.total_steps, int(lengths.min()), int(lengths.max()), data.x_dim))
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(row) -> str:
        cells = [str(row[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    out = [f"{name}: {source.description}", f"likelihood: {source.natural_likelihood(root)}", line(header)]
    if source.options is not None:
        out.insert(2, "options: " + ", ".join(f"{k}={v}" for k, v in source.options.items() if k != "scaling"))
    out += [line(r) for r in rows]
    return "\n".join(out)
