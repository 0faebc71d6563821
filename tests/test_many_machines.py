"""One study shared by ajuste workers, against a real PostgreSQL server (and a journal file): the count of
trials across workers, no duplicate startup settings, a killed worker's trial run again, a database that
goes away and comes back, one final model and one test access, refusals that name the difference."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import make_texts, write_csv
from tests.postgres import PASSWORD, USER, Postgres, start_postgres

#: Every worker: the bag family, short trials, heartbeats every second (a dead worker's trial is failed after 3 s).
WORKER_FLAGS = ["--model", "bag", "--epochs", "4", "--heartbeat", "1", "--sampler", "tpe", "--startup-trials", "6"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    for server in start_postgres():
        try:
            yield server
        finally:
            storage = _STORAGES.pop(server.port, None)
            if storage is not None:
                storage.engine.dispose()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(160, seed=4)
    return write_csv(tmp_path_factory.mktemp("shared-data") / "data.csv", texts, labels)


#: `python -c` of a worker whose search ends without making the final model (as if it died right then).
NEVER_FINALIZES = (
    "import sys; from ajuste.search import tune; tune._finalize = lambda *args, **kwargs: (None, None, 0); "
    "from ajuste.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
)


def environment() -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": PASSWORD, "AJUSTE_THREADS": "1"}


def worker_args(data: Path, out: Path, storage: str, study: str, trials: int, *extra: str) -> list[str]:
    """The arguments of `ajuste` for one worker of ``study``."""
    args = ["tune", "--data", str(data), *WORKER_FLAGS, "--trials", str(trials), "--storage", storage]
    return [*args, "--study", study, "--out", str(out), "--json", "-q", *extra]


def start_worker(
    data: Path, out: Path, storage: str, study: str, trials: int, *extra: str, finalize: bool = False
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "ajuste.cli.main", *worker_args(data, out, storage, study, trials, *extra)]
    args += ["--finalize"] if finalize else []
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())


def finish(worker: subprocess.Popen[str], timeout: float = 600) -> tuple[int, dict[str, Any] | None, str]:
    out, err = worker.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    return worker.returncode, (json.loads(lines[-1]) if lines else None), err


_STORAGES: dict[int, optuna.storages.RDBStorage] = {}


def load(postgres: Postgres, study: str) -> optuna.Study:
    """The study as the tests read it: one small connection pool per server, closed when the server stops."""
    if postgres.port not in _STORAGES:
        url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{postgres.port}/postgres"
        _STORAGES[postgres.port] = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    return optuna.load_study(study_name=study, storage=_STORAGES[postgres.port])


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count: finished, not interrupted, not failed with a dead worker and run again."""
    trials = study.get_trials(deepcopy=False)
    again = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return [
        t
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and not t.user_attrs.get("interrupted")
        and t.number not in again
    ]


def final_folders(folders: list[Path]) -> list[Path]:
    return [f for f in folders if (f / "model" / "config.json").is_file()]


def test_three_workers_share_one_study(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    folders = [tmp_path / f"worker-{i}" for i in range(3)]
    workers = [start_worker(data, folder, postgres.url, "three", 30) for folder in folders]
    results = [finish(worker) for worker in workers]
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-600:] for _, _, err in results]
    study = load(postgres, "three")
    assert len(counted(study)) == 30
    assert not [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    searched = [json.dumps(t.params, sort_keys=True) for t in counted(study) if not t.user_attrs.get("portfolio")]
    assert len(searched) == len(set(searched)), "two workers proposed the same settings"
    assert len({t.user_attrs.get("worker") for t in study.get_trials(deepcopy=False)}) == 3
    made = final_folders(folders)
    assert len(made) == 1
    record = yaml.safe_load((made[0] / "run.yaml").read_text(encoding="utf-8"))
    assert len(record["record"]["test_accesses"]) == 1
    final = study.user_attrs["ajuste:final"]
    assert (
        final["run_dir"] == str(made[0].resolve()) and final["best_trial"] == record["record"]["search"]["best_trial"]
    )
    for _code, summary, _ in results:
        assert summary is not None and summary["run_dir"] in {str(f) for f in folders}
    # the password never reaches a run folder or the output
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".yaml", ".html"):
                assert PASSWORD not in path.read_text(encoding="utf-8", errors="replace"), path


