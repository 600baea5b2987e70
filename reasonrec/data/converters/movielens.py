"""MovieLens in its three file layouts, told apart by which files the folder holds.

- ml-latest / ml-latest-small: ratings.csv, movies.csv, optional tags.csv (UTF-8 CSV with header)
- ml-1m (also ml-10m): ratings.dat, movies.dat, optional users.dat ('::'-separated, latin-1)
- ml-100k: u.data (tab-separated), u.item and u.user ('|'-separated, latin-1), optional u.genre

Item title = the movie title; item text = its genres (and, for ml-latest, its most used tags), which is what
a language model can use to describe a movie. Ratings and unix timestamps are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.converters.reading import (
    SOURCE_COLUMNS, SOURCE_LINE, as_bool, as_int, is_in, iter_lines, labelled_text, parse_ratings,
    parse_timestamps, quarantine_rows, read_table, require_columns, require_file)
from reasonrec.data.errors import DataFormatError, Quarantine
from reasonrec.data.images import DEFAULT_MAX_IMAGE_PIXELS, attach_images

VARIANT_FILES = {
    "ml-latest": ("ratings.csv", "movies.csv"),
    "ml-1m": ("ratings.dat", "movies.dat"),
    "ml-100k": ("u.data", "u.item"),
}
DEFAULT_ENCODING = {"ml-latest": "utf-8", "ml-1m": "latin-1", "ml-100k": "latin-1"}
NO_GENRE = "(no genres listed)"

# Codes from the ml-1m README, decoded so profiles read as text rather than numbers.
ML1M_AGES = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
             "56": "56+"}
ML1M_OCCUPATIONS = dict(enumerate([
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer"]))
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                 "Thriller", "War", "Western"]

Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, dict]


def convert(path: str, images: str | None, quarantine: Quarantine, *, variant: str | None = None,
            encoding: str | None = None, tags: bool | str = True, max_tags: int | str = 10,
            max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> RawDataset:
    """Read a MovieLens folder. Options: variant (ml-latest|ml-1m|ml-100k, default detected), encoding,
    tags (append ml-latest tags to item text), max_tags (most frequent tags kept per movie)."""
    variant = variant or detect_variant(path)
    if variant not in VARIANT_FILES:
        raise DataFormatError(f"unknown MovieLens variant {variant!r}; expected one of {sorted(VARIANT_FILES)}",
                              field="variant")
    encoding = encoding or DEFAULT_ENCODING[variant]
    readers: dict[str, Callable[..., Tables]] = {"ml-latest": _read_latest, "ml-1m": _read_1m,
                                                 "ml-100k": _read_100k}
    options = {"tags": as_bool(tags, "tags"), "max_tags": as_int(max_tags, "max_tags")} \
        if variant == "ml-latest" else {}
    interactions, items, users, stats = readers[variant](path, quarantine, encoding, **options)
    stats["variant"] = variant
    items = attach_images(items, images, quarantine, max_image_pixels=max_image_pixels)
    return RawDataset(interactions, items, users, "unix", stats)


def detect_variant(path: str) -> str:
    """The variant whose marker files are all present; DataFormatError listing what was looked for."""
    if not os.path.isdir(path):
        raise DataFormatError("MovieLens folder not found", file=path)
    for variant, files in VARIANT_FILES.items():
        if all(os.path.isfile(os.path.join(path, name)) for name in files):
            return variant
    expected = "; ".join(f"{variant}: {' + '.join(files)}" for variant, files in VARIANT_FILES.items())
    raise DataFormatError(f"no MovieLens layout recognised (expected {expected})", file=path)


def _ratings(frame: pd.DataFrame, quarantine: Quarantine, user: str, item: str) -> pd.DataFrame:
    """Canonical interaction columns from a ratings table; bad numbers and impossible times are quarantined
    by parse_ratings / parse_timestamps."""
    frame = parse_ratings(frame, "rating", quarantine)
    frame = parse_timestamps(frame, "timestamp", quarantine, dates=False)
    return pd.DataFrame({"user_id": frame[user], "item_id": frame[item], "timestamp": frame["timestamp"],
                         "rating": frame["rating"], **{c: frame[c] for c in SOURCE_COLUMNS}})


def _items(frame: pd.DataFrame, item: str, title: str, text: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"item_id": frame[item], "title": frame[title], "text": text,
                         **{c: frame[c] for c in SOURCE_COLUMNS}})


def _genre_text(genres: pd.Series) -> pd.Series:
    """'Adventure|Animation' -> 'Genres: Adventure, Animation'; '(no genres listed)' -> ''."""
    listed = genres.where(genres != NO_GENRE, "").str.split("|").map(lambda names: [n for n in names if n])
    return listed.map(lambda names: f"Genres: {', '.join(names)}" if names else "")


def _read_latest(path: str, quarantine: Quarantine, encoding: str, *, tags: bool, max_tags: int) -> Tables:
    stats: dict = {"files": {}}
    ratings_file = os.path.join(path, "ratings.csv")
    ratings, n_read = read_table(ratings_file, quarantine, encoding=encoding)
    require_columns(ratings.columns, ["userId", "movieId", "rating", "timestamp"], ratings_file)
    stats["files"][ratings_file] = {"rows_read": n_read}
    interactions = _ratings(ratings, quarantine, "userId", "movieId")

    movies_file = os.path.join(path, "movies.csv")
    movies, n_read = read_table(movies_file, quarantine, encoding=encoding)
    require_columns(movies.columns, ["movieId", "title", "genres"], movies_file)
    stats["files"][movies_file] = {"rows_read": n_read}
    text = _genre_text(movies["genres"])

    tags_file = os.path.join(path, "tags.csv")
    if tags and os.path.isfile(tags_file):
        tag_text, n_read = _tag_text(tags_file, movies["movieId"], quarantine, encoding, max_tags)
        stats["files"][tags_file] = {"rows_read": n_read}
        extra = movies["movieId"].map(tag_text).astype(object).fillna("")  # object: no tags at all maps to float NaN
        text = pd.Series([". ".join(part for part in pair if part) for pair in zip(text, extra)],
                         index=movies.index, dtype=object)
    return interactions, _items(movies, "movieId", "title", text), None, stats


def _tag_text(tags_file: str, movie_ids: pd.Series, quarantine: Quarantine, encoding: str,
              max_tags: int) -> tuple[pd.Series, int]:
    """{movieId: 'Tags: a, b'} with each movie's most used tags (ties: first used first)."""
    frame, n_read = read_table(tags_file, quarantine, encoding=encoding, allow_empty=True)  # no tags is fine
    require_columns(frame.columns, ["movieId", "tag"], tags_file)
    blank = frame["tag"] == ""
    quarantine_rows(quarantine, frame[blank], reason="empty_tag", field="tag")
    unknown = ~blank & ~is_in(frame["movieId"], movie_ids)
    quarantine_rows(quarantine, frame[unknown], reason="tag_unknown_item", field="movieId",
                    value_column="movieId")
    frame = frame[~blank & ~unknown]
    # Tags are free text typed by users: merge case variants under the first spelling seen.
    frame = frame.assign(key=frame["tag"].str.lower())
    counted = frame.groupby(["movieId", "key"], sort=False).agg(tag=("tag", "first"), n=("tag", "size"),
                                                                first=(SOURCE_LINE, "min")).reset_index()
    counted = counted.sort_values(["movieId", "n", "first"], ascending=[True, False, True], kind="stable")
    top = counted.groupby("movieId", sort=False).head(max_tags)
    text = top.groupby("movieId", sort=False)["tag"].agg(lambda names: "Tags: " + ", ".join(names))
    return text, n_read


