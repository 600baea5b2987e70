"""Reading source files row by row, so every set-aside row can name its file, line and field.

Converters share these helpers instead of `pd.read_csv`: pandas either drops malformed lines or stops at the
first one, and neither tells the quarantine *which* line. Every frame read here carries two bookkeeping
columns, `_file` (categorical, one value per file) and `_line` (1-based), which `clean.finalize` uses for its
own quarantine entries and then drops.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import itertools
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reasonrec.data.errors import MAX_EXAMPLES_PER_REASON, DataFormatError, Quarantine

SOURCE_FILE = "_file"
SOURCE_LINE = "_line"
SOURCE_COLUMNS = (SOURCE_FILE, SOURCE_LINE)
# The unix seconds an interaction can have: [1970-01-01, 2100-01-01). See parse_timestamps.
MIN_UNIX_SECONDS = 0
MAX_UNIX_SECONDS = 4_102_444_800
# Rows held as Python lists before they become (compact, Arrow-backed) string columns: bounds the memory of
# 20M-row files such as the full ml-latest.
CHUNK_ROWS = 500_000


def require_file(path: str, what: str) -> str:
    """`path` if it is a file, else a DataFormatError saying which input is missing."""
    if not os.path.isfile(path):
        raise DataFormatError(f"missing {what}", file=path)
    return path


def open_text(path: str, encoding: str) -> IO[str]:
    """Plain or gzip text; newline='' so the csv module sees quoted newlines and CRLF as they are."""
    require_file(path, "input file")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def iter_lines(path: str, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its CR/LF); decoding and gzip errors name the file and line."""
    number = 0
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, 1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise decode_error(path, encoding, err) from None
    except (OSError, EOFError) as err:  # truncated or non-gzip .gz
        raise DataFormatError(f"unreadable after line {number}: {err}", file=path, line=number + 1) from None


def decode_error(path: str, encoding: str, err: UnicodeDecodeError) -> DataFormatError:
    """The DataFormatError for a byte `encoding` cannot decode, naming its real line and byte offset.

    The text layer decodes 8 KB chunks ahead of the lines it hands out, so the UnicodeDecodeError it raises
    knows neither (it used to be reported as "line 1" wherever the byte was); the raw bytes are re-read to
    find them, which costs nothing on the normal path."""
    try:
        found = locate_undecodable(path, encoding)
    except (OSError, EOFError):  # a .gz cut off before the bad byte's position could be re-read
        found = None
    if found is None:  # the re-read could not place it (or the file changed meanwhile): say what is known
        return DataFormatError(f"not valid {encoding} text ({err.reason}); set the encoding option", file=path)
    line, offset, byte, reason = found
    where = "of the decompressed text" if path.endswith(".gz") else "in the file"
    return DataFormatError(f"not valid {encoding} text: byte {byte!r} at byte offset {offset} {where} ({reason}); "
                           "set the encoding option", file=path, line=line)


