"""prepare: pure, seeded clean → dedupe → balance → stratified split, every change counted."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ajuste.data import DataSettings, load_data
from ajuste.data.dataset import Table, TextDataset
from ajuste.data.prepare import (
    apportion,
    class_weights,
    clean,
    dedupe,
    describe,
    normalise_label,
    oversample,
    prepare,
    split,
    undersample,
)
from ajuste.data.readers import read_table
from ajuste.errors import DataError
from tests.conftest import make_texts


def table_of(texts: list[str | None], labels: list[str | None], source: str = "mem") -> Table:
    return Table(texts=list(texts), labels=list(labels), rows=list(range(len(texts))), source=source)


def dataset(counts: dict[str, int]) -> TextDataset:
    """Distinct texts, ``counts[label]`` of each label, classes interleaved."""
    texts: list[str] = []
    labels: list[str] = []
    for label, count in counts.items():
        texts += [f"{label} text {i}" for i in range(count)]
        labels += [label] * count
    order = random.Random(0).sample(range(len(texts)), len(texts))
    return TextDataset([texts[i] for i in order], [labels[i] for i in order], list(range(len(texts))))


# -- clean ---------------------------------------------------------------------------------------


def test_clean_strips_and_counts_what_it_drops() -> None:
    table = table_of(
        ["  hello  ", "", "   ", None, "no label", "blank label", "both missing", "\tkept\n"],
        ["ham", "ham", "spam", "spam", None, "  ", None, " spam "],
    )
    data, report = clean(table)
    assert data.texts == ["hello", "kept"]
    assert data.labels == ["ham", "spam"]
    assert data.rows == [0, 7]
    assert report == {"rows_in": 8, "dropped_empty_text": 3, "dropped_missing_label": 3}
    assert report["rows_in"] == len(data) + report["dropped_empty_text"] + report["dropped_missing_label"]


def test_clean_leaves_the_table_alone() -> None:
    table = table_of([" a "], ["x"])
    clean(table)
    assert table.texts == [" a "]


def test_clean_writes_a_whole_number_label_like_the_int_and_drops_nan_and_null() -> None:
    table = table_of(
        ["one", "one again", "two", "minus", "half", "nan", "NaN", "null", "NULL", "none kept", "None kept"],
        ["1", "1.0", " 2.00 ", "-3.0", "1.5", "nan", "NaN", "null", "NULL", "none", "None"],
    )
    data, report = clean(table)
    assert data.labels == ["1", "1", "2", "-3", "1.5", "none", "None"]
    assert report == {"rows_in": 11, "dropped_empty_text": 0, "dropped_missing_label": 4}
    assert normalise_label(None) is None and normalise_label("  ") is None
    assert normalise_label("Null") is None and normalise_label("nAn") is None  # any case


def _labels_file(path: Path, labels: list[object]) -> Path:
    """``path`` (.csv, .jsonl or .parquet) with one text per label, written with each format's own types."""
    texts = [f"text number {i}" for i in range(len(labels))]
    if path.suffix == ".csv":
        path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in zip(texts, labels)), "utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels)), "utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts, "label": pa.array(labels)}), path)
    return path


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("data.csv", ["1", "1.0", "0", "0.0", "NaN", "null", "", "nan"]),
        ("data.jsonl", [1, 1.0, 0, 0.0, "NaN", None, "", "null"]),
        ("data.parquet", [1.0, 1.0, 0.0, 0.0, float("nan"), None, float("nan"), None]),
    ],
)
def test_numeric_labels_read_from_a_file_are_one_class_each(tmp_path: Path, name: str, labels: list[object]) -> None:
    data, report = clean(read_table(_labels_file(tmp_path / name, labels)))
    assert data.labels == ["1", "1", "0", "0"]
    assert data.rows == [0, 1, 2, 3]
    assert report["dropped_missing_label"] == 4


