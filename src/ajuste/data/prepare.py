"""Pure, seeded data preparation: clean → dedupe → balance → stratified split.

Every function takes its data and seed as arguments, touches no file and no global random state, and
returns what it changed alongside the result, so that nothing is ever dropped without being counted.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ajuste.data.dataset import Table, TextDataset
from ajuste.errors import ConfigError, DataError

__all__ = [
    "PreparedData",
    "apportion",
    "class_weights",
    "clean",
    "cv_folds",
    "dedupe",
    "describe",
    "normalise_label",
    "oversample",
    "prepare",
    "split",
    "stratified_sample",
    "training_sample",
    "undersample",
]

Report = dict[str, Any]


@dataclass(frozen=True)
class PreparedData:
    """The three splits, the label set, and what every step did."""

    train: TextDataset
    val: TextDataset
    test: TextDataset
    labels: list[str]
    report: Report = field(default_factory=dict)
    class_weights: dict[str, float] | None = None

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def train_and_val(self) -> TextDataset:
        """Training and validation texts together: what a refit on train+val and cross-validation use."""
        return self.train.joined(self.val)

    def split_record(self) -> dict[str, Any]:
        """The split as source row ids: enough to trace any result back to its texts."""
        record: dict[str, Any] = {"train": sorted(set(self.train.rows)), "val": self.val.rows, "test": self.test.rows}
        if "sources" in self.report:  # rows of a split given in its own file are rows of that file
            record["sources"] = self.report["sources"]
        return record


#: Label strings that programs write for a missing value (pandas ``NaN``/``nan``, JSON and SQL ``null``),
#: in any case. ``None`` and ``NA`` are not among them: LUIS-style intent data has a real ``None`` class,
#: and ``NA`` can be a class (North America); a bogus class shows in the summary, a dropped one does not.
MISSING_LABELS = frozenset({"nan", "null"})
#: A whole number written as a float: ``1.0``, ``-3.00``.
_WHOLE_FLOAT = re.compile(r"^([+-]?[0-9]+)\.0+$")


def normalise_label(label: str | None) -> str | None:
    """A label as one class name: stripped; ``None`` when missing; ``1.0`` written ``1``.

    A numeric label column is read as floats in one file (Parquet, pandas' CSV) and as ints in
    another, or mixes ``1`` and ``1.0`` in one JSONL file: they are the same class.
    """
    label = (label or "").strip()
    if not label or label.lower() in MISSING_LABELS:
        return None
    whole = _WHOLE_FLOAT.match(label)
    return str(int(whole.group(1))) if whole else label


def clean(table: Table) -> tuple[TextDataset, Report]:
    """Strip whitespace; drop rows whose text is empty or whose label is missing, counting each.

    Labels go through :func:`normalise_label`: ``NaN``, ``null`` (any case) and empty labels are missing.
    """
    texts: list[str] = []
    labels: list[str] = []
    rows: list[int] = []
    empty_text = missing_label = 0
    for text, raw_label, row in zip(table.texts, table.labels, table.rows):
        text = (text or "").strip()
        label = normalise_label(raw_label)
        if label is None:
            missing_label += 1
            continue
        if not text:
            empty_text += 1
            continue
        texts.append(text)
        labels.append(label)
        rows.append(row)
    report = {"rows_in": len(table), "dropped_empty_text": empty_text, "dropped_missing_label": missing_label}
    return TextDataset(texts, labels, rows), report


def dedupe(data: TextDataset) -> tuple[TextDataset, Report]:
    """Keep the first occurrence of each exact text; report texts seen with more than one label."""
    first: dict[str, int] = {}
    labels_of: dict[str, set[str]] = defaultdict(set)
    for position, (text, label) in enumerate(zip(data.texts, data.labels)):
        first.setdefault(text, position)
        labels_of[text].add(label)
    kept = sorted(first.values())
    conflicts = [text for text, labels in labels_of.items() if len(labels) > 1]
    report = {
        "dropped_duplicates": len(data) - len(kept),
        "conflicting_labels": len(conflicts),
        "conflict_examples": [text[:80] for text in conflicts[:3]],
    }
    return data.subset(kept), report


def undersample(data: TextDataset, seed: int) -> tuple[TextDataset, Report]:
    """Keep a random ``min class size`` texts of every class, in their original order."""
    rng = np.random.default_rng(seed)
    by_class = _positions_by_class(data)
    smallest = min(len(p) for p in by_class.values())
    kept: list[int] = []
    for label in sorted(by_class):
        positions = by_class[label]
        chosen = rng.choice(len(positions), size=smallest, replace=False)
        kept.extend(positions[i] for i in chosen)
    kept.sort()
    before = data.class_counts()
    result = data.subset(kept)
    return result, {"method": "undersample", "before": before, "after": result.class_counts()}


def oversample(data: TextDataset, seed: int) -> tuple[TextDataset, Report]:
    """Repeat random texts of the smaller classes until every class has the largest class's size."""
    rng = np.random.default_rng(seed)
    by_class = _positions_by_class(data)
    largest = max(len(p) for p in by_class.values())
    extra: list[int] = []
    for label in sorted(by_class):
        positions = by_class[label]
        if len(positions) < largest:
            extra.extend(positions[i] for i in rng.choice(len(positions), size=largest - len(positions)))
    before = data.class_counts()
    result = data.subset(list(range(len(data))) + extra)
    return result, {"method": "oversample", "before": before, "after": result.class_counts()}


def class_weights(data: TextDataset) -> dict[str, float]:
    """Loss weights inversely proportional to class frequency: n / (classes * n_class)."""
    counts = data.class_counts()
    return {label: len(data) / (len(counts) * count) for label, count in counts.items()}


def apportion(total: int, sizes: Sequence[int]) -> list[int]:
    """Split ``total`` across groups in proportion to ``sizes`` (largest remainder), at least 1 each."""
    whole = sum(sizes)
    quotas = [total * size / whole for size in sizes]
    shares = [int(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    for i, share in enumerate(shares):  # every class in every split, taken from the largest share
        if share == 0 and total >= len(sizes):
            donor = max(range(len(shares)), key=lambda j: shares[j])
            shares[donor] -= 1
            shares[i] = 1
    return shares


def split(
    data: TextDataset, fractions: tuple[float, float, float], seed: int
) -> tuple[TextDataset, TextDataset, TextDataset, Report]:
    """Stratified train/validation/test split.

    Split sizes follow the reference protocol (``int(n * train)``, ``int(n * val)``, the rest for test),
    then each split's size is shared across classes in proportion to their counts.
    """
    by_class = _positions_by_class(data)
    too_small = {label: len(p) for label, p in by_class.items() if len(p) < 3}
    if too_small:
        shown = ", ".join(f"'{label}' ({n})" for label, n in sorted(too_small.items()))
        raise DataError(
            "a class is too small to split into train, validation and test",
            expected="at least 3 texts per class",
            found=shown,
            fix="Add examples of that class, or remove its rows from the data.",
        )
    labels = sorted(by_class)
    sizes = [len(by_class[label]) for label in labels]
    n = len(data)
    n_val = int(n * fractions[1])
    n_test = n - int(n * fractions[0]) - n_val
    n_train = n - n_val - n_test
    if min(n_train, n_val, n_test) == 0:
        raise DataError(
            "too few texts to split into train, validation and test",
            expected="at least one text in every split",
            found=f"{n} texts, which the fractions {','.join(f'{f:g}' for f in fractions)} "
            f"divide into {n_train}/{n_val}/{n_test}",
            fix="Add more labelled texts, or change [[--split||split]].",
        )
    val_shares = apportion(n_val, sizes)
    test_shares = apportion(n_test, sizes)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for label, n_val_c, n_test_c in zip(labels, val_shares, test_shares):
        positions = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        parts["test"].extend(positions[:n_test_c])
        parts["val"].extend(positions[n_test_c : n_test_c + n_val_c])
        parts["train"].extend(positions[n_test_c + n_val_c :])
    train, val, test = (data.subset(sorted(parts[name])) for name in ("train", "val", "test"))
    report = {name: part.class_counts() for name, part in (("train", train), ("val", val), ("test", test))}
    return train, val, test, report


def cv_folds(
    data: TextDataset, k: int, seed: int, fix: str = "Lower [[--cv||cv]], or add examples of that class."
) -> list[tuple[TextDataset, TextDataset]]:
    """Stratified K-fold cross-validation of ``data``, shuffled with ``seed``: (trained on, validated on) per fold.

    Every class must have at least K texts, so that every fold validates on every class; ``fix`` says what the
    user can change when one has fewer (the option that asked for the folds).
    """
    from sklearn.model_selection import StratifiedKFold

    too_small = {label: len(p) for label, p in _positions_by_class(data).items() if len(p) < k}
    if too_small:
        shown = ", ".join(f"'{label}' ({n})" for label, n in sorted(too_small.items()))
        raise DataError(
            f"a class is too small for {k}-fold cross-validation over train+val",
            expected=f"at least {k} texts of every class in train+val",
            found=shown,
            fix=fix,
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        (data.subset(list(trained)), data.subset(list(validated)))
        for trained, validated in splitter.split(np.zeros(len(data)), data.labels)
    ]


def _stratified_positions(data: TextDataset, count: int, seed: int) -> list[int]:
    """``count`` positions of ``data`` drawn with ``seed``, each class in proportion to its size (sorted)."""
    by_class = _positions_by_class(data)
    labels = sorted(by_class)
    shares = apportion(count, [len(by_class[label]) for label in labels])
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label, share in zip(labels, shares):
        positions = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        held.extend(positions[:share])
    return sorted(held)


def stratified_sample(data: TextDataset, size: int, seed: int) -> TextDataset:
    """``size`` texts of ``data``, every class in proportion to its count, drawn with ``seed``."""
    return data.subset(_stratified_positions(data, size, seed))


def training_sample(train: TextDataset, size: int, seed: int, *, option: str, most: int, fix: str) -> TextDataset:
    """``stratified_sample`` of the training split for a setting (``option``, as messages write it) that asks for
    ``size`` of its texts: from one per class to ``most``, else a ConfigError whose fix is ``fix``."""
    classes = len(set(train.labels))
    if not classes <= size <= most:
        raise ConfigError(
            f"{option} does not fit the training split",
            expected=f"a number of texts from {classes} (one per class) to {most:,}",
            found=f"{size:,}, for {len(train):,} training texts in {classes} classes",
            fix=fix,
        )
    return stratified_sample(train, size, seed)


def _hold_out(data: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, TextDataset]:
    """A stratified two-way split: (the rest, ``fraction`` of every class held out)."""
    held = _stratified_positions(data, int(len(data) * fraction), seed)
    chosen = set(held)
    return data.subset([i for i in range(len(data)) if i not in chosen]), data.subset(held)


def _checked_against_test(held: dict[str, TextDataset], report: Report) -> int | None:
    """With both files given, the validation texts that the test file also holds are removed from validation: a
    model chosen on them would be chosen on the test. Their number (None unless both files are given)."""
    if "val" not in held or "test" not in held:
        return None
    tested = set(held["test"].texts)
    val = held["val"]
    kept = [i for i, text in enumerate(val.texts) if text not in tested]
    if not kept:
        raise DataError(
            "every validation text is also in the test file, so the model would be chosen on its test",
            found=f"{len(val)} texts in {report['val_file']['source']}, all of them in {report['test_file']['source']}",
            fix="Give [[--val-data||val_path]] and [[--test-data||test_path]] different texts, or leave out "
            "[[--val-data||val_path]] to split it from [[--data||path]].",
        )
    held["val"] = val.subset(kept)
    return len(val) - len(kept)


def _given_splits(
    data: TextDataset,
    given: dict[str, Table],
    dedupe_texts: bool,
    fractions: tuple[float, float, float],
    seed: int,
    report: Report,
) -> tuple[TextDataset, TextDataset, TextDataset]:
    """Validation and/or test from their own files; the main data is training (and the split not given).

    A text of a given split that is also in the main data is removed from the main data (a leak check):
    otherwise the model would be scored on texts it trained on.
    """
    held: dict[str, TextDataset] = {}
    for name, table in given.items():
        part, part_report = clean(table)
        if dedupe_texts:
            part, part_report["dedupe"] = dedupe(part)
        if len(part) == 0:
            raise DataError(f"no labelled text in the {name} file {table.source}", expected="rows with text and label")
        held[name] = part
        report[f"{name}_file"] = {"source": table.source, **part_report}
    in_both = _checked_against_test(held, report)
    seen = {text: name for name, part in held.items() for text in part.texts}
    leaked = Counter(seen[text] for text in data.texts if text in seen)
    if leaked and sum(leaked.values()) == len(data):
        files = " and ".join(f"the {'validation' if name == 'val' else name} file" for name in held)
        raise DataError(
            f"every training text is also in {files}, so none is left to train on",
            found=f"{len(data)} texts in {report.get('source', 'the data')}, all of them in {files}",
            fix="Give [[--data||path]] the training texts alone, or leave out "
            "[[--val-data/--test-data||val_path/test_path]] to split it.",
        )
    data = data.subset([i for i, text in enumerate(data.texts) if text not in seen])
    report["leak_check"] = {f"removed_from_training_also_in_{name}": leaked.get(name, 0) for name in held}
    if in_both is not None:
        report["leak_check"]["removed_from_val_also_in_test"] = in_both
    train, val, test = data, held.get("val"), held.get("test")
    train_share, val_share, test_share = fractions
    if val is None:
        train, val = _hold_out(train, val_share / (train_share + val_share), seed)
    if test is None:
        train, test = _hold_out(train, test_share / (train_share + test_share), seed)
    unknown = sorted((set(val.labels) | set(test.labels)) - set(train.labels))
    if unknown:
        raise DataError(
            "the validation or test file has labels that training never sees",
            expected=f"labels among {', '.join(sorted(set(train.labels)))}",
            found=", ".join(unknown[:5]),
            fix="Map them to known labels, or add training texts of those classes.",
        )
    if min(len(train), len(val), len(test)) == 0:
        raise DataError("a split is empty", found=f"{len(train)}/{len(val)}/{len(test)} texts", fix="Add more texts.")
    return train, val, test


def prepare(
    table: Table,
    *,
    dedupe_texts: bool = True,
    balance: str = "none",
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 123,
    given: dict[str, Table] | None = None,
) -> PreparedData:
    """Clean, dedupe, balance and split a table, recording what each step did.

    ``undersample`` is applied before the split (the reference protocol: every split is balanced);
    ``oversample`` only to the training split, so that no copy of a training text reaches validation
    or test; ``class_weight`` leaves the data as is and returns loss weights computed on training.
    ``given`` maps ``val`` and/or ``test`` to tables that are those splits as they are (cleaned and
    deduplicated, never balanced); the fractions then only divide the main table into what is not given.
    """
    report: Report = {"source": table.source}
    if table.guessed is not None:
        report["columns_guessed"] = {"text": table.guessed[0], "label": table.guessed[1]}
    if table.unused and table.read is not None:
        report["columns_read"] = {"text": table.read[0], "label": table.read[1], "not_read": list(table.unused)}
    data, report["clean"] = clean(table)
    cleaned = data
    if dedupe_texts:
        data, report["dedupe"] = dedupe(data)
    if len(data) == 0:
        raise DataError(
            f"no labelled text left in {table.source} after cleaning",
            expected="rows with a non-empty text and a label",
            found=f"{len(table)} rows, of which {report['clean']['dropped_empty_text']} without text "
            f"and {report['clean']['dropped_missing_label']} without label",
            fix="Check the [[--text-col||text_col]] and [[--label-col||label_col]] choice.",
        )
    counts = data.class_counts()
    if len(counts) < 2:
        found = f"only '{next(iter(counts))}' ({len(data)} texts) in {table.source}"
        if len(cleaned.class_counts()) > 1:  # deduplication dropped the others: each text had this label first
            conflicts = report["dedupe"]["conflicting_labels"]
            raise DataError(
                "a classifier needs at least two classes, and deduplication left one",
                found=f"{found}, after dropping {report['dedupe']['dropped_duplicates']} duplicate rows ({conflicts} "
                f"text{'s' if conflicts != 1 else ''} with conflicting labels: the first row's label is kept)",
                fix="Fix the labels of those texts, or pass [[--keep-duplicates||dedupe=False]].",
            )
        raise DataError(
            "a classifier needs at least two classes",
            found=found,
            fix="Check the [[--label-col||label_col]] choice, or add examples of the other classes.",
        )
    by_case: dict[str, list[str]] = defaultdict(list)
    for label in sorted(counts):
        by_case[label.casefold()].append(label)
    alike = [group for group in by_case.values() if len(group) > 1]
    if alike:  # kept apart, as given: said, since most often they are one class written two ways
        report["labels_differing_in_case"] = alike
    if balance == "undersample":
        data, report["balance"] = undersample(data, seed)
    if given:
        train, val, test = _given_splits(data, given, dedupe_texts, fractions, seed, report)
        report["split"] = {name: part.class_counts() for name, part in (("train", train), ("val", val), ("test", test))}
        report["sources"] = {
            "train": table.source,
            **{name: given[name].source if name in given else table.source for name in ("val", "test")},
        }
    else:
        try:
            train, val, test, report["split"] = split(data, fractions, seed)
        except DataError as exc:
            guessed = report.get("columns_guessed")
            if guessed is not None and exc.problem.startswith("a class is too small"):
                # many one-text "classes" are most often texts taken for labels: the guess went the wrong way
                raise DataError(
                    exc.problem,
                    expected=exc.expected,
                    found=f"{exc.found}, labels from column '{guessed['label']}' (guessed: neither column has a "
                    "usual name)",
                    fix=f"If the texts are in '{guessed['label']}', pass [[--text-col {guessed['label']} --label-col "
                    f"{guessed['text']}||text_col={guessed['label']!r}, label_col={guessed['text']!r}]]; "
                    f"else {_lowered(exc.fix)}",
                ) from None
            # before deduplication, which keeps one text per swapped "label"
            distinct = len(set(cleaned.labels)) if table.read and exc.problem.startswith("a class is too small") else 0
            if table.read and distinct > max(20, len(cleaned) // 2):
                # nearly as many classes as texts: the label column holds texts (the two columns were swapped)
                text, label = table.read
                raise DataError(
                    exc.problem,
                    expected=exc.expected,
                    found=f"{distinct} different labels among {len(cleaned)} rows, from column '{label}'",
                    fix=f"If '{label}' holds the texts, pass [[--text-col {label} --label-col {text}||"
                    f"text_col={label!r}, label_col={text!r}]]; else {_lowered(exc.fix)}",
                ) from None
            if balance != "undersample":
                raise
            before = report["balance"]["before"]
            raise DataError(  # the texts are few because of balancing: say so, and that it can be changed
                exc.problem,
                expected=exc.expected,
                found=f'{exc.found} after [[--balance undersample||balance="undersample"]] cut '
                f"{sum(before.values())} texts to {len(data)} (the smallest class's {min(before.values())} of each "
                "class)",
                fix=f"{exc.fix} Or choose another [[--balance||balance]] (class_weight keeps every text).",
            ) from None
    weights = None
    if balance == "oversample":
        train, report["balance"] = oversample(train, seed)
        report["split"]["train"] = train.class_counts()
    elif balance == "class_weight":
        weights = class_weights(train)
        report["balance"] = {"method": "class_weight", "weights": weights}
    elif balance == "none":
        report["balance"] = {"method": "none"}
    return PreparedData(train, val, test, sorted(counts), report, weights)


def _lowered(fix: str | None) -> str:
    """A fix sentence to follow "else": its first letter in lower case."""
    return (fix or "")[:1].lower() + (fix or "")[1:]


def _positions_by_class(data: TextDataset) -> dict[str, list[int]]:
    by_class: dict[str, list[int]] = defaultdict(list)
    for position, label in enumerate(data.labels):
        by_class[label].append(position)
    return dict(by_class)


def describe(data: PreparedData) -> str:
    """A one-paragraph summary of what preparation did, for logs and the CLI."""
    r = data.report
    parts = [f"{r['clean']['rows_in']} rows read"]
    if "columns_guessed" in r:
        guessed = r["columns_guessed"]
        parts.append(f"texts from column '{guessed['text']}', labels from '{guessed['label']}' (guessed)")
    if "columns_read" in r:
        read = r["columns_read"]
        unread = ", ".join(read["not_read"])
        parts.append(f"texts from column '{read['text']}', labels from '{read['label']}' (not read: {unread})")
    dropped = r["clean"]["dropped_empty_text"] + r["clean"]["dropped_missing_label"]
    if dropped:
        parts.append(f"{dropped} dropped by cleaning")
    if "dedupe" in r:
        parts.append(f"{r['dedupe']['dropped_duplicates']} duplicates dropped")
        if r["dedupe"]["conflicting_labels"]:
            parts.append(f"{r['dedupe']['conflicting_labels']} texts had conflicting labels (first kept)")
    if r["balance"]["method"] in ("undersample", "oversample"):
        parts.append(f"{r['balance']['method']}d to {r['balance']['after']}")
    sizes = data.counts()
    parts.append(f"split {sizes['train']}/{sizes['val']}/{sizes['test']}")
    if "train_subset" in r:
        sample = r["train_subset"]
        shares = ", ".join(f"{k}={v}" for k, v in sorted(sample["classes"].items()))
        parts.append(f"trained on {sample['texts']:,} of the {sizes['train']:,} training texts (a sample: {shares})")
    for name, source in (r.get("sources") or {}).items():
        if name != "train" and source != r["sources"]["train"]:
            removed = r["leak_check"][f"removed_from_training_also_in_{name}"]
            tested = r["leak_check"].get("removed_from_val_also_in_test") if name == "val" else None
            also = f"; {tested} removed from it, also in the test file" if tested else ""
            parts.append(f"{name} from {source} ({removed} of its texts removed from training{also})")
    counter = Counter(data.train.labels)
    parts.append("train classes " + ", ".join(f"{k}={v}" for k, v in sorted(counter.items())))
    for group in r.get("labels_differing_in_case", []):
        parts.append(
            f"labels {' and '.join(repr(label) for label in group)} differ only in case: kept as different classes"
        )
    return "; ".join(parts)