def test_a_killed_worker_trial_runs_again(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    folders = [tmp_path / f"worker-{i}" for i in range(3)]
    workers = [start_worker(data, folder, postgres.url, "killed", 24) for folder in folders]
    victim = workers[0]
    owner = None
    deadline = time.monotonic() + 180
    while owner is None and time.monotonic() < deadline:  # a trial of the victim, mid-run
        try:
            for trial in load(postgres, "killed").get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                # its settings are recorded once every parameter is drawn: killed earlier, the trial's params
                # would be a part of those its retry draws (a race the first version of this test lost)
                mine = str(trial.user_attrs.get("worker", "")).endswith(f":{victim.pid}")
                if mine and "settings" in trial.user_attrs:
                    owner = trial
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.1)
    assert owner is not None, "the victim never ran a trial"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    results = [finish(worker) for worker in workers[1:]]
    assert [code for code, _, _ in results] == [0, 0], [err[-600:] for _, _, err in results]
    study = load(postgres, "killed")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[owner.number].state == TrialState.FAIL
    again = [t for t in trials.values() if t.system_attrs.get("failed_trial") == owner.number]
    assert (
        again
        and again[0].params == trials[owner.number].params
        and again[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    )
    assert "heartbeats" in again[0].system_attrs["ajuste:stale"]
    assert len(counted(study)) == 24
    assert len(final_folders(folders)) == 1


def test_the_database_goes_away_and_comes_back(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    folders = [tmp_path / f"worker-{i}" for i in range(2)]
    workers = [start_worker(data, folder, postgres.url, "outage", 30) for folder in folders]
    deadline, done = time.monotonic() + 180, 0
    while time.monotonic() < deadline:
        try:
            done = len(counted(load(postgres, "outage")))
            if done >= 4:
                break
        except KeyError:
            pass
        time.sleep(0.2)
    # the outage must fall in the middle of the search: trials done, and workers still running on the database
    assert done >= 4, f"{done} trials counted in 180 s"
    assert any(worker.poll() is None for worker in workers)
    postgres.stop()
    time.sleep(4)
    postgres.start()
    results = [finish(worker) for worker in workers]
    for code, _, err in results:  # each continued, or stopped with one clear line
        assert code == 0 or (code == 2 and "did not answer" in err and "Traceback" not in err), err[-800:]
    # the same command resumes the study to its count
    code, _, err = finish(start_worker(data, folders[0], postgres.url, "outage", 30))
    assert code == 0, err[-800:]
    study = load(postgres, "outage")
    assert len(counted(study)) == 30
    assert len(final_folders(folders)) == 1


def test_finalize_happens_once(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    code, _, err = finish(start_worker(data, first, postgres.url, "finalize", 6, "--ensemble", "3"))
    assert code == 0, err
    made = final_folders([first])
    assert made == [first]
    chosen = yaml.safe_load((first / "run.yaml").read_text(encoding="utf-8"))["record"]["search"]["ensemble"]
    members = [{"trial": m["trial"], "weight": m["weight"]} for m in chosen["members"]]
    # two workers that both reach the end: one finalizes or finds it made; neither touches the test split again
    others = [tmp_path / "second", tmp_path / "third"]
    results = [finish(w) for w in [start_worker(data, f, postgres.url, "finalize", 6, finalize=True) for f in others]]
    for code, summary, err in results:
        assert code == 0, err
        assert summary is not None and summary["final_by"]["run_dir"] == str(first.resolve())
        assert summary["final_by"]["members"] == members  # what the final model is made of, ensemble or not
        assert summary["test"]["accuracy"] == json.loads((first / "metrics.json").read_text())["test"]["accuracy"]
    assert final_folders(others) == []
    record = yaml.safe_load((first / "run.yaml").read_text(encoding="utf-8"))
    assert len(record["record"]["test_accesses"]) == 1


def test_two_finalizers_at_once_make_one_model(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    """Every trial done, no final model yet (its worker died at the end): two --finalize at once make one."""
    args = worker_args(data, tmp_path / "search", postgres.url, "race", 5)
    searcher = subprocess.Popen(  # the same command, by a worker that ends before finalizing
        [sys.executable, "-c", NEVER_FINALIZES, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    code, summary, err = finish(searcher)
    assert code == 0 and summary is not None and summary["final_by"] is None, err
    assert len(counted(load(postgres, "race"))) == 5 and final_folders([tmp_path / "search"]) == []
    folders = [tmp_path / "a", tmp_path / "b"]
    results = [finish(w) for w in [start_worker(data, f, postgres.url, "race", 5, finalize=True) for f in folders]]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    made = final_folders(folders)
    assert len(made) == 1
    reported = [summary for _, summary, _ in results if summary and summary["final_by"]]
    assert len(reported) == 1 and reported[0]["final_by"]["run_dir"] == str(made[0].resolve())
    record = yaml.safe_load((made[0] / "run.yaml").read_text(encoding="utf-8"))
    assert len(record["record"]["test_accesses"]) == 1


def test_a_worker_with_other_data_is_refused(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    code, _, err = finish(start_worker(data, tmp_path / "one", postgres.url, "identity", 3))
    assert code == 0, err
    texts, labels = make_texts(160, seed=5)
    other = write_csv(tmp_path / "other.csv", texts, labels)
    code, _, err = finish(start_worker(other, tmp_path / "two", postgres.url, "identity", 3))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "other settings: different data, split" in err


def test_a_password_in_the_url_is_never_written(postgres: Postgres, data: Path, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{postgres.port}/postgres"
    out = tmp_path / "run"
    worker = start_worker(data, out, url, "secret", 3)
    stdout, stderr = worker.communicate(timeout=600)
    assert worker.returncode == 0, stderr
    assert PASSWORD not in stdout and PASSWORD not in stderr
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".html"):
            assert PASSWORD not in path.read_text(encoding="utf-8", errors="replace"), path
    assert json.loads((out / "tune.json").read_text())["storage"] == postgres.url


def test_sqlite_as_shared_storage_is_refused(data: Path, tmp_path: Path) -> None:
    worker = start_worker(data, tmp_path / "run", f"sqlite:///{tmp_path / 'shared.db'}", "s", 3)
    code, _, err = finish(worker)
    assert code == 2 and "cannot be shared" in err and "journal:" in err and len(err.strip().splitlines()) == 1


def test_a_journal_file_serves_processes_of_one_machine(data: Path, tmp_path: Path) -> None:
    journal = f"journal:{tmp_path / 'study.log'}"
    folders = [tmp_path / f"worker-{i}" for i in range(2)]
    results = [finish(w) for w in [start_worker(data, f, journal, "journal", 12) for f in folders]]
    assert [code for code, _, _ in results] == [0, 0], [err[-600:] for _, _, err in results]
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(
        study_name="journal", storage=optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
    )
    assert len(counted(study)) == 12
    assert len(final_folders(folders)) == 1
    # the report of a journal study: it was not written ("Could not parse SQLAlchemy URL"), and `ajuste report`
    # stopped with an internal error
    for folder in folders:
        assert "<th>Study</th>" in (folder / "report.html").read_text(encoding="utf-8")
        (folder / "report.html").unlink()
        done = subprocess.run(
            [sys.executable, "-m", "ajuste", "report", str(folder)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "journal" in (folder / "report.html").read_text(encoding="utf-8")