# -- dedupe --------------------------------------------------------------------------------------


def test_dedupe_keeps_the_first_occurrence() -> None:
    data = TextDataset(["a", "b", "a", "c", "b", "a"], ["x", "y", "x", "x", "y", "x"], [10, 11, 12, 13, 14, 15])
    kept, report = dedupe(data)
    assert kept.texts == ["a", "b", "c"]
    assert kept.rows == [10, 11, 13]
    assert report == {"dropped_duplicates": 3, "conflicting_labels": 0, "conflict_examples": []}


def test_dedupe_reports_conflicting_labels_and_keeps_the_first_label() -> None:
    data = TextDataset(["win", "hi", "win", "hi", "ok"], ["spam", "ham", "ham", "ham", "ham"], [0, 1, 2, 3, 4])
    kept, report = dedupe(data)
    assert dict(zip(kept.texts, kept.labels)) == {"win": "spam", "hi": "ham", "ok": "ham"}
    assert report["dropped_duplicates"] == 2
    assert report["conflicting_labels"] == 1
    assert report["conflict_examples"] == ["win"]


def test_dedupe_is_exact_after_cleaning() -> None:
    table = table_of(["win now", " win now ", "Win now"], ["spam", "spam", "spam"])
    data, _ = clean(table)
    kept, report = dedupe(data)
    assert kept.texts == ["win now", "Win now"]  # case is not folded: exact duplicates only
    assert report["dropped_duplicates"] == 1


# -- balance -------------------------------------------------------------------------------------


def test_undersample_keeps_the_smallest_class_size_in_order() -> None:
    data = dataset({"ham": 50, "spam": 12, "other": 20})
    kept, report = undersample(data, seed=1)
    assert kept.class_counts() == {"ham": 12, "other": 12, "spam": 12}
    assert kept.rows == sorted(kept.rows)
    assert set(kept.rows) <= set(data.rows)
    assert [t for t in kept.texts if t.startswith("spam")] == [t for t in data.texts if t.startswith("spam")]
    assert report == {"method": "undersample", "before": data.class_counts(), "after": kept.class_counts()}


def test_undersample_is_seeded() -> None:
    data = dataset({"ham": 60, "spam": 10})
    assert undersample(data, seed=5)[0] == undersample(data, seed=5)[0]
    assert undersample(data, seed=5)[0].rows != undersample(data, seed=6)[0].rows


def test_oversample_repeats_smaller_classes_up_to_the_largest() -> None:
    data = dataset({"ham": 30, "spam": 7, "other": 11})
    grown, report = oversample(data, seed=2)
    assert grown.class_counts() == {"ham": 30, "other": 30, "spam": 30}
    assert grown.texts[: len(data)] == data.texts  # every original text once, in order, then copies
    assert set(grown.texts) == set(data.texts)
    assert report["before"] == {"ham": 30, "other": 11, "spam": 7}
    assert oversample(data, seed=2)[0] == grown
    assert oversample(data, seed=3)[0] != grown


def test_class_weights_are_inverse_frequency() -> None:
    weights = class_weights(dataset({"ham": 30, "spam": 10}))
    assert weights == pytest.approx({"ham": 40 / (2 * 30), "spam": 40 / (2 * 10)})


def test_oversample_touches_only_train_and_no_copy_leaks() -> None:
    texts, labels = make_texts(200)
    texts += [f"rare {i}" for i in range(30)]
    labels += ["rare"] * 30
    table = table_of(texts, labels)
    plain = prepare(table, balance="none", seed=4)
    over = prepare(table, balance="oversample", seed=4)
    assert over.val == plain.val
    assert over.test == plain.test
    assert set(over.train.texts) == set(plain.train.texts)
    counts = over.train.class_counts()
    assert len(set(counts.values())) == 1
    assert counts["ham"] == plain.train.class_counts()["ham"]
    assert over.report["split"]["train"] == counts
    held_out = set(over.val.texts) | set(over.test.texts)
    assert not set(over.train.texts) & held_out
    assert over.split_record()["train"] == sorted(set(plain.train.rows))


