"""The canonical on-disk dataset: three Parquet tables and a JSON manifest.

Every converter writes this and every job reads only this, so a new source is one converter, not a change
in every job. Layout of a dataset folder (local path or s3:// URI):

    manifest.json          Manifest below: counts, what the data has, format version
    interactions.parquet   user_id, item_id, user_idx, item_idx, timestamp, rating?, review?, review_title?
    items.parquet          item_id, item_idx, title, text, image_uri?, image_status, image_format?
    users.parquet          user_id, user_idx, profile?
    prepare_report.json    what the converter read, quarantined, flagged (written by jobs/prepare_data.py)

Indices (`user_idx`, `item_idx`) are dense, 0-based and assigned in sorted-id order, so they are the same
every time the same source is prepared. Interactions are stored sorted by (user_idx, timestamp, source
order): a user's history is a contiguous, chronological run of rows.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from reasonrec.data.errors import DataFormatError
from reasonrec.io import open_fs, join

FORMAT_VERSION = 1

INTERACTIONS_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("item_idx", pa.int32(), nullable=False),
    # Unix seconds, or the position in the user's sequence when manifest.timestamp_kind == "ordinal".
    pa.field("timestamp", pa.int64(), nullable=False),
    pa.field("rating", pa.float32()),
    pa.field("review", pa.string()),
    pa.field("review_title", pa.string()),  # a review's one-line summary, where the source has one
])

# image_status: "ok" (opened and decoded), "missing" (no file for this item), "corrupt" (a file that does not
# decode as an image), "refused" (a file deliberately not decoded: a link out of the image folder, or more
# pixels than max_image_pixels), "none" (the source has no images at all).
IMAGE_STATUSES = ("ok", "missing", "corrupt", "refused", "none")

ITEMS_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("item_idx", pa.int32(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    # Absolute path or URI of an external image, or a path relative to the dataset folder (images that
    # live inside it, e.g. the synthetic set's), which keeps a dataset folder relocatable.
    pa.field("image_uri", pa.string()),
    pa.field("image_status", pa.string(), nullable=False),
    pa.field("image_format", pa.string()),  # detected from content (PNG, JPEG, ...), not from the extension
])

USERS_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("user_idx", pa.int32(), nullable=False),
    pa.field("profile", pa.string()),
])

TABLE_SCHEMAS = {"interactions": INTERACTIONS_SCHEMA, "items": ITEMS_SCHEMA, "users": USERS_SCHEMA}


class Manifest(BaseModel):
    """What a dataset folder holds. Deliberately free of wall-clock times so re-preparing is byte-identical."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(FORMAT_VERSION, description="On-disk format version this folder follows.")
    name: str = Field(description="Short dataset name, e.g. 'ml-latest-small'.")
    source: str = Field(description="Converter that produced it, e.g. 'movielens', 'amazon_p5', 'synthetic'.")
    timestamp_kind: Literal["unix", "ordinal"] = Field(
        description="'unix' seconds, or 'ordinal' where the source has only the order of events.")
    n_users: int = Field(description="Rows in users.parquet.")
    n_items: int = Field(description="Rows in items.parquet.")
    n_interactions: int = Field(description="Rows in interactions.parquet.")
    has_ratings: bool = Field(description="Whether interactions carry an explicit rating.")
    has_reviews: bool = Field(description="Whether interactions carry review text.")
    n_items_with_image: int = Field(description="Items whose image_status is 'ok'.")
    domains: list[str] = Field(default_factory=list,
                               description="Source domains when several were merged (ids are prefixed).")


