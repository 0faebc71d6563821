"""The tuning report: one self-contained HTML file that shows what a study found, even while it runs.

``write_report(run_dir)`` reads ``tune.json`` (where the study lives), the study itself, and, once the
final model exists, ``metrics.json`` and ``run.yaml``; it writes ``run_dir/report.html`` atomically.
Everything is inline: plots are matplotlib figures rendered to SVG through the object-oriented API
(never pyplot, never a window), and the page loads no script, font, stylesheet or image from anywhere,
so it opens offline and can be mailed as one file.

The report shows what exists and says what is missing: a study with no finished trial, trials still
running, or no final model yet all give a complete page. ``build_report_html`` is the pure part.
"""

from __future__ import annotations

import html
import io
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ajuste.atomic import write_text
from ajuste.errors import RunFolderError, spoken
from ajuste.runs.folder import RunFolder
from ajuste.runs.record import EnsembleRecord, RescoreRecord, SearchRecord
from ajuste.search.storage import open_storage, storage_kind
from ajuste.search.study import (
    SCREEN,
    FamilyShare,
    by_family,
    counts_towards_budget,
    cut_phrase,
    retried,
    screened_out,
    unreached,
    unreached_text,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SECTION_TITLES", "build_report_html", "write_report"]

SECTION_TITLES = (
    "Summary",
    "Optimisation history",
    "Parameter importances",
    "Score by parameter",
    "Learning curves",
    "Final model",
    "Best trials",
    "Failed trials",
)
NO_FINAL_MODEL = "The final model has not been written yet (study running or interrupted)."

MAX_SCATTERS = 6
MAX_CURVES = 5
MAX_TABLE_ROWS = 10
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_BEST = "#d62728"
_PRUNED = "#9a9a9a"
_STATE_NAMES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1.5em 2em 3em;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .6em}h2{font-size:1.25em;margin:1.8em 0 .5em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.4em 0 1em}td,th{padding:.25em .7em;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{background:none;font-weight:600;white-space:nowrap}
code{font-size:.92em;background:#f3f3f3;padding:0 .25em;border-radius:3px}
.note{color:#666;font-style:italic}.warn{color:#8a4b00}
figure{margin:.5em 0 1em}svg{max-width:100%;height:auto}
.state-COMPLETE{color:#1a7f37}.state-PRUNED{color:#777}.state-FAIL{color:#b42318}.state-RUNNING{color:#0b5cad}
"""


# ----------------------------------------------------------------------------------------------
# Writing the file


def write_report(run_dir: str | Path, *, storage: str | None = None, study_name: str | None = None) -> Path:
    """Write ``run_dir/report.html`` for the study of a tuning run folder; returns its path.

    ``storage`` and ``study_name`` override what ``run_dir/tune.json`` says. Works at any point of
    the study: while trials are running, before any trial finished, and before the final model exists.
    """
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise RunFolderError(
            f"the run folder {folder.path} " + ("is a file" if folder.path.exists() else "does not exist"),
            fix="Pass the folder that `ajuste tune` wrote (its --out).",
        )
    info = folder.read_search_info()
    if storage is None and info is None:
        raise RunFolderError(
            f"{folder.path} is not a tuning run folder",
            expected="tune.json naming the study's storage, or a storage URL",
            found="no tune.json",
            fix="Pass the folder written by `ajuste tune` (from Python, report() also takes a storage URL and study).",
        )
    if storage is None and info is not None:
        storage = folder.storage_url(info)
    study = _load_study(str(storage), study_name or (info.study if info else None))
    final = folder.read_metrics()
    run_file = folder.read_run_file() if final is not None else None
    record = run_file.record.search if run_file is not None else None
    tune = info.model_dump(mode="json") if info else {}
    title = f"Tuning report: {study.study_name}" + (f" on {info.data}" if info and info.data else "")
    text = build_report_html(study, final=final, title=title, tune=tune, search=record)
    return write_text(folder.report_file, text)


def _load_study(storage: str, study_name: str | None) -> optuna.Study:
    prefix = "sqlite:///"
    database = Path(storage[len(prefix) :].split("?", 1)[0])
    if storage.startswith(prefix) and ":memory:" not in storage and not database.is_file():
        # Optuna would silently create an empty database here.
        raise RunFolderError(
            f"the study database {database} does not exist",
            fix="Pass the folder written by `ajuste tune`, or the storage URL of an existing study.",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # storage-version and experimental notices are not the user's problem here
        # a file (SQLite, journal) is opened as ajuste opens it: a damaged one is one line, a journal no URL
        opened = open_storage(storage) if storage_kind(storage) != "database" else storage
        names = optuna.study.get_all_study_names(storage=opened)
        if study_name is None and len(names) == 1:
            study_name = names[0]
        if study_name is None or study_name not in names:
            raise RunFolderError(
                "no study to report on" if study_name is None else f"no study named {study_name!r} in {storage}",
                expected="one study name" if study_name is None else None,
                found=f"studies {names}" if names else "no study at all",
                fix="Pass the study name (tune.json's 'study').",
            )
        study = optuna.load_study(study_name=study_name, storage=opened)
    if len(study.directions) != 1:
        raise RunFolderError(
            f"the study {study_name!r} has {len(study.directions)} objectives",
            expected="a single-objective study, as `ajuste tune` writes",
        )
    return study


# ----------------------------------------------------------------------------------------------
# Reading trials


def _settings(trial: FrozenTrial) -> dict[str, Any]:
    """The decoded settings a trial used, or its raw Optuna parameters when none were recorded."""
    settings = trial.user_attrs.get("settings")
    return dict(settings) if isinstance(settings, Mapping) else dict(trial.params)


def _seconds(trial: FrozenTrial) -> float | None:
    seconds = trial.user_attrs.get("seconds")
    if _is_number(seconds):
        return float(seconds)
    return trial.duration.total_seconds() if trial.duration is not None else None


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _score(trial: FrozenTrial) -> float:
    return float(trial.value) if trial.value is not None else math.nan


def _has_value(trial: FrozenTrial) -> bool:
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and _is_number(trial.value)


def _ranked(trials: Sequence[FrozenTrial], maximize: bool) -> list[FrozenTrial]:
    """Finished trials best first: complete ones, then pruned ones (whose scores are only partial)."""

    def key(trial: FrozenTrial) -> tuple[int, float, int]:
        value = _score(trial)
        return (trial.state != TrialState.COMPLETE, -value if maximize else value, trial.number)

    return sorted((t for t in trials if _has_value(t)), key=key)


def _curve(trial: FrozenTrial, metric: str) -> tuple[list[tuple[float, float]], list[tuple[float, float, str]]]:
    """Validation score per epoch, and losses per epoch as (epoch, value, "loss" or "val_loss"), of the trial's
    training on every text (not of its screen on a subset, when it was screened)."""
    history = trial.user_attrs.get("history")
    rows = [row for row in history if isinstance(row, Mapping)] if isinstance(history, list) else []
    rows = [row for row in rows if not row.get("screen")] or rows
    scores: list[tuple[float, float]] = []
    losses: list[tuple[float, float, str]] = []
    for index, row in enumerate(rows, start=1):
        number = row.get("epoch")
        epoch = float(number) if _is_number(number) else float(index)
        score = row.get(f"val_{metric}")
        if _is_number(score):
            scores.append((epoch, float(score)))
        for name in ("loss", "val_loss"):
            loss = row.get(name)
            if _is_number(loss):
                losses.append((epoch, float(loss), name))
    if not scores:
        scores = [(float(step), float(v)) for step, v in sorted(trial.intermediate_values.items()) if _is_number(v)]
    return scores, losses


# ----------------------------------------------------------------------------------------------
# Text helpers


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "–"
    if value is None:
        return "–"
    return str(value)


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _settings_html(settings: Mapping[str, Any]) -> str:
    return " ".join(f"<code>{_e(k)}={_e(_fmt(v))}</code>" for k, v in sorted(settings.items()))


def _short(text: str, width: int = 18) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ----------------------------------------------------------------------------------------------
# Figures


@contextmanager
def _plotting() -> Iterator[None]:
    """Matplotlib settings for this report only: text as SVG text, no TeX or mathtext, no warnings out."""
    import matplotlib

    with (
        matplotlib.rc_context(
            {
                "svg.fonttype": "none",
                "text.usetex": False,
                "text.parse_math": False,  # a "$" in a class name or setting must stay a "$"
                "font.size": 9,
                "axes.spines.top": False,
                "axes.spines.right": False,
                "axes.grid": True,
                "grid.alpha": 0.3,
            }
        ),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # layout and scale notices must not fail a report
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


class _Svg:
    """Renders figures to inline SVG, each with its own id prefix: they share one HTML page, and
    matplotlib numbers its element ids ("axes_1", "patch_1") afresh in every figure."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, figure: Figure, alt: str) -> str:
        import matplotlib

        self.count += 1
        buffer = io.StringIO()
        with matplotlib.rc_context({"svg.hashsalt": "ajuste-report"}):  # the same study gives the same file
            figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
        text = buffer.getvalue()
        svg = text[text.index("<svg") :]  # drop the XML declaration and the DOCTYPE that points at w3.org
        prefix = f"f{self.count}-"
        svg = re.sub(r'(\bid="|href="#|url\(#)', lambda match: match.group(1) + prefix, svg)
        svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_e(alt)}" ', 1)
        return f"<figure>{svg}</figure>"


def _history_figure(finished: Sequence[FrozenTrial], metric: str, maximize: bool) -> Figure:
    from matplotlib.ticker import MaxNLocator

    figure = _figure(7.5, 3.2)
    ax = figure.add_subplot()
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [_score(t) for t in pruned],
            s=22,
            facecolors="none",
            edgecolors=_PRUNED,
            label="pruned (last reported score)",
            zorder=2,
        )
    if complete:
        numbers, values = [t.number for t in complete], [_score(t) for t in complete]
        ax.scatter(numbers, values, s=22, color=_COLORS[0], label="complete")
        best = list(accumulate(values, max if maximize else min))
        ax.step(numbers, best, where="post", color=_BEST, linewidth=1.5, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return figure


def _importance_figure(importances: Mapping[str, float]) -> Figure:
    names = list(importances)[::-1]  # most important on top
    figure = _figure(6.5, 0.8 + 0.32 * len(names))
    ax = figure.add_subplot()
    ax.barh(range(len(names)), [importances[n] for n in names], color=_COLORS[0])
    ax.set_yticks(range(len(names)), labels=[_short(n, 40) for n in names])
    ax.set_xlabel("importance (share of the total)")
    ax.grid(axis="y", visible=False)
    return figure


def _scatter_figure(keys: Sequence[str], finished: Sequence[FrozenTrial], metric: str) -> Figure:
    import numpy as np
    from matplotlib.ticker import LogFormatter

    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure = _figure(3.1 * columns, 2.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    rng = np.random.default_rng(0)  # jitter only; fixed so the same study gives the same picture
    for ax, key in zip(axes, keys):
        points = [(v, t) for t in finished if (v := _setting(t, key)) is not None]
        values = [v for v, _ in points]
        numeric = all(_is_number(v) for v in values)
        if numeric:
            xs = [float(v) for v in values]
            if xs and _log_scale(key, finished, xs):
                ax.set_xscale("log")
                # Plain labels ("0.001"): the default ones are mathtext, which this report turns off.
                ax.xaxis.set_major_formatter(LogFormatter())
                ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
        else:
            categories = sorted({str(v) for v in values}, key=_natural)
            index = {c: i for i, c in enumerate(categories)}
            xs = [index[str(v)] + float(rng.uniform(-0.15, 0.15)) for v in values]
            ax.set_xticks(range(len(categories)), labels=[_short(c, 12) for c in categories])
            if len(categories) > 4:
                ax.tick_params(axis="x", labelrotation=40)
        _scatter_states(ax, xs, [t for _, t in points])
        ax.set_title(_short(key, 40), fontsize=9)
        ax.set_ylabel(metric)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    return figure


def _log_scale(key: str, finished: Sequence[FrozenTrial], xs: Sequence[float]) -> bool:
    """Log x when the search space samples the setting on a log scale; without a search-space entry that
    holds the setting's own value (a setting decoded from a joint parameter, or a coordinate shared by
    families with different ranges), when positive values span more than a factor 20."""
    for trial in finished:
        for name, distribution in trial.distributions.items():
            if (
                name.split("/", 1)[-1] == key
                and isinstance(distribution, (FloatDistribution, IntDistribution))
                and trial.params[name] == _setting(trial, key)
            ):
                return distribution.log
    return min(xs) > 0 and max(xs) / min(xs) > 20


def _scatter_states(ax: Axes, xs: Sequence[float], trials: Sequence[FrozenTrial]) -> None:
    for state in (TrialState.PRUNED, TrialState.COMPLETE):
        chosen = [i for i, t in enumerate(trials) if t.state == state]
        x, y = [xs[i] for i in chosen], [_score(trials[i]) for i in chosen]
        if state == TrialState.PRUNED:
            ax.scatter(x, y, s=16, facecolors="none", edgecolors=_PRUNED)
        else:
            ax.scatter(x, y, s=16, color=_COLORS[0])


def _natural(text: str) -> tuple[float, str]:
    """Sort "8" before "16", and numbers before words."""
    try:
        return (float(text.split("|")[0]), text)
    except ValueError:
        return (math.inf, text)


def _setting(trial: FrozenTrial, key: str) -> Any:
    settings = trial.user_attrs.get("settings")
    if isinstance(settings, Mapping) and key in settings:
        return settings[key]
    return trial.params.get(key)


def _curves_figure(trials: Sequence[FrozenTrial], metric: str) -> Figure:
    from matplotlib.ticker import MaxNLocator

    curves = {t.number: _curve(t, metric) for t in trials}
    with_loss = any(losses for _, losses in curves.values())
    figure = _figure(9.5 if with_loss else 6, 3.2)
    axes = figure.subplots(1, 2 if with_loss else 1, squeeze=False).ravel()
    for color, trial in zip(_COLORS, trials):
        scores, losses = curves[trial.number]
        label = f"trial {trial.number} ({_fmt(trial.value)})"
        if scores:
            axes[0].plot([e for e, _ in scores], [s for _, s in scores], marker="o", ms=3, color=color, label=label)
        if with_loss:
            for name, dash in (("loss", "-"), ("val_loss", "--")):
                points = [(e, v) for e, v, n in losses if n == name]
                if points:
                    axes[1].plot([e for e, _ in points], [v for _, v in points], dash, color=color)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(f"validation {metric}")
    axes[0].legend(loc="best", fontsize=8, frameon=False)
    if with_loss:
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("loss (solid: train, dashed: validation)")
    return figure


def _confusion_figure(matrix: Sequence[Sequence[float]], labels: Sequence[str]) -> Figure:
    import numpy as np

    counts = np.asarray(matrix, dtype=float)
    k = len(labels)
    figure = _figure(max(3.4, 2.4 + 0.45 * k), max(3.0, 1.9 + 0.45 * k))
    ax = figure.add_subplot()
    # Cells as vector rectangles (imshow would embed a PNG): crisp at any zoom, and tiny for few classes.
    edges = np.arange(k + 1) - 0.5
    ax.pcolormesh(edges, edges, counts, cmap="Blues", vmin=0, edgecolors="white", linewidth=0.5)
    ax.set_aspect("equal")
    ax.invert_yaxis()
    top = counts.max() if counts.size else 0.0
    for i in range(k):
        for j in range(k):
            value = counts[i, j]
            text = f"{int(value)}" if float(value).is_integer() else f"{value:.3g}"
            color = "white" if top and value > top / 2 else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8 if k <= 12 else 6)
    names = [_short(str(label), 16) for label in labels]
    rotate = k > 4 or any(len(n) > 6 for n in names)
    ax.set_xticks(range(k), labels=names, rotation=40 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.grid(visible=False)
    return figure


# ----------------------------------------------------------------------------------------------
# Sections


def build_report_html(
    study: optuna.Study,
    *,
    final: Mapping[str, Any] | None,
    title: str,
    tune: Mapping[str, Any] | None = None,
    search: SearchRecord | None = None,
) -> str:
    """The whole report as one HTML5 document (reads the study, writes no file).

    ``final`` is the content of metrics.json (None before the final model exists), ``tune`` that of
    tune.json (sampler, pruner, metric, data) and ``search`` what run.yaml records of the search.
    """
    tune = tune or {}
    trials = study.get_trials(deepcopy=False)
    maximize = study.direction == StudyDirection.MAXIMIZE
    metric = str(tune.get("metric") or study.user_attrs.get("metric") or "score")
    ranked = _ranked(trials, maximize)
    finished = sorted(ranked, key=lambda t: t.number)
    complete = [t for t in ranked if t.state == TrialState.COMPLETE]
    svg = _Svg()
    with _plotting():
        importances, importance_notes = _importances(study, complete)
        sections = [
            _summary_section(study, trials, complete, metric, maximize, tune, final),
            _history_section(svg, finished, metric, maximize),
            _importance_section(svg, importances, importance_notes),
            _parameter_section(svg, finished, importances, metric),
            _curves_section(svg, ranked, metric),
            _final_section(svg, final, search),
            _best_section(ranked),
            _failed_section(trials),
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n<h1>{_e(title)}</h1>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def _section(index: int, body: str) -> str:
    name = SECTION_TITLES[index]
    anchor = name.lower().replace(" ", "-")
    return f'<section id="{anchor}">\n<h2>{_e(name)}</h2>\n{body}\n</section>'


def _summary_section(
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    complete: Sequence[FrozenTrial],
    metric: str,
    maximize: bool,
    tune: Mapping[str, Any],
    final: Mapping[str, Any] | None,
) -> str:
    counts = Counter(t.state for t in trials)
    shown = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    if counts[TrialState.WAITING]:
        shown.append(TrialState.WAITING)
    count_text = ", ".join(f"{counts[s]} {_STATE_NAMES[s]}" for s in shown)
    total = sum(s for t in trials if t.state != TrialState.RUNNING and (s := _seconds(t)) is not None)
    rows = [
        ("Study", _e(study.study_name)),
        ("Data", _e(tune.get("data", "–"))),
        ("Metric", f"{_e(metric)} ({'maximize' if maximize else 'minimize'})"),
        ("Sampler / pruner", f"{_e(tune.get('sampler', 'unknown'))} / {_e(tune.get('pruner', 'unknown'))}"),
        ("Trials", f"{len(trials)} in all: {_e(count_text)}"),
        ("Total trial time", _e(_fmt_seconds(total)) + " (finished and failed trials)"),
    ]
    again = retried(trials)  # a trial run again, and a dead worker's trial, are counted once, as in by_family
    screens = [t for t in trials if isinstance(t.user_attrs.get(SCREEN), Mapping) and counts_towards_budget(t, again)]
    if screens:
        size = screens[-1].user_attrs[SCREEN].get("texts")
        out = sum(1 for t in screens if screened_out(t))
        rows.append(
            (
                "Screening",
                _e(
                    f"{len(screens)} trials trained first on {size} training texts; {out} of them were screened "
                    "out there (they ranked outside the better half of the screens so far)"
                    + "".join(f"; trial {t.number}: {phrase}" for t in screens if (phrase := cut_phrase(t)))
                ),
            )
        )
    if missed := unreached(trials):
        rows.append(("Not reached", _e(unreached_text(missed))))
    if complete:
        best = complete[0]
        rows.append(("Best value", f"{_e(_fmt(best.value))} (trial {best.number})"))
        rows.append(("Best settings", _settings_html(_settings(best))))
    else:
        rows.append(("Best value", '<span class="note">no trial has completed yet</span>'))
    body = '<table class="kv">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    body += _family_table(by_family(trials, maximize), metric)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if running:
        items = []
        for trial in running:
            started = trial.datetime_start.strftime("%Y-%m-%d %H:%M") if trial.datetime_start else "unknown"
            steps = sorted(trial.intermediate_values.items())
            progress = f", last reported epoch {steps[-1][0]}: {_fmt(steps[-1][1])}" if steps else ""
            items.append(f"trial {trial.number} (started {started}{progress})")
        body += f'<p class="warn">Still running: {_e("; ".join(items))}.</p>'
    if final is None:
        body += _note(NO_FINAL_MODEL)
    body += _note(f"Report written {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.")
    return _section(0, body)


def _family_table(shares: Sequence[FamilyShare], metric: str) -> str:
    """Where the budget went: each family's trials, seconds and best score (nothing when one family was searched)."""
    if len(shares) < 2:
        return ""
    screened = any(share.screened_out for share in shares)
    head = ["family", "trials", "complete", "pruned", *(["screened out"] if screened else []), "failed"]
    head += ["time", f"best {metric}"]
    rows = [
        [
            _e(share.family),
            *(str(n) for n in (share.trials, share.complete, share.pruned)),
            *([str(share.screened_out)] if screened else []),
            str(share.fail),
            _e(_fmt_seconds(share.seconds)),
            "–" if share.best is None else _e(_fmt(share.best)),
        ]
        for share in shares
    ]
    return _note("By family (the trials that count):") + _table(head, rows, numeric=range(1, len(head)))


def _history_section(svg: _Svg, finished: Sequence[FrozenTrial], metric: str, maximize: bool) -> str:
    if not finished:
        return _section(1, _note("No trial has finished yet, so there is no history to plot."))
    body = svg(_history_figure(finished, metric, maximize), "validation score of every finished trial")
    if len(finished) == 1:
        body += _note("Only one trial has finished so far.")
    return _section(1, body)


def _importances(study: optuna.Study, complete: Sequence[FrozenTrial]) -> tuple[dict[str, float], list[str]]:
    """Optuna's parameter importances (PED-ANOVA: handles conditional spaces), and notes on their quality."""
    distinct = {t.value for t in complete}
    if len(complete) < 2 or len(distinct) < 2:
        return {}, [
            "Parameter importances need at least 2 completed trials with different scores; "
            f"this study has {len(complete)} completed trial(s) with {len(distinct)} distinct score(s)."
        ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = optuna.importance.get_param_importances(study)
        except Exception as exc:  # any failure here only costs this one section
            return {}, [f"Parameter importances could not be computed: {exc}"]
    importances = dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))
    notes = [f"Optuna: {message}" for message in dict.fromkeys(str(w.message) for w in caught)]
    if not importances:
        notes.insert(0, "The completed trials share no tuned parameter, so there are no importances to show.")
    elif len(importances) > 1 and len({round(v, 9) for v in importances.values()}) == 1:
        notes.insert(0, "All parameters get the same importance: too few trials to tell them apart yet.")
    return importances, notes


def _importance_section(svg: _Svg, importances: Mapping[str, float], notes: Sequence[str]) -> str:
    body = svg(_importance_figure(importances), "parameter importances") if importances else ""
    return _section(2, body + "".join(_note(n) for n in notes))


def _main_keys(finished: Sequence[FrozenTrial], importances: Mapping[str, float]) -> list[str]:
    """Settings keys to plot: those behind the top importances, else the most common varying settings."""
    present = Counter(k for t in finished for k in _settings(t))
    keys: list[str] = []
    informative = len({round(v, 9) for v in importances.values()}) > 1
    for name in importances if informative else ():
        # "gpt/model.emb_dim|model.num_heads" stands for the settings model.emb_dim and model.num_heads.
        parts = name.split("/", 1)[-1].split("|")
        for key in parts if all(p in present for p in parts) else [name]:
            if key not in keys:
                keys.append(key)
    if not keys:
        varying = [k for k in present if len({repr(_setting(t, k)) for t in finished}) > 1]
        keys = sorted(varying, key=lambda k: (-present[k], k))
    return keys[:MAX_SCATTERS]


def _parameter_section(
    svg: _Svg, finished: Sequence[FrozenTrial], importances: Mapping[str, float], metric: str
) -> str:
    keys = _main_keys(finished, importances)
    if not keys:
        reason = "No trial has finished yet." if not finished else "No setting varies across the finished trials."
        return _section(3, _note(reason))
    body = svg(_scatter_figure(keys, finished, metric), "validation score against the main settings")
    body += _note("Filled: completed trials; hollow grey: pruned trials (score when stopped). Categories jittered.")
    return _section(3, body)


def _curves_section(svg: _Svg, ranked: Sequence[FrozenTrial], metric: str) -> str:
    chosen = [t for t in ranked if _curve(t, metric)[0]][:MAX_CURVES]
    if not chosen:
        return _section(4, _note("No finished trial has reported per-epoch scores yet."))
    return _section(4, svg(_curves_figure(chosen, metric), "learning curves of the best trials"))


def _final_section(svg: _Svg, final: Mapping[str, Any] | None, search: SearchRecord | None) -> str:
    if final is None:
        return _section(5, _note(NO_FINAL_MODEL))
    body = ""
    if search is not None:
        body += f"<p>Refit with the settings of trial {_e(search.best_trial)} ({_e(search.how)}):</p>"
        rows = [
            [f"<code>{_e(key)}</code>", f"<code>{_e(_fmt(value))}</code>"] for key, value in search.best_params.items()
        ]
        body += _table(["setting", "value"], rows, ())
        if search.ensemble is not None:
            body += _ensemble_html(search.ensemble)
        if search.rescore is not None:
            body += _rescore_html(search.rescore)
    splits = [(name, final[name]) for name in ("val", "test") if isinstance(final.get(name), Mapping)]
    rows = []
    for name, split in splits:
        interval = split.get("accuracy_ci95")
        ci = (
            f"[{_fmt(float(interval[0]))}, {_fmt(float(interval[1]))}]"
            if isinstance(interval, list) and len(interval) == 2 and all(_is_number(v) for v in interval)
            else "–"
        )
        cells = [split.get("n"), split.get("accuracy"), ci, split.get("macro_f1"), split.get("loss")]
        rows.append([_e("validation" if name == "val" else "test"), *(_e(_fmt(c)) for c in cells)])
    if rows:
        body += _table(["split", "n", "accuracy", "accuracy 95% interval", "macro-F1", "loss"], rows, (1, 2, 3, 4, 5))
    else:
        body += _note("metrics.json holds neither validation nor test metrics.")
    if splits:
        name, split = splits[-1]  # the test split when there is one
        body += _confusion_html(svg, split, "test" if name == "test" else "validation")
        body += _per_class_html(split)
    return _section(5, body)


def _ensemble_html(chosen: EnsembleRecord) -> str:
    """The members of the final ensemble, and the single best trial against the ensemble on validation."""
    members = [
        [_e(m.trial), _e(_fmt(m.weight)), _e(_fmt(m.val_loss)), _settings_html(m.settings)] for m in chosen.members
    ]
    body = f"<p>Ensemble of up to {_e(chosen.size)} of the trials {_e(', '.join(map(str, chosen.candidates)))}: "
    body += f"{_e(chosen.chosen_by)}.</p>"
    body += _table(["trial", "weight", "validation loss alone", "settings"], members, (0, 1, 2))
    rows = [
        [_e(name), *(_e(_fmt(scores.get(key))) for key in ("accuracy", "macro_f1", "loss"))]
        for name, scores in (("single best trial", chosen.single_best), ("ensemble", chosen.ensemble))
    ]
    return body + _table(["validation", "accuracy", "macro-F1", "loss"], rows, (1, 2, 3))


def _rescore_html(rescored: RescoreRecord) -> str:
    """The best trials scored again on folds of train+val, and which was chosen."""
    rows = [
        [
            _e(item.trial),
            _e(_fmt(item.value)),
            _e(_fmt(item.cv.mean)),
            _e(_fmt(item.cv.std)),
            _e(", ".join(_fmt(v) for v in item.cv.scores)),
            "chosen" if item.trial == rescored.chosen else "",
        ]
        for item in rescored.candidates
    ]
    body = f"<p>The {_e(len(rescored.candidates))} best trials scored again on {_e(rescored.folds)} folds of "
    body += f"train+val; chosen: {_e(rescored.chosen_by)}.</p>"
    return body + _table(["trial", "validation (search)", "folds' mean", "std", "folds", ""], rows, (0, 1, 2, 3))


def _confusion_html(svg: _Svg, split: Mapping[str, Any], name: str) -> str:
    matrix = split.get("confusion_matrix")
    rows = matrix if isinstance(matrix, list) else []
    k = len(rows)
    if not k or not all(isinstance(r, list) and len(r) == k and all(_is_number(v) for v in r) for r in rows):
        return _note(f"No confusion matrix for the {name} split.")
    labels = split.get("labels")
    names = [str(v) for v in labels] if isinstance(labels, list) and len(labels) == k else [str(i) for i in range(k)]
    return f"<h3>Confusion matrix ({_e(name)})</h3>" + svg(_confusion_figure(rows, names), f"{name} confusion matrix")


def _per_class_html(split: Mapping[str, Any]) -> str:
    per_class = split.get("per_class")
    if not isinstance(per_class, Mapping) or not per_class:
        return ""
    rows = []
    for label, scores in per_class.items():
        scores = scores if isinstance(scores, Mapping) else {}
        cells = [scores.get(k) for k in ("precision", "recall", "f1", "support")]
        rows.append([_e(label), *(_e(_fmt(c)) for c in cells)])
    return "<h3>Per class</h3>" + _table(["class", "precision", "recall", "F1", "support"], rows, (1, 2, 3, 4))


def _best_section(ranked: Sequence[FrozenTrial]) -> str:
    if not ranked:
        return _section(6, _note("No trial has finished yet."))
    rows = [
        [
            str(t.number),
            f'<span class="state-{t.state.name}">{_STATE_NAMES[t.state]}</span>',
            _e(_fmt(t.value)),
            _e(_fmt_seconds(_seconds(t))),
            _settings_html(_settings(t)),
        ]
        for t in ranked[:MAX_TABLE_ROWS]
    ]
    body = _table(["trial", "state", "value", "time", "settings"], rows, (0, 2, 3))
    if any(t.state == TrialState.PRUNED for t in ranked[:MAX_TABLE_ROWS]):
        body += _note("Pruned trials come after completed ones: their value is the score when they were stopped.")
    return _section(6, body)


def _failed_section(trials: Sequence[FrozenTrial]) -> str:
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not failed:
        return _section(7, _note("No trial failed."))
    rows = [
        [
            str(t.number),
            _e(_fmt_seconds(_seconds(t))),
            _e(spoken(t.user_attrs.get("error") or "no reason recorded")),
            _settings_html(_settings(t)),
        ]
        for t in failed
    ]
    return _section(7, _table(["trial", "time", "error", "settings"], rows, (0, 1)))