def test_class_weight_leaves_the_data_and_weighs_train() -> None:
    texts, labels = make_texts(90)
    texts += [f"rare {i}" for i in range(20)]
    labels += ["rare"] * 20
    table = table_of(texts, labels)
    plain = prepare(table, balance="none", seed=8)
    weighted = prepare(table, balance="class_weight", seed=8)
    assert (weighted.train, weighted.val, weighted.test) == (plain.train, plain.val, plain.test)
    assert plain.class_weights is None
    assert weighted.class_weights == pytest.approx(class_weights(weighted.train))
    assert weighted.class_weights is not None
    assert weighted.class_weights["rare"] > weighted.class_weights["ham"]
    assert weighted.report["balance"]["method"] == "class_weight"


def test_undersample_in_prepare_balances_every_split() -> None:
    texts, labels = make_texts(60)
    texts += [f"extra ham {i}" for i in range(40)]
    labels += ["ham"] * 40
    data = prepare(table_of(texts, labels), balance="undersample", seed=1)
    for part in (data.train, data.val, data.test):
        counts = part.class_counts()
        assert abs(counts["ham"] - counts["spam"]) <= 1
    assert data.report["balance"]["after"] == {"ham": 30, "spam": 30}


# -- split ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "fractions"),
    [
        ({"ham": 70, "spam": 30}, (0.7, 0.1, 0.2)),
        ({"a": 101, "b": 57, "c": 13}, (0.7, 0.1, 0.2)),
        ({"a": 500, "b": 9}, (0.8, 0.1, 0.1)),
        ({"a": 40, "b": 40, "c": 40, "d": 5}, (0.6, 0.2, 0.2)),
    ],
)
def test_split_sizes_follow_the_reference_protocol(
    counts: dict[str, int], fractions: tuple[float, float, float]
) -> None:
    data = dataset(counts)
    n = len(data)
    train, val, test, report = split(data, fractions, seed=3)
    assert len(train) == int(n * fractions[0])
    assert len(val) == int(n * fractions[1])
    assert len(test) == n - len(train) - len(val)
    rows = [train.rows, val.rows, test.rows]
    assert sorted(train.rows + val.rows + test.rows) == sorted(data.rows)
    assert all(part == sorted(part) for part in rows)
    for part in (train, val, test):
        assert set(part.labels) == set(counts), "every class in every split"
        for label, total in counts.items():  # stratified: each class close to its overall share
            assert abs(part.class_counts()[label] - total * len(part) / n) <= 1.0
    assert report == {"train": train.class_counts(), "val": val.class_counts(), "test": test.class_counts()}


def test_split_same_seed_same_split_other_seed_other_split() -> None:
    data = dataset({"ham": 80, "spam": 40})
    first = split(data, (0.7, 0.1, 0.2), seed=123)
    assert split(data, (0.7, 0.1, 0.2), seed=123) == first
    assert split(data, (0.7, 0.1, 0.2), seed=124)[2].rows != first[2].rows


def test_split_neither_uses_nor_changes_the_global_random_state() -> None:
    data = dataset({"ham": 40, "spam": 40})
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    first = split(data, (0.7, 0.1, 0.2), seed=9)
    undersample(data, seed=9)
    oversample(data, seed=9)
    assert (np.random.get_state()[1] == numpy_state).all()
    assert random.getstate() == python_state
    np.random.random(10)  # move the global state on: the split must not notice
    assert split(data, (0.7, 0.1, 0.2), seed=9) == first


def test_split_refuses_a_class_too_small() -> None:
    data = dataset({"ham": 40, "spam": 40, "rare": 2, "odd": 1})
    with pytest.raises(DataError, match="too small to split") as caught:
        split(data, (0.7, 0.1, 0.2), seed=1)
    assert "'odd' (1), 'rare' (2)" in str(caught.value)
    assert "at least 3" in str(caught.value)


