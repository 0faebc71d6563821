"""Reading labelled texts from CSV, TSV, JSONL, Parquet and ``label<TAB>text`` line files.

Every reader returns a :class:`~ajuste.data.dataset.Table` holding *every* data row of the file, in
order, with missing values as ``None``: dropping rows is the cleaning step's job, where it is counted.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from pathlib import Path
from typing import Literal

from ajuste.data.dataset import Table
from ajuste.errors import ConfigError, DataError
from ajuste.texts import valid_text

__all__ = ["LABEL_COLUMN_NAMES", "TEXT_COLUMN_NAMES", "detect_format", "read_rows", "read_table", "read_texts"]

TEXT_COLUMN_NAMES = ("text", "texts", "sentence", "message", "sms", "content", "body", "review", "document")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "y", "sentiment", "intent")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # one object per line, or one array of objects
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "lines",
    "": "lines",
}

Rows = tuple[list[str], list[dict[str, object]]]
_DECOMPRESS = "Decompress it first (as with gunzip, bunzip2, unxz or unzip)."
#: Extensions of files that are not read as they are: what each is, and what to do.
_NOT_TEXT = {
    ".gz": ("compressed (gzip)", _DECOMPRESS),
    ".bz2": ("compressed (bzip2)", _DECOMPRESS),
    ".xz": ("compressed (xz)", _DECOMPRESS),
    ".zip": ("a zip archive", _DECOMPRESS),
    ".xlsx": ("a spreadsheet workbook", "Save the sheet as CSV (or Unicode text, a TSV)."),
    ".xls": ("a spreadsheet workbook", "Save the sheet as CSV (or Unicode text, a TSV)."),
    ".ods": ("a spreadsheet workbook", "Save the sheet as CSV (or Unicode text, a TSV)."),
}


def detect_format(path: Path) -> str:
    """The file format implied by ``path``'s extension."""
    suffix = path.suffix.lower()
    if suffix in _NOT_TEXT:
        what, fix = _NOT_TEXT[suffix]
        raise DataError(
            f"{path} is {what}, by its name",
            expected="a CSV, TSV, JSONL, Parquet or text file",
            fix=f"{fix} If it holds text whatever its name, give its format: [[--format csv||file_format='csv']].",
        )
    if suffix not in _EXTENSIONS:
        raise _fixed_by(
            "--format",
            DataError(
                f"cannot tell the format of {path}",
                expected="one of .csv, .tsv, .jsonl, .json, .parquet, .txt or no extension",
                found=f"'{suffix}'",
                fix="Pass [[--format csv|tsv|jsonl|parquet|lines||format= one of csv, tsv, jsonl, parquet, lines]].",
            ),
        )
    return _EXTENSIONS[suffix]


def _fixed_by(option: str, error: DataError) -> DataError:
    """``error``, marked as one whose fix is ``option``: a file named by another command's flag (``distill
    --unlabeled``), where that option does not exist, gets another fix (see :func:`read_texts`)."""
    error.option = option  # type: ignore[attr-defined]
    return error


def _unreadable(path: Path, exc: OSError) -> DataError:
    return DataError.unreadable(str(path), exc, "Check that the file and its disk are still there.")