def locate_undecodable(path: str, encoding: str) -> tuple[int, int, bytes, str] | None:
    """(1-based line, 0-based byte offset, offending bytes, codec's reason) of the first undecodable byte,
    or None when the whole file decodes. Lines are counted in the decoded text, as `iter_lines` counts them."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset = 1, 0
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        for raw in itertools.chain(handle, [b""]):  # b"" last: flush a sequence cut off at the end
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as err:
                before = err.object[:err.start].decode(encoding, errors="replace").count("\n")
                return (line + before, offset - pending + err.start, bytes(err.object[err.start:err.end]),
                        err.reason)
            line += text.count("\n")
            offset += len(raw)
    return None


def iter_records(path: str, *, delimiter: str | None, encoding: str = "utf-8",
                 quoted: bool = True) -> Iterator[tuple[int, list[str]]]:
    """(1-based first line, fields) per record; a blank line is an empty list.

    quoted=True parses CSV quoting (a record may span lines); quoted=False splits each line on `delimiter`
    (any string, e.g. '::'; None splits on runs of whitespace).
    """
    if not quoted:
        for number, line in iter_lines(path, encoding):
            yield number, line.split(delimiter) if line.strip() else []
        return
    if delimiter is None or len(delimiter) != 1:
        raise ValueError("quoted records need a one-character delimiter")
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long descriptions are real data
    start = 1
    reader = None
    try:
        with open_text(path, encoding) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for row in reader:
                yield start, row
                start = reader.line_num + 1
    except UnicodeDecodeError as err:
        raise decode_error(path, encoding, err) from None
    except csv.Error as err:
        raise DataFormatError(f"unreadable CSV: {err}", file=path, line=start) from None
    except (OSError, EOFError) as err:
        raise DataFormatError(f"unreadable after line {start - 1}: {err}", file=path, line=start) from None


def read_table(path: str, quarantine: Quarantine, *, columns: list[str] | None = None,
               delimiter: str | None = ",", encoding: str = "utf-8", quoted: bool = True,
               allow_empty: bool = False) -> tuple[pd.DataFrame, int]:
    """Rows of a delimited file as stripped strings plus `_file`/`_line`, and the number of data rows read.

    columns=None: the first record is the header. Blank lines ("blank_line") and rows whose field count
    differs from the header ("wrong_field_count", field = first missing column) are quarantined, so
    rows read == rows returned + rows quarantined here. A file with no usable row is a DataFormatError
    (allow_empty=True: only for optional extras such as tags), not an empty table that fails far downstream.
    """
    records = iter_records(path, delimiter=delimiter, encoding=encoding, quoted=quoted)
    header_line = 0
    if columns is None:
        first = next(records, None)
        if first is None or not first[1]:
            raise DataFormatError("empty file or blank header line", file=path, line=1)
        header_line = first[0]
        columns = [name.strip().lstrip("\ufeff") for name in first[1]]
        repeated = sorted({name for name in columns if columns.count(name) > 1})
        if repeated:
            raise DataFormatError(f"header repeats column(s) {repeated}", file=path, line=first[0],
                                  field=repeated[0])
    width = len(columns)
    lines: list[int] = []
    rows: list[list[str]] = []
    chunks: list[pd.DataFrame] = []
    n_read = 0
    first_rejected: int | None = None
    for line, fields in records:
        n_read += 1
        if len(rows) == CHUNK_ROWS:
            chunks.append(pd.DataFrame(rows, columns=columns, dtype="str"))
            rows = []
        if fields and len(fields) == width:
            lines.append(line)
            rows.append([value.strip() for value in fields])
            continue
        first_rejected = line if first_rejected is None else first_rejected
        if not fields:
            quarantine.add(path, line, None, "blank_line")
        else:
            missing = columns[len(fields)] if len(fields) < width else None
            quarantine.add(path, line, missing, "wrong_field_count",
                           f"{len(fields)} fields, expected {width}: " + (delimiter or " ").join(fields))
    if not lines and not allow_empty:
        raise _no_rows_error(path, n_read, header_line, first_rejected, columns, delimiter)
    chunks.append(pd.DataFrame(rows, columns=columns, dtype="str") if rows else pd.DataFrame(
        {name: pd.Series(dtype="str") for name in columns}))
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    return with_source(frame, path, lines), n_read


def _no_rows_error(path: str, n_read: int, header_line: int, first_rejected: int | None, columns: list[str],
                   delimiter: str | None) -> DataFormatError:
    """Why a file gave no row at all: nothing after the header, or no line with the header's fields."""
    if n_read == 0:
        what = "no data rows after the header" if header_line else "empty file"
        return DataFormatError(what, file=path, line=header_line + 1)
    return DataFormatError(
        f"none of its {n_read} data lines has the {len(columns)} fields {columns} (blank lines or a "
        f"different field count; is the delimiter {delimiter or 'whitespace'!r} right?)",
        file=path, line=first_rejected)


def with_source(frame: pd.DataFrame, path: str, lines: Iterable[int] | None) -> pd.DataFrame:
    """Add `_file` (categorical: one string per file, not per row) and `_line` (lines=None: unknown)."""
    frame = frame.copy()
    frame[SOURCE_FILE] = pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8), categories=[path])
    if lines is None:
        frame[SOURCE_LINE] = pd.array([pd.NA] * len(frame), dtype="Int64")
    else:
        frame[SOURCE_LINE] = np.fromiter(lines, dtype=np.int64, count=len(frame))
    return frame


def require_columns(columns: Iterable[str], required: Iterable[str], path: str) -> None:
    """DataFormatError naming the first required column the file lacks."""
    present = set(columns)
    for name in required:
        if name not in present:
            header = sorted(present - set(SOURCE_COLUMNS))
            raise DataFormatError(f"required column '{name}' not in header {header}", file=path, line=1,
                                  field=name)


def quarantine_rows(quarantine: Quarantine, rows: pd.DataFrame, *, reason: str, field: str | None,
                    value_column: str | None = None, default_file: str = "") -> None:
    """Quarantine every row of `rows`: examples from the first few, a count (per file) for all of them."""
    if rows.empty:
        return
    head = rows.iloc[:MAX_EXAMPLES_PER_REASON]
    files = head[SOURCE_FILE].astype(object) if SOURCE_FILE in head else [default_file] * len(head)
    lines = head[SOURCE_LINE].astype(object) if SOURCE_LINE in head else [None] * len(head)
    values = head[value_column].astype(object) if value_column else [None] * len(head)
    for file, line, value in zip(files, lines, values):
        quarantine.add(default_file if pd.isna(file) else str(file), None if pd.isna(line) else int(line),
                       field, reason, None if pd.isna(value) else value)
    rest = rows.iloc[len(head):]
    if rest.empty:
        return
    if SOURCE_FILE not in rest:
        quarantine.add_many(reason, len(rest), file=default_file)
        return
    for file, count in rest[SOURCE_FILE].value_counts(dropna=False, sort=False).items():
        quarantine.add_many(reason, int(count), file=default_file if pd.isna(file) else str(file))