def test_split_refuses_to_leave_a_split_empty() -> None:
    data = dataset({"ham": 5, "spam": 4})  # int(9 * 0.1) == 0 validation texts
    with pytest.raises(DataError, match="too few texts") as caught:
        split(data, (0.7, 0.1, 0.2), seed=1)
    assert "9 texts" in str(caught.value)
    assert "6/0/3" in str(caught.value)
    train, val, test, _ = split(dataset({"ham": 5, "spam": 5}), (0.7, 0.1, 0.2), seed=1)
    assert (len(train), len(val), len(test)) == (7, 1, 2)


# -- apportion -----------------------------------------------------------------------------------


def test_apportion_is_proportional_with_largest_remainder() -> None:
    assert apportion(10, [50, 30, 20]) == [5, 3, 2]
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]  # ties go to the first group
    assert apportion(7, [2, 5]) == [2, 5]
    assert apportion(149, [747, 747]) == [75, 74]


def test_apportion_gives_every_group_one_when_it_can() -> None:
    assert apportion(5, [1, 100]) == [1, 4]
    assert apportion(3, [1, 1, 1000]) == [1, 1, 1]
    assert apportion(1, [5, 5, 5]) == [1, 0, 0]  # fewer than groups: cannot
    assert apportion(0, [3, 4]) == [0, 0]


@pytest.mark.parametrize("seed", range(20))
def test_apportion_always_sums_to_total(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.randint(1, 500) for _ in range(rng.randint(1, 6))]
    total = rng.randint(0, sum(sizes))
    shares = apportion(total, sizes)
    assert sum(shares) == total
    assert all(share >= 0 for share in shares)
    if total >= len(sizes):
        assert min(shares) >= 1


# -- prepare -------------------------------------------------------------------------------------


def test_prepare_reports_every_step() -> None:
    texts, labels = make_texts(60)
    texts += [texts[0], "  ", texts[1]]
    labels += [labels[0], "ham", None]  # type: ignore[list-item]
    data = prepare(table_of(texts, labels, source="file.csv"), seed=1)
    report = data.report
    assert report["source"] == "file.csv"
    assert report["clean"] == {"rows_in": 63, "dropped_empty_text": 1, "dropped_missing_label": 1}
    assert report["dedupe"]["dropped_duplicates"] == 1
    assert report["balance"] == {"method": "none"}
    assert sum(data.counts().values()) == 60
    assert data.labels == ["ham", "spam"]
    assert data.class_weights is None
    summary = describe(data)
    assert "63 rows read" in summary
    assert "2 dropped by cleaning" in summary
    assert "1 duplicates dropped" in summary
    assert "split 42/6/12" in summary


def test_prepare_without_dedupe_keeps_duplicates() -> None:
    texts, labels = make_texts(40)
    data = prepare(table_of(texts + texts[:10], labels + labels[:10]), dedupe_texts=False)
    assert "dedupe" not in data.report
    assert sum(data.counts().values()) == 50


def test_prepare_split_record_traces_rows_back() -> None:
    texts, labels = make_texts(50)
    table = Table(texts, list(labels), [r * 2 for r in range(50)], "mem")  # type: ignore[arg-type]
    data = prepare(table, seed=2)
    record = data.split_record()
    by_row = dict(zip(table.rows, table.texts))
    for name, part in (("train", data.train), ("val", data.val), ("test", data.test)):
        assert sorted(record[name]) == sorted(part.rows)
        assert [by_row[r] for r in part.rows] == part.texts


def test_prepare_nothing_left_after_cleaning() -> None:
    with pytest.raises(DataError, match=r"no labelled text left in src\.csv") as caught:
        prepare(table_of(["", "  ", "text"], ["a", "b", None], source="src.csv"))
    assert "3 rows, of which 2 without text and 1 without label" in str(caught.value)


