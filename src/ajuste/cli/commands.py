"""One function per subcommand: parse flags into settings, call one public function, show the result."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from ajuste.cli.output import Output, plain
from ajuste.errors import AjusteError, ConfigError, DataError, spoken

__all__ = ["cache", "datasets", "distill", "evaluate", "export", "predict", "report", "train", "tune"]


def _output(args: argparse.Namespace) -> Output:
    return Output(json_mode=args.json, quiet=args.quiet)


def train(args: argparse.Namespace) -> int:
    from ajuste.cli.options import config_from_args
    from ajuste.data import describe
    from ajuste.runs.train import train as train_run

    out = _output(args)
    config = config_from_args(args, data=_data_source(args))
    result = train_run(config, overwrite=args.overwrite, verbose=out.show_progress)
    out.say(f"[bold]data[/]   {plain(describe(result.data))}")
    _model_line(out, result.classifier.describe())
    out.metrics_table(result.metrics)
    out.say(f"run folder [bold]{plain(result.run_dir)}[/] ({result.seconds:.1f} s)")
    out.json(result.summary())
    return 0


def _model_line(out: Output, model: dict[str, Any]) -> None:
    out.say(
        f"[bold]model[/]  {model['family']}: {model['parameters']:,} parameters, "
        f"{model['trainable_parameters']:,} trainable"
    )


def distill(args: argparse.Namespace) -> int:
    from ajuste.cli.options import distill_config_from_args
    from ajuste.data import describe
    from ajuste.runs.distill import run_distill

    out = _output(args)
    config = distill_config_from_args(args)
    result = run_distill(config, overwrite=args.overwrite, verbose=out.show_progress)
    run, record = result.run, result.record
    out.say(f"[bold]data[/]   {plain(describe(run.data))}")
    cached = "from the cache" if record.teacher_cached else f"computed in {record.teacher_seconds:.1f} s"
    out.say(
        f"[bold]teacher[/] {plain(record.teacher)} ({record.teacher_family}); its probabilities of "
        f"{record.labelled_texts:,} labelled, {record.augmented_texts:,} augmented and {record.unlabeled_texts:,} "
        f"unlabelled texts {cached}"
    )
    if record.unlabeled_left_out:
        out.say(
            f"[bold]note[/]   {record.unlabeled_left_out:,} unlabelled texts left out: repeated, or a training, "
            "validation or test text"
        )
    _model_line(out, run.classifier.describe())
    out.metrics_table(run.metrics)
    table = Table(box=None, pad_edge=False)
    for column in ("model", "val acc", "test acc", "texts/s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rates = result.throughput

    def percent(value: Any) -> str:
        return "" if value is None else f"{100 * float(value):.2f}%"

    def rate(name: str) -> str:
        return f"{rates[name]:,.0f}" if name in rates else ""

    table.add_row(
        "teacher", percent(record.teacher_val_accuracy), percent(record.teacher_test_accuracy), rate("teacher")
    )
    table.add_row(
        "student", percent(run.metrics["val"]["accuracy"]), percent(run.metrics["test"]["accuracy"]), rate("student")
    )
    out.table(table)
    if rates:
        out.say(f"the student predicts {rates['speedup']:,.1f}x as many texts a second ({rates['texts']:,} texts)")
    out.say(f"run folder [bold]{plain(run.run_dir)}[/] ({run.seconds:.1f} s)")
    out.json(result.summary())
    return 0


def _data_source(args: argparse.Namespace) -> dict[str, Any]:
    if args.dataset and args.path:
        raise ConfigError("give one data source", found="both --dataset and --data", fix="Keep one of them.")
    data: dict[str, Any] = {}
    if args.dataset:
        data["dataset"] = args.dataset
    if args.path:
        data["path"] = args.path
    return data


def _choice_line(trial: int, choice: Mapping[str, Any]) -> str:
    """How the final trial was chosen, and how close it was: on a small validation split the tie-break often
    decides, and the user should know it, and what else there is."""
    texts, tied, value = choice["texts"], choice["tied_at_best"], choice["value"]
    step = f", one text {100 * choice['one_text']:.2f} points" if choice.get("one_text") else ""
    line = f"trial {trial}, val {choice['metric']} {value:.4f} on {choice['scored_on']} ({texts:,} texts{step})"
    line += f"; {tied} trials tied at it" if tied > 1 else ""
    if choice["protocol"] == "ensemble":
        return line + "; the ensemble above starts from it"
    line += f"; rule: {choice['by']}"
    if tied > 1 and choice["protocol"] == "validation":
        line += ". To choose on more texts: --rescore 3 (the 3 best on 5 folds of train+val) or --cv 5 (every trial)"
    return line


def _trial_note(trial: Any) -> str:
    """What a trial's line adds after its settings: a failed trial's reason, or the epochs a trial trained when
    they were cut to those that fit in the time left (see ``--screen``)."""
    from optuna.trial import TrialState

    from ajuste.search.study import cut_phrase

    if trial.state == TrialState.FAIL:
        return f"  ({spoken(trial.user_attrs['error'], command_line=True)})"
    phrase = cut_phrase(trial)
    return f"  ({phrase})" if phrase else ""


def _short(settings: dict[str, Any]) -> str:
    """``gpt num_layers=2 lr=0.0012``: a trial's settings in one short line; for a family fitted by a solver
    (``linear``), its model settings alone: the training settings (its space fixes ``epochs=1``) mean nothing to it."""
    from ajuste.models.registry import FAMILIES, registration

    family = str(settings.get("model.family", ""))
    solver = family in FAMILIES and registration(family).solver
    parts = [family]
    for key, value in settings.items():
        if key == "model.family" or (solver and key.startswith("train.")):
            continue
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.split('.', 1)[1]}={shown}")
    return " ".join(parts)


def tune(args: argparse.Namespace) -> int:
    from optuna.trial import FrozenTrial, TrialState

    from ajuste.cli.options import tune_config_from_args
    from ajuste.data import describe
    from ajuste.search.study import best_trials, counted, how_pruned
    from ajuste.search.tune import run_tune

    out = _output(args)
    config = tune_config_from_args(args, data=_data_source(args))
    metric = config.tune.metric
    show = not args.quiet
    if not args.verbose:  # our own line per trial replaces Optuna's log (and its traceback of a failed trial,
        import optuna  # which stays in the study, shown by report.html and by --verbose)

        optuna.logging.set_verbosity(optuna.logging.ERROR)

    def started(info: dict[str, Any]) -> None:
        resumed = f", resuming: {info['done']} trials already done" if info["done"] else ""
        recovered = f", {info['recovered']} interrupted trial(s) to run again" if info["recovered"] else ""
        count = info["budget"]
        budget = "until the time runs out" if count is None else f"{count} trial{'' if count == 1 else 's'} to run"
        out.say(f"[bold]data[/]   {plain(describe(info['data']))}")
        out.say(
            f"[bold]search[/] {config.tune.sampler} sampler, {config.tune.pruner} pruner, {budget}{resumed}{recovered}"
        )
        folder = plain(info["run_dir"])
        out.say(f"[bold]folder[/] {folder}  (`ajuste report {folder}` shows the study at any time)")
        if info["worker"]:
            shared = f"study {info['study']} in {info['storage']}, as worker {info['worker']}"
            out.say(f"[bold]shared[/] {plain(shared)}")
        if info["coarsened"]:
            out.say(
                f"[bold]grid[/]   coarsened to {info['grid']} points for the trial budget: "
                + plain("; ".join(info["coarsened"]))
            )
        if info["screen"]:
            train = info["data"].counts()["train"]
            out.say(
                f"[bold]screen[/] every trial trains first on {info['screen']:,} of the {train:,} training texts "
                "(stratified), and on all of them if it ranks in the better half of the screens so far"
                + (" (for the epochs that fit when its own do not fit in the time left)" if config.tune.timeout else "")
            )
        for key, value in info["fixed"].items():
            out.say(f"[bold]fixed[/]  {plain(f'{key} = {value}')}, as given: removed from the search space")

    def finished(trial: FrozenTrial, study: Any) -> None:
        value = "" if trial.value is None else f"val {metric} {trial.value:.4f}"
        state = {TrialState.COMPLETE: "done", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}.get(
            trial.state, trial.state.name.lower()
        )
        try:
            best = f"best {study.best_value:.4f}"
        except ValueError:
            best = ""
        if trial.state == TrialState.PRUNED:
            state = how_pruned(trial)
        reason = _trial_note(trial)
        out.say(
            f"trial {trial.number:3d} {state:9s} {value:24s} {best:12s} {trial.user_attrs.get('seconds', 0):6.1f}s  "
            f"{plain(_short(trial.user_attrs.get('settings', {})) + reason)}"
        )

    result = run_tune(
        config, overwrite=args.overwrite, finalize=args.finalize, on_trial=finished if show else None, on_start=started
    )
    counts = result.trial_counts()
    out.say(
        f"[bold]trials[/] {counted(result.study)} counted: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    )
    table = Table(box=None, pad_edge=False, title=f"best trials (validation {metric})", title_justify="left")
    for column in ("trial", f"val {metric}", "seconds", "settings"):
        table.add_column(column, justify="left" if column == "settings" else "right")
    for trial in best_trials(result.study):
        table.add_row(
            str(trial.number),
            f"{trial.value:.4f}",
            f"{trial.user_attrs.get('seconds', 0):.1f}",
            plain(_short(trial.user_attrs.get("settings", {}))),
        )
    out.table(table)
    shares = result.families()
    if len(shares) > 1:  # where the budget went, when there was a choice
        table = Table(box=None, pad_edge=False, title="by family", title_justify="left")
        screened = any(share.screened_out for share in shares)
        columns = ["family", "trials", "complete", "pruned", *(["screened out"] if screened else []), "failed"]
        for column in (*columns, "seconds", f"best val {metric}"):
            table.add_column(column, justify="left" if column == "family" else "right")
        for share in shares:
            best = "-" if share.best is None else f"{share.best:.4f}"
            numbers = (
                share.trials,
                share.complete,
                share.pruned,
                *([share.screened_out] if screened else []),
                share.fail,
            )
            table.add_row(share.family, *map(str, numbers), f"{share.seconds:.1f}", best)
        out.table(table)
    missed = result.unreached()
    if missed and not result.running_elsewhere:  # other workers may yet reach them
        from ajuste.search.study import unreached_text

        tune = config.tune
        budget, more = (
            (f"--timeout {tune.timeout:.0f} s", "A larger --timeout")
            if tune.timeout
            else (f"--trials {tune.trials}", "More --trials")
            if tune.trials
            else ("this run", "Running the same command again")
        )
        out.say(f"[bold]not reached[/] {plain(unreached_text(missed, budget, f'{more}, or fewer families (--model)'))}")
    if result.importances:
        shown = ", ".join(f"{name} {value:.2f}" for name, value in list(result.importances.items())[:8])
        out.say(f"[bold]importance[/] {shown}")
    if result.rescore is not None:
        rescored = result.rescore
        table = Table(
            box=None,
            pad_edge=False,
            title=f"re-scored on {rescored.folds} folds of train+val (validation {metric})",
            title_justify="left",
        )
        for column in ("trial", "search", "folds' mean", "std", ""):
            table.add_column(column, justify="right")
        for item in rescored.candidates:
            search = "-" if item.value is None else f"{item.value:.4f}"
            mark = "chosen" if item.trial == rescored.chosen else ""
            table.add_row(str(item.trial), search, f"{item.cv.mean:.4f}", f"{item.cv.std:.4f}", mark)
        out.table(table)
    chosen = result.ensemble
    if chosen is not None and not chosen.averages:
        others = len(chosen.candidates) - 1
        if others:
            out.say(
                f"[bold]ensemble[/] of one: no other of the {others} candidate trial{'s' if others != 1 else ''} "
                "lowered the validation loss"
            )
    elif chosen is not None:
        members = ", ".join(f"trial {m.trial} x{m.weight:.2f}" for m in chosen.members)
        single, both = chosen.single_best, chosen.ensemble
        out.say(
            f"[bold]ensemble[/] {members}; validation: single best accuracy {single['accuracy']:.4f} loss "
            f"{single['loss']:.4f}, ensemble accuracy {both['accuracy']:.4f} loss {both['loss']:.4f}"
        )
    if result.choice is not None:
        out.say(f"[bold]chosen[/] {_choice_line(result.best_trial, result.choice)}")
    if result.classifier is not None:
        final = (
            f"an ensemble of {len(chosen.members)} trials (--ensemble 1: trial {result.best_trial}'s model alone)"
            if chosen is not None and chosen.averages
            else f"trial {result.best_trial}'s settings"
        )
        out.say(f"[bold]final model[/] {final}; test split evaluated once:")
        out.metrics_table(result.metrics)
    elif result.final_by is not None:
        by = result.final_by
        test = by["test"]
        parts = by.get("members") or []  # absent from a record made by an older ajuste
        which = (
            "an ensemble of trials " + ", ".join(f"{m['trial']} ({m['weight']:.2f})" for m in parts)
            if len(parts) > 1
            else f"trial {by['best_trial']}"
        )
        out.say(
            f"[bold]final model[/] made by worker {plain(by['worker'])} in {plain(by['run_dir'])} ({which}): "
            f"test accuracy {test['accuracy']:.4f} on {test['n']} texts, the test split evaluated there, once"
        )
    else:
        out.say(
            f"[bold]final model[/] not made here: {result.running_elsewhere} trials still run on other workers; "
            "the last of them makes it (or run the same command with --finalize once they end)"
        )
    out.say(f"run folder [bold]{plain(result.run_dir)}[/] with report.html ({result.seconds:.1f} s)")
    out.json(result.summary())
    return 0


def report(args: argparse.Namespace) -> int:
    from ajuste.search.report import write_report

    out = _output(args)
    path = write_report(args.run)
    out.say(f"report written: [bold]{plain(path)}[/]")
    out.json({"report": str(path)})
    return 0


def _evaluation_source(args: argparse.Namespace) -> dict[str, Any]:
    """Where evaluate's labelled texts come from: DATA (a file, or a built-in dataset's name), --data FILE or
    --dataset NAME (as train takes them); exactly one, checked before the model loads."""
    from ajuste.data.builtin import BUILTIN_DATASETS

    given = [
        f"{flag} {value}"
        for flag, value in (("DATA", args.data), ("--data", args.path), ("--dataset", args.dataset))
        if value is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            "evaluate needs one source of labelled texts",
            expected="DATA (a data file or a built-in dataset name), --data FILE or --dataset NAME",
            found=" and ".join(given) if given else "none",
            fix="Keep one of them." if given else f"Run `ajuste evaluate {args.run} FILE`.",
        )
    if args.path is not None:
        if not Path(args.path).exists():
            raise DataError(f"--data {args.path} does not exist", fix="Check the path.")
        return {"path": args.path}
    name = args.data if args.dataset is None else args.dataset
    if name in BUILTIN_DATASETS:
        return {"dataset": name}
    if args.dataset is None and Path(name).exists():
        return {"path": name}
    import difflib

    near = difflib.get_close_matches(name, list(BUILTIN_DATASETS), n=1)
    raise DataError(
        f"DATA {name} is neither a data file nor a built-in dataset"
        if args.dataset is None
        else f"--dataset {name} is not a built-in dataset",
        expected=("a labelled data file, or a built-in dataset: " if args.dataset is None else "one of ")
        + ", ".join(BUILTIN_DATASETS),
        fix=f"Did you mean {near[0]}?" if near else "Check the path; `ajuste datasets` lists the built-in datasets.",
    )


def evaluate(args: argparse.Namespace) -> int:
    from ajuste.data import DataSettings, load_table
    from ajuste.data.prepare import clean
    from ajuste.runs.folder import RunFolder, load
    from ajuste.validation import validate

    out = _output(args)
    started = time.perf_counter()
    folder = RunFolder.of_model(args.run)  # None for a model folder alone: nothing to say of seen texts
    source = _evaluation_source(args)
    classifier = (  # a run's model (its own model/ folder's too), or a model folder alone
        folder.load(trust_remote_code=args.trust_remote_code)
        if folder is not None
        else load(args.run, trust_remote_code=args.trust_remote_code)
    )
    for name in ("format", "text_col", "label_col", "encoding", "data_dir"):
        if getattr(args, name, None) is not None:
            source[name] = getattr(args, name)
    table = load_table(validate(DataSettings, source, "data"))
    dataset, report = clean(table)
    if len(dataset) == 0:
        raise DataError(
            f"no labelled text to evaluate in {table.source}",
            expected="rows with a non-empty text and a label",
            found=f"{report['rows_in']} rows, of which {report['dropped_empty_text']} without text "
            f"and {report['dropped_missing_label']} without label",
            fix="Check the --text-col and --label-col choice.",
        )
    metrics = classifier.evaluate(dataset, batch_size=args.batch_size, precision=args.precision)
    dropped = report["dropped_empty_text"] + report["dropped_missing_label"]
    out.say(
        f"[bold]data[/]  {report['rows_in']} rows read, {dropped} without text or label skipped, {len(dataset)} scored"
    )
    out.metrics_table({"data": metrics}, result=True)
    per_class = Table(box=None, pad_edge=False)
    for column in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for label, values in metrics["per_class"].items():
        per_class.add_row(
            plain(label),
            f"{values['precision']:.4f}",
            f"{values['recall']:.4f}",
            f"{values['f1']:.4f}",
            str(values["support"]),
        )
    out.table(per_class)
    _confusion_table(out, metrics)
    seen = _seen_note(out, folder, dataset.texts) if folder is not None else None
    out.json(
        {
            "run_dir": str(folder.path if folder is not None else args.run),
            "data": {"rows_read": report["rows_in"], "scored": len(dataset), "skipped": dropped, "seen": seen},
            "metrics": metrics,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return 0


def _seen_note(out: Output, folder: Any, texts: list[str]) -> dict[str, int] | None:
    """Say how many of the scored texts the run trained on or chose its model on: those figures are optimistic.
    The counts, or None when the run's own texts cannot be read again as it split them."""
    from ajuste.runs.seen import seen_counts, seen_texts

    seen = seen_texts(folder)
    if seen is None:
        return None
    counts = seen_counts(texts, seen)
    if counts["train"] + counts["val"]:
        try:
            test = (folder.read_metrics() or {}).get("test") or {}
        except AjusteError:  # a damaged metrics.json: predict and evaluate need none
            test = {}
        honest = (
            f"; its test split, scored once, gave accuracy {test['accuracy']:.4f} on {test['n']:,} texts"
            if "accuracy" in test and "n" in test
            else ""
        )
        out.say(
            f"[bold]note[/]  {counts['train']:,} of these {len(texts):,} texts trained the model and "
            f"{counts['val']:,} chose it (the run's training and validation splits): the figures above are "
            f"optimistic for new texts{plain(honest)}"
        )
    return counts


