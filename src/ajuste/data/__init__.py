"""Data: read labelled texts, then clean, dedupe, balance and split them."""

from __future__ import annotations

from pathlib import Path

from ajuste.data.builtin import BUILTIN_DATASETS, BuiltinDataset, get_builtin, locate
from ajuste.data.dataset import Table, TextDataset
from ajuste.data.prepare import PreparedData, describe, prepare
from ajuste.data.readers import read_table
from ajuste.data.settings import DataSettings
from ajuste.errors import ConfigError

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "DataSettings",
    "PreparedData",
    "Table",
    "TextDataset",
    "describe",
    "load_data",
    "load_table",
    "prepare",
    "read_table",
    "resolved_balance",
]


def load_table(settings: DataSettings) -> Table:
    """Every row of the data source that ``settings`` names."""
    if settings.dataset is not None:
        dataset = get_builtin(settings.dataset)
        columns = settings.text_col or settings.label_col
        if columns and settings.val_path is None and settings.test_path is None:  # no file of the user's to read
            raise ConfigError(
                f"the built-in dataset {dataset.name} has its own texts and labels, and "
                f"[[--text-col||text_col]] or [[--label-col||label_col]] names a column ('{columns}')",
                fix="Leave them out, or give your file with [[--data FILE||path=FILE]].",
            )
        path: Path = locate(dataset.name, settings.data_dir)
        return read_table(path, file_format=dataset.file_format, encoding="utf-8")
    if settings.path is None:
        raise ConfigError(
            "no data source given", fix="Pass [[--dataset NAME||dataset=NAME]] or [[--data FILE||path=FILE]]."
        )
    return read_table(
        settings.path,
        file_format=settings.format,
        text_col=settings.text_col,
        label_col=settings.label_col,
        encoding=settings.encoding,
    )


def resolved_balance(settings: DataSettings) -> str:
    """The balancing method in force: the one asked for, else the built-in dataset's default, else none."""
    if settings.balance is not None:
        return settings.balance
    if settings.dataset is not None:
        return get_builtin(settings.dataset).defaults.get("balance", "none")
    return "none"


def load_data(settings: DataSettings, seed: int = 123) -> PreparedData:
    """Read, clean, dedupe, balance and split the data that ``settings`` describe; the validation and test
    splits come from their own files when ``val_path`` / ``test_path`` name them."""
    if not isinstance(settings, DataSettings):
        raise ConfigError(
            "load_data takes a DataSettings",
            found=type(settings).__name__,
            fix="Pass ajuste.DataSettings(path='texts.csv') or ajuste.DataSettings(dataset='sms-spam').",
        )
    given = {}
    for name, path in (("val", settings.val_path), ("test", settings.test_path)):
        if path is not None:
            given[name] = read_table(
                path,
                file_format=settings.format,
                text_col=settings.text_col,
                label_col=settings.label_col,
                encoding=settings.encoding,
            )
    return prepare(
        load_table(settings),
        dedupe_texts=settings.dedupe,
        balance=resolved_balance(settings),
        fractions=settings.fractions,
        seed=seed,
        given=given,
    )
