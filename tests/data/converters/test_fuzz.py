"""Seeded fuzzing of every converter: each broken input is a named error or a fully counted quarantine.

For every source format a small valid dataset is generated from a seeded RNG, then one of its files is
broken in one way (truncated, mis-encoded, header-only, empty, a 10 MB field, the wrong delimiter, a missing
column, non-numeric ids / ratings / timestamps, or a seeded mix of byte-level damage). Whatever the damage,
the converter + `clean.finalize` + `write_dataset` must end in exactly one of two ways:

- a DataFormatError (our own type; no pandas / pyarrow / json / csv exception escapes) whose message names
  the file and a line or field; a mis-encoded byte must be reported on its real line, with its byte offset;
- success where every file's rows read == rows kept + rows quarantined from that file (nothing silently
  dropped), with only possible timestamps and storable ratings kept.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reasonrec.data.converters import CONVERTERS
from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.clean import finalize
from reasonrec.data.converters.reading import MAX_UNIX_SECONDS, MIN_UNIX_SECONDS
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.schema import write_dataset

HUGE = 10 * 1024 * 1024  # the "huge field": 10 MB in one field
JUNK_TEXT = ["abc", "", " ", "NaN", "inf", "-1", "-1e12", "1e30", "0x1f", "\u0663", "12abc", "--5", "1,5", "None"]
JUNK_JSON: list[Any] = ["abc", "", None, True, -5, 1e30, -1e12, [1], {"a": 1}, "1e999", float("nan")]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi", "Romance"]
T0 = 1_000_000_000


@dataclasses.dataclass
class Table:
    """A delimited file: header (None: headerless) and rows of string fields."""
    header: list[str] | None
    rows: list[list[str]]
    delimiter: str
    quoted: bool = False         # CSV quoting (csv.writer) vs plain join
    encoding: str = "utf-8"
    numeric: tuple[int, ...] = ()  # columns holding ids, ratings or timestamps

    def render(self) -> bytes:
        lines = ([self.header] if self.header is not None else []) + self.rows
        if self.quoted:
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n").writerows(lines)
            text = buffer.getvalue()
        else:
            text = "".join(self.delimiter.join(line) + "\n" for line in lines)
        return text.encode(self.encoding, errors="replace")


@dataclasses.dataclass
class JsonLines:
    """One record per line: JSON, or (literal=True rows) a Python dict literal as in the 2014 dumps."""
    records: list[dict[str, Any]]
    literal: list[bool]
    numeric: tuple[str, ...] = ()
    as_csv: bool = False  # the "wrong delimiter": the same records written as CSV
    encoding: str = "utf-8"

    def render(self) -> bytes:
        if self.as_csv:
            keys = sorted({key for record in self.records for key in record})
            return Table(keys, [[str(r.get(k, "")) for k in keys] for r in self.records], ",", True).render()
        lines = [repr(r) if lit else json.dumps(r) for r, lit in zip(self.records, self.literal)]
        return "".join(line + "\n" for line in lines).encode()


@dataclasses.dataclass
class JsonDoc:
    """One JSON document (P5's datamaps.json)."""
    data: Any
    encoding: str = "utf-8"

    def render(self) -> bytes:
        return json.dumps(self.data, indent=1).encode()


Content = Table | JsonLines | JsonDoc


@dataclasses.dataclass
class Source:
    files: dict[str, Content]          # relative path -> content
    options: Callable[[Path], dict]    # converter options for the folder
    gz: frozenset[str] = frozenset()   # files written gzip-compressed


# ------------------------------------------------------------------------------------------ valid sources

def _ratings(rng: random.Random, n_users: int, n_items: int) -> list[tuple[int, int, str, int]]:
    rows = []
    for user in range(1, n_users + 1):
        for item in rng.sample(range(1, n_items + 1), 5):
            rows.append((user, item, rng.choice(["1", "2.5", "3", "4.5", "5"]), T0 + rng.randrange(10**7)))
    return rows


def ml_latest(rng: random.Random) -> Source:
    movies = [[str(m), f"Movie {m}, The ({1990 + m})" if m % 3 == 0 else f"Movie {m} ({1990 + m})",
               "|".join(rng.sample(GENRES, 2))] for m in range(1, 13)]
    ratings = [[str(u), str(m), r, str(t)] for u, m, r, t in _ratings(rng, 8, 12)]
    return Source({"ratings.csv": Table(["userId", "movieId", "rating", "timestamp"], ratings, ",", True,
                                        numeric=(0, 1, 2, 3)),
                   "movies.csv": Table(["movieId", "title", "genres"], movies, ",", True, numeric=(0,))},
                  lambda folder: {"variant": "ml-latest", "tags": "false"})


def ml_1m(rng: random.Random) -> Source:
    movies = [[str(m), f"Cin\u00e9ma {m} ({1990 + m})", "|".join(rng.sample(GENRES, 2))] for m in range(1, 13)]
    users = [[str(u), rng.choice("MF"), rng.choice(["1", "18", "25"]), str(rng.randrange(21)), f"{u:05d}"]
             for u in range(1, 9)]
    ratings = [[str(u), str(m), r.split(".")[0], str(t)] for u, m, r, t in _ratings(rng, 8, 12)]
    return Source({"ratings.dat": Table(None, ratings, "::", encoding="latin-1", numeric=(0, 1, 2, 3)),
                   "movies.dat": Table(None, movies, "::", encoding="latin-1", numeric=(0,)),
                   "users.dat": Table(None, users, "::", encoding="latin-1", numeric=(0,))},
                  lambda folder: {"variant": "ml-1m"})


def ml_100k(rng: random.Random) -> Source:
    flags = lambda: [str(int(rng.random() < 0.2)) for _ in range(19)]  # noqa: E731
    items = [[str(m), f"Film {m} (1995)", "01-Jan-1995", "", f"http://x/{m}", *flags()] for m in range(1, 13)]
    users = [[str(u), str(20 + u), rng.choice("MF"), "technician", f"{u:05d}"] for u in range(1, 9)]
    data = [[str(u), str(m), r.split(".")[0], str(t)] for u, m, r, t in _ratings(rng, 8, 12)]
    return Source({"u.data": Table(None, data, "\t", encoding="latin-1", numeric=(0, 1, 2, 3)),
                   "u.item": Table(None, items, "|", encoding="latin-1", numeric=(0, 5, 6)),
                   "u.user": Table(None, users, "|", encoding="latin-1", numeric=(0,))},
                  lambda folder: {"variant": "ml-100k"})


def recbole(rng: random.Random) -> Source:
    inter = [[str(u), str(m), r, str(t)] for u, m, r, t in _ratings(rng, 8, 12)]
    items = [[str(m), f"title {m}", " ".join(rng.sample(GENRES, 2))] for m in range(1, 13)]
    users = [[str(u), str(20 + u), rng.choice("MF")] for u in range(1, 9)]
    return Source({
        "fz.inter": Table(["user_id:token", "item_id:token", "rating:float", "timestamp:float"], inter, "\t",
                          numeric=(0, 1, 2, 3)),
        "fz.item": Table(["item_id:token", "title:token_seq", "genre:token_seq"], items, "\t", numeric=(0,)),
        "fz.user": Table(["user_id:token", "age:token", "gender:token"], users, "\t", numeric=(0,))},
        lambda folder: {})


def amazon_p5(rng: random.Random) -> Source:
    id2user = {str(u): f"A{u:09d}X" for u in range(1, 9)}
    id2item = {str(i): f"B{i:09d}" for i in range(1, 13)}
    lines = [[str(u), *(str(i) for i in rng.sample(range(1, 13), rng.randrange(2, 7)))] for u in range(1, 9)]
    return Source({"sequential.txt": Table(None, lines, " ", numeric=tuple(range(8))),
                   "datamaps.json": JsonDoc({"id2user": id2user, "id2item": id2item})},
                  lambda folder: {})


def amazon_reviews(rng: random.Random) -> Source:
    reviews = [{"reviewerID": f"A{u:05d}", "asin": f"B{m:05d}", "overall": float(r),
                "unixReviewTime": t, "reviewText": f"review {u}-{m} \u00e9", "summary": "ok"}
               for u, m, r, t in _ratings(rng, 8, 12)]
    meta = [{"asin": f"B{m:05d}", "title": f"Product {m}", "category": ["Beauty", rng.choice(GENRES)],
             "description": [f"desc {m}"]} for m in range(1, 14)]
    return Source({"Fuzz_5.json.gz": JsonLines(reviews, [rng.random() < 0.3 for _ in reviews],
                                               numeric=("overall", "unixReviewTime", "asin")),
                   "meta/meta_Fuzz.json": JsonLines(meta, [rng.random() < 0.3 for _ in meta], numeric=("asin",))},
                  lambda folder: {"meta": str(folder / "meta" / "meta_Fuzz.json")},
                  gz=frozenset({"Fuzz_5.json.gz"}))


def pixelrec(rng: random.Random) -> Source:
    def when(t: int) -> str:  # PixelRec releases have unix numbers or date strings
        return str(t) if rng.random() < 0.5 else np.datetime_as_string(np.datetime64(t, "s")).replace("T", " ")
    inter = [[str(m), str(u), when(t)] for u, m, _, t in _ratings(rng, 8, 12)]
    items = [[str(m), f"Cover {m}", rng.choice(GENRES), f"about {m}, really"] for m in range(1, 13)]
    return Source({"interaction.csv": Table(["item_id", "user_id", "timestamp"], inter, ",", True,
                                            numeric=(0, 1, 2)),
                   "item_info.csv": Table(["item_id", "title", "tag", "description"], items, ",", True,
                                          numeric=(0,))},
                  lambda folder: {})


FORMATS: dict[str, tuple[str, Callable[[random.Random], Source]]] = {
    "ml-latest": ("movielens", ml_latest), "ml-1m": ("movielens", ml_1m), "ml-100k": ("movielens", ml_100k),
    "recbole": ("recbole", recbole), "amazon_p5": ("amazon_p5", amazon_p5),
    "amazon_reviews": ("amazon_reviews", amazon_reviews), "pixelrec": ("pixelrec", pixelrec)}
TARGETS = {"ml-latest": ["ratings.csv", "movies.csv"], "ml-1m": ["ratings.dat", "movies.dat", "users.dat"],
           "ml-100k": ["u.data", "u.item", "u.user"], "recbole": ["fz.inter", "fz.item", "fz.user"],
           "amazon_p5": ["sequential.txt", "datamaps.json"],
           "amazon_reviews": ["Fuzz_5.json.gz", "meta/meta_Fuzz.json"],
           "pixelrec": ["interaction.csv", "item_info.csv"]}


# --------------------------------------------------------------------------------------------- damage

@dataclasses.dataclass
class Damage:
    """What a mutation did, when the test can predict the answer (a mis-encoded byte's line and offset)."""
    bad_line: int | None = None
    bad_offset: int | None = None


def _data_rows(content: Content) -> list:
    return content.rows if isinstance(content, Table) else content.records if isinstance(content, JsonLines) else []


def structural(content: Content, mutation: str, rng: random.Random) -> Content:
    """The mutations that change the records themselves, before they are written."""
    content = dataclasses.replace(content)
    if isinstance(content, Table):
        rows = [list(row) for row in content.rows]
        if mutation == "header_only":
            rows = rows[:0] if content.header is not None else rows[:1]
        elif mutation == "huge_field":
            row = rng.randrange(len(rows))
            rows[row][rng.randrange(len(rows[row]))] = "ab" * (HUGE // 2)
        elif mutation == "wrong_delimiter":
            content.delimiter = rng.choice([d for d in (",", ";", "\t", "|", "::") if d != content.delimiter])
            content.quoted = content.quoted and len(content.delimiter) == 1
        elif mutation == "missing_column":
            drop = rng.randrange(len(rows[0]))
            rows = [row[:drop] + row[drop + 1:] for row in rows]
            if content.header is not None:
                content.header = content.header[:drop] + content.header[drop + 1:]
        elif mutation == "non_numeric":
            for row in rng.sample(rows, max(1, len(rows) // 3)):
                column = rng.choice([c for c in content.numeric if c < len(row)] or [0])
                row[column] = rng.choice(JUNK_TEXT)
        content.rows = rows
    elif isinstance(content, JsonLines):
        records = [dict(record) for record in content.records]
        if mutation == "header_only":  # no header in JSON lines: only blank lines instead
            records = []
        elif mutation == "huge_field":
            record = rng.choice(records)
            record[rng.choice(sorted(record))] = "ab" * (HUGE // 2)
        elif mutation == "wrong_delimiter":
            content.as_csv = True
        elif mutation == "missing_column":
            key = rng.choice(sorted(records[0]))
            records = [{k: v for k, v in record.items() if k != key} for record in records]
        elif mutation == "non_numeric":
            for record in rng.sample(records, max(1, len(records) // 3)):
                record[rng.choice(content.numeric)] = rng.choice(JUNK_JSON)
        content.records = records
    else:
        data = json.loads(json.dumps(content.data))
        key = rng.choice(sorted(data))
        if mutation == "header_only":
            data = {}
        elif mutation == "huge_field":
            data[key][rng.choice(sorted(data[key]))] = "ab" * (HUGE // 2)
        elif mutation == "missing_column":
            del data[key]
        elif mutation == "non_numeric":
            for index in rng.sample(sorted(data[key]), 2):
                data[key][index] = rng.choice([5, None, "", [1], {"a": 1}, " "])
        elif mutation == "wrong_delimiter":
            data = [[index, real] for index, real in data[key].items()]
        content.data = data
    return content


def render(content: Content, mutation: str, rng: random.Random) -> tuple[bytes, Damage]:
    """The file's bytes, with the byte-level mutations applied (to the text, before any compression)."""
    if mutation == "header_only" and isinstance(content, JsonLines):
        return b"\n \n\n", Damage()
    data = content.render()
    if mutation == "empty":
        return b"", Damage()
    if mutation == "truncated":
        return data[: rng.randrange(1, len(data))], Damage()
    if mutation == "mis_encoded":
        return _mis_encode(data, content, rng)
    if mutation.startswith("random"):
        return _random_damage(data, rng), Damage()
    return data, Damage()


def _mis_encode(data: bytes, content: Content, rng: random.Random) -> tuple[bytes, Damage]:
    """Insert 0xFF (never valid UTF-8) inside a data line far enough in that the decoder's 8 KB read-ahead
    used to blame line 1; the damage records the line and byte offset the error must name."""
    lines = data.split(b"\n")[:-1]
    first = 1 if isinstance(content, Table) and content.header is not None else 0
    line = rng.randrange(first, len(lines))
    start = sum(len(text) + 1 for text in lines[:line])
    # Only after an ASCII byte: inside a multi-byte character the error would (rightly) start one byte early.
    ascii_ends = [at for at in range(len(lines[line]) + 1) if at == 0 or lines[line][at - 1] < 0x80]
    position = start + rng.choice(ascii_ends)
    damaged = data[:position] + b"\xff" + data[position:]
    utf8 = content.encoding == "utf-8"
    return damaged, Damage(bad_line=line + 1 if utf8 else None, bad_offset=position if utf8 else None)


def _random_damage(data: bytes, rng: random.Random) -> bytes:
    """A seeded mix of byte-level damage: flipped bytes, lost / repeated / junk lines, NULs, stray quotes,
    CRLF, a BOM, a negative timestamp."""
    for _ in range(rng.randrange(1, 5)):
        lines = data.split(b"\n")
        operation = rng.randrange(9)
        where = rng.randrange(len(lines))
        if operation == 0 and data:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
        elif operation == 1:
            data = b"\n".join(lines[:where] + lines[where + 1:])
        elif operation == 2:
            data = b"\n".join(lines[:where] + [lines[where]] * 3 + lines[where + 1:])
        elif operation == 3:
            junk = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 40)))
            data = b"\n".join(lines[:where] + [junk] + lines[where:])
        elif operation == 4 and data:
            at = rng.randrange(len(data))
            data = data[:at] + rng.choice([b"\x00", b'"', b"'", b"{", b"\\"]) + data[at:]
        elif operation == 5:
            data = data.replace(b"\n", b"\r\n")
        elif operation == 6:
            data = b"\xef\xbb\xbf" + data
        elif operation == 7:
            data = data.replace(str(T0)[:4].encode(), b"-" + str(T0)[:4].encode(), 1)
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return data


MUTATIONS = ["truncated", "mis_encoded", "header_only", "empty", "huge_field", "wrong_delimiter",
             "missing_column", "non_numeric"]
RANDOM_ROUNDS = 6
CASES = [(fmt, target, mutation) for fmt in FORMATS for target in TARGETS[fmt]
         for mutation in MUTATIONS + [f"random{i}" for i in range(RANDOM_ROUNDS)]]


# ------------------------------------------------------------------------------------------ the checks

def write_source(folder: Path, source: Source, target: str, mutation: str,
                 rng: random.Random) -> Damage:
    damage = Damage()
    for name, content in source.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == target:
            data, damage = render(structural(content, mutation, rng), mutation, rng)
        else:
            data = content.render()
        if name in source.gz:
            compressed = gzip.compress(data, mtime=0)
            if mutation.startswith("random") and name == target and rng.random() < 0.3:
                compressed = compressed[: rng.randrange(1, len(compressed))]  # a cut-off download
            data = compressed
        path.write_bytes(data)
    return damage


def assert_named_error(err: DataFormatError, folder: Path, damage: Damage) -> None:
    assert err.file and str(folder) in err.file, f"error names no input file: {err}"
    assert err.file in str(err), f"message does not name the file: {err}"
    assert err.line is not None or err.field is not None, f"error names neither line nor field: {err}"
    if damage.bad_line is not None and "not valid utf-8" in str(err):
        assert err.line == damage.bad_line, f"decode error on line {err.line}, the byte is on {damage.bad_line}"
        assert f"byte offset {damage.bad_offset} " in str(err), str(err)


def must_fail(content: Content, mutation: str) -> bool:
    """An empty file, or one with a header (or blank lines) but no record, is an error, not an empty table."""
    has_header = isinstance(content, JsonLines) or (isinstance(content, Table) and content.header is not None)
    return mutation == "empty" or (mutation == "header_only" and has_header)


def _kept_plus_quarantined(quarantine: Quarantine, file: str, kept: int, *, skip: tuple[str, ...] = ()) -> int:
    counts = quarantine.by_file.get(file, {})
    return kept + sum(n for reason, n in counts.items() if reason not in skip)


def assert_accounted(fmt: str, folder: Path, raw: RawDataset, out: RawDataset, quarantine: Quarantine) -> None:
    """Every file's rows read are kept or quarantined (from that file), none silently dropped."""
    files = raw.stats["files"]

    def check(name: str, kept: int, *, count: str = "rows_read", skip: tuple[str, ...] = ()) -> None:
        path = str(folder / name)
        assert files[path][count] == _kept_plus_quarantined(quarantine, path, kept, skip=skip), (
            f"{name}: {files[path][count]} {count} but {kept} kept + "
            f"{dict(quarantine.by_file.get(path, {}))} quarantined")

    n_users = 0 if out.users is None else len(out.users)
    if fmt == "amazon_p5":
        check("sequential.txt", len(out.interactions), count="events_read", skip=("blank_line", "empty_sequence"))
        check("datamaps.json", n_users, count="users")
        assert files[str(folder / "datamaps.json")]["items"] == len(out.items) + \
            quarantine.by_file.get("fuzz", {}).get("duplicate_item", 0)
    elif fmt == "amazon_reviews":
        check("Fuzz_5.json.gz", len(out.interactions))
        from_meta = len(out.items) - raw.stats["items_without_metadata"]
        check("meta/meta_Fuzz.json", from_meta + raw.stats["meta_items_without_reviews"])
    else:
        interactions, items, users = TARGETS[fmt] + [None] * (3 - len(TARGETS[fmt]))
        check(interactions, len(out.interactions))
        check(items, len(out.items))
        if users is not None:
            check(users, n_users)
    if out.timestamp_kind == "unix":
        times = out.interactions["timestamp"]
        assert times.between(MIN_UNIX_SECONDS, MAX_UNIX_SECONDS - 1).all(), "an impossible time was kept"
    if "rating" in out.interactions:
        assert np.isfinite(out.interactions["rating"].astype("float32")).all()


@pytest.mark.parametrize("fmt,target,mutation", CASES, ids=["-".join(case) for case in CASES])
def test_damaged_input_is_a_named_error_or_counted(fmt: str, target: str, mutation: str, tmp_path: Path) -> None:
    rng = random.Random(f"{fmt}/{target}/{mutation}")
    kind, make = FORMATS[fmt]
    source = make(rng)
    folder = tmp_path / "src"
    damage = write_source(folder, source, target, mutation, rng)
    quarantine = Quarantine()
    try:
        raw = CONVERTERS[kind](str(folder), None, quarantine, **source.options(folder))
        out = finalize(raw, quarantine, "fuzz")
    except DataFormatError as err:
        assert_named_error(err, folder, damage)
        return
    assert damage.bad_line is None, f"a byte that is not utf-8 on line {damage.bad_line} went unnoticed"
    assert not must_fail(source.files[target], mutation), f"{mutation} {target} passed as an empty table"
    assert_accounted(fmt, folder, raw, out, quarantine)
    if not out.interactions.empty:  # the canonical tables take whatever survived (pyarrow conversion)
        write_dataset(str(tmp_path / "ds"), name="fuzz", source=kind, timestamp_kind=out.timestamp_kind,
                      interactions=out.interactions, items=out.items, users=out.users)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_undamaged_sources_convert_without_quarantine(fmt: str, tmp_path: Path) -> None:
    """The generators themselves are valid, so every failure above is due to the damage."""
    kind, make = FORMATS[fmt]
    source = make(random.Random(fmt))
    write_source(tmp_path, source, target="", mutation="", rng=random.Random(0))
    quarantine = Quarantine()
    out = finalize(CONVERTERS[kind](str(tmp_path), None, quarantine, **source.options(tmp_path)), quarantine, fmt)
    assert quarantine.total == 0 and len(out.interactions) >= 16
