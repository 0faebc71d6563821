"""No lost work: a running search is never deleted, moved and copied searches stay apart, a replaced run is
never missing, a killed write's leftovers are cleaned, and interruptions and damaged files say what they did."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from ajuste.atomic import exchange_folders, leftovers, remove_leftovers
from ajuste.errors import TrainingError
from ajuste.runs import RunFolder
from ajuste.training.classifier import TextClassifier
from tests.conftest import CliResult, make_texts, write_csv

Cli = Callable[..., CliResult]
SPACE: dict[str, Any] = {"model.embed_dim": [8, 16], "train.epochs": [1, 2], "model.buckets": 1000, "train.lr": 0.05}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(60, seed=3)
    return write_csv(tmp_path_factory.mktemp("lost-work") / "data.csv", texts, labels)


def tune_args(data: Path, out: Path, *flags: str) -> list[str]:
    config = out.parent / f"{out.name}-space.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump({"space": SPACE}), encoding="utf-8")
    return ["tune", "--data", str(data), "--model", "bag", "--config", str(config), "--out", str(out), *flags]


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    return result


def one_line_error(result: CliResult, code: int = 2) -> str:
    assert result.code == code, f"exit {result.code}\nstdout: {result.out[-2000:]}\nstderr: {result.err[-2000:]}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    return lines[0]


def trials_in(folder: Path) -> int:
    run = RunFolder(folder)
    info = run.read_search_info()
    assert info is not None
    return len(optuna.load_study(study_name=info.study, storage=run.storage_url(info)).get_trials())


def train_args(data: Path, out: Path, *flags: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--embed-dim",
        "8",
        "--buckets",
        "100",
        "--epochs",
        "1",
        "--out",
        str(out),
        *flags,
    ]


def killed(code: str) -> None:
    """Run ``code`` in a process that dies in the middle (``os._exit``), as a kill would leave it."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr


# -- searches ---------------------------------------------------------------------------------------


