"""Readers: every format gives every row, in order, with its text and label columns resolved."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from ajuste.data.readers import detect_format, read_rows, read_table, read_texts
from ajuste.errors import ConfigError, DataError
from tests.conftest import deny_reading, make_texts, write_csv, write_jsonl

QUOTED = 'He said "call me" and left'
HALF_QUOTED = 'a lone " quote, then a comma'


def write_rows(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# -- formats -------------------------------------------------------------------------------------


def test_csv_keeps_every_row_in_order(tmp_path: Path) -> None:
    texts, labels = make_texts(30)
    texts[3] = QUOTED
    texts[4] = HALF_QUOTED
    table = read_table(write_csv(tmp_path / "data.csv", texts, labels))
    assert table.texts == texts
    assert table.labels == labels
    assert table.rows == list(range(30))
    assert table.columns == ["text", "label"]
    assert table.source == str(tmp_path / "data.csv")
    assert table.extra_ids is None


def test_csv_with_a_byte_order_mark_reads_the_header_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nhello there,ham\nwin cash,spam\n".encode("utf-8-sig"))
    table = read_table(path)
    assert table.columns == ["text", "label"]
    assert table.texts == ["hello there", "win cash"]


def test_tsv_has_no_quoting_so_quotes_stay_in_the_text(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    texts = [QUOTED, '"starts with a quote', HALF_QUOTED, "plain"]
    path.write_text("label\ttext\n" + "".join(f"ham\t{t}\n" for t in texts), encoding="utf-8")
    table = read_table(path)
    assert table.texts == texts
    assert table.labels == ["ham"] * 4


def test_a_tsv_that_a_quoting_writer_wrote_is_read_with_its_quoting(tmp_path: Path) -> None:
    """pandas' to_csv(sep="\t") and csv.writer (and predict's own --output .tsv) quote a field that holds a quote, a
    TAB or a line break: read without quoting, the quotes stayed doubled and a line break cut the record in two."""
    texts = ['He said "hi" to me', "line one\nline two", "a\ttab inside", "plain text", '"Quoted whole"']
    path = tmp_path / "written.tsv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows([text, label] for text, label in zip(texts, "ababa"))
    table = read_table(path)
    assert table.texts == texts and table.labels == list("ababa")
    # without a writer's doubled quotes or cut records, a quote is text, as before
    plain = tmp_path / "plain.tsv"
    plain.write_text('text\tlabel\n"Great"\tb\n"Hi" said he\ta\n"a ""b"" c\ta\n', encoding="utf-8")
    assert read_table(plain).texts == ['"Great"', '"Hi" said he', '"a ""b"" c']


def test_tab_extension_is_tsv(tmp_path: Path) -> None:
    assert detect_format(tmp_path / "x.tab") == "tsv"
    assert detect_format(tmp_path / "X.CSV") == "csv"
    assert detect_format(tmp_path / "x.ndjson") == "jsonl"
    assert detect_format(tmp_path / "x.pq") == "parquet"
    assert detect_format(tmp_path / "SMSSpamCollection") == "lines"


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Pass format= one of csv, tsv, jsonl, parquet, lines\.$") as caught:
        detect_format(tmp_path / "data.xml")
    assert "'.xml'" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        # named: the extension says it (--format then led to an encoding error, then to a quoting one)
        ("data.xlsx", b"PK\x03\x04", "is a spreadsheet workbook, by its name: expected a CSV, TSV, JSONL, Parquet or"),
        ("data.csv.gz", b"\x1f\x8b\x08", "is compressed (gzip)"),
        # or the first bytes, whatever the name
        ("data.csv", b"\x1f\x8b\x08\x00rest", "is a gzip-compressed file"),
        ("data.csv", b"PK\x03\x04rest", "is a zip archive (an Excel workbook is one)"),
        ("data.txt", b"PAR1rest", "is a Parquet file: expected a text file (CSV, TSV, JSONL or lines)"),
    ],
)
def test_a_compressed_or_binary_file_is_named_for_what_it_is(
    tmp_path: Path, name: str, content: bytes, said: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_table(path)
    assert said in str(caught.value)


def test_lines_end_at_a_lone_carriage_return_too(tmp_path: Path) -> None:
    # old Mac files: 48 label<TAB>text lines were read as one row (evaluate scored it, accuracy 1.0)
    path = tmp_path / "data.txt"
    path.write_bytes(b"ham\thello there\rspam\twin a prize\r\nham\tsee you\n")
    table = read_table(path)
    assert table.texts == ["hello there", "win a prize", "see you"] and table.labels == ["ham", "spam", "ham"]
    texts = tmp_path / "texts.txt"
    texts.write_bytes(b"one\rtwo\rthree\r")
    assert read_texts(texts)[0] == ["one", "two", "three"]


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    # json.dumps(ensure_ascii=False) writes U+2028 raw; str.splitlines cut the line there ("Unterminated string")
    path = tmp_path / "data.jsonl"
    rows = [{"text": "abc\u2028more\u0085end", "label": "a"}, {"text": "next", "label": "b"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert read_table(path).texts == ["abc\u2028more\u0085end", "next"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
def test_a_byte_order_mark_never_sticks_to_the_first_name(tmp_path: Path, encoding: str) -> None:
    # with utf-16-le the BOM stayed: the first column was named '\ufefftext', and could not be found
    path = tmp_path / "data.csv"
    body = "text,label\nhello,a\nbye,b\n"
    path.write_bytes(("\ufeff" + body if encoding != "utf-16" else body).encode(encoding))
    table = read_table(path, encoding=encoding)
    assert table.columns == ["text", "label"] and table.texts == ["hello", "bye"]


def test_utf16_read_as_utf8_says_which_encoding(tmp_path: Path) -> None:
    body = "text,label\n" + "".join(f"message number {i},a\n" for i in range(20))
    without = tmp_path / "nobom.csv"
    without.write_bytes(body.encode("utf-16-le"))  # iconv, bcp -w: no byte order mark
    with pytest.raises(DataError, match=r"looks like UTF-16 text without its byte order mark.*encoding='utf-16-le'"):
        read_table(without)
    marked = tmp_path / "bom.csv"
    marked.write_bytes(body.encode("utf-16"))
    with pytest.raises(DataError, match=r"UTF-16's byte order mark at its start.*encoding=\"utf-16\""):
        read_table(marked)


def test_a_column_spelt_exactly_wins_over_one_in_another_case(tmp_path: Path) -> None:
    # header text,label,Label: the last of the two (Label, holding x/y) was taken
    path = write_rows(tmp_path / "data.csv", ["text", "label", "Label"], [["hello", "a", "x"], ["bye", "b", "y"]])
    assert read_table(path).labels == ["a", "b"]


@pytest.mark.parametrize(
    ("first_line", "said"),
    [
        ("text\tlabel", "looks TSV: pass format='tsv'"),
        ("text;label", "separated by semicolons"),
        ("sep=;", "separated by semicolons"),  # the hint line a spreadsheet writes
    ],
)
def test_a_csv_of_tabs_or_semicolons_is_refused_for_training_and_for_prediction(
    tmp_path: Path, first_line: str, said: str
) -> None:
    # predict took each whole line, id and all, for the text and dropped the id column
    separator = ";" if ";" in first_line else "\t"
    path = tmp_path / "data.csv"
    rows = "".join(f"number {i}, with a comma{separator}{'ab'[i % 2]}\n" for i in range(6))
    path.write_text(first_line + "\n" + rows, encoding="utf-8")
    for read in (read_table, read_texts):
        with pytest.raises(DataError, match=said):
            read(path)


def test_a_csv_without_a_header_is_refused_rather_than_losing_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(10)), encoding="utf-8")
    with pytest.raises(DataError, match=r"the first line of .* looks like data, not column names.*found 'a'"):
        read_table(path)


def test_parquet_binary_strings_are_text(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    texts, labels = [b"hello", "caf\u00e9".encode()], [b"a", b"b"]
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary()), "label": pa.array(labels, pa.binary())}), path)
    table = read_table(path)
    assert table.texts == ["hello", "caf\u00e9"] and table.labels == ["a", "b"]  # was "b'a'", a Python repr


def test_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("text,label\nhello,ham\nwin now,spam\n", encoding="utf-8")
    table = read_table(path, file_format="csv")
    assert table.texts == ["hello", "win now"]


def test_unknown_format_name_is_a_config_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", ["a"], ["b"])
    with pytest.raises(ConfigError, match="unknown file format 'xml'"):
        read_rows(path, "xml")


def test_jsonl_keeps_every_row_and_skips_blank_lines(tmp_path: Path) -> None:
    texts, labels = make_texts(12)
    texts[0] = QUOTED
    path = write_jsonl(tmp_path / "data.jsonl", texts, labels)
    path.write_text(path.read_text(encoding="utf-8") + "\n   \n", encoding="utf-8")
    table = read_table(path)
    assert table.texts == texts
    assert table.labels == labels


def test_a_blank_line_of_a_one_column_csv_is_an_empty_text_and_keeps_the_rows_in_place(tmp_path: Path) -> None:
    # pandas writes an empty text of a one-column frame as a blank line: dropped, every later row moved up one
    texts = ["free prize now", "", "see you", "", "ok"]
    path = tmp_path / "texts.csv"
    path.write_text("text\n" + "".join(f"{text}\n" for text in texts), encoding="utf-8")  # as pandas writes it
    read, _ = read_texts(path)
    assert [t or "" for t in read] == texts
    both = tmp_path / "both.csv"
    both.write_text("text,label\na,x\n\nb,y\n", encoding="utf-8")
    assert read_table(both).texts == ["a", "b"], "a blank line is no row of several columns"


def test_jsonl_missing_keys_become_none(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [{"text": "a", "label": "x"}, {"text": "b"}, {"label": "y", "note": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    table = read_table(path)
    assert table.columns == ["text", "label", "note"]
    assert table.texts == ["a", "b", None]
    assert table.labels == ["x", None, "y"]


def test_jsonl_bad_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 of .*data\.jsonl is not valid JSON"):
        read_table(path)


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n["b", "y"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 of .* is not a JSON object") as caught:
        read_table(path)
    assert "found an array" in str(caught.value)


def test_parquet_keeps_every_row_with_missing_values_as_none(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    table = pa.table(
        {
            "id": [10, 11, 12, 13],
            "review": [QUOTED, "fine", None, "great"],
            "sentiment": ["neg", None, "pos", "pos"],
            "score": [0.5, float("nan"), 1.0, 2.0],
        }
    )
    pq.write_table(table, path)
    read = read_table(path)
    assert read.texts == [QUOTED, "fine", None, "great"]
    assert read.labels == ["neg", None, "pos", "pos"]
    assert read.extra_ids == [10, 11, 12, 13]  # as they are: a JSONL output keeps them numbers
    assert read.rows == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("value", "kind", "column"),
    [(["a", "b"], "array", "text"), ({"k": "v"}, "object", "text"), (["spam"], "array", "label")],
)
def test_a_json_array_or_object_is_no_text_or_label(tmp_path: Path, value: object, kind: str, column: str) -> None:
    # their Python spelling ("['a', 'b']") was taken as the text, or as a class of its own
    path = tmp_path / "data.jsonl"
    rows = [{"text": "fine", "label": "ham"}, {"text": "win now", "label": "spam"}]
    rows[1][column] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=f"row 2 of .*data.jsonl has a JSON {kind} as its '{column}'") as caught:
        read_table(path)
    assert "Give each row's" in str(caught.value)
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"text": ["x"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 1 of .*texts\.jsonl has a JSON array as its 'text'"):
        read_texts(texts)


def test_json_booleans_and_ids_read_as_json_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"id": 1, "text": "fine", "label": True}, {"text": "bad", "label": False}, {"id": "b", "text": "ok"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    read = read_table(path)
    assert read.labels == ["true", "false", None]  # not Python's True and False
    assert read.extra_ids == [1, None, "b"]  # a missing id is missing, not "None"
    assert read_texts(path)[1] == [1, None, "b"]


def test_a_json_boolean_id_is_written_to_csv_as_json_writes_it(tmp_path: Path) -> None:
    from ajuste.data.writers import write_predictions

    out = write_predictions(tmp_path / "p.csv", ["a", "b"], [True, 7], ["x", "y"], [[0.9, 0.1], [0.2, 0.8]], ["x", "y"])
    with out.open(encoding="utf-8", newline="") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    assert ids == ["true", "7"]  # was "True", Python's spelling


def test_parquet_nan_label_is_missing(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.pq"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [1.0, float("nan")]}), path)
    assert read_table(path).labels == ["1.0", None]


def test_unreadable_parquet_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_table(path)


def test_missing_parquet_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nothing.parquet")


def test_lines_format_label_tab_text(tmp_path: Path) -> None:
    path = tmp_path / "messages"
    path.write_text(f"ham\t{QUOTED}\r\nspam\tWIN\ta prize\n\nham\t\n", encoding="utf-8")
    table = read_table(path)  # no extension: the lines format
    assert table.columns == ["label", "text"]
    assert table.texts == [QUOTED, "WIN\ta prize", ""]
    assert table.labels == ["ham", "spam", "ham"]


def test_lines_format_line_without_tab(tmp_path: Path) -> None:
    path = tmp_path / "messages.txt"
    path.write_text("ham\tfine\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 of .* has no TAB") as caught:
        read_table(path)
    assert "'no tab here'" in str(caught.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "none.csv")
    with pytest.raises(DataError, match="is a folder"):
        read_table(tmp_path, file_format="csv")


def test_wrong_encoding_names_the_byte_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nfine,ham\ncafé crème,ham\nwin,spam\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8") as caught:
        read_table(path)
    assert "0xe9 at line 3" in str(caught.value)
    assert 'encoding="latin-1"' in str(caught.value)
    assert "--encoding latin-1" in caught.value.for_command_line()
    assert read_table(path, encoding="latin-1").texts == ["fine", "café crème", "win"]


def test_unknown_encoding_is_a_config_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", ["a"], ["b"])
    with pytest.raises(ConfigError, match="unknown text encoding 'klingon'"):
        read_table(path, encoding="klingon")


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    for name in ("empty.csv", "header.csv"):
        with pytest.raises(DataError, match="holds no data rows"):
            read_table(tmp_path / name)


def test_short_rows_give_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("text,label\nonly text\nboth,ham\n", encoding="utf-8")
    table = read_table(path)
    assert table.texts == ["only text", "both"]
    assert table.labels == [None, "ham"]


def test_unbalanced_quote_is_an_error_not_a_swallowed_file(tmp_path: Path) -> None:
    """Lenient parsing would merge every later row into one text; the reader refuses instead."""
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"ok",ham\n"never closed,spam\nmore,ham\nagain,spam\n', encoding="utf-8")
    with pytest.raises(DataError, match="not a valid CSV file") as caught:
        read_table(path)
    assert "starts at line 3" in str(caught.value)


def test_text_after_a_closing_quote_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"ok",ham\n\n"half"quoted,spam\n', encoding="utf-8")
    with pytest.raises(DataError, match="starts at line 4"):
        read_table(path)


def test_quotes_inside_csv_fields_are_text(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text('text,label\nhe said "hi" twice,ham\n"say ""yes"", then\ngo",spam\n', encoding="utf-8")
    assert read_table(path).texts == ['he said "hi" twice', 'say "yes", then\ngo']


# -- columns -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text_name", "label_name"),
    [("text", "label"), ("Message", "Category"), ("review", "sentiment"), ("sms", "y"), ("sentence", "intent")],
)
def test_known_column_names_are_found_among_others(tmp_path: Path, text_name: str, label_name: str) -> None:
    path = write_rows(
        tmp_path / "data.csv",
        ["source", label_name, "lang", text_name],
        [["web", "spam", "en", "win cash now"], ["app", "ham", "fr", "à ce soir"]],
    )
    table = read_table(path)
    assert table.texts == ["win cash now", "à ce soir"]
    assert table.labels == ["spam", "ham"]


def test_two_unknown_columns_longer_one_is_the_text(tmp_path: Path) -> None:
    texts, labels = make_texts(20)
    first = read_table(write_csv(tmp_path / "a.csv", texts, labels, text_col="body_x", label_col="kind"))
    second = read_table(write_rows(tmp_path / "b.csv", ["kind", "body_x"], [[b, a] for a, b in zip(texts, labels)]))
    for table in (first, second):
        assert table.texts == texts
        assert table.labels == labels


def test_two_columns_one_known_the_other_is_the_rest(tmp_path: Path) -> None:
    texts, labels = make_texts(6)
    table = read_table(write_csv(tmp_path / "a.csv", texts, labels, text_col="message", label_col="verdict"))
    assert (table.texts, table.labels) == (texts, labels)
    table = read_table(write_csv(tmp_path / "b.csv", texts, labels, text_col="words", label_col="label"))
    assert (table.texts, table.labels) == (texts, labels)


def test_explicit_columns_override_the_guess(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "data.csv",
        ["text", "label", "clean_text", "gold"],
        [["RAW 1", "x", "clean one", "ham"], ["RAW 2", "y", "clean two", "spam"]],
    )
    table = read_table(path, text_col="clean_text", label_col="gold")
    assert table.texts == ["clean one", "clean two"]
    assert table.labels == ["ham", "spam"]


def test_explicit_column_that_is_not_there_suggests_the_closest(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "data.csv", ["id", "sentense", "labl"], [[1, "a", "b"]])
    with pytest.raises(DataError) as caught:
        read_table(path, text_col="sentence")
    message = str(caught.value)
    assert "text column 'sentence' not in" in message
    assert "columns id, sentense, labl" in message
    assert "Did you mean 'sentense'?" in message
    with pytest.raises(DataError, match="Did you mean 'labl'") as caught:
        read_table(path, text_col="sentense", label_col="Label")
    assert "Pass label_col with one of them" in str(caught.value)


def test_unguessable_columns_list_what_is_there_and_suggest(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "data.csv", ["id", "sentense", "labl"], [[1, "a", "b"]])
    with pytest.raises(DataError, match="holds the texts") as caught:
        read_table(path)
    assert "columns id, sentense, labl" in str(caught.value)
    assert "Did you mean text_col='sentense'?" in str(caught.value)
    with pytest.raises(DataError, match="holds the labels") as caught:
        read_table(path, text_col="sentense")
    assert "Did you mean label_col='labl'?" in str(caught.value)


def test_unguessable_columns_without_near_name_give_no_false_hint(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "data.csv", ["a", "b", "c"], [[1, 2, 3]])
    with pytest.raises(DataError, match=r"Pass text_col=NAME\.$"):
        read_table(path)


def test_id_column_is_carried_into_extra_ids(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "data.csv", ["ID", "text", "label"], [["m-7", "hi", "ham"], ["m-3", "win", "spam"]])
    table = read_table(path)
    assert table.extra_ids == ["m-7", "m-3"]
    assert table.texts == ["hi", "win"]


# -- texts for prediction ------------------------------------------------------------------------


def test_read_texts_txt_keeps_empty_lines_as_rows(tmp_path: Path) -> None:
    path = tmp_path / "messages.txt"
    path.write_text('first\n\n  \nsay "hi", please\r\nlast', encoding="utf-8")
    texts, ids = read_texts(path)
    assert texts == ["first", "", "  ", 'say "hi", please', "last"]
    assert ids is None


def test_read_texts_final_newline_does_not_add_a_row(tmp_path: Path) -> None:
    path = tmp_path / "messages"
    path.write_text("one\ntwo\n\n", encoding="utf-8")
    assert read_texts(path)[0] == ["one", "two", ""]


def test_read_texts_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "messages.txt"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="holds no rows"):
        read_texts(path)


def test_read_texts_from_csv_with_ids(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.csv", ["id", "message", "extra"], [["a1", "hello", "x"], ["a2", "", "y"]])
    texts, ids = read_texts(path)
    assert texts == ["hello", ""]
    assert ids == ["a1", "a2"]


def test_read_texts_single_unknown_column_is_the_text(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.csv", ["whatever"], [["one"], ["two"]])
    assert read_texts(path) == (["one", "two"], None)


def test_read_texts_explicit_column(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.csv", ["a", "b"], [["x", "long text"]])
    assert read_texts(path, text_col="b")[0] == ["long text"]
    with pytest.raises(DataError, match="cannot tell which column"):
        read_texts(path)
    with pytest.raises(DataError, match="Did you mean 'b'") as caught:
        read_texts(path, text_col="B")
    assert "columns a, b" in str(caught.value)


def test_read_texts_jsonl_missing_text_is_none(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"other": 1}\n', encoding="utf-8")
    assert read_texts(path)[0] == ["a", None]


# -- the real SMS Spam Collection ----------------------------------------------------------------


@pytest.mark.slow
def test_sms_spam_file_reads_every_line(sms_dir: Path) -> None:
    path = sms_dir / "sms_spam" / "SMSSpamCollection"
    table = read_table(path, file_format="lines")
    assert len(table) == 5574
    assert Counter(table.labels) == {"ham": 4827, "spam": 747}
    assert all(text for text in table.texts)
    assert any('"' in (text or "") for text in table.texts)  # quotes come through as text
    assert table.rows == list(range(5574))
    raw_lines = path.read_text(encoding="utf-8").splitlines()
    assert [f"{lab}\t{text}" for lab, text in zip(table.labels, table.texts)] == raw_lines


@pytest.mark.slow
def test_sms_spam_as_tsv_would_eat_the_first_row_as_header(sms_dir: Path) -> None:
    """Read as TSV with a header the count is off by one, not merged by quotes."""
    path = sms_dir / "sms_spam" / "SMSSpamCollection"
    _, records = read_rows(path, "tsv")
    assert len(records) == 5573


# -- long texts and files the system refuses to read ----------------------------------------------


def test_a_csv_field_longer_than_the_csv_default_limit_is_data(tmp_path: Path) -> None:
    """Python's csv refuses fields over 128 KB by default; a long document is data, not a quoting error."""
    texts, labels = make_texts(10)
    texts[4] = "word " * 40_000  # 200 KB in one field
    before = csv.field_size_limit()
    table = read_table(write_csv(tmp_path / "long.csv", texts, labels))
    assert table.texts == texts and len(table.texts[4]) == 200_000
    assert csv.field_size_limit() == before  # the process-wide limit is put back
    tsv = write_rows(tmp_path / "long.tsv", ["text", "label"], [[texts[4], "ham"]], delimiter="\t")
    assert read_table(tsv).texts == [texts[4]]
    assert csv.field_size_limit() == before


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl", "data.parquet", "messages.txt"])
def test_a_file_without_read_permission_is_a_data_error(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = make_texts(6)
    path = tmp_path / name
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts, "label": labels}), path)
    else:
        path.write_text("".join(f"{lab}\t{t}\n" for t, lab in zip(texts, labels)), encoding="utf-8")
        if name.endswith(".csv"):
            write_csv(path, texts, labels)
        elif name.endswith(".jsonl"):
            write_jsonl(path, texts, labels)
    deny_reading(path, monkeypatch)
    with pytest.raises(DataError) as caught:
        read_table(path)
    message = str(caught.value)
    assert f"cannot read {path}" in message
    assert "expected a file this user may read, found permission denied" in message
    assert "chmod u+r" in message
    with pytest.raises(DataError, match="permission denied"):
        read_texts(path)