def _read_1m(path: str, quarantine: Quarantine, encoding: str) -> Tables:
    stats: dict = {"files": {}}

    def dat(name: str, columns: list[str]) -> pd.DataFrame:
        file = require_file(os.path.join(path, name), f"ml-1m {name}")
        frame, n_read = read_table(file, quarantine, columns=columns, delimiter="::", quoted=False,
                                   encoding=encoding)
        stats["files"][file] = {"rows_read": n_read}
        return frame

    interactions = _ratings(dat("ratings.dat", ["UserID", "MovieID", "rating", "timestamp"]), quarantine,
                            "UserID", "MovieID")
    movies = dat("movies.dat", ["MovieID", "Title", "Genres"])
    items = _items(movies, "MovieID", "Title", _genre_text(movies["Genres"]))
    users = None
    if os.path.isfile(os.path.join(path, "users.dat")):
        frame = dat("users.dat", ["UserID", "Gender", "Age", "Occupation", "Zip-code"])
        frame = frame.assign(Age=frame["Age"].map(lambda code: ML1M_AGES.get(code, code)),
                             Occupation=frame["Occupation"].map(_occupation))
        profile = labelled_text(frame, {"Gender": "gender", "Age": "age", "Occupation": "occupation",
                                        "Zip-code": "zip code"})
        users = pd.DataFrame({"user_id": frame["UserID"], "profile": profile,
                              **{c: frame[c] for c in SOURCE_COLUMNS}})
    return interactions, items, users, stats