class Dataset:
    """A prepared dataset: the manifest, and its three tables as pandas frames read on first use, so a reader
    that needs only the catalogue (a scoring actor) never holds the interactions."""

    def __init__(self, root: str, manifest: Manifest, interactions: pd.DataFrame | None = None,
                 items: pd.DataFrame | None = None, users: pd.DataFrame | None = None):
        self.root, self.manifest = root, manifest
        self._frames: dict[str, pd.DataFrame | None] = {"interactions": interactions, "items": items, "users": users}
        self._rows: dict[str, int] = {}

    @property
    def interactions(self) -> pd.DataFrame:
        return self._frame("interactions")

    @interactions.setter
    def interactions(self, frame: pd.DataFrame) -> None:
        self._frames["interactions"] = frame

    @property
    def items(self) -> pd.DataFrame:
        return self._frame("items")

    @items.setter
    def items(self, frame: pd.DataFrame) -> None:
        self._frames["items"] = frame

    @property
    def users(self) -> pd.DataFrame:
        return self._frame("users")

    @users.setter
    def users(self, frame: pd.DataFrame) -> None:
        self._frames["users"] = frame

    @property
    def n_users(self) -> int:
        return self._num_rows("users")

    @property
    def n_items(self) -> int:
        return self._num_rows("items")

    def table_path(self, table: str) -> str:
        return join(self.root, f"{table}.parquet")

    def _frame(self, table: str) -> pd.DataFrame:
        if self._frames[table] is None:
            fs, path = open_fs(self.table_path(table))
            self._frames[table] = pq.read_table(path, filesystem=fs, columns=TABLE_SCHEMAS[table].names).to_pandas()
        return self._frames[table]

    def _num_rows(self, table: str) -> int:
        """Rows of a table: its frame's length once read, else the Parquet footer's count (no data read)."""
        if self._frames[table] is not None:
            return len(self._frames[table])
        if table not in self._rows:
            fs, path = open_fs(self.table_path(table))
            with fs.open(path, "rb") as f:
                self._rows[table] = pq.ParquetFile(f).metadata.num_rows
        return self._rows[table]

    @classmethod
    def load(cls, root: str) -> "Dataset":
        """Read the manifest and check every table's columns from its footer; the rows are read on first use."""
        fs, path = open_fs(root)
        manifest_path = join(path, "manifest.json")
        if not fs.exists(manifest_path):
            raise DataFormatError("not a prepared dataset (no manifest.json); run jobs/prepare_data.py",
                                  file=root)
        with fs.open(manifest_path, "r") as f:
            manifest = Manifest.model_validate(json.load(f))
        if manifest.format_version != FORMAT_VERSION:
            raise DataFormatError(
                f"format_version {manifest.format_version}, this code reads {FORMAT_VERSION}",
                file=manifest_path, field="format_version")
        for table, schema in TABLE_SCHEMAS.items():
            table_path = join(path, f"{table}.parquet")
            with fs.open(table_path, "rb") as f:
                names = pq.ParquetFile(f).schema_arrow.names
            missing = [n for n in schema.names if n not in names]
            if missing:
                raise DataFormatError(f"missing columns {missing}", file=table_path, field=missing[0])
        return cls(root, manifest)

    def image_location(self, image_uri: str) -> str:
        """Where an items.parquet image_uri points: relative URIs resolve against the dataset folder."""
        if "://" in image_uri or image_uri.startswith("/"):
            return image_uri
        return join(self.root, image_uri)

    def user_histories(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, item_idx) in CSR form: user u's chronological items are item_idx[offsets[u]:offsets[u+1]]."""
        counts = np.bincount(self.interactions["user_idx"].to_numpy(), minlength=self.n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return offsets, self.interactions["item_idx"].to_numpy()


def build_tables(interactions: pd.DataFrame, items: pd.DataFrame,
                 users: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Assign dense indices and the canonical order.

    `interactions` needs user_id, item_id, timestamp (rating/review optional); its row order is the source
    order used to break timestamp ties. `items` needs item_id, title, text, image_uri, image_status,
    image_format. Every interaction's item must be in `items` (converters quarantine the rest first).
    """
    interactions = interactions.copy()
    for column in ("rating", "review", "review_title"):
        if column not in interactions:
            interactions[column] = None
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    if items["item_id"].duplicated().any():
        dup = items.loc[items["item_id"].duplicated(), "item_id"].iloc[0]
        raise DataFormatError(f"duplicate item id {dup!r}", field="item_id")
    items["item_idx"] = np.arange(len(items), dtype=np.int32)
    item_index = pd.Series(items["item_idx"].to_numpy(), index=items["item_id"])
    unknown = ~interactions["item_id"].isin(item_index.index)
    if unknown.any():
        raise DataFormatError(
            f"{int(unknown.sum())} interactions name items not in the item table "
            f"(first: {interactions.loc[unknown, 'item_id'].iloc[0]!r}); quarantine them in the converter",
            field="item_id")

    user_ids = np.sort(interactions["user_id"].unique())
    known_profiles = users.set_index("user_id")["profile"] if users is not None else pd.Series(dtype=object)
    users_out = pd.DataFrame({"user_id": user_ids, "user_idx": np.arange(len(user_ids), dtype=np.int32)})
    users_out["profile"] = users_out["user_id"].map(known_profiles).astype(object)
    users_out.loc[users_out["profile"].isna(), "profile"] = None
    user_index = pd.Series(users_out["user_idx"].to_numpy(), index=users_out["user_id"])

    interactions["user_idx"] = interactions["user_id"].map(user_index).astype(np.int32)
    interactions["item_idx"] = interactions["item_id"].map(item_index).astype(np.int32)
    interactions["_order"] = np.arange(len(interactions))
    interactions = interactions.sort_values(["user_idx", "timestamp", "_order"], kind="stable")
    interactions = interactions.drop(columns="_order").reset_index(drop=True)
    return interactions, items, users_out


def write_dataset(root: str, *, name: str, source: str, timestamp_kind: str, interactions: pd.DataFrame,
                  items: pd.DataFrame, users: pd.DataFrame | None = None,
                  domains: list[str] | None = None) -> Manifest:
    """Write the canonical tables and manifest to `root` (local or s3://) and return the manifest."""
    interactions, items, users = build_tables(interactions, items, users)
    manifest = Manifest(
        name=name, source=source, timestamp_kind=timestamp_kind,
        n_users=len(users), n_items=len(items), n_interactions=len(interactions),
        has_ratings=bool(interactions["rating"].notna().any()),
        has_reviews=bool(interactions["review"].notna().any()),
        n_items_with_image=int((items["image_status"] == "ok").sum()),
        domains=list(domains or []),
    )
    bad_status = set(items["image_status"].unique()) - set(IMAGE_STATUSES)
    if bad_status:
        raise DataFormatError(f"unknown image_status {sorted(bad_status)}", field="image_status")
    fs, path = open_fs(root)
    fs.makedirs(path, exist_ok=True)
    for table, frame in (("interactions", interactions), ("items", items), ("users", users)):
        schema = TABLE_SCHEMAS[table]
        arrow = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
        write_parquet(arrow, join(path, f"{table}.parquet"), fs)
    with fs.open(join(path, "manifest.json"), "w") as f:
        f.write(manifest.model_dump_json(indent=2))
    return manifest


def write_parquet(table: pa.Table, path: str, fs) -> None:
    """One place that fixes the Parquet writer settings, so identical data gives identical bytes."""
    with fs.open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd", row_group_size=1 << 20)
