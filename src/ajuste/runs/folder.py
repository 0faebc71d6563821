"""``RunFolder``: the one owner of a run folder's layout — its file names, staging, replacing, reading back.

Layout: ``run.yaml`` (settings, versions, and the record of what happened, every test access included),
``model/`` (the model's own files, written by ``TextClassifier.write_model``), ``metrics.json``,
``history.json``, ``split.json`` (row ids of each split); a tuning folder adds ``tune.json`` (which search,
where its study lives), ``space.yaml``, ``study.db``, ``report.html`` and a ``.lock``.

A training run is assembled under a hidden name beside its target and put in place in one rename (an
existing run is exchanged with it atomically), so a crash never leaves a half-written run that looks
finished, nor nothing where the old run was. Opening a folder reads JSON, YAML and safetensors only:
nothing in it is ever executed (a checkpoint's own code runs only with ``trust_remote_code`` given on
that very call).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from ajuste.atomic import (
    remove_leftovers,
    replace_folder,
    staging_folder,
    unsafe_place,
    unwritable_place,
    write_text,
)
from ajuste.errors import RunFolderError, checked_switch, listing, yaml_problem
from ajuste.runs.record import RunFile, RunRecord, SearchInfo
from ajuste.training.light import MODEL_CONFIG, NumpyBag, light_model
from ajuste.validation import validation_messages

if TYPE_CHECKING:  # PyTorch is imported when a model is loaded, not to read a folder
    from ajuste.training.callbacks import History
    from ajuste.training.classifier import TextClassifier

__all__ = ["RunFolder", "default_run_dir", "load"]

log = logging.getLogger(__name__)

RUN_FILE = "run.yaml"
MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
SPLIT_FILE = "split.json"
TUNE_FILE = "tune.json"
SPACE_FILE = "space.yaml"
STUDY_FILE = "study.db"
REPORT_FILE = "report.html"
LOCK_FILE = ".lock"
#: The name a search's final files are staged under, inside its folder (``.final.partial.<pid>.<random>``).
FINAL_STAGING = "final"
#: The files a finished run has besides model/, moved into a tuning folder before the model (the model last).
RESULT_FILES = (METRICS_FILE, HISTORY_FILE, SPLIT_FILE, RUN_FILE)


#: What ajuste writes in a run or search folder (besides SQLite's files beside study.db while it writes).
OWN_NAMES = frozenset(
    {RUN_FILE, MODEL_DIR, METRICS_FILE, HISTORY_FILE, SPLIT_FILE, TUNE_FILE, SPACE_FILE, STUDY_FILE, REPORT_FILE}
    | {LOCK_FILE, FINAL_STAGING}
)


def default_run_dir(source: str, family: str, root: str | Path = "runs") -> Path:
    """``runs/<data>-<family>-<time>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{source}-{family}-{stamp}")


def _clean(target: Path) -> None:
    """Remove (or restore) what a killed write of ``target`` left, saying what was done."""
    for line in remove_leftovers(target):
        log.warning("%s", line)


def _json(content: Any) -> str:
    return json.dumps(content, indent=2, allow_nan=True)


def _yaml(content: dict[str, Any]) -> str:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True)


def write_json(path: Path, content: Any) -> None:
    """A JSON file of a run being staged (the folder around it makes it atomic)."""
    path.write_text(_json(content), encoding="utf-8")


def write_yaml(path: Path, content: dict[str, Any]) -> None:
    """A YAML file of a run being staged (the folder around it makes it atomic)."""
    path.write_text(_yaml(content), encoding="utf-8")


#: How to get out of a refused output folder.
_ELSEWHERE = "Choose another [[--out||out]]."


def _own_name(name: str) -> bool:
    """Whether ajuste writes an entry of this name in a run or search folder."""
    return name in OWN_NAMES or name.startswith(f"{STUDY_FILE}-")  # study.db-journal, -wal, -shm


