"""The in-memory shapes that data takes between loading and training."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    """Rows as read from a source, before any cleaning.

    ``texts`` and ``labels`` may hold ``None`` for missing values; ``rows`` are the 0-based positions of
    the data rows in the source (header excluded), which is how every later step refers back to it.
    ``extra_ids`` holds the values of an ``id`` column when the source has one.
    """

    texts: list[str | None]
    labels: list[str | None]
    rows: list[int]
    source: str
    columns: list[str] = field(default_factory=list)
    extra_ids: list[object] | None = None
    #: The text and label columns, when neither has a usual name and the longer texts decided which is which.
    guessed: tuple[str, str] | None = None
    #: Columns left unread (besides an ``id``) when the text or label column was found by its name, not given:
    #: which columns were read is then worth saying.
    unused: list[str] = field(default_factory=list)
    #: The text and label columns read.
    read: tuple[str, str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextDataset:
    """Texts with their labels and the source rows they came from: what ``fit`` and ``evaluate`` take."""

    texts: list[str]
    labels: list[str]
    rows: list[int]

    def __post_init__(self) -> None:
        if not (len(self.texts) == len(self.labels) == len(self.rows)):
            raise ValueError(
                "texts, labels and rows must have the same length, "
                f"got {len(self.texts)}, {len(self.labels)} and {len(self.rows)}"
            )

    @classmethod
    def from_lists(cls, texts: Sequence[str], labels: Sequence[str]) -> TextDataset:
        return cls(list(texts), [str(label) for label in labels], list(range(len(texts))))

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))

    def joined(self, other: TextDataset) -> TextDataset:
        """These texts, then ``other``'s."""
        return TextDataset(self.texts + other.texts, self.labels + other.labels, self.rows + other.rows)

    def subset(self, positions: Sequence[int]) -> TextDataset:
        return TextDataset(
            [self.texts[i] for i in positions],
            [self.labels[i] for i in positions],
            [self.rows[i] for i in positions],
        )