def test_overwrite_never_deletes_a_search_that_is_running(cli: Cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(cli(*tune_args(data, out, "--trials", "2", "--quiet")))
    with (out / ".lock").open("a") as other_search:  # what a running `ajuste tune` holds
        fcntl.flock(other_search, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = one_line_error(cli(*tune_args(data, out, "--trials", "1", "--overwrite")))
        assert "another `ajuste tune` is running" in line
        assert trials_in(out) == 2 and (out / "model").is_dir(), "nothing was deleted"
    ok(cli(*tune_args(data, out, "--trials", "1", "--overwrite", "--quiet")))
    assert trials_in(out) == 1, "once the other search is over, --overwrite starts afresh"


def test_a_moved_search_resumes_where_it_is(cli: Cli, data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    ok(cli(*tune_args(data, first, "--trials", "2", "--quiet")))
    moved = tmp_path / "moved"
    first.rename(moved)
    shutil.copy(tmp_path / "first-space.yaml", tmp_path / "moved-space.yaml")
    result = ok(cli(*tune_args(data, moved, "--trials", "3")))
    assert "resuming: 2 trials already done" in result.out
    assert trials_in(moved) == 3 and not first.exists()
    assert "study.db" not in (moved / "tune.json").read_text(encoding="utf-8"), "no path is stored"


def test_a_copied_search_never_writes_into_the_original(cli: Cli, data: Path, tmp_path: Path) -> None:
    original = tmp_path / "original"
    ok(cli(*tune_args(data, original, "--trials", "2", "--quiet")))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.copy(tmp_path / "original-space.yaml", tmp_path / "copy-space.yaml")
    ok(cli(*tune_args(data, copy, "--trials", "3", "--quiet")))
    assert trials_in(copy) == 3
    assert trials_in(original) == 2, "the copy resumed its own study, not the original's"


def test_a_search_s_killed_final_write_is_cleaned_by_the_next_command(cli: Cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(cli(*tune_args(data, out, "--trials", "1", "--quiet")))
    killed(f"""
        import os
        from pathlib import Path
        from ajuste.atomic import staging_folder
        staging = staging_folder(Path({str(out / "final")!r}))
        (staging / "metrics.json").write_text("{{}}")
        os._exit(9)
    """)
    assert [p.name for p in out.glob(".final.*")], "the killed process left its staging folder"
    ok(cli(*tune_args(data, out, "--trials", "2", "--quiet")))
    assert list(out.glob(".final.*")) == []


# -- replacing and leftovers ------------------------------------------------------------------------


def make_folder(path: Path, content: str) -> Path:
    path.mkdir(parents=True)
    (path / "content.txt").write_text(content, encoding="utf-8")
    return path


def test_this_system_exchanges_folders_in_one_call(tmp_path: Path) -> None:
    a, b = make_folder(tmp_path / "a", "a"), make_folder(tmp_path / "b", "b")
    assert exchange_folders(a, b)
    assert (a / "content.txt").read_text() == "b" and (b / "content.txt").read_text() == "a"


def test_a_kill_after_the_exchange_leaves_the_new_run_and_a_leftover_the_next_command_removes(tmp_path: Path) -> None:
    target = make_folder(tmp_path / "run", "old")
    killed(f"""
        import os
        from pathlib import Path
        import ajuste.atomic as atomic
        staging = atomic.staging_folder(Path({str(target)!r}))
        (staging / "content.txt").write_text("new")
        atomic.shutil.rmtree = lambda *a, **k: os._exit(9)  # killed right after the exchange
        atomic.replace_folder(staging, Path({str(target)!r}))
    """)
    assert (target / "content.txt").read_text() == "new"
    (left,) = leftovers(target)
    assert (left / "content.txt").read_text() == "old"
    assert remove_leftovers(target) == [f"removed {left.name}, left by an interrupted write"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_without_an_exchange_a_kill_between_the_renames_leaves_the_old_run_to_restore(tmp_path: Path) -> None:
    target = make_folder(tmp_path / "run", "old")
    killed(f"""
        import os
        from pathlib import Path
        import ajuste.atomic as atomic
        staging = atomic.staging_folder(Path({str(target)!r}))
        (staging / "content.txt").write_text("new")
        atomic.exchange_folders = lambda a, b: False  # a file system without renameat2
        renames = []
        def replace(source, destination):
            renames.append(source)
            if len(renames) == 2:
                os._exit(9)  # killed between the old run stepping aside and the new one moving in
            os.rename(source, destination)
        atomic.os.replace = replace
        atomic.replace_folder(staging, Path({str(target)!r}))
    """)
    assert not target.exists()
    assert remove_leftovers(target)[0] == f"restored {target} from an interrupted replacement"
    assert (target / "content.txt").read_text() == "old"
    remove_leftovers(target)  # the new run's staging folder, abandoned too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_train_removes_a_killed_write_s_leftovers_but_not_a_running_one_s(cli: Cli, data: Path, tmp_path: Path) -> None:
    from ajuste.atomic import staging_folder

    target = tmp_path / "run"
    killed(f"""
        import os
        from pathlib import Path
        from ajuste.atomic import staging_folder
        staging_folder(Path({str(target)!r}))
        os._exit(9)
    """)
    running = staging_folder(target)  # this process is alive: its staging folder is work in progress
    ok(cli(*train_args(data, target, "--quiet")))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [running.name]


def test_overwriting_a_run_leaves_only_the_new_one(cli: Cli, data: Path, tmp_path: Path) -> None:
    target = tmp_path / "run"
    ok(cli(*train_args(data, target, "--quiet", "--seed", "1")))
    ok(cli(*train_args(data, target, "--quiet", "--seed", "2", "--overwrite")))
    assert yaml.safe_load((target / "run.yaml").read_text(encoding="utf-8"))["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "run"] or sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["run"]


# -- damaged run folders ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ajuste.cli.main import main

    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_args(data, out, "--quiet")) == 0
    return out


def damaged_copy(run: Path, where: Path, name: str, content: bytes) -> Path:
    copy = where / "run"
    shutil.copytree(run, copy)
    (copy / name).write_bytes(content)
    return copy


@pytest.mark.parametrize("content", [b"", b"\x07" * 300, b"{}"], ids=["empty", "random-bytes", "truncated-header"])
def test_damaged_weights_are_one_line(cli: Cli, trained: Path, tmp_path: Path, content: bytes) -> None:
    weights = (trained / "model" / "model.safetensors").read_bytes()
    run = damaged_copy(trained, tmp_path, "model/model.safetensors", content or weights[: len(weights) // 2])
    line = one_line_error(cli("predict", run, "free prize"))
    assert "weights file" in line and "damaged" in line and "Train again" in line


@pytest.mark.parametrize("name", ["metrics.json", "history.json"])
def test_predict_and_evaluate_need_neither_metrics_nor_history(
    cli: Cli, trained: Path, data: Path, tmp_path: Path, name: str
) -> None:
    run = damaged_copy(trained, tmp_path, name, b'{"epochs": [1, 2')
    predicted = ok(cli("predict", run, "free prize", "--json")).json()["predictions"]
    assert predicted == ok(cli("predict", trained, "free prize", "--json")).json()["predictions"]
    # the same model, the same scores as the undamaged run gives
    scored = ok(cli("evaluate", run, data, "--json")).json()["metrics"]
    assert scored == ok(cli("evaluate", trained, data, "--json")).json()["metrics"]


def test_a_damaged_metrics_file_is_one_line_where_it_is_needed(cli: Cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(cli(*tune_args(data, out, "--trials", "1", "--quiet")))
    (out / "metrics.json").write_text("[1, 2", encoding="utf-8")
    line = one_line_error(cli("report", out))
    assert "metrics.json is damaged" in line


def test_every_file_of_a_run_has_the_users_permissions(cli: Cli, data: Path, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        ok(cli(*train_args(data, tmp_path / "run", "--quiet")))
    finally:
        os.umask(previous)
    for path in (tmp_path / "run").rglob("*"):
        expected = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


# -- interruptions and messages ---------------------------------------------------------------------


def interrupted(*args: Any, **kwargs: Any) -> None:
    """Stands in for a step that Ctrl-C stops."""
    raise KeyboardInterrupt


def test_ctrl_c_during_training_says_nothing_was_written(
    cli: Cli, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TextClassifier, "fit_from", interrupted)
    result = cli(*train_args(data, tmp_path / "run"))
    assert result.code == 130
    assert result.err.strip() == (
        "interrupted: training stopped; nothing was written (a run folder appears only once complete)."
    )
    assert not (tmp_path / "run").exists()


def test_ctrl_c_during_a_search_says_what_was_kept(
    cli: Cli, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    ok(cli(*tune_args(data, out, "--trials", "1", "--quiet")))

    monkeypatch.setattr(TextClassifier, "fit_from", interrupted)
    result = cli(*tune_args(data, out, "--trials", "3", "--quiet"))
    assert result.code == 130
    line = result.err.strip()
    assert line.startswith("interrupted: the search was stopped after 1 counted trial (")
    assert f"the study is kept in {out}: run the same command to resume it" in line
    assert "\n" not in line and "Traceback" not in result.err


def test_ctrl_c_while_the_final_model_is_made_says_how_to_make_it_without_a_new_trial(
    cli: Cli, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajuste.search import tune as tune_module

    out = tmp_path / "run"
    finalize = tune_module._finalize

    monkeypatch.setattr(tune_module, "_finalize", interrupted)
    result = cli(*tune_args(data, out, "--trials", "2", "--quiet"))
    assert result.code == 130
    line = result.err.strip()
    assert line.startswith("interrupted: the search had run its 2 counted trials and was making its final model")
    assert "run the same command with --finalize to make it without a new trial" in line and "\n" not in line
    monkeypatch.setattr(tune_module, "_finalize", finalize)
    again = ok(cli(*tune_args(data, out, "--trials", "2", "--finalize", "--json", "--quiet"))).json()
    assert again["trials"]["complete"] + again["trials"]["pruned"] == 2, "no trial ran again"
    with pytest.raises(tune_module.SearchInterrupted) as caught:
        monkeypatch.setattr(tune_module, "_finalize", interrupted)
        tune_module.tune(str(data), model="bag", trials=1, out=tmp_path / "python")
    assert "with finalize=True to make it" in str(caught.value)


def test_sigterm_during_a_search_stops_it_as_ctrl_c_does(
    cli: Cli, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what timeout, systemd and docker send: Python's default died on the spot, saying nothing (exit 143), and the
    # trial stayed "running" in the study
    out = tmp_path / "run"
    ok(cli(*tune_args(data, out, "--trials", "1", "--quiet")))

    def terminated(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    monkeypatch.setattr(TextClassifier, "fit_from", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = cli(*tune_args(data, out, "--trials", "3", "--quiet"))
    assert result.code == 143
    line = result.err.strip()
    assert line.startswith("terminated (SIGTERM): the search was stopped after 1 counted trial ("), line
    assert f"the study is kept in {out}: run the same command to resume it" in line
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    (stopped,) = [t for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE]
    assert stopped.state == optuna.trial.TrialState.FAIL and stopped.user_attrs["interrupted"] is True


def test_a_failed_trial_is_one_line_and_its_traceback_stays_in_the_study(
    cli: Cli, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TextClassifier.fit_from

    def fit_from(self: TextClassifier, *args: Any, **kwargs: Any) -> Any:
        if getattr(self.settings, "embed_dim", None) == 16:
            raise TrainingError("the training loss is not a number", found="nan")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TextClassifier, "fit_from", fit_from)
    out = tmp_path / "run"
    result = ok(cli(*tune_args(data, out, "--trials", "4", "--sampler", "grid")))
    failed = [line for line in (result.out + result.err).splitlines() if " failed " in line]
    assert len(failed) == 2 and all("TrainingError: the training loss is not a number" in x for x in failed)
    assert "Traceback" not in result.out + result.err


def test_a_fixed_training_flag_is_removed_from_the_space_and_said(cli: Cli, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = ok(cli(*tune_args(data, out, "--trials", "3", "--epochs", "1", "--json")))
    assert "train.epochs = 1, as given: removed from the search space" in result.err
    info = RunFolder(out).read_search_info()
    assert info is not None
    study = optuna.load_study(study_name=info.study, storage=RunFolder(out).storage_url(info))
    assert all("train.epochs" not in t.params for t in study.get_trials())
    assert all(t.user_attrs["settings"]["train.epochs"] == 1 for t in study.get_trials())
    assert result.json()["best_params"]["train.epochs"] == 1
    assert json.loads((out / "history.json").read_text(encoding="utf-8"))["epochs"].__len__() == 1


def test_overwrite_never_replaces_what_the_command_reads(cli: Cli, data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "holds-data"
    folder.mkdir()
    inside = shutil.copy(data, folder / "mydata.csv")
    said = one_line_error(cli(*train_args(Path(inside), folder, "--overwrite")))
    assert f"holds {inside}, which this command reads" in said  # replacing the folder would remove the data
    assert Path(inside).is_file()
    teacher = tmp_path / "teacher"
    ok(cli(*train_args(data, teacher)))
    places = ("would replace", "would be inside", "holds")
    for out, place in zip((teacher, teacher / "model", tmp_path), places):  # the teacher itself, inside it, above it
        said = one_line_error(cli("distill", str(teacher), "--epochs", "1", "--out", str(out), "--overwrite"))
        assert f"{place} {teacher}, which this command reads" in said
    for out in (teacher / "model", tmp_path):
        said = one_line_error(cli("export", str(teacher), "--out", str(out), "--overwrite"))
        assert "which this command reads" in said
    assert RunFolder(teacher).is_finished() and (teacher / "run.yaml").is_file()
    said = one_line_error(cli(*tune_args(Path(inside), folder, "--trials", "1", "--overwrite")))
    assert "which this command reads" in said and Path(inside).is_file()


def test_overwrite_replaces_a_run_folder_and_never_a_folder_of_other_files(
    cli: Cli, data: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("keep", encoding="utf-8")
    for args in (train_args(data, mine, "--overwrite"), tune_args(data, mine, "--trials", "1", "--overwrite")):
        said = one_line_error(cli(*args))
        assert "is not one" in said and "important.txt" in said
    assert (mine / "important.txt").read_text(encoding="utf-8") == "keep"
    run = tmp_path / "run"
    ok(cli(*train_args(data, run)))
    ok(cli(*train_args(data, run, "--overwrite")))  # a run folder is replaced
    ok(cli(*tune_args(data, run, "--trials", "1", "--overwrite")))  # also by a search


def test_overwrite_never_loses_the_user_s_own_files_kept_in_a_run_folder(cli: Cli, data: Path, tmp_path: Path) -> None:
    # a run or search folder with a file ajuste did not write was replaced, the file gone without a word
    run, search = tmp_path / "run", tmp_path / "search"
    ok(cli(*train_args(data, run)))
    ok(cli(*tune_args(data, search, "--trials", "1")))
    replacing = (
        (run, train_args(data, run, "--overwrite")),
        (run, tune_args(data, run, "--trials", "1", "--overwrite")),
        (search, tune_args(data, search, "--trials", "1", "--overwrite")),
    )
    for folder, args in replacing:
        (folder / "notes.txt").write_text("keep", encoding="utf-8")
        said = one_line_error(cli(*args))
        assert f"would replace {folder}, which also holds files ajuste did not write" in said, said
        assert "notes.txt" in said and "Move them out of the folder first" in said
        assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep"
        (folder / "notes.txt").unlink()
        ok(cli(*args))


def test_an_output_inside_a_file_or_above_the_current_folder_is_one_line(
    cli: Cli, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("precious", encoding="utf-8")
    assert "which is a file" in one_line_error(cli(*train_args(data, plain / "sub")))
    tune = ["tune", "--data", str(data), "--model", "bag", "--trials", "1", "--epochs", "1", "--out"]
    assert "which is a file" in one_line_error(cli(*tune, str(plain / "sub")))
    assert "is a file" in one_line_error(cli(*tune, str(plain), "--overwrite"))
    assert plain.read_text(encoding="utf-8") == "precious"
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert "current folder" in one_line_error(cli(*train_args(data, Path("."), "--overwrite")))
    assert "current folder" in one_line_error(cli(*train_args(data, tmp_path, "--overwrite")))