def _occupation(code: str) -> str:
    return ML1M_OCCUPATIONS.get(int(code), code) if code.isdigit() else code


def _read_100k(path: str, quarantine: Quarantine, encoding: str) -> Tables:
    stats: dict = {"files": {}}

    def table(name: str, columns: list[str], delimiter: str) -> pd.DataFrame:
        file = require_file(os.path.join(path, name), f"ml-100k {name}")
        frame, n_read = read_table(file, quarantine, columns=columns, delimiter=delimiter, quoted=False,
                                   encoding=encoding)
        stats["files"][file] = {"rows_read": n_read}
        return frame

    interactions = _ratings(table("u.data", ["user", "item", "rating", "timestamp"], "\t"), quarantine,
                            "user", "item")
    genres = _read_genre_names(os.path.join(path, "u.genre"), encoding)
    movies = table("u.item", ["item", "title", "release_date", "video_release_date", "imdb_url", *genres], "|")
    flags = movies[genres]
    bad_flag = ~flags.isin(["0", "1"])
    for genre in genres:  # quarantine each movie once, under its first bad flag
        rows = bad_flag[genre] & ~bad_flag[genres[:genres.index(genre)]].any(axis=1)
        quarantine_rows(quarantine, movies[rows], reason="bad_genre_flag", field=genre, value_column=genre)
    movies = movies[~bad_flag.any(axis=1)]
    names = [[g for g, flag in zip(genres, row) if flag == "1" and g != "unknown"]
             for row in movies[genres].itertuples(index=False)]
    text = pd.Series([f"Genres: {', '.join(n)}" if n else "" for n in names], index=movies.index, dtype=object)
    items = _items(movies, "item", "title", text)

    users = None
    if os.path.isfile(os.path.join(path, "u.user")):
        frame = table("u.user", ["user", "age", "gender", "occupation", "zip"], "|")
        profile = labelled_text(frame, {"age": "age", "gender": "gender", "occupation": "occupation",
                                        "zip": "zip code"})
        users = pd.DataFrame({"user_id": frame["user"], "profile": profile,
                              **{c: frame[c] for c in SOURCE_COLUMNS}})
    return interactions, items, users, stats


def _read_genre_names(file: str, encoding: str) -> list[str]:
    """u.genre ('name|index' lines) when present, else the 19 genres of the published ml-100k."""
    if not os.path.isfile(file):
        return list(ML100K_GENRES)
    numbered = [(number, line.strip().split("|")) for number, line in iter_lines(file, encoding) if line.strip()]
    for number, pair in numbered:
        if len(pair) != 2 or not pair[1].isdigit():
            raise DataFormatError(f"u.genre lines must be 'name|index', got {'|'.join(pair)[:80]!r}", file=file,
                                  line=number)
    if not numbered:
        raise DataFormatError("empty genre list (lines 'name|index')", file=file, line=1)
    pairs = [pair for _, pair in numbered]
    return [name for name, _ in sorted(pairs, key=lambda pair: int(pair[1]))]
