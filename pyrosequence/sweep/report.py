"""What a sweep shows: the table of its trials, the best configuration as a ready command,
``results.md``/``results.csv`` and ``study.png`` (optimization history and parameter importances)."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from dataclasses import MISSING as _MISSING, fields
from pathlib import Path
from typing import Callable

from pyrosequence.atomic import atomic_path, atomic_write, first_line
from pyrosequence.training.config import TrainConfig
from pyrosequence.sweep.space import SearchSpace
from pyrosequence.sweep.study import RECORD_KEY, import_optuna

#: TrainConfig fields that ``pyrosequence train`` sets with a flag that takes no value.
_SWITCHES = ("kl_anneal", "keep_best", "center_inputs", "multi_rate", "pyro_validation", "compile")
#: Fields the command never carries (set by train() itself).
_INTERNAL = ("world_size", "model_not_rebuildable", "model_options", "optimizer_options")
#: TrainConfig fields whose None the command line writes as 0.
_OFF_WHEN_ZERO = ("grad_clip", "patience", "max_updates", "time_limit")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_json(text: str) -> bool:
    """Whether the command line would read ``text`` as JSON (a number, true, ...), not as text."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _text(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def train_command(config: TrainConfig, preset: str | None = None) -> str:
    """``config`` as a ``pyrosequence train`` command line: the flags of the settings that differ
    from the defaults (or from ``preset``'s configuration, given as ``--preset``). Reading it back
    with ``pyrosequence train``'s parser gives ``config`` again (run-directory flags aside)."""
    from pyrosequence.cli.train import MODEL_OPTIONS
    from pyrosequence.data.registry import data_source
    from pyrosequence.optim.optimizers import OPTIMIZERS
    from pyrosequence.optim.schedules import describe

    if preset is not None:
        from pyrosequence.training.presets import get_preset

        reference = get_preset(preset).config()
        ref = {f.name: getattr(reference, f.name) for f in fields(TrainConfig)}
        ref_options = dict(reference.model_options)
        args = ["pyrosequence", "train", "--preset", preset]
    else:
        ref = {f.name: (f.default_factory() if f.default_factory is not _MISSING else f.default) for f in fields(TrainConfig)}
        ref["z_dim"] = 8 if config.z_dim is not None else None
        ref_options = {}
        if "likelihood" in config.model_options:
            ref_options["likelihood"] = data_source(config.data, config.data_options).natural_likelihood(config.data_root)
        args = ["pyrosequence", "train"]
    for f in fields(TrainConfig):
        name, value = f.name, getattr(config, f.name)
        if name in _INTERNAL or value == ref.get(name):
            continue
        if name in _SWITCHES:
            if value:
                args.append(_flag(name))
            continue  # a switch the reference has on cannot be turned off from the command line
        if value is None:
            if name in _OFF_WHEN_ZERO:
                args += [_flag(name), "0"]
            continue
        if name == "schedule":
            if value:
                for factor in value:
                    args += ["--schedule", describe([factor])]
            continue
        if name == "data_options":
            for key, option in value.items():
                args += ["--data-option", f"{key}={option if isinstance(option, str) and not _is_json(option) else json.dumps(option)}"]
            continue
        if name == "beta_range":
            args += [_flag(name), *map(_text, value)]
            continue
        args += [_flag(name), _text(value)]
    for name, value in config.model_options.items():
        if ref_options.get(name, _MISSING) == value:
            continue
        if name in MODEL_OPTIONS:
            args += [_flag(name), _text(value)]
        else:
            args += ["--model-option", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    defaults = OPTIMIZERS[config.optimizer].defaults if config.optimizer in OPTIMIZERS else {}
    for name, value in config.optimizer_options.items():
        if defaults.get(name, _MISSING) == value:
            continue
        if name == "betas":
            args += ["--betas", *map(_text, value)]
        elif name == "nesterov":
            if value:
                args.append("--nesterov")
        else:
            args += [_flag(name), _text(value)]
    return " ".join(shlex.quote(a) for a in args)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def trial_rows(study) -> tuple[list[str], list[list]]:
    """``(header, rows)`` of the study's trials: number, state, each parameter, best validation
    (the trial's value, or its best reported epoch for a pruned one), epochs, updates, wall time
    (s), and what stopped it."""
    trials = study.get_trials(deepcopy=False)
    names = []
    for t in trials:
        names += [n for n in t.params if n not in names]
    header = ["trial", "state", *names, "best valid", "epochs", "updates", "wall s", "stopped", "run dir"]
    rows = []
    for t in trials:
        reported = list(t.intermediate_values.values())
        best = t.value if t.value is not None and t.state.name == "COMPLETE" else (max(reported) if reported else None)
        attrs = t.user_attrs
        note = attrs.get("stopped", "running" if t.state.name == "RUNNING" else "")
        if "error" in attrs:
            note = f"{note}: {attrs['error']}"
        if "retry_of" in attrs:
            note = f"{note} (retry of trial {attrs['retry_of']})"
        rows.append([t.number, t.state.name, *(t.params.get(n) for n in names), best, attrs.get("epochs"),
                     attrs.get("updates"), attrs.get("wall_seconds"), note, attrs.get("run_dir")])
    return header, rows


def format_table(header: list[str], rows: list[list], markdown: bool = False) -> str:
    """An aligned text table (or a Markdown one) of :func:`trial_rows`."""
    bound = header.index("best valid") if "best valid" in header else -1
    cells = [[f"{v:.4f}" if i == bound and isinstance(v, float) else _fmt(v) for i, v in enumerate(row)] for row in rows]
    if markdown:
        escape = lambda s: s.replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def best_command(study) -> tuple[object, str] | None:
    """``(best trial, its configuration as a pyrosequence train command)``; None before any
    trial completed. Without the sweep's record (a study not made by ``pyrosequence sweep``) the
    command is the trial's parameters alone."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    record = study.user_attrs.get(RECORD_KEY)
    if record is None:
        return best, " ".join(f"{k}={v}" for k, v in best.params.items())
    space = SearchSpace.from_dict(record["space"])
    config = space.config(TrainConfig(**record["base"]), space.decode(best.params))
    return best, train_command(config, record.get("preset"))


def plot_study(study, path: str | Path) -> str | None:
    """Write ``study.png``: the optimization history (each trial's best validation bound and the best
    so far) and the parameter importances (Optuna's fANOVA; they need two complete trials). Returns
    why a panel or the whole plot could not be drawn, else None."""
    try:
        import matplotlib
    except ImportError:
        return 'no study.png: plotting needs matplotlib (pip install -e ".[plots]")'
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    optuna = import_optuna()
    fig, (history, importance) = plt.subplots(1, 2, figsize=(11, 4))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    x = [t.number for t in complete]
    y = [t.value for t in complete]
    history.scatter(x, y, label="complete", color="C0", zorder=3)
    pruned_points = [(t.number, max(t.intermediate_values.values())) for t in pruned if t.intermediate_values]
    if pruned_points:
        history.scatter(*zip(*pruned_points), label="pruned (best epoch)", color="0.6", marker="x", zorder=2)
    if complete:
        order = sorted(complete, key=lambda t: t.number)
        best, running = [], -math.inf
        for t in order:
            running = max(running, t.value)
            best.append(running)
        history.step([t.number for t in order], best, where="post", color="C3", label="best so far")
    from matplotlib.ticker import MaxNLocator

    history.xaxis.set_major_locator(MaxNLocator(integer=True))
    history.set_xlabel("trial")
    history.set_ylabel("best validation bound per step")
    history.set_title("optimization history")
    if complete or pruned_points:
        history.legend(loc="lower right", fontsize=8)
    note = None
    if len(complete) < 2:
        note = "parameter importances need at least 2 complete trials"
    else:
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(study)
        except Exception as error:  # e.g. a single parameter that never varied
            note = f"parameter importances unavailable: {first_line(error)}"
        else:
            if values:
                names = list(values)[::-1]
                importance.barh(names, [values[n] for n in names], color="C0")
                importance.set_xlabel("importance (fANOVA, normalised)")
            else:
                note = "parameter importances: no parameter varied"
    if note is not None:
        importance.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=importance.transAxes)
        importance.set_xticks([])
        importance.set_yticks([])
    importance.set_title("parameter importances")
    fig.suptitle(f"study {study.study_name}")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return note


def write_report(study, out: str | Path, log: Callable[[str], None] = print) -> dict:
    """Print the table and the best command, and write ``results.md``, ``results.csv`` and
    ``study.png`` into the sweep folder ``out``. Returns ``{"best": trial or None, "command": str or None}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = trial_rows(study)
    shown = [h for h in header if h != "run dir"]
    short = [row[:-1] for row in rows]
    if rows:
        log(format_table(shown, short))
    else:
        log("no trials yet")
    counts = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    summary = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "no trials"
    found = best_command(study)
    lines = [f"# Sweep {study.study_name}", "", summary, "", format_table(shown, short, markdown=True) if rows else "", ""]
    command = None
    if found is None:
        log("no complete trial yet: no best configuration")
    else:
        best, command = found
        log(f"best: trial {best.number}, valid {best.value:.4f} ({best.user_attrs.get('run_dir', '')})")
        log(f"best configuration: {command}")
        lines += [f"Best: trial {best.number}, validation bound {best.value:.4f} per step "
                  f"(run directory `{best.user_attrs.get('run_dir', '')}`).", "", "```bash", command, "```", ""]
    atomic_write(out / "results.md", "\n".join(lines))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    atomic_write(out / "results.csv", buffer.getvalue())
    note = plot_study(study, out / "study.png")
    if note is not None:
        log(note)
    log(f"written: {out / 'results.md'}, {out / 'results.csv'}" + ("" if note and note.startswith("no study.png") else f", {out / 'study.png'}"))
    return {"best": None if found is None else found[0], "command": command}


def load_sweep(out: str | Path, storage: str | None = None, study_name: str | None = None):
    """The study of an existing sweep folder (for ``--report``): its default storage file unless
    ``storage`` is given; the study named ``study_name``, else the storage's only one (or the one
    named after the folder)."""
    from pyrosequence.sweep.study import JOURNAL_FILE, SQLITE_FILE, default_study_name, describe_storage, open_storage, storage_spec

    optuna = import_optuna()
    out = Path(out)
    if storage is None and not ((out / SQLITE_FILE).exists() or (out / JOURNAL_FILE).exists()):
        raise FileNotFoundError(f"no sweep in {out} (no {SQLITE_FILE} or {JOURNAL_FILE}; give --storage URL for a database)")
    spec = storage_spec(out, storage)
    backend = open_storage(spec, heartbeat=None)
    names = [s.study_name for s in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study_name is None:
        if len(names) == 1:
            study_name = names[0]
        elif default_study_name(out) in names:
            study_name = default_study_name(out)
        else:
            raise ValueError(f"{describe_storage(spec)} holds {len(names)} studies ({', '.join(names) or 'none'}); give --study-name")
    elif study_name not in names:
        raise ValueError(f"no study {study_name!r} in {describe_storage(spec)} (it holds: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=study_name, storage=backend)