class RunFolder:
    """A run folder at ``path``: what it holds, where, and how it is written and read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- where things are ---------------------------------------------------------------------

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def tune_file(self) -> Path:
        return self.path / TUNE_FILE

    @property
    def space_file(self) -> Path:
        return self.path / SPACE_FILE

    @property
    def study_file(self) -> Path:
        return self.path / STUDY_FILE

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    def is_finished(self) -> bool:
        """Whether the folder holds a final model (the last thing written)."""
        return (self.model_dir / MODEL_CONFIG).is_file()

    # -- writing a training run -----------------------------------------------------------------

    def check_target(self, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
        """Refuse, before any work, to replace an existing folder unless asked to, and even when asked, to replace
        what is not a run folder or holds what the command reads (see :meth:`check_place`)."""
        target = self.path
        checked_switch(overwrite, "overwrite")
        self.check_place(inputs)
        if target.exists() and not overwrite and any(target.iterdir()):
            raise RunFolderError(
                f"the output folder {target} already exists",
                fix="Choose another [[--out||out]], or pass [[--overwrite||overwrite=True]] to replace it.",
            )
        if overwrite and self.tune_file.is_file():
            raise RunFolderError(
                f"{target} holds a search",
                fix="Choose another [[--out||out]]; [[`ajuste tune --overwrite`||ajuste.tune(..., overwrite=True)]] "
                "is the way to discard a search.",
            )
        if overwrite:
            self._refuse_foreign_content()

    def check_place(self, inputs: Iterable[str | Path | None] = ()) -> None:
        """Refuse an output folder that replacing would lose data: a file, one below a file, the current folder or
        one above it, or one that holds (or lies inside) a file or folder the command reads (``inputs``: its data,
        a teacher, a source run, a checkpoint)."""
        target = self.path
        unsafe = unsafe_place(target)
        if unsafe is not None:
            raise RunFolderError(f"the output {unsafe}", fix=_ELSEWHERE)
        # before the work, not after it: a training lost at its last step to a read-only disk
        problem = unwritable_place(target)
        if problem is not None:
            raise RunFolderError(
                f"cannot write the output folder {target}",
                expected="a place this user may create folders in",
                found=problem.strerror or type(problem).__name__,
                fix="Choose another [[--out||out]], or give this user write permission there.",
            )
        resolved = target.resolve()
        for given in inputs:
            if given is None or not Path(given).exists():
                continue
            source = Path(given).resolve()
            if source == resolved or resolved in source.parents or source in resolved.parents:
                place = (
                    "would be inside"
                    if source in resolved.parents
                    else "would replace"
                    if source == resolved
                    else "holds"
                )
                raise RunFolderError(
                    f"the output folder {target} {place} {given}, which this command reads", fix=_ELSEWHERE
                )

    def _refuse_foreign_content(self) -> None:
        """--overwrite replaces a run folder (or an empty one), never a folder of other files, nor a run folder
        that also holds files ajuste did not write (the user's notes): replacing it would lose them."""
        if not self.path.is_dir():
            return
        if not (self.is_finished() or self.run_file.is_file() or self.tune_file.is_file()):
            names = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)
            if names:
                raise RunFolderError(
                    f"[[--overwrite||overwrite=True]] replaces a run folder, and {self.path} is not one",
                    expected=f"a folder written by ajuste ({RUN_FILE} or {MODEL_DIR}/{MODEL_CONFIG}), or an empty one",
                    found=listing(names),
                    fix="Choose another [[--out||out]], or move those files away yourself.",
                )
            return
        foreign = sorted(p.name for p in self.path.iterdir() if not _own_name(p.name))
        if foreign:
            raise RunFolderError(
                f"[[--overwrite||overwrite=True]] would replace {self.path}, which also holds files ajuste did not "
                "write",
                found=listing(foreign),
                fix="Move them out of the folder first, or choose another [[--out||out]].",
            )

    def clean(self) -> None:
        """Remove (or restore) what a killed write left beside this folder, and say so."""
        _clean(self.path)

    def write(
        self,
        classifier: TextClassifier,
        run_file: RunFile,
        *,
        metrics: dict[str, Any],
        split: dict[str, Any],
        overwrite: bool = False,
    ) -> RunFolder:
        """Write a complete run at this path: staged beside it, then put in place in one rename."""
        self.check_target(overwrite)
        self.clean()
        staging = staging_folder(self.path)
        try:
            RunFolder(staging)._write_files(classifier, run_file, metrics=metrics, split=split)
            replace_folder(staging, self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self

    def _write_files(
        self, classifier: TextClassifier, run_file: RunFile, *, metrics: dict[str, Any], split: dict[str, Any]
    ) -> None:
        """Every file of a finished run into this (empty, staging) folder."""
        self.model_dir.mkdir()
        classifier.write_model(self.model_dir)
        history = classifier.history_.to_dict() if classifier.history_ else {}
        for name, content in ((METRICS_FILE, metrics), (HISTORY_FILE, history), (SPLIT_FILE, split)):
            write_json(self.path / name, content)
        write_yaml(self.run_file, run_file.to_data())

    def write_derived(
        self,
        source: RunFolder,
        write_model: Callable[[Path], None],
        run_file: Callable[[], RunFile],
        *,
        overwrite: bool = False,
    ) -> RunFolder:
        """A run made from ``source`` without training (an export): ``write_model`` fills ``model/``, then
        ``run_file()`` gives run.yaml; the metrics, history, split and report are copied; staged beside this
        path, put in place in one rename."""
        self.check_target(overwrite)
        self.clean()
        staging = staging_folder(self.path)
        try:
            staged = RunFolder(staging)
            staged.model_dir.mkdir()
            write_model(staged.model_dir)
            for name in (METRICS_FILE, HISTORY_FILE, SPLIT_FILE, REPORT_FILE):
                if (source.path / name).is_file():
                    shutil.copyfile(source.path / name, staging / name)
            write_yaml(staged.run_file, run_file().to_data())
            replace_folder(staging, self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self

    # -- reading ----------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder; refused, with what is there, when it holds no model."""
        path = Path(path)
        if not path.exists():
            raise RunFolderError(f"run folder {path} does not exist", fix="Check the path; `ajuste train` writes one.")
        folder = cls(path)
        if folder.is_finished():
            return folder
        if model_folder(path) is not None:  # a run's model folder, or one that TextClassifier.save wrote
            run = cls._holding(path)
            raise RunFolderError(
                f"{path} is a model folder, not a run folder",
                expected="a folder written by `ajuste train` or `ajuste tune` (its model, data and split)",
                fix=f"Pass the run folder that holds it: {run.path}."
                if run is not None
                else "ajuste.load(), `ajuste predict` and `ajuste evaluate` read a model folder; "
                "this needs the run folder.",
            )
        raise RunFolderError(
            f"{path} is not a complete run folder",
            expected=f"{path}/{MODEL_DIR}/{MODEL_CONFIG}",
            found=(", ".join(sorted(p.name for p in path.iterdir())) or "an empty folder")
            if path.is_dir()
            else "a file",
            fix="Point at a folder written by `ajuste train` or `ajuste tune` (a tuning run has one once it ends).",
        )

    def load(self, *, trust_remote_code: bool = False) -> TextClassifier:
        """The trained classifier, with its history when history.json is readable (prediction does not need it)."""
        from ajuste.training.classifier import load_model

        classifier = load_model(self.model_dir, trust_remote_code=trust_remote_code)
        try:
            classifier.history_ = self.read_history()
        except RunFolderError as exc:
            log.warning("%s", exc)
        return classifier

    def predictor(self, *, trust_remote_code: bool = False, precision: str | None = None) -> TextClassifier | NumpyBag:
        """What predicts fastest from a cold start: a bag model in NumPy (no PyTorch import), else :meth:`load`."""
        light = light_model(self.model_dir, precision)
        if light is not None:
            log.info("%s: a bag of embeddings, computed in NumPy (no PyTorch)", self.model_dir)
        return light if light is not None else self.load(trust_remote_code=trust_remote_code)

    @classmethod
    def of_model(cls, path: str | Path) -> RunFolder | None:
        """The run that ``path`` names: a run folder, or a run's own model folder; None for a model folder that
        ``TextClassifier.save`` wrote (no data, split or scores beside it). Refused as :meth:`open` refuses."""
        path = Path(path).expanduser()
        return cls.open(path) if model_folder(path) is None else cls._holding(path)

    @classmethod
    def _holding(cls, model: Path) -> RunFolder | None:
        """The finished run whose ``model/`` folder ``model`` is; None for a model folder standing alone."""
        run = cls(model.parent)
        return run if model.name == MODEL_DIR and run.is_finished() else None

    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RunFolderError(
                f"{path} is damaged",
                expected="a JSON file written by ajuste",
                found=str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__,
                fix="Run the search again (`ajuste tune --overwrite`), or restore the folder from a copy."
                if path == self.tune_file
                else "Train again, or restore the folder from a copy.",
            ) from None

    def _read_object(self, path: Path) -> dict[str, Any] | None:
        """A JSON object written by ajuste; None when the file is absent."""
        if not path.is_file():
            return None
        content = self._read_json(path)
        if not isinstance(content, dict):
            raise RunFolderError(f"{path} is damaged", expected="a JSON object", found=type(content).__name__)
        return content

    def read_metrics(self) -> dict[str, Any] | None:
        """metrics.json (None before a final model exists)."""
        return self._read_object(self.metrics_file)

    def read_split(self) -> dict[str, Any] | None:
        """split.json: the source rows of each split (None before a final model exists)."""
        return self._read_object(self.path / SPLIT_FILE)

    def read_history(self) -> History | None:
        if not self.history_file.is_file():
            return None
        content = self._read_json(self.history_file)
        if not isinstance(content, dict):
            raise RunFolderError(
                f"{self.history_file} is damaged", expected="a JSON object", found=type(content).__name__
            )
        if not content:
            return None
        from ajuste.training.callbacks import History

        try:
            return History.from_dict(content)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunFolderError(f"{self.history_file} is damaged", found=str(exc)[:160]) from None

    def read_run_file(self) -> RunFile | None:
        """run.yaml, typed (None when the folder has none yet)."""
        if not self.run_file.is_file():
            return None
        try:
            content = yaml.safe_load(self.run_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RunFolderError(
                f"{self.run_file} is not valid YAML: {yaml_problem(exc)[:160]}",
                fix="Restore the folder from a copy, or train again.",
            ) from None
        if not isinstance(content, dict) or "record" not in content:
            raise RunFolderError(f"{self.run_file} is damaged", expected="settings and a record")
        try:
            return RunFile.from_data(content)
        except ValidationError as exc:
            found = "; ".join(validation_messages(exc))[:300]
            raise RunFolderError(f"{self.run_file} is damaged", found=found) from None

    # -- a tuning run's folder --------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One search at a time in a folder (another machine uses its own folder and a shared storage). A folder
        this made is removed again when what runs under the lock fails before writing anything in it."""
        made = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        handle = (self.path / LOCK_FILE).open("a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise RunFolderError(
                    f"another `ajuste tune` is running in {self.path}",
                    fix="Wait for it to end (or stop it with Ctrl-C) before resuming or overwriting this search; "
                    "another [[--out||out]] (with [[--storage||storage]] to share the study) runs beside it.",
                ) from None
            yield
        except BaseException:
            if made and [p.name for p in self.path.iterdir()] == [LOCK_FILE]:
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        finally:
            handle.close()

    def check_search_target(self, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
        """Before a search starts in this folder: refused as :meth:`check_target` refuses a run's, except that a
        folder holding a search is resumed (or, with ``overwrite``, started afresh)."""
        checked_switch(overwrite, "overwrite")
        self.check_place(inputs)
        if not self.holds_other_content():
            if overwrite:
                self._refuse_foreign_content()
            return
        if not overwrite:
            raise RunFolderError(
                f"the output folder {self.path} already exists and holds no search",
                fix="Choose another [[--out||out]], or pass [[--overwrite||overwrite=True]] to replace it.",
            )
        self._refuse_foreign_content()

    def holds_other_content(self) -> bool:
        """A folder that exists, is not empty, and holds no search: never taken over by a search."""
        if not self.path.exists():
            return False
        if not self.path.is_dir():
            return True
        return not self.tune_file.is_file() and any(p.name != LOCK_FILE for p in self.path.iterdir())

    def clear(self) -> None:
        """Remove everything but the lock (held by the caller): a search started afresh."""
        for entry in self.path.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def clean_search(self) -> None:
        """Under the lock: remove what a killed search left inside the folder (staged final files)."""
        for name in (FINAL_STAGING, RUN_FILE, REPORT_FILE, TUNE_FILE, SPACE_FILE):
            _clean(self.path / name)

    def read_search_info(self) -> SearchInfo | None:
        if not self.tune_file.is_file():
            return None
        content = self._read_json(self.tune_file)
        if not isinstance(content, dict):
            raise RunFolderError(f"{self.tune_file} is damaged", expected="a JSON object", found=type(content).__name__)
        storage = content.get("storage")
        if isinstance(storage, str) and storage.startswith("sqlite:") and storage.endswith(f"/{STUDY_FILE}"):
            content = {**content, "storage": None}  # written by an older ajuste: the folder's own study.db
        try:
            return SearchInfo.model_validate(content)
        except ValidationError as exc:
            found = "; ".join(validation_messages(exc))[:300]
            raise RunFolderError(f"{self.tune_file} is damaged", found=found) from None

    def write_search_info(self, info: SearchInfo, space_yaml: str) -> None:
        write_text(self.space_file, space_yaml)
        write_text(self.tune_file, _json(info.model_dump(mode="json")))

    def storage_url(self, info: SearchInfo) -> str:
        """The study's storage: the shared database's URL, or this folder's own study.db where it is now."""
        return info.storage or f"sqlite:///{self.study_file.resolve()}"

    def write_final(
        self,
        classifier: TextClassifier,
        run_file: RunFile,
        *,
        metrics: dict[str, Any],
        split: dict[str, Any],
    ) -> None:
        """A search's final model and record: staged inside the folder, moved in file by file, the model last
        (the moment the run looks finished)."""
        staging = staging_folder(self.path / FINAL_STAGING)
        try:
            RunFolder(staging)._write_files(classifier, run_file, metrics=metrics, split=split)
            if self.model_dir.exists():  # an earlier final model: the run no longer looks finished
                shutil.rmtree(self.model_dir)
            for name in RESULT_FILES:
                os.replace(staging / name, self.path / name)
            os.replace(staging / MODEL_DIR, self.model_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def update_record(self, record: RunRecord) -> None:
        """Replace the record of run.yaml, atomically, keeping its settings."""
        run_file = self.read_run_file()
        if run_file is None:
            raise RunFolderError(f"{self.run_file} does not exist", fix="Run the search again to write it.")
        write_text(self.run_file, _yaml(run_file.model_copy(update={"record": record}).to_data()))


def load(path: str | Path, *, trust_remote_code: bool = False) -> TextClassifier:
    """A trained classifier from a run folder (or a model folder written by ``TextClassifier.save``).

    Reads JSON and safetensors only. A model that needs its checkpoint's own Python code is refused
    unless ``trust_remote_code=True`` is given here: a run folder can never turn that on by itself.
    """
    from ajuste.training.classifier import load_model

    if not isinstance(path, (str, Path)) or not str(path):
        raise RunFolderError("load takes the path of a run or model folder", found=repr(path))
    path = Path(path).expanduser()  # "~/runs/x" is the user's, not a folder named "~" here
    if model_folder(path) is not None:
        return load_model(path, trust_remote_code=trust_remote_code)
    return RunFolder.open(path).load(trust_remote_code=trust_remote_code)


def model_folder(path: Path) -> Path | None:
    """``path`` when it is a model folder (``TextClassifier.save``'s, or a run's ``model/``), else None."""
    return path if (path / MODEL_CONFIG).is_file() and not (path / MODEL_DIR / MODEL_CONFIG).is_file() else None


def predictor(
    path: str | Path, *, trust_remote_code: bool = False, precision: str | None = None
) -> TextClassifier | NumpyBag:
    """What predicts fastest from a cold start (see :meth:`RunFolder.predictor`), from a run or model folder."""
    model = model_folder(Path(path).expanduser())
    if model is None:
        return RunFolder.open(path).predictor(trust_remote_code=trust_remote_code, precision=precision)
    light = light_model(model, precision)
    if light is not None:
        log.info("%s: a bag of embeddings, computed in NumPy (no PyTorch)", model)
    return light if light is not None else load(model, trust_remote_code=trust_remote_code)


def read_paths(config: Any) -> list[str | None]:
    """What a run's or a search's settings name for reading (an output folder must not replace them): its data
    files and data folder, a teacher and its unlabelled texts, a model's checkpoint or encoder."""
    data, distill = config.data, getattr(config, "distill", None)
    model = config.model if isinstance(config.model, dict) else config.model.model_dump()
    return [
        data.path,
        data.val_path,
        data.test_path,
        data.data_dir,
        distill.teacher if distill else None,
        distill.unlabeled if distill else None,
        model.get("checkpoint"),
        model.get("encoder"),
    ]