#: Classes beyond which the confusion matrix is left to --json: a wider table no longer reads on a terminal.
CONFUSION_CLASSES = 12


def _confusion_table(out: Output, metrics: dict[str, Any]) -> None:
    """The confusion matrix, rows the true class and columns the predicted one."""
    labels = [str(label) for label in metrics["labels"]]
    if len(labels) > CONFUSION_CLASSES:
        out.say(f"confusion matrix: {len(labels)} classes, in --json (confusion_matrix)")
        return
    matrix = Table(box=None, pad_edge=False, title="confusion (rows: true class, columns: predicted)")
    matrix.add_column("true \\ predicted", justify="left")
    for label in labels:
        matrix.add_column(plain(label), justify="right")
    for label, row in zip(labels, metrics["confusion_matrix"]):
        matrix.add_row(plain(label), *(str(count) for count in row))
    out.table(matrix)


def predict(args: argparse.Namespace) -> int:
    from ajuste.data.readers import read_texts
    from ajuste.data.writers import check_output, write_predictions
    from ajuste.runs.folder import predictor
    from ajuste.texts import valid_text

    out = _output(args)
    if args.texts and args.input:
        raise ConfigError("give texts either as arguments or with --input", found="both")
    if not args.texts and not args.input:
        raise ConfigError("nothing to predict", fix="Give texts as arguments, or --input FILE --output FILE.")
    if args.output and not args.input:
        raise ConfigError("--output needs --input", fix="Pass --input FILE, or drop --output to print predictions.")
    if args.input and not args.output and not args.json:
        raise ConfigError(
            "--input needs --output (or --json)",
            fix="Pass --output FILE.csv|.tsv|.jsonl to keep the predictions, or --json to print them.",
        )
    if args.input and args.output and Path(args.input).resolve() == Path(args.output).resolve():
        raise ConfigError("--output would overwrite --input", fix="Choose another --output.")
    if args.output and Path(args.output).resolve().is_relative_to(Path(args.run).resolve()):
        raise ConfigError(  # a file of the model (its config, its vocabulary) would be replaced by predictions
            f"--output {args.output} is inside the run folder {args.run} that predict reads",
            fix="Choose an --output outside it.",
        )
    if args.output:  # refused before the model is read and every row predicted, not after
        check_output(args.output, args.overwrite)
    started = time.perf_counter()
    classifier = predictor(args.run, trust_remote_code=args.trust_remote_code, precision=args.precision)
    ids: list[object] | None = None
    texts: list[str | None]
    if args.input:
        texts, ids = read_texts(args.input, file_format=args.format, text_col=args.text_col, encoding=args.encoding)
    else:
        texts = [valid_text(text) for text in args.texts]  # a byte that is not UTF-8 arrives as a surrogate
    predictions = classifier.predict([t or "" for t in texts], batch_size=args.batch_size, precision=args.precision)
    seconds = round(time.perf_counter() - started, 3)
    empty = sum(1 for t in texts if not (t or "").strip())  # a text of spaces has no word to read either
    if args.output:
        path = write_predictions(
            args.output,
            texts,
            ids,
            predictions.labels,
            predictions.probabilities.tolist(),
            predictions.classes,
            overwrite=args.overwrite,
        )
        counts = dict(sorted(Counter(predictions.labels).items()))
        out.say(
            plain(f"{len(texts)} rows predicted ({', '.join(f'{k}: {v}' for k, v in counts.items())})")
            + (f", {empty} of them empty" if empty else "")
            + f" → [bold]{plain(path)}[/]"
        )
        out.json({"output": str(path), "rows": len(texts), "empty_texts": empty, "counts": counts, "seconds": seconds})
        return 0
    table = Table(box=None, pad_edge=False)
    table.add_column("label")
    for name in predictions.classes:
        table.add_column(plain(f"p({name})"), justify="right")
    table.add_column("text")
    for text, label, probs in zip(texts, predictions.labels, predictions.probabilities):
        table.add_row(plain(label), *(f"{p:.4f}" for p in probs), plain((text or "")[:80]))
    out.result(table)
    if empty:
        out.say(
            f"{empty} of the {len(texts)} texts {'is' if empty == 1 else 'are'} empty: with no word to read, "
            "the model answers what it answers for no text at all"
        )
    records = [{"text": t, **r} for t, r in zip(texts, predictions.to_records())]
    out.json({"predictions": records, "empty_texts": empty, "seconds": seconds})
    return 0