def _read_text(path: Path, encoding: str) -> str:
    try:
        if not path.exists():
            raise _fixed_by(
                "--dataset",
                DataError(
                    f"data file {path} does not exist",
                    fix="Check the path (a built-in dataset, listed by `ajuste datasets`, is named with "
                    "[[--dataset||dataset=NAME]]).",
                ),
            )
        if path.is_dir():
            raise DataError(f"{path} is a folder", expected="a data file", fix="Point at the file itself.")
        raw = path.read_bytes()
    except OSError as exc:  # exists() too raises when a parent folder may not be searched
        raise _unreadable(path, exc) from None
    _refuse_binary(path, raw)
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    if utf8:
        _refuse_utf16_without_bom(path, raw)
    try:
        # a byte order mark is not text, whatever the encoding says (utf-16-le keeps it): it would stick to the
        # first column's name or the first label
        return raw.decode("utf-8-sig" if utf8 else encoding).removeprefix("\ufeff")
    except LookupError:
        raise ConfigError(
            f"unknown text encoding '{encoding}'", fix="Use a Python codec name such as utf-8, latin-1 or cp1252."
        ) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        found = f"byte 0x{raw[exc.start]:02x} at line {line}"
        if utf8 and _mostly_utf8(raw):
            # --encoding latin-1 would read that byte, and misread every other accented character of the file
            raise DataError(
                f"{path} is UTF-8 but for a few bytes, which some other encoding wrote",
                found=found,
                fix="Correct that line (retype its odd character), then read the file as UTF-8.",
            ) from None
        raise _fixed_by(
            "--encoding",
            DataError(
                f"{path} is not valid {encoding}",
                found=found,
                fix='Pass the file\'s encoding, for example [[--encoding latin-1||encoding="latin-1"]] or '
                '[[--encoding cp1252||encoding="cp1252"]].',
            ),
        ) from None


def _lines(text: str) -> list[str]:
    """The lines of ``text``, ended by LF, CRLF or a lone CR (old Mac files; a file of them was read as one line).
    Not by the other characters that ``str.splitlines`` takes for line ends (U+2028, U+0085...): a JSON string
    may hold them raw, and a text keeps them."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


#: How a file that is not text begins, and what it is.
_MAGIC = (
    (b"\x1f\x8b", "a gzip-compressed file", "Decompress it first (gunzip FILE)."),
    (b"BZh", "a bzip2-compressed file", "Decompress it first (bunzip2 FILE)."),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "Decompress it first (unxz FILE)."),
    (b"PK\x03\x04", "a zip archive (an Excel workbook is one)", "Unzip it, or save the sheet as CSV."),
    (b"PAR1", "a Parquet file", 'Pass [[--format parquet||format="parquet"]], or name it .parquet.'),
)


def _mostly_utf8(raw: bytes) -> bool:
    """Whether the bytes that are not ASCII are UTF-8 characters nearly all (a file saved as UTF-8, into which
    a line from another encoding was pasted), rather than single bytes of a one-byte encoding."""
    decoded = raw.decode("utf-8", errors="replace")
    bad = decoded.count("\ufffd") - raw.count("\ufffd".encode())
    good = sum(1 for character in decoded if ord(character) > 127 and character != "\ufffd")
    return good >= 3 and bad * 10 <= good


def _refuse_binary(path: Path, raw: bytes) -> None:
    """A compressed file, an archive or a Parquet file read as text: each byte was decoded, and the messages that
    followed (an encoding, a quote) sent the user the wrong way."""
    for magic, what, fix in _MAGIC:
        if raw.startswith(magic):
            raise DataError(f"{path} is {what}", expected="a text file (CSV, TSV, JSONL or lines)", fix=fix)


def _refuse_utf16_without_bom(path: Path, raw: bytes) -> None:
    """UTF-16 without its byte order mark (``iconv``, SQL Server's ``bcp -w``) decodes as UTF-8 with a NUL after
    or before every ASCII character, and reads as nonsense rather than failing."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _fixed_by(
            "--encoding",
            DataError(
                f"{path} is not valid UTF-8",
                found="UTF-16's byte order mark at its start",
                fix='Pass the file\'s encoding: [[--encoding utf-16||encoding="utf-16"]].',
            ),
        )
    head = raw[:4096]
    if len(head) < 8 or head.count(0) < len(head) // 4:
        return
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if max(even, odd) < len(head) // 4:
        return
    order = "utf-16-le" if odd > even else "utf-16-be"
    raise _fixed_by(
        "--encoding",
        DataError(
            f"{path} looks like UTF-16 text without its byte order mark",
            found=f"a NUL byte beside most characters of its first {len(head):,} bytes",
            fix=f"Pass [[--encoding {order}||encoding={order!r}]].",
        ),
    )


