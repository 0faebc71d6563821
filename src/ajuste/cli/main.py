"""``ajuste``: train, evaluate, predict, tune, report and list datasets from the command line.

Exit codes: 0 success, 2 a problem the user can fix (one line on stderr: what was expected, what was
found, how to fix it), 1 an internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from ajuste.cli import commands
from ajuste.cli.options import add_data_flags, add_model_flags, add_train_flags, flag_of_setting, setting_choices
from ajuste.cli.serving import add_serve_parser
from ajuste.errors import AjusteError, CommandLineWording
from ajuste.models.registry import default_families, named_families
from ajuste.models.settings import PRECISIONS
from ajuste.search.settings import TuneSettings

__all__ = ["build_parser", "main"]


class Parser(argparse.ArgumentParser):
    """argparse with errors on one line, exit code 2, and a pointer to --help."""

    _given: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # a shortened flag (--time for --timeout) would change meaning the day a second flag shares its start
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(
            f"error: {message}{_dash_hint(message, self._given)}. Run `{self._helping()} --help` for the options.\n"
        )
        raise SystemExit(2)

    def _helping(self) -> str:
        """The command whose --help to point at: the one given (``ajuste distill``), even when the top-level parser
        found the problem (an option that command does not take)."""
        command = next((word for word in self._given if not word.startswith("-")), None)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                return str(action.choices[command].prog)
        return self.prog


def _dash_hint(message: str, given: Sequence[str]) -> str:
    """Why a flag's value went missing when the value starts with '-' (``--timeout -1m``): argparse read it as
    an option. Empty when that is not what happened."""
    found = re.match(r"argument (\S+): expected one argument", message)
    if found is None:
        return ""
    flags = found.group(1).split("/")
    for place, word in enumerate(given[:-1]):
        following = given[place + 1]
        if word in flags and following.startswith("-") and len(following) > 1:
            return f" ({following} starts with '-', so it was read as an option: write {word}={following})"
    return ""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--json", action="store_true", help="Make the last line of stdout one JSON object.")
    group.add_argument("--quiet", "-q", action="store_true", help="No progress bars, and no tables but the result.")
    group.add_argument("--verbose", "-v", action="store_true", help="Log what every step does, on stderr.")


def _source(parser: argparse.ArgumentParser, *, prepare: bool = True) -> None:
    """``--dataset`` or ``--data``, and the options that read (and with ``prepare``, prepare) the data."""
    source = parser.add_argument_group("data source")
    source.add_argument("--dataset", help="A built-in dataset (see `ajuste datasets`).")
    source.add_argument("--data", dest="path", metavar="FILE", help="A data file: CSV, TSV, JSONL, Parquet, lines.")
    add_data_flags(parser, prepare=prepare)


def _opening(parser: argparse.ArgumentParser) -> None:
    """Flags of the commands that open a run folder: precision, and whether its checkpoint's code may run."""
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None, help="Arithmetic of prediction (default: the model's)."
    )
    _trust(parser)


def _trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="Allow the Python code that the run folder's checkpoint brings to run (off: refused with exit 2).",
    )