def export(args: argparse.Namespace) -> int:
    from ajuste.export import export_run

    out = _output(args)
    result = export_run(
        args.run,
        args.out,
        file_format=args.format,
        quantize=args.quantize,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
    )
    record = result.record
    out.say(
        f"[bold]exported[/] {plain(result.source)} to ONNX{' (int8 weights)' if result.quantize else ''}: "
        f"{_size(result.bytes)}"
    )
    out.say(
        f"[bold]checked[/]  {record.same_labels} of {record.checked_texts} example texts get the same label; "
        f"largest probability difference {record.max_probability_difference:.2g}"
    )
    out.say(f"run folder [bold]{plain(result.run_dir)}[/] ({result.seconds:.1f} s): predict, evaluate and serve use it")
    out.json(result.summary())
    return 0


def datasets(args: argparse.Namespace) -> int:
    from ajuste.data.builtin import BUILTIN_DATASETS, dataset_status, is_published, named_data_dir

    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise ConfigError(
            f"the data directory {args.data_dir} is not a folder",
            found="no such folder" if not Path(args.data_dir).exists() else "a file",
            fix="Pass the folder that holds the datasets (sms_spam/SMSSpamCollection...), or drop --data-dir.",
        )
    out = _output(args)
    table = Table(box=None, pad_edge=False)
    for column in ("name", "published rows", "found", "description"):
        table.add_column(column)
    listed = []
    explicit = named_data_dir(args.data_dir)
    for dataset in BUILTIN_DATASETS.values():
        origin, path = dataset_status(dataset, args.data_dir)
        published = path is not None and is_published(dataset, path)
        if path:
            where = f"{origin}: {path}" + ("" if published else " (not the published file: its sha256 differs)")
        elif explicit:  # a data directory that was named is searched alone: nothing is downloaded then
            where = f"not in {explicit} (expected at DIR/{dataset.relative_path().as_posix()})"
        else:
            where = "not yet downloaded (fetched on first use)"
        table.add_row(dataset.name, f"{dataset.rows:,}", plain(where), dataset.description)
        listed.append(
            {
                "name": dataset.name,
                "rows": dataset.rows,
                "found": origin,
                "path": str(path) if path else None,
                "published": published if path else None,
                "defaults": dataset.defaults,
                "url": dataset.url,
                "description": dataset.description,
            }
        )
    out.result(table)
    out.json({"datasets": listed})
    return 0


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def cache(args: argparse.Namespace) -> int:
    from ajuste import cache as store

    out = _output(args)
    folder, cap = store.cache_dir(), store.disk_cap()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"the cache folder {folder} is a file",
            fix="Point AJUSTE_CACHE_DIR at a folder (or unset it for the default).",
        )
    if args.action == "clear":
        removed, freed = store.clear()
        out.say(f"removed {removed} cache files ({_size(freed)}) from [bold]{plain(folder)}[/]")
        out.json({"folder": str(folder), "removed": removed, "bytes": freed})
        return 0
    found = store.entries()
    # a pipe or a log is 80 columns wide: the model's name and what was kept fold onto more lines rather than be
    # cut ("tiny-ber…"); every other column keeps its width
    folding = {"model": 10, "what": 14}  # their narrowest, "before block 5" on one line
    table = Table(box=None, pad_edge=False)
    for column in ("key", "size", "used", "model", "what", "texts", "max len", "dtype"):
        table.add_column(
            column,
            justify="right" if column in ("size", "texts", "max len") else "left",
            no_wrap=column not in folding,
            overflow="fold",
            min_width=folding.get(column),
        )
    for entry in found:
        meta = entry.meta
        # frozen layers name their model and boundary; a teacher's probabilities and a static model's piece
        # vectors name their run or encoder and their kind
        source = meta.get("source") or meta.get("teacher") or meta.get("encoder") or ""
        model = meta.get("model") or Path(str(source)).name
        table.add_row(
            entry.key[:6],
            _size(entry.bytes),
            time.strftime("%m-%d %H:%M", time.localtime(entry.last_used)),
            "damaged" if meta.get("damaged") else plain(model),
            str(meta.get("boundary") or meta.get("kind") or ""),
            str(meta.get("texts", "")),
            str(meta.get("max_length", "")),
            str(meta.get("precision", "")),
        )
    total = sum(e.bytes for e in found)
    out.result(table)
    out.say(f"{len(found)} entries, {_size(total)} in [bold]{plain(folder)}[/] (cap {_size(cap)})")
    listed = [{"key": e.key, "bytes": e.bytes, "last_used": e.last_used, **e.meta} for e in found]
    out.json({"folder": str(folder), "bytes": total, "cap_bytes": cap, "entries": listed})
    return 0