def parse_numbers(frame: pd.DataFrame, column: str, quarantine: Quarantine, *, reason: str,
                  integer: bool = False) -> pd.DataFrame:
    """Convert `column` to float64 (or int64, floored); quarantine rows where it is not a finite number."""
    numbers = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return _keep_finite(frame, column, numbers, quarantine, reason, integer)


def parse_ratings(frame: pd.DataFrame, column: str, quarantine: Quarantine) -> pd.DataFrame:
    """Ratings as float64; not a number, or too large for the float32 they are stored as -> "bad_rating"."""
    numbers = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    with np.errstate(over="ignore"):
        storable = np.isfinite(numbers.to_numpy().astype(np.float32))
    return _keep_finite(frame, column, numbers.where(storable), quarantine, "bad_rating", integer=False)


def parse_timestamps(frame: pd.DataFrame, column: str, quarantine: Quarantine, *,
                     dates: bool = True) -> pd.DataFrame:
    """Unix seconds from numbers or (dates=True) ISO-8601 date strings (naive = UTC), as int64 (floored).

    Text that is no time -> "bad_timestamp"; a time before 1970 or from 2100 on -> "timestamp_out_of_range"
    (negative times are impossible for an interaction, and a millisecond clock read as seconds lands
    centuries ahead: both would otherwise reorder histories silently)."""
    numbers = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    if dates:
        text = frame[column].astype(object)
        needs_date = numbers.isna() & text.notna() & (text.astype(str).str.strip() != "")
        if needs_date.any():
            parsed = pd.to_datetime(text[needs_date], errors="coerce", utc=True, format="ISO8601")
            seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
            numbers[needs_date] = seconds.astype("float64")
    finite = np.isfinite(numbers.to_numpy())
    impossible = finite & ((numbers.to_numpy() < MIN_UNIX_SECONDS) | (numbers.to_numpy() >= MAX_UNIX_SECONDS))
    quarantine_rows(quarantine, frame[impossible], reason="timestamp_out_of_range", field=column,
                    value_column=column)
    return _keep_finite(frame[~impossible], column, numbers[~impossible], quarantine, "bad_timestamp",
                        integer=True)


def _keep_finite(frame: pd.DataFrame, column: str, numbers: pd.Series, quarantine: Quarantine, reason: str,
                 integer: bool) -> pd.DataFrame:
    """Rows whose `numbers` are finite, with `column` replaced by them; the others quarantined showing the
    original text."""
    bad = ~np.isfinite(numbers.to_numpy())
    quarantine_rows(quarantine, frame[bad], reason=reason, field=column, value_column=column)
    frame = frame[~bad].copy()
    kept = numbers[~bad]
    frame[column] = np.floor(kept).astype(np.int64) if integer else kept
    return frame


def is_in(values: pd.Series, allowed: pd.Series) -> np.ndarray:
    """`values.isin(allowed)` through Arrow: pandas 3 boxes every allowed string one by one (seconds per
    million rows). Missing values are never members."""
    def arrow(series: pd.Series) -> pa.Array:
        return pa.array(series, from_pandas=True).cast(pa.large_string())
    return np.asarray(pc.is_in(arrow(values), value_set=arrow(allowed).unique(), skip_nulls=True)
                      .fill_null(False), dtype=bool)


def ordinal_timestamps(user_ids: pd.Series) -> np.ndarray:
    """Position of each row within its user's rows, in row order: the stand-in for time when a source
    has only the order of events."""
    return user_ids.groupby(user_ids, sort=False).cumcount().to_numpy(dtype=np.int64)


def labelled_text(frame: pd.DataFrame, labels: dict[str, str], sep: str = "; ") -> pd.Series:
    """'label: value; label: value' per row from {column: label}, skipping empty values."""
    columns = [frame[column].astype(object).where(frame[column].notna(), "").astype(str).str.strip()
               for column in labels]
    names = list(labels.values())
    texts = [sep.join(f"{name}: {value}" for name, value in zip(names, values) if value)
             for values in zip(*columns)] if columns else [""] * len(frame)
    return pd.Series(texts, index=frame.index, dtype=object)


def as_bool(value: Any, name: str) -> bool:
    """Options arrive as strings from YAML/CLI ({tags: 'false'}); accept the usual spellings only."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise DataFormatError(f"option '{name}' must be true or false, got {value!r}", field=name)


def as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataFormatError(f"option '{name}' must be an integer, got {value!r}", field=name) from None