def _teaching(group: argparse._ArgumentGroup) -> None:
    """How a student learns from its teacher: ``ajuste distill``, and ``ajuste tune --distill-from``."""
    group.add_argument(
        "--temperature", type=float, help="Softening of both models' probabilities (2; 1 is none, higher is softer)."
    )
    group.add_argument(
        "--alpha", type=float, help="Weight of the true label against the teacher on labelled texts, 0 to 1 (0.5)."
    )
    group.add_argument(
        "--augment",
        type=int,
        metavar="N",
        help="Augmented copies of each training text (word dropout, nearby swaps, n-grams), teacher-labelled (0).",
    )
    group.add_argument(
        "--unlabeled", metavar="FILE", help="Texts without labels, labelled by the teacher: one per line, or a column."
    )
    group.add_argument("--unlabeled-col", metavar="NAME", help="Column of the texts in --unlabeled.")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ajuste", description="Train, evaluate and use text classifiers.")
    parser.add_argument("--version", action="version", version=f"ajuste {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    train = sub.add_parser(
        "train",
        help="Prepare data, train a model, evaluate it, write a run folder.",
        description="Prepare the data, build, compile and fit a model, evaluate it on "
        "validation and (once) on test, and write a run folder.",
    )
    _source(train)
    add_model_flags(train)
    add_train_flags(train, subset=True)
    run = train.add_argument_group("run")
    run.add_argument("--config", metavar="YAML", help="Settings file (a run.yaml works); flags override it.")
    run.add_argument("--seed", type=int, help="Seed of split, balancing, initialisation, shuffling (123).")
    run.add_argument("--out", metavar="DIR", help="Run folder to write (default runs/<data>-<model>-<time>).")
    run.add_argument("--overwrite", action="store_true", help="Replace --out if it exists.")
    _common(train)
    train.set_defaults(handler=commands.train)

    evaluate = sub.add_parser(
        "evaluate",
        help="Evaluate a trained run on a labelled data file or dataset.",
        description="Score a run folder's model on every labelled row of DATA (a file or "
        "a built-in dataset name; or, as train takes them, --data FILE or --dataset NAME): accuracy with a 95% "
        "interval, macro-F1, per class.",
    )
    evaluate.add_argument("run", metavar="RUN", help="Run folder of `ajuste train`, or a model folder of save().")
    evaluate.add_argument("data", metavar="DATA", nargs="?", help="Labelled data file, or a built-in dataset name.")
    _source(evaluate, prepare=False)
    evaluate.add_argument("--batch-size", type=int, default=None, help="Texts per batch.")
    _opening(evaluate)
    _common(evaluate)
    evaluate.set_defaults(handler=commands.evaluate)

    predict = sub.add_parser(
        "predict",
        help="Predict labels for texts or a file.",
        description="Predict with a run folder's model: texts given as arguments, or every "
        "row of --input written in order, with its row number and id, to --output.",
    )
    predict.add_argument("run", metavar="RUN", help="Run folder of `ajuste train`, or a model folder of save().")
    predict.add_argument("texts", metavar="TEXT", nargs="*", help="Texts to classify.")
    predict.add_argument("--input", metavar="FILE", help="File of texts: CSV, TSV, JSONL, Parquet, or one per line.")
    predict.add_argument("--output", metavar="FILE", help="Where to write predictions (.csv, .tsv or .jsonl).")
    predict.add_argument("--text-col", help="Column of the texts in --input (guessed when obvious).")
    predict.add_argument(
        "--format",
        choices=("auto", "csv", "tsv", "jsonl", "parquet", "text", "lines"),
        default="auto",
        help="Format of --input; .txt means one text per line.",
    )
    predict.add_argument("--encoding", default="utf-8", help="Text encoding of --input (utf-8).")
    predict.add_argument("--batch-size", type=int, default=None, help="Texts per batch.")
    _opening(predict)
    predict.add_argument("--overwrite", action="store_true", help="Replace --output if it exists.")
    _common(predict)
    predict.set_defaults(handler=commands.predict)

    tune = sub.add_parser(
        "tune",
        help="Search model and training settings, refit the best, test it once.",
        description="Search the model family, architecture and training settings on the validation "
        "split (the study is kept in a database: the same command resumes it), refit the best "
        "settings, evaluate the test split once, and write a run folder with report.html.",
    )
    _source(tune)
    models = tune.add_argument_group("model")
    models.add_argument(
        "--model",
        metavar="NAME",
        help=f"Family to search ({', '.join(named_families())}), several as bag,minilm, or a checkpoint "
        f"(default: {','.join(default_families())}).",
    )
    add_train_flags(tune)
    search = tune.add_argument_group("search")
    search.add_argument(
        "--sampler",
        choices=setting_choices(TuneSettings, "sampler"),
        help="How the next settings are chosen (tpe).",
    )
    search.add_argument(
        "--pruner", choices=setting_choices(TuneSettings, "pruner"), help="How hopeless trials are stopped (median)."
    )
    search.add_argument("--trials", type=int, metavar="N", help="Total trials of the study, resumed runs included.")
    search.add_argument("--timeout", metavar="TIME", help="Search time of this run: 600, 90s, 10m, 1h.")
    search.add_argument(
        "--metric", choices=setting_choices(TuneSettings, "metric"), help="Validation score to optimise (accuracy)."
    )
    search.add_argument(
        "--refit",
        choices=setting_choices(TuneSettings, "refit"),
        help="Final model trained on train, or on train+val (train; train+val under --cv and --rescore).",
    )
    search.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="Score each trial by stratified K-fold cross-validation over train+val (the folds' mean), then refit "
        "the best on train+val; for small validation splits. Default: the validation split alone.",
    )
    search.add_argument(
        "--rescore",
        type=int,
        metavar="N",
        help="When the search ends, score the N best distinct trials again by stratified 5-fold cross-validation "
        "over train+val and refit the best of them on train+val (its estimated time is kept back from --timeout). "
        "Default: the best trial on the validation split.",
    )
    search.add_argument(
        "--screen",
        metavar="auto|off|N",
        help="Train each trial first on a stratified subset of N training texts and on all of them only if it "
        "ranks in the better half of the screens so far, for the epochs that fit in the --timeout left; where none "
        "fits, its screen's model is its model (auto: a quarter, from 4,000 training texts; off: never).",
    )
    search.add_argument(
        "--ensemble",
        type=int,
        metavar="K",
        help="Final model: the average of up to K of the best distinct trials' models, chosen greedily on "
        "validation: a member joins only where it lowers the validation loss (1: the best trial's alone). "
        "Default: 5; 1 under --cv, --rescore, --refit train+val and --distill-from.",
    )
    search.add_argument(
        "--storage",
        metavar="URL",
        help="Share the study: journal:FILE (processes of one machine) or postgresql+psycopg://USER@HOST:PORT/DB "
        "(machines; the password from PGPASSWORD or ~/.pgpass). Default: study.db in the run folder.",
    )
    search.add_argument("--study", metavar="NAME", help="Study name in --storage (default: from the settings).")
    search.add_argument(
        "--heartbeat",
        type=int,
        metavar="SECONDS",
        help="On a shared database: a worker's heartbeat; its trial is run again after three missed (60).",
    )
    search.add_argument(
        "--finalize",
        action="store_true",
        help="Run no trial: make the shared study's final model (once per study) or show the one made.",
    )
    search.add_argument(
        "--startup-trials", type=int, metavar="N", help="Random trials before a model-based sampler models (8)."
    )
    teaching = tune.add_argument_group("students of a teacher")
    teaching.add_argument(
        "--distill-from",
        metavar="RUN",
        help="Search students of this trained run: every trial learns from its probabilities too, on its data and "
        "split (default families: bag, gpt).",
    )
    _teaching(teaching)
    run = tune.add_argument_group("run")
    run.add_argument("--config", metavar="YAML", help="Settings file: data, model, train, space, tune, seed, out.")
    run.add_argument("--seed", type=int, help="Seed of split, sampler and training (123).")
    run.add_argument("--out", metavar="DIR", help="Run folder (default runs/tune-<data>-<fingerprint>).")
    run.add_argument("--overwrite", action="store_true", help="Discard the study in --out and start afresh.")
    _common(tune)
    tune.set_defaults(handler=commands.tune)

    report = sub.add_parser(
        "report",
        help="Rebuild report.html of a tuning run folder (also while it runs).",
        description="Rebuild RUN/report.html from the study: optimisation history, parameter "
        "importances, score against the main parameters, learning curves, final confusion matrix.",
    )
    report.add_argument("run", metavar="RUN", help="Run folder written by `ajuste tune`.")
    _common(report)
    report.set_defaults(handler=commands.report)

    cache = sub.add_parser(
        "cache",
        help="List or clear the cache of frozen-layer outputs.",
        description="The freeze-boundary cache keeps what the frozen layers of a pretrained model compute "
        "for each text, so that epochs, trials and later runs skip them. It lives in $AJUSTE_CACHE_DIR "
        "(default ~/.cache/ajuste), capped by $AJUSTE_CACHE_SIZE (default 4GB; least recently used first out).",
    )
    cache.add_argument("action", choices=("list", "clear"), nargs="?", default="list", help="list (default) or clear.")
    _common(cache)
    cache.set_defaults(handler=commands.cache)

    export = sub.add_parser(
        "export",
        help="Export a run's model to ONNX (fp32 or int8) for fast CPU prediction.",
        description="Write a new run folder whose model ONNX Runtime computes: predict, evaluate, serve and "
        "ajuste.load use it like any run. The export is checked against the PyTorch model before it is kept.",
    )
    export.add_argument("run", metavar="RUN", help="Run folder written by `ajuste train` or `ajuste tune`.")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="Export format (onnx).")
    export.add_argument(
        "--quantize", choices=("int8",), default=None, help="Store the weights as int8 (smaller, faster on CPU)."
    )
    export.add_argument("--out", metavar="DIR", help="Folder to write (default: RUN-onnx or RUN-onnx-int8).")
    export.add_argument("--overwrite", action="store_true", help="Replace --out if it exists.")
    _trust(export)
    _common(export)
    export.set_defaults(handler=commands.export)

    distill = sub.add_parser(
        "distill",
        help="Train a cheap student on a trained run's probabilities (a transformer's accuracy at a bag's cost).",
        description="Train a student model on the teacher run's class probabilities (softened by --temperature, "
        "mixed with the true labels by --alpha) over the teacher's training texts, augmented copies of them and "
        "unlabelled texts; choose it on the teacher's validation split, evaluate the teacher's test split once, "
        "and time both models' prediction. The student is an ordinary run folder.",
    )
    distill.add_argument("teacher", metavar="TEACHER_RUN", help="Run folder of the teacher (ajuste train or tune).")
    student = distill.add_argument_group("student model")
    student.add_argument(
        "--student",
        dest="model",
        default="bag",
        metavar="NAME",
        help="Family of the student, trained by gradient descent: bag (default), static (the teacher's piece "
        "vectors under a linear layer; --vectors trained trains them too), gpt, or another one.",
    )
    add_model_flags(student, choose=False, students=True)
    add_train_flags(distill)
    _teaching(distill.add_argument_group("distillation"))
    run = distill.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", help="Run folder to write (default runs/<data>-<student>-<time>).")
    run.add_argument("--overwrite", action="store_true", help="Replace --out if it exists.")
    _common(distill)
    distill.set_defaults(handler=commands.distill)

    datasets = sub.add_parser("datasets", help="List the built-in datasets and where they are found.")
    datasets.add_argument("--data-dir", help="Folder holding built-in datasets (default $AJUSTE_DATA_DIR).")
    _common(datasets)
    datasets.set_defaults(handler=commands.datasets)

    add_serve_parser(sub, _opening, _common)
    return parser