@pytest.mark.parametrize("name", ["data.json", "data.jsonl"])
def test_a_json_array_of_objects_is_read(tmp_path: Path, name: str) -> None:
    # pandas' to_json(orient="records"): "cannot tell the format", then "line 1 is not a JSON object, found list"
    path = tmp_path / name
    path.write_text(json.dumps([{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}], indent=2))
    table = read_table(path)
    assert table.texts == ["hello", "bye"] and table.labels == ["a", "b"]
    path.write_text('[{"text": "hello", "label": "a"}, 3]')
    with pytest.raises(DataError, match=r"item 2 of the JSON array in .* is not an object.*found a number"):
        read_table(path)


def test_a_json_line_of_another_type_is_named_in_json_s_words(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "hello", "label": "a"}\nnull\n')
    with pytest.raises(DataError, match=r"line 2 of .* is not a JSON object.*found null\. Fix or remove that line"):
        read_table(path)  # it said "found NoneType"


def test_a_utf8_file_with_a_stray_byte_is_not_sent_to_another_encoding(tmp_path: Path) -> None:
    # "--encoding latin-1" read the stray byte and misread every other accented character ("café" → "cafÃ©")
    path = tmp_path / "data.csv"
    lines = ["text,label", *(f"café number {i},{'ab'[i % 2]}" for i in range(10))]
    path.write_bytes("\n".join(lines[:5]).encode() + b"\nbad \x96 dash,a\n" + "\n".join(lines[5:]).encode())
    with pytest.raises(DataError) as caught:
        read_table(path)
    message = str(caught.value)
    assert "is UTF-8 but for a few bytes" in message and "byte 0x96 at line 6" in message
    assert "--encoding" not in message and "encoding=" not in message
    latin = tmp_path / "latin.csv"
    latin.write_bytes("\n".join(lines).encode("latin-1"))  # a whole file in another encoding: that advice stays
    with pytest.raises(DataError, match='encoding="latin-1"'):
        read_table(latin)


def test_a_prediction_file_of_column_names_only_says_so(tmp_path: Path) -> None:
    path = tmp_path / "texts.csv"
    path.write_text("id,text\n")
    with pytest.raises(DataError, match=r"holds no rows: expected at least one text, found column names only"):
        read_texts(path)


def test_a_parquet_file_naming_a_column_twice_says_so(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    columns = [pa.array(["hello", "bye"]), pa.array(["a", "b"]), pa.array(["x", "y"])]
    pq.write_table(pa.Table.from_arrays(columns, names=["text", "label", "label"]), path)
    with pytest.raises(DataError, match=r"names a column more than once: found 'label'"):
        read_table(path)  # it was pyarrow's "Multiple matches for FieldRef.Name(label)"


def test_a_text_file_named_as_a_workbook_is_told_how_to_be_read(tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    path.write_text("text,label\nhello,a\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_table(path)
    assert "If it holds text whatever its name, give its format: file_format='csv'." in str(caught.value)
    assert read_table(path, file_format="csv").texts == ["hello"]