def _read_delimited(path: Path, text: str, delimiter: str, quoting: Literal[0, 1, 2, 3]) -> Rows:
    """The header and records of ``text``, the content of ``path`` (named in messages)."""
    # strict: an unbalanced quote is an error, not a field that silently swallows the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    start = 1  # the line where the record being read begins
    # A long text is data, not a quoting error: no field can be longer than the file, so that is the
    # limit while this file is read (csv's own default, 128 KB, refuses long documents). The limit is
    # process-wide, so the previous one is put back afterwards.
    previous_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    try:
        header = next(reader, None)
        if header is None:
            return [], []
        columns = [name.strip() for name in header]
        _refuse_another_format(path, "csv" if delimiter == "," else "tsv", columns)
        twice = sorted({name for name in columns if name and columns.count(name) > 1})
        if twice:  # one column would hide the other
            raise DataError(
                f"the header of {path} names a column more than once",
                found=", ".join(repr(name) for name in twice),
                fix="Give each column its own name.",
            )
        records: list[dict[str, object]] = []
        start = reader.line_num + 1
        for values in reader:
            start = reader.line_num + 1
            if not values:  # a blank line is no row of several columns; of one column, it is an empty value (as
                if len(columns) != 1:  # pandas writes an empty text), or the rows after it would be numbered wrong
                    continue
                values = [""]
            if len(values) > len(columns) and any(value.strip() for value in values[len(columns) :]):
                raise DataError(
                    f"line {start - 1} of {path} has more fields than its header",
                    found=f"{len(values)} fields, {len(columns)} columns",
                    fix='Quote the texts that hold the delimiter (as in "a, b"), or name every column in the header.',
                )
            record: dict[str, object] = {}
            for name, value in zip(columns, values):
                record[name] = value
            records.append(record)
    except csv.Error as exc:
        raise DataError(
            f"{path} is not a valid {'TSV' if delimiter == chr(9) else 'CSV'} file",
            found=f"{exc} in the record that starts at line {start}",
            fix="Check the quoting on that line, or pass [[--format||format]].",
        ) from None
    finally:
        csv.field_size_limit(previous_limit)
    return columns, records


def _read_tsv(path: Path, text: str) -> Rows:
    """IANA TSV has no quoting: a quote is part of the text (the SMS messages have many). But pandas' and Python's
    csv writers quote a field that holds a quote, a TAB or a line break (``"say ""hi"" now"``): read as plain TSV,
    such a file keeps the quotes doubled, and its line breaks split records. It is read with quoting when that
    reading is whole (no quote left open, every row as wide as the header) and the plain one shows a writer's
    quoting: a field in quotes with doubled quotes inside, or rows cut short or made too wide."""
    try:
        plain = _read_delimited(path, text, "\t", csv.QUOTE_NONE)
    except DataError as exc:  # too wide a row, perhaps a TAB inside a quoted field: the quoted reading may do
        quoted = _quoted_tsv(path, text)
        if quoted is None:
            raise exc from None
        return quoted
    return (_quoted_tsv(path, text) if _shows_quoting(plain) else None) or plain


def _quoted_tsv(path: Path, text: str) -> Rows | None:
    """The file read with quoting, when that reading is whole: no quote left open, every row as wide as the header."""
    try:
        columns, records = _read_delimited(path, text, "\t", csv.QUOTE_MINIMAL)
    except DataError:
        return None
    return (columns, records) if columns and all(len(record) == len(columns) for record in records) else None


def _shows_quoting(rows: Rows) -> bool:
    """Whether a TSV file read without quoting holds fields as a quoting writer writes them (see _read_tsv)."""
    columns, records = rows
    for record in records:
        if len(record) != len(columns):  # a line break inside a quoted field cut the record in two
            return True
        for value in record.values():
            text = str(value)
            if len(text) > 1 and text[0] == text[-1] == '"' and '""' in text[1:-1]:
                return True
    return False


