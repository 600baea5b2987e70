"""MovieLens converter: the three layouts, their bad rows, and the real ml-latest-small with posters."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from reasonrec.data.converters import CONVERTERS
from reasonrec.data.converters.clean import finalize
from reasonrec.data.converters.movielens import ML100K_GENRES, convert, detect_variant
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.schema import Dataset, write_dataset


def _write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.write_bytes(text.encode(encoding))


def _entries(quarantine: Quarantine) -> set[tuple]:
    """(reason, file name, line, field) of every example (fixtures stay under 20 rows per reason)."""
    return {(row.reason, os.path.basename(row.file), row.line, row.field)
            for rows in quarantine.examples.values() for row in rows}


@pytest.fixture
def ml_latest(tmp_path: Path) -> Path:
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
           "1,1,4.0,964982703\n"      # 2
           "1,2,3.5,964982224\n"      # 3
           "1,3,5.0\n"                # 4 wrong field count
           "2,1,abc,964982000\n"      # 5 bad rating
           "2,2,4.0,yesterday\n"      # 6 bad timestamp
           ",2,4.0,964982001\n"       # 7 empty user id
           "2,999,4.0,964982002\n"    # 8 movie not in movies.csv
           "1,1,4.0,964982703\n"      # 9 duplicate of line 2
           "\n"                       # 10 blank
           "2,3,2.5,964982003\n")     # 11
    _write(tmp_path / "movies.csv", "movieId,title,genres\n"
           "1,Toy Story (1995),Adventure|Animation\n"
           '2,"American President, The (1995)",Comedy|Drama|Romance\n'
           "3,Unrated Thing (2001),(no genres listed)\n"
           "4,Never Rated (1990),Drama\n"
           "5,Broken row\n")          # 6 wrong field count
    _write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n"
           "1,1,Pixar,1\n2,1,fun,2\n3,1,pixar,3\n4,2,politics,4\n"
           "5,777,lost,5\n"           # 6 tag for an unknown movie
           "6,3,,6\n")                # 7 empty tag
    return tmp_path


def test_ml_latest_rows_quarantine_and_accounting(ml_latest: Path) -> None:
    quarantine = Quarantine()
    raw = CONVERTERS["movielens"](str(ml_latest), None, quarantine)
    out = finalize(raw, quarantine, "ml")

    assert _entries(quarantine) == {
        ("wrong_field_count", "ratings.csv", 4, "timestamp"), ("bad_rating", "ratings.csv", 5, "rating"),
        ("bad_timestamp", "ratings.csv", 6, "timestamp"), ("empty_id", "ratings.csv", 7, "user_id"),
        ("unknown_item", "ratings.csv", 8, "item_id"),
        ("duplicate_event", "ratings.csv", 9, "user_id+item_id+timestamp"),
        ("blank_line", "ratings.csv", 10, None), ("wrong_field_count", "movies.csv", 6, "genres"),
        ("tag_unknown_item", "tags.csv", 6, "movieId"), ("empty_tag", "tags.csv", 7, "tag")}
    files = {os.path.basename(f): v["rows_read"] for f, v in out.stats["files"].items()}
    assert files == {"ratings.csv": 10, "movies.csv": 5, "tags.csv": 6}
    set_aside = [os.path.basename(row.file) for rows in quarantine.examples.values() for row in rows]
    for name, table in (("ratings.csv", out.interactions), ("movies.csv", out.items)):
        assert files[name] == len(table) + set_aside.count(name)

    assert out.interactions[["user_id", "item_id", "rating", "timestamp"]].values.tolist() == [
        ["1", "1", 4.0, 964982703], ["1", "2", 3.5, 964982224], ["2", "3", 2.5, 964982003]]
    items = out.items.set_index("item_id")
    assert items.loc["2", "title"] == "American President, The (1995)"
    assert items["text"].to_dict() == {
        "1": "Genres: Adventure, Animation. Tags: Pixar, fun",
        "2": "Genres: Comedy, Drama, Romance. Tags: politics",
        "3": "", "4": "Genres: Drama"}
    assert out.stats["clean"]["items_without_interactions"] == 1      # movie 4 stays a candidate
    assert raw.timestamp_kind == "unix" and raw.users is None and raw.stats["variant"] == "ml-latest"
    assert set(items["image_status"]) == {"none"}


def test_ml_latest_tag_options_arrive_as_strings(ml_latest: Path) -> None:
    no_tags = convert(str(ml_latest), None, Quarantine(), tags="false")
    assert no_tags.items.set_index("item_id").loc["1", "text"] == "Genres: Adventure, Animation"
    one_tag = convert(str(ml_latest), None, Quarantine(), max_tags="1")
    assert one_tag.items.set_index("item_id").loc["1", "text"] == "Genres: Adventure, Animation. Tags: Pixar"
    with pytest.raises(DataFormatError, match="max_tags"):
        convert(str(ml_latest), None, Quarantine(), max_tags="many")


@pytest.fixture
def ml_1m(tmp_path: Path) -> Path:
    _write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::20::3::978302109\n"
           "2::10::4\n"                       # 3 wrong field count
           "2::20::x::978300000\n"            # 4 bad rating
           "3::10::4::978300001\n")
    _write(tmp_path / "movies.dat", "10::Café Society (1995)::Comedy|Romance\n"
           "20::Toy Story (1995)::Animation|Children's\n", "latin-1")
    _write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::99::55117\n"
           "4::F::35::20::02460\n")         # user 4 never rated; user 2's rows are both bad
    return tmp_path


def test_ml_1m_latin1_profiles_and_round_trip(ml_1m: Path, tmp_path: Path) -> None:
    assert detect_variant(str(ml_1m)) == "ml-1m"
    quarantine = Quarantine()
    out = finalize(convert(str(ml_1m), None, quarantine), quarantine, "ml-1m")
    assert _entries(quarantine) == {
        ("wrong_field_count", "ratings.dat", 3, "timestamp"), ("bad_rating", "ratings.dat", 4, "rating"),
        ("empty_history", "users.dat", 2, "user_id"), ("empty_history", "users.dat", 4, "user_id")}
    assert out.items.set_index("item_id").loc["10", "title"] == "Café Society (1995)"
    assert out.items.set_index("item_id").loc["20", "text"] == "Genres: Animation, Children's"
    assert out.users.set_index("user_id")["profile"].to_dict() == {
        "1": "gender: F; age: under 18; occupation: K-12 student; zip code: 48067",
        "3": "gender: M; age: 25-34; occupation: 99; zip code: 55117"}

    root = tmp_path / "prepared"
    write_dataset(str(root), name="ml-1m-toy", source="movielens", timestamp_kind=out.timestamp_kind,
                  interactions=out.interactions, items=out.items, users=out.users)
    ds = Dataset.load(str(root))
    assert (ds.manifest.n_users, ds.manifest.n_items, ds.manifest.n_interactions) == (2, 2, 3)
    assert ds.manifest.has_ratings and ds.manifest.timestamp_kind == "unix"
    assert ds.users["profile"].iloc[0].startswith("gender: F")
    assert ds.interactions[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["1", "10", 978300760], ["1", "20", 978302109], ["3", "10", 978300001]]
    assert ds.items.set_index("item_id").loc["10", "title"] == "Café Society (1995)"


def _u_item_line(item: str, title: str, genres: set[str], flag: str = "1") -> str:
    flags = [flag if name in genres else "0" for name in ML100K_GENRES]
    return "|".join([item, title, "01-Jan-1995", "", "http://imdb/x", *flags]) + "\n"


def test_ml_100k_pipe_files_and_genre_flags(tmp_path: Path) -> None:
    _write(tmp_path / "u.data", "1\t10\t5\t881250949\n1\t20\t3\t881250950\n"
           "2\t10\tfour\t881250951\n"          # 3 bad rating
           "2\t30\t4\t881250952\n")            # 4 item 30 is quarantined in u.item -> unknown
    _write(tmp_path / "u.item", _u_item_line("10", "Café (1995)", {"Comedy", "Romance"})
           + _u_item_line("20", "GoldenEye (1995)", {"Action"})
           + _u_item_line("30", "Odd Flags (1995)", {"Action"}, flag="2"), "latin-1")
    _write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    quarantine = Quarantine()
    out = finalize(convert(str(tmp_path), None, quarantine), quarantine, "ml-100k")
    assert _entries(quarantine) == {
        ("bad_rating", "u.data", 3, "rating"), ("bad_genre_flag", "u.item", 3, "Action"),
        ("unknown_item", "u.data", 4, "item_id"), ("empty_history", "u.user", 2, "user_id")}
    assert out.items.set_index("item_id")["text"].to_dict() == {
        "10": "Genres: Comedy, Romance", "20": "Genres: Action"}
    assert out.items.set_index("item_id").loc["10", "title"] == "Café (1995)"
    assert out.users.set_index("user_id")["profile"].to_dict() == {
        "1": "age: 24; gender: M; occupation: technician; zip code: 85711"}
    assert out.stats["variant"] == "ml-100k"


def test_missing_files_and_columns_are_named(tmp_path: Path, ml_latest: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="ratings.csv \\+ movies.csv"):
        convert(str(empty), None, Quarantine())
    with pytest.raises(DataFormatError, match="missing ml-1m ratings.dat"):
        convert(str(ml_latest), None, Quarantine(), variant="ml-1m")
    _write(ml_latest / "ratings.csv", "userId,movieId,rating\n1,1,4.0\n")
    with pytest.raises(DataFormatError) as err:
        convert(str(ml_latest), None, Quarantine())
    where = (err.value.field, err.value.line, os.path.basename(err.value.file))
    assert where == ("timestamp", 1, "ratings.csv")


@pytest.mark.real_data
def test_real_ml_latest_small_with_posters(shared_data: Path) -> None:
    source = shared_data / "ml-latest-small"
    posters = shared_data / "movielens-posters" / "posters"
    with open(source / "ratings.csv", newline="") as handle:
        ratings = list(csv.DictReader(handle))
    with open(source / "movies.csv", newline="") as handle:
        movie_ids = {row["movieId"] for row in csv.DictReader(handle)}
    rated = {row["movieId"] for row in ratings}
    expected_unknown = sum(row["movieId"] not in movie_ids for row in ratings)
    expected_with_poster = len(rated & movie_ids & {name.split(".")[0] for name in os.listdir(posters)})

    started = time.perf_counter()
    quarantine = Quarantine()
    out = finalize(convert(str(source), str(posters), quarantine), quarantine, "ml-latest-small")
    assert time.perf_counter() - started < 20

    assert len(ratings) == 100_004 and out.stats["clean"]["interactions_in"] == 100_004
    assert out.stats["clean"]["unknown_item"] == quarantine.counts["unknown_item"] == expected_unknown
    assert len(out.interactions) + quarantine.total == 100_004         # nothing dropped silently
    assert out.interactions["user_id"].nunique() == 671
    assert len(out.items) == len(movie_ids) == 9_125                  # unrated movies stay candidates

    items = out.items.set_index("item_id")
    ok = items[items["image_status"] == "ok"]
    assert len(ok) == expected_with_poster == 3_160
    assert set(items["image_status"]) == {"ok", "missing"}
    assert items.loc["3575", "image_format"] == "PNG" and items.loc["1", "image_format"] == "JPEG"
    assert ok["image_uri"].map(os.path.isabs).all()
    assert items.loc["1", "text"].startswith("Genres: Adventure, Animation, Children, Comedy, Fantasy")
    assert out.interactions["rating"].between(0.5, 5.0).all()
    assert pd.api.types.is_integer_dtype(out.interactions["timestamp"])


def test_header_only_ratings_are_an_error_header_only_tags_are_not(tmp_path: Path) -> None:
    _write(tmp_path / "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation\n")
    _write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n")  # no tags: a valid, if sparse, source
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n")
    with pytest.raises(DataFormatError, match="no data rows after the header") as err:
        convert(str(tmp_path), None, Quarantine())
    assert (err.value.file, err.value.line) == (str(tmp_path / "ratings.csv"), 2)
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,100\n2,1,4,-100\n3,1,4,1.6e12\n")
    quarantine = Quarantine()
    raw = convert(str(tmp_path), None, quarantine)
    assert raw.interactions["timestamp"].tolist() == [100] and raw.items["text"].tolist() == ["Genres: Animation"]
    assert _entries(quarantine) == {("timestamp_out_of_range", "ratings.csv", 3, "timestamp"),
                                    ("timestamp_out_of_range", "ratings.csv", 4, "timestamp")}
