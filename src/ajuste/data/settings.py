"""Settings of the data stage: where the texts come from and how they are prepared."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ajuste.errors import ConfigError
from ajuste.fields import Settings

Balance = Literal["none", "undersample", "oversample", "class_weight"]
FileFormat = Literal["auto", "csv", "tsv", "jsonl", "parquet", "lines"]


class DataSettings(Settings):
    """Where the labelled texts come from and how they are cleaned, balanced and split."""

    # the split's own check names NaN and infinity, with an example of valid fractions
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=True)

    dataset: str | None = Field(None, description="A built-in dataset name (see `ajuste datasets`).")
    path: str | None = Field(None, description="A data file: CSV, TSV, JSONL, Parquet or label<TAB>text lines.")
    format: FileFormat = Field("auto", description="File format; `auto` goes by the file extension.")
    text_col: str | None = Field(None, description="Column holding the texts (guessed when obvious).")
    label_col: str | None = Field(None, description="Column holding the labels (guessed when obvious).")
    encoding: str = Field("utf-8", description="Text encoding of the data file.")
    data_dir: str | None = Field(
        None, description="Folder holding built-in datasets (else $AJUSTE_DATA_DIR, the cache, a download)."
    )
    dedupe: bool = Field(True, description="Drop exact duplicate texts (after stripping whitespace).")
    balance: Balance | None = Field(
        None, description="Class balancing; unset means the dataset's default (`none` for files)."
    )
    val_path: str | None = Field(
        None, description="A file holding the validation split (same format and columns); unset: split from path."
    )
    test_path: str | None = Field(
        None, description="A file holding the test split (same format and columns); unset: split from path."
    )
    split: tuple[float, ...] = Field(
        (0.7, 0.1, 0.2),
        description="Train, validation and test fractions, summing to 1; with one of `val_path` and `test_path`, "
        "two: train and the split that file does not give.",
    )

    @field_validator("split")
    @classmethod
    def _split_fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) not in (2, 3):
            raise ValueError(
                "expected three fractions (train, validation, test) or two (train and the split that no file gives), "
                f"got {len(value)}: {','.join(map(str, value))}"
            )
        # NaN is neither <= 0 nor > 0: it is refused by name, with inf, before the sum says something odd
        if not all(math.isfinite(part) and part > 0 for part in value):
            raise ValueError(
                f"every fraction must be a finite number > 0 (as in 0.7,0.1,0.2), got {','.join(map(str, value))}"
            )
        if abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"fractions must sum to 1, got {','.join(map(str, value))} (sum {sum(value):g})")
        return value

    @property
    def fractions(self) -> tuple[float, float, float]:
        """Train, validation and test fractions of the main data; with two, the split its file gives has none
        (never used: that split is the file)."""
        if len(self.split) == 3:
            train, val, test = self.split
            return (train, val, test)
        train, other = self.split
        return (train, 0.0, other) if self.val_path is not None else (train, other, 0.0)

    @model_validator(mode="after")
    def _one_source(self) -> DataSettings:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one data source: a built-in `dataset` or a file `path`")
        if len(self.split) == 2 and (self.val_path is None) == (self.test_path is None):
            given = (
                "both [[--val-data||val_path]] and [[--test-data||test_path]] give their splits"
                if self.val_path
                else "no file gives a split"
            )
            raise ConfigError(
                f"two split fractions ({','.join(map(str, self.split))}) are for train and the one split that "
                f"[[--val-data||val_path]] or [[--test-data||test_path]] does not give, and {given}",
                fix="Leave out [[--split||split]]." if self.val_path else "Give three, as in 0.7,0.1,0.2.",
            )
        if self.text_col is not None and self.text_col == self.label_col:
            raise ValueError(f"text_col and label_col are the same column ({self.text_col!r}): name two columns")
        return self