def test_prepare_single_class() -> None:
    texts, _ = make_texts(20)
    with pytest.raises(DataError, match="at least two classes") as caught:
        prepare(table_of(texts, ["ham"] * 20, source="one.csv"))
    assert "only 'ham' (20 texts) in one.csv" in str(caught.value)


def test_load_data_from_a_file_uses_the_settings(tmp_path: Path) -> None:
    texts, labels = make_texts(100)
    path = tmp_path / "data.tsv"
    path.write_text("label\ttext\n" + "".join(f"{b}\t{a}\n" for a, b in zip(texts, labels)), encoding="utf-8")
    settings = DataSettings(path=str(path), split=(0.5, 0.25, 0.25))
    data = load_data(settings, seed=7)
    assert data.counts() == {"train": 50, "val": 25, "test": 25}
    assert data.report["balance"] == {"method": "none"}
    assert load_data(settings, seed=7).test == data.test


# -- the real SMS Spam Collection ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sms_table(sms_dir: Path) -> Table:
    return read_table(sms_dir / "sms_spam" / "SMSSpamCollection", file_format="lines")


@pytest.mark.slow
def test_sms_defaults_dedupe_and_undersample(sms_table: Table, sms_dir: Path) -> None:
    data = load_data(DataSettings(dataset="sms-spam", data_dir=str(sms_dir)), seed=123)
    assert data.report["dedupe"]["dropped_duplicates"] == 5574 - 5160
    assert data.report["balance"]["before"] == {"ham": 4518, "spam": 642}
    assert data.report["balance"]["after"] == {"ham": 642, "spam": 642}
    assert data.counts() == {"train": 898, "val": 128, "test": 258}
    assert data == prepare(sms_table, balance="undersample", seed=123)
    all_texts = data.train.texts + data.val.texts + data.test.texts
    assert len(set(all_texts)) == len(all_texts) == 2 * 642


@pytest.mark.slow
def test_sms_reference_protocol_with_duplicates_kept(sms_table: Table) -> None:
    data = prepare(sms_table, dedupe_texts=False, balance="undersample", seed=123)
    assert sum(data.counts().values()) == 1494
    assert data.counts() == {"train": 1045, "val": 149, "test": 300}
    assert data.test.class_counts() == {"ham": 150, "spam": 150}
    assert Counter(data.train.labels + data.val.labels + data.test.labels) == {"ham": 747, "spam": 747}


def test_one_class_left_by_deduplication_says_so() -> None:
    table = Table(texts=["same text"] * 20, labels=["a"] * 10 + ["b"] * 10, rows=list(range(20)), source="dd.csv")
    with pytest.raises(DataError) as caught:
        prepare(table)
    said = str(caught.value)
    assert "deduplication left one" in said and "after dropping 19 duplicate rows" in said
    assert "1 text with conflicting labels" in said and "dedupe=False" in said


def test_too_few_texts_after_undersampling_says_so() -> None:
    texts = [f"big text {i}" for i in range(40)] + [f"small {i}" for i in range(3)]
    table = Table(texts=texts, labels=["a"] * 40 + ["b"] * 3, rows=list(range(43)), source="us.csv")
    with pytest.raises(DataError) as caught:
        prepare(table, balance="undersample")
    said = str(caught.value)
    assert "too few texts to split" in said and 'after balance="undersample" cut 43 texts to 6' in said
    assert "choose another balance" in said


def test_labels_that_differ_only_in_case_are_said_and_kept_apart() -> None:
    # 'Pos' and 'pos' became two classes without a word: most often one class written two ways
    labels = ["Pos", "pos", "neg"] * 10
    texts = [f"text number {i}" for i in range(len(labels))]
    data = prepare(table_of(texts, labels))
    assert data.labels == ["Pos", "neg", "pos"]  # kept as given: a label's case may matter
    assert data.report["labels_differing_in_case"] == [["Pos", "pos"]]
    assert "labels 'Pos' and 'pos' differ only in case: kept as different classes" in describe(data)
    plain = prepare(table_of(texts, ["pos", "neg", "other"] * 10))
    assert "labels_differing_in_case" not in plain.report and "differ only in case" not in describe(plain)