_JSON_TYPES = {"dict": "an object", "list": "an array", "str": "a string", "int": "a number", "float": "a number"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return _JSON_TYPES.get(type(value).__name__, type(value).__name__)


def _read_json_array(path: Path, text: str) -> Rows:
    """A whole file that is one JSON array of objects (``pandas.to_json(orient="records")``, a ``.json`` export)."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON",
            found=f"{exc.msg} at line {exc.lineno}, column {exc.colno}",
            fix="Fix the file: one JSON array of objects, or one JSON object per line (JSONL).",
        ) from None
    if not isinstance(loaded, list):
        raise DataError(f"{path} holds one JSON {_json_type(loaded)}", expected="an array of objects, or JSONL")
    for number, record in enumerate(loaded, start=1):
        if not isinstance(record, dict):
            raise DataError(
                f"item {number} of the JSON array in {path} is not an object",
                expected='an object such as {"text": ..., "label": ...}',
                found=_json_type(record),
                fix="Give every item as an object with a text and a label.",
            )
    columns = dict.fromkeys(key for record in loaded for key in record)
    return list(columns), loaded


def _read_jsonl(path: Path, encoding: str) -> Rows:
    columns: dict[str, None] = {}
    records: list[dict[str, object]] = []
    text = _read_text(path, encoding)
    if text.lstrip().startswith("["):  # a JSON array, not one object per line
        return _read_json_array(path, text)
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"line {number} of {path} is not valid JSON",
                found=f"{exc.msg.removesuffix(' at')} at column {exc.colno}",
                fix="Fix or remove that line: each line must be one JSON object.",
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"line {number} of {path} is not a JSON object",
                expected='an object such as {"text": ..., "label": ...}',
                found=_json_type(record),
                fix="Fix or remove that line: each line must be one JSON object.",
            )
        columns.update(dict.fromkeys(record))
        records.append(record)
    return list(columns), records


def _read_parquet(path: Path) -> Rows:
    try:
        if not path.exists():
            raise _fixed_by("--dataset", DataError(f"data file {path} does not exist", fix="Check the path."))
        # A file is read here, so that a refused read gets its own message rather than pyarrow's; a
        # folder is a partitioned dataset (as Spark writes them), which pyarrow reads itself.
        raw = None if path.is_dir() else path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    import pyarrow as pa
    import pyarrow.parquet as pq  # heavy: imported only for Parquet files

    try:
        if raw is not None:  # one column would hide the other (pyarrow says "Multiple matches for FieldRef")
            names = list(pq.read_schema(pa.BufferReader(raw)).names)
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise DataError(
                    f"{path} names a column more than once",
                    found=", ".join(repr(name) for name in twice),
                    fix="Give each column its own name.",
                )
        table = pq.read_table(path if raw is None else pa.BufferReader(raw))
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path} is not a readable Parquet file", found=str(exc).splitlines()[0]) from None
    return list(table.column_names), table.to_pylist()


def _read_lines(path: Path, encoding: str) -> Rows:
    """``label<TAB>text`` per line, no header, no quoting: the SMS Spam Collection's own format."""
    records: list[dict[str, object]] = []
    for number, line in enumerate(_lines(_read_text(path, encoding)), start=1):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise DataError(
                f"line {number} of {path} has no TAB",
                expected="label<TAB>text on every line",
                found=repr(line[:40]),
                fix="Use [[--format csv/tsv/jsonl||format= csv, tsv or jsonl]] for files with a header.",
            )
        records.append({"label": label, "text": text})
    return ["label", "text"], records


def _resolved_format(path: Path, file_format: str) -> str:
    """The format a file is read in: the one given, or the one its extension says (``auto``)."""
    return detect_format(path) if file_format == "auto" else file_format


def read_rows(path: Path, file_format: str = "auto", encoding: str = "utf-8") -> Rows:
    """The column names and the records of a data file, every row kept."""
    kind = _resolved_format(path, file_format)
    if kind == "csv":
        return _read_delimited(path, _read_text(path, encoding), ",", csv.QUOTE_MINIMAL)
    if kind == "tsv":
        return _read_tsv(path, _read_text(path, encoding))
    if kind == "jsonl":
        return _read_jsonl(path, encoding)
    if kind == "parquet":
        return _read_parquet(path)
    if kind == "lines":
        return _read_lines(path, encoding)
    raise ConfigError(f"unknown file format '{file_format}'", expected="auto, csv, tsv, jsonl, parquet or lines")


def _closest(name: str, columns: list[str]) -> str:
    match = difflib.get_close_matches(name, columns, n=1, cutoff=0.5) or difflib.get_close_matches(
        name.lower(), [c.lower() for c in columns], n=1, cutoff=0.5
    )
    return f" Did you mean '{match[0]}'?" if match else ""


def _closest_to_any(names: tuple[str, ...], columns: list[str]) -> str | None:
    """The column whose name is closest to one of the usual ``names`` (a typo such as 'labl'), if any."""
    lowered = {column.lower(): column for column in columns}
    for name in names:
        match = difflib.get_close_matches(name, list(lowered), n=1, cutoff=0.75)
        if match:
            return lowered[match[0]]
    return None


def _find_column(candidates: tuple[str, ...], columns: list[str]) -> str | None:
    """The first of the usual ``candidates`` among ``columns``: spelt exactly, else in another case (the first
    such column, where two differ only in case: 'text' before 'Text')."""
    for name in candidates:
        if name in columns:
            return name
        found = next((column for column in columns if column.lower() == name), None)
        if found is not None:
            return found
    return None


def _refuse_data_as_header(path: Path, columns: list[str], records: list[dict[str, object]]) -> None:
    """Two columns, neither with a usual name, and one name among that column's own values: the file has no header,
    and its first row was taken for the column names (and lost)."""
    for column in columns:
        if any(str(record.get(column, "")).strip() == column for record in records[:10_000]):
            raise DataError(
                f"the first line of {path} looks like data, not column names",
                found=f"'{column}', a column name that is also one of that column's values",
                fix="Add a header line (text,label) above the data.",
            )


def _mean_length(records: list[dict[str, object]], column: str) -> float:
    values = [len(str(r[column])) for r in records[:1000] if r.get(column) is not None]
    return sum(values) / len(values) if values else 0.0


def resolve_columns(
    path: Path, columns: list[str], records: list[dict[str, object]], text_col: str | None, label_col: str | None
) -> tuple[str, str, bool]:
    """The text and label columns: the ones asked for, or a guess when there is an obvious pair; and whether
    neither had a usual name, so that the longer values decided which is the text."""
    shown = ", ".join(columns) if columns else "none"
    for asked, role, flag in (
        (text_col, "text", "[[--text-col||text_col]]"),
        (label_col, "label", "[[--label-col||label_col]]"),
    ):
        if asked is not None and asked not in columns:
            raise DataError(
                f"{role} column '{asked}' not in {path}",
                found=f"columns {shown}",
                fix=f"Pass {flag} with one of them.{_closest(asked, columns)}",
            )
    text = text_col or _find_column(TEXT_COLUMN_NAMES, [c for c in columns if c != label_col])
    label = label_col or _find_column(LABEL_COLUMN_NAMES, [c for c in columns if c != text])
    others = [c for c in columns if c not in (text, label)]
    by_length = False
    if (text is None or label is None) and len(columns) == 2:
        if text is None and label is None:
            by_length = True
            _refuse_data_as_header(path, columns, records)
            first, second = columns
            text, label = (
                (first, second)
                if _mean_length(records, first) >= _mean_length(records, second)
                else (
                    second,
                    first,
                )
            )
        elif text is None:
            text = others[0]
        else:
            label = others[0]
    if text is None or label is None:
        missing = "text" if text is None else "label"
        names = TEXT_COLUMN_NAMES if text is None else LABEL_COLUMN_NAMES
        hint = _closest_to_any(names, [c for c in columns if c not in (text, label)])
        raise DataError(
            f"cannot tell which column of {path} holds the {missing}s",
            found=f"columns {shown}",
            fix=f"Pass [[--{missing}-col NAME||{missing}_col=NAME]]."
            + (f" Did you mean [[--{missing}-col {hint!r}||{missing}_col={hint!r}]]?" if hint else ""),
        )
    return text, label, by_length


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from Parquet
        return None
    if isinstance(value, bool):  # as JSON writes it, not as Python does (True)
        return "true" if value else "false"
    return valid_text(value)


def _column(path: Path, records: list[dict[str, object]], column: str) -> list[str | None]:
    """Every row's value of ``column`` as a text (None where missing); a JSON array or object, which has no one
    text (its Python spelling, ``['a', 'b']``, was taken as one), is refused with its row."""
    values = []
    for number, record in enumerate(records, start=1):
        value = record.get(column)
        if isinstance(value, (list, dict)):
            raise DataError(
                f"row {number} of {path} has a JSON {'array' if isinstance(value, list) else 'object'} as its "
                f"'{column}'",
                expected="a string (or a number)",
                found=json.dumps(value, ensure_ascii=False)[:80],
                fix=f"Give each row's '{column}' as one string.",
            )
        if isinstance(value, (bytes, bytearray)):  # Parquet's binary strings, as Spark and Hive write them
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(
                    f"row {number} of {path} has bytes that are not UTF-8 text as its '{column}'",
                    fix=f"Write the '{column}' column as strings.",
                ) from None
        values.append(_as_text(value))
    return values


def _ids(records: list[dict[str, object]], column: str | None) -> list[object] | None:
    """The values of an ``id`` column as they are (a number stays a number in a JSONL output; a missing one is
    empty, not "None")."""
    if column is None:
        return None
    return [None if isinstance(v, float) and v != v else v for v in (r.get(column) for r in records)]


def _refuse_another_format(path: Path, kind: str, columns: list[str]) -> None:
    """One column whose name holds another format's separator: the file was read in the wrong format (and a
    prediction would have taken each whole line, id and all, for its text)."""
    if len(columns) != 1:
        return
    for separator, name in ((",", "csv"), ("\t", "tsv")):
        if name != kind and separator in columns[0]:
            raise _fixed_by(
                "--format",
                DataError(
                    f"{path} reads as {kind.upper()} into one column named {columns[0]!r}",
                    expected="columns separated by " + ("commas" if kind == "csv" else "TABs"),
                    fix=f"The file looks {name.upper()}: pass [[--format {name}||format={name!r}]].",
                ),
            )
    if kind == "csv" and ";" in columns[0]:
        raise DataError(
            f"{path} reads as CSV into one column named {columns[0]!r}: its columns are separated by semicolons, "
            "as a spreadsheet set to a language that writes decimal commas saves CSV",
            expected="columns separated by commas (CSV) or TABs (TSV)",
            fix="Save it again with commas as separators, or as TSV (Unicode text).",
        )


def read_table(
    path: str | Path,
    *,
    file_format: str = "auto",
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str = "utf-8",
) -> Table:
    """Every row of a labelled data file, with its text and label columns resolved."""
    path = Path(path)
    columns, records = read_rows(path, file_format, encoding)
    kind = _resolved_format(path, file_format)
    if not records:  # label<TAB>text lines have no header: their column names are ajuste's, not the file's
        found = f"column names only ({', '.join(columns)})" if columns and kind != "lines" else "an empty file"
        raise DataError(
            f"{path} holds no data rows",
            expected="at least one labelled text",
            found=found,
            fix="Add labelled texts to it (a header naming the text and label columns, then a row per text), or "
            "point at another file.",
        )
    named = [
        f"{flag} '{name}'"
        for flag, name in (("[[--text-col||text_col]]", text_col), ("[[--label-col||label_col]]", label_col))
        if name
    ]
    if kind == "lines" and named:  # its two columns are ajuste's names, not the file's
        raise DataError(
            f"{path} holds label<TAB>text lines, with no named columns, and {' and '.join(named)} "
            + ("name columns" if len(named) > 1 else "names a column"),
            fix="Leave out [[--text-col||text_col]] and [[--label-col||label_col]], or give a CSV, TSV, JSONL or "
            "Parquet file with those columns.",
        )
    text, label, by_length = resolve_columns(path, columns, records, text_col, label_col)
    id_column = _find_column(("id",), [c for c in columns if c not in (text, label)])
    return Table(
        texts=_column(path, records, text),
        labels=_column(path, records, label),
        rows=list(range(len(records))),
        source=str(path),
        columns=columns,
        extra_ids=_ids(records, id_column),
        guessed=(text, label) if by_length else None,
        unused=[] if text_col and label_col else [c for c in columns if c not in (text, label, id_column)],
        read=(text, label),
    )


def _read_text_lines(path: Path, encoding: str) -> Rows:
    """One text per line, every line a row (an empty line is an empty text); no labels."""
    lines = _lines(_read_text(path, encoding))
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start a row
    return ["text"], [{"text": line} for line in lines]


def read_texts(
    path: str | Path,
    *,
    file_format: str = "auto",
    text_col: str | None = None,
    encoding: str = "utf-8",
    flag: str = "[[--text-col||text_col]]",
    given_by: str | None = None,
) -> tuple[list[str | None], list[object] | None]:
    """Every row's text (``None`` where missing) and ids (from an ``id`` column, if any), for prediction.

    With ``auto``, a ``.txt`` file or one without extension holds one text per line. ``flag`` is the option that
    names the text column, as messages say it; ``given_by``, the option that named the file when the command has
    no ``--format``, ``--encoding`` or ``--dataset`` of its own (``--unlabeled``): its messages then do not
    advise them.
    """
    path = Path(path)
    try:
        kind = file_format
        if kind == "auto":
            kind = "text" if path.suffix.lower() in (".txt", "") else detect_format(path)
        if kind == "text":
            columns, records = _read_text_lines(path, encoding)
        else:
            columns, records = read_rows(path, kind, encoding)  # a CSV of TABs or semicolons is refused there
    except DataError as exc:
        option = getattr(exc, "option", None)
        if given_by is None or option is None:
            raise
        problem, fix = {
            "--format": (
                exc.problem,
                f"Give {given_by} a file with one of those extensions (.txt: one text per line).",
            ),
            "--encoding": (exc.problem, f"Save the {given_by} file as UTF-8."),
            "--dataset": (f"the file {path} given as {given_by} does not exist", f"Check the path of {given_by}."),
        }[option]
        raise DataError(problem, expected=exc.expected, found=exc.found, fix=fix) from None
    if not records:
        found = f"column names only ({', '.join(columns)})" if columns and kind != "text" else "an empty file"
        raise DataError(f"{path} holds no rows", expected="at least one text", found=found)
    if text_col is not None and kind == "text":  # its one column is ajuste's name, not the file's
        raise DataError(
            f"{path} holds one text per line, with no columns, and {flag} names one ('{text_col}')",
            fix=f"Leave out {flag}, or give a CSV, TSV, JSONL or Parquet file with a '{text_col}' column.",
        )
    if text_col is not None and text_col not in columns:
        raise DataError(
            f"text column '{text_col}' not in {path}",
            found=f"columns {', '.join(columns)}",
            fix=f"Pass {flag} with one of them.{_closest(text_col, columns)}",
        )
    text = text_col or _find_column(TEXT_COLUMN_NAMES, columns) or (columns[0] if len(columns) == 1 else None)
    if text is None:
        raise DataError(
            f"cannot tell which column of {path} holds the texts",
            found=f"columns {', '.join(columns)}",
            fix=f"Name it with {flag}.",
        )
    id_column = _find_column(("id",), [c for c in columns if c != text])
    return _column(path, records, text), _ids(records, id_column)