#: What a Ctrl-C leaves behind, by command, when the command itself has nothing more precise to say.
_INTERRUPTED = {
    "train": "training stopped; nothing was written (a run folder appears only once complete)",
    "tune": "the search was stopped before its first trial; nothing was kept but the run folder's settings",
    "predict": "prediction stopped; no --output file was written (it appears only once complete)",
    "evaluate": "evaluation stopped; nothing was written",
    "export": "export stopped; nothing was written (the exported folder appears only once checked)",
    "distill": "distillation stopped; nothing was written (a run folder appears only once complete)",
}


def _version() -> str:
    from ajuste import __version__

    return __version__


def _configure_logging(verbose: bool) -> None:
    stderr = logging.StreamHandler()
    stderr.addFilter(CommandLineWording())  # a quoted error names the flags, as the error line does
    logging.basicConfig(  # nothing changes where the root logger has handlers already (ajuste run from Python)
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=[stderr],
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "transformers" in sys.modules:  # imported already (ajuste used from Python): tell it directly
        transformers = sys.modules["transformers"]
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    else:  # else as it reads them when a command imports it: not before, it takes a third of a second
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not verbose:  # the hub client logs every retry: the one error line must stay alone on stderr
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def _named_by_flags(message: str, given: Sequence[str]) -> str:
    """A settings problem named by the flag the user typed (``--timeout: expected a duration...``) rather than by
    the setting it fills (``tune.timeout``), where that flag was given; a value from a config file keeps its
    setting's name, which is what the file says."""
    prefix = "invalid settings: "
    if not message.startswith(prefix):
        return message
    flags = flag_of_setting()
    typed = {word.split("=", 1)[0] for word in given if word.startswith("--")}
    problems = []
    for problem in message.removeprefix(prefix).split("; "):
        where, colon, rest = problem.partition(": ")
        flag = flags.get(where)
        if colon and flag in typed:
            problems.append(f"{flag}{colon}{rest}")
        elif colon:  # a check across a section's settings (``model: emb_dim must be a multiple of num_heads``)
            problems.append(f"{where}{colon}{_fields_named_by_flags(where, rest, flags, typed)}")
        else:
            problems.append(problem)
    return prefix + "; ".join(problems)


def _fields_named_by_flags(section: str, text: str, flags: Mapping[str, str], typed: set[str]) -> str:
    """``text`` with each of ``section``'s settings named by its flag, when one of them was typed: the user then
    set them on the command line, and a flag is what they can change (``--emb-dim must be a multiple of
    --num-heads``)."""
    # names with an underscore only: a plain word (trials, refit, checkpoint) is also the message's prose
    words = re.findall(r"(?<![-\w])([a-z][a-z0-9]*_[a-z0-9_]+)\b", text)
    fields = {word for word in words if f"{section}.{word}" in flags}
    if not any(flags[f"{section}.{field}"] in typed for field in fields):
        return text
    return re.sub(
        r"(?<![-\w])(" + "|".join(sorted(fields, key=len, reverse=True)) + r")\b",
        lambda match: flags[f"{section}.{match.group(1)}"],
        text,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    if getattr(args, "storage", None):
        # Workers of one shared study often share a machine: torch's OpenMP threads then wait for work without
        # spinning, or N workers slow each other down many times over (a test by hand: 2 workers on 2 cores, 20
        # bag trials on sms-spam, 189 s spinning, 26 s not). Before torch is imported; an explicit setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    terminated: list[int] = []
    previous = _stop_on_sigterm(terminated) if args.command != "serve" else None  # serve stops on its own
    try:  # torch's threads are set where torch is first used (loading or training a model)
        return int(args.handler(args) or 0)
    except AjusteError as exc:
        sys.stderr.write(f"error: {_named_by_flags(exc.for_command_line(), sys.argv[1:] if argv is None else argv)}\n")
        return 2
    except KeyboardInterrupt as exc:
        said = "terminated (SIGTERM)" if terminated else "interrupted"
        wording = getattr(exc, "for_command_line", None)  # a search says what to run next in flags
        what = wording() if wording is not None else str(exc)
        sys.stderr.write(f"{said}: {what or _INTERRUPTED.get(args.command, 'nothing was changed')}.\n")
        return 128 + signal.SIGTERM if terminated else 130
    except BrokenPipeError:  # the reader of stdout stopped early (`| head`): done, as a Unix tool is, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # or the exit's flush fails again
        return 128 + signal.SIGPIPE
    except Exception as exc:  # an internal error: one line, the traceback only on request
        if os.environ.get("AJUSTE_DEBUG"):
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Set AJUSTE_DEBUG=1 for the traceback, and please report it.\n"
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm(terminated: list[int]) -> signal.Handlers | Any | None:
    """SIGTERM (what ``timeout``, systemd, docker and a batch system send) stops a command as Ctrl-C does: a
    search marks its trial interrupted (the same command runs it again), a staged folder is removed, and the
    command says so; by default Python would die on the spot, saying nothing. The handler it replaced, or None
    where signals cannot be handled (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(number: int, frame: Any) -> None:
        terminated.append(number)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    raise SystemExit(main())