def test_columns_guessed_by_their_lengths_are_said_and_a_wrong_guess_gets_the_way_round(tmp_path: Path) -> None:
    # query,intent_name with long intent names: the intents were taken for the texts, and the error only said
    # "a class is too small"
    path = tmp_path / "intents.csv"
    intents = ["account_management_password_reset_request", "billing_invoice_copy_request_for_last_month"]
    path.write_text("query,intent_name\n" + "".join(f"ask {i},{intents[i % 2]}\n" for i in range(30)), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_data(DataSettings(path=str(path)))
    message = str(caught.value)
    assert "labels from column 'query' (guessed: neither column has a usual name)" in message
    assert "pass text_col='query', label_col='intent_name'" in message
    right = tmp_path / "right.csv"
    right.write_text(
        "utterance,intent\n" + "".join(f"ask about my account please {i},i{i % 2}\n" for i in range(30)),
        encoding="utf-8",
    )
    data = load_data(DataSettings(path=str(right)))  # "intent" is a usual name: nothing guessed
    assert "columns_guessed" not in data.report
    odd = tmp_path / "odd.csv"
    odd.write_text("q,tag\n" + "".join(f"ask about my account please {i},t{i % 2}\n" for i in range(30)))
    guessed = load_data(DataSettings(path=str(odd)))
    assert guessed.report["columns_guessed"] == {"text": "q", "label": "tag"}
    assert "texts from column 'q', labels from 'tag' (guessed)" in describe(guessed)


def test_which_columns_were_read_is_said_when_others_were_left_unread(tmp_path: Path) -> None:
    # title,body,category,sentiment: body and category were read by their names, and nothing said so
    path = tmp_path / "news.csv"
    rows = "".join(f"title {i},long body of the story {i},{'ab'[i % 2]},{'+-'[i % 3 % 2]}\n" for i in range(30))
    path.write_text("title,body,category,sentiment\n" + rows, encoding="utf-8")
    data = load_data(DataSettings(path=str(path)))
    assert data.report["columns_read"] == {"text": "body", "label": "category", "not_read": ["title", "sentiment"]}
    assert "texts from column 'body', labels from 'category' (not read: title, sentiment)" in describe(data)
    named = load_data(DataSettings(path=str(path), text_col="title", label_col="sentiment"))
    assert "columns_read" not in named.report, "both given: nothing to say"
    plain = tmp_path / "plain.csv"
    plain.write_text("id,text,label\n" + "".join(f"{i},text number {i},{'ab'[i % 2]}\n" for i in range(30)))
    assert "columns_read" not in load_data(DataSettings(path=str(plain))).report, "an id column is expected"


def test_swapped_text_and_label_columns_are_named_as_the_likely_cause(tmp_path: Path) -> None:
    # --text-col label --label-col text: "a class is too small ... found 'brilliant story 0' (1), ..." and no more
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"story number {i},{'ab'[i % 2]}\n" for i in range(60)), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_data(DataSettings(path=str(path), text_col="label", label_col="text"))
    message = str(caught.value)
    assert "found 60 different labels among 60 rows, from column 'text'" in message
    assert "If 'text' holds the texts, pass text_col='text', label_col='label'; else add examples" in message
    few = tmp_path / "few.csv"  # a genuinely small class keeps the plain message
    few.write_text("text,label\n" + "".join(f"story {i},{'a' if i else 'b'}\n" for i in range(60)), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_data(DataSettings(path=str(few)))
    assert "different labels" not in str(caught.value) and "'b' (1)" in str(caught.value)
