"""Which texts a run has already seen: scored on them, a model looks better than it is on new texts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ajuste.errors import AjusteError
from ajuste.runs.folder import RunFolder

__all__ = ["differing_splits", "seen_counts", "seen_texts"]

log = logging.getLogger(__name__)


def seen_texts(folder: RunFolder) -> dict[str, set[str]] | None:
    """The texts that trained the run's model (its training split, or the sample of it that ``train.subset``
    names) and those that chose it (validation): ``train``, ``val``, read again from its data as it split them.

    None when that cannot be done exactly: a run.yaml without data settings, a data file moved, changed or no
    longer readable (its split would differ from split.json): the caller then says nothing rather than a guess.
    """
    from ajuste.data import load_data
    from ajuste.data.builtin import dataset_status, get_builtin
    from ajuste.data.prepare import stratified_sample

    try:
        run_file = folder.read_run_file()
        recorded = folder.read_split()
        if run_file is None or recorded is None:
            return None
        settings = run_file.config.data
        if settings.dataset is not None and dataset_status(get_builtin(settings.dataset), settings.data_dir)[0] == (
            "missing"
        ):
            return None  # never a download for a note
        data = load_data(settings, seed=run_file.config.seed)
    except (AjusteError, OSError) as exc:
        log.info("the texts %s trained on cannot be read again: %s", folder.path, exc)
        return None
    if differing_splits(recorded, data.split_record(), ("train", "val")):
        log.info("the data of %s no longer splits as split.json records", folder.path)
        return None
    subset = run_file.config.train.subset  # the model learnt from a sample of the training split
    trained = data.train if subset is None else stratified_sample(data.train, subset, run_file.config.seed)
    return {"train": set(trained.texts), "val": set(data.val.texts)}


def differing_splits(recorded: Mapping[str, Any], current: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """Which of ``names`` hold other rows in ``current`` (a split as :meth:`PreparedData.split_record` gives it)
    than in ``recorded`` (split.json): the data no longer splits as the run's did."""
    return [name for name in names if sorted(recorded.get(name) or []) != sorted(current[name])]


def seen_counts(texts: Iterable[str], seen: dict[str, set[str]]) -> dict[str, int]:
    """How many of ``texts`` the run trained on (``train``) and chose its model on (``val``); a text in both
    counts once, as training."""
    counts = {"train": 0, "val": 0}
    for text in texts:
        if text in seen["train"]:
            counts["train"] += 1
        elif text in seen["val"]:
            counts["val"] += 1
    return counts
