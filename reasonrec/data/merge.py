"""Multi-domain merge: several prepared datasets become one, with ids remapped so nothing collides.

Item ids become "<domain>:<item_id>". Users are prefixed the same way by default (each domain's users are
distinct people as far as we can prove). With `share_users=True` a user id that appears in several domains is
one person (Amazon reviewerIDs are global), which only makes sense when timestamps are real: ordinal positions
from two files cannot be interleaved, so that combination is refused rather than guessed.
"""

from __future__ import annotations

import pandas as pd

from reasonrec.data.converters.base import RawDataset
from reasonrec.data.errors import DataFormatError
from reasonrec.data.schema import Dataset

INTERACTION_COLUMNS = ["user_id", "item_id", "timestamp", "rating", "review", "review_title"]
ITEM_COLUMNS = ["item_id", "title", "text", "image_uri", "image_status", "image_format"]


def merge_domains(datasets: dict[str, Dataset], share_users: bool = False) -> RawDataset:
    """Merge {domain name: dataset} into one RawDataset; row order is domain order, then stored order."""
    if len(datasets) < 2:
        raise DataFormatError(f"a merge needs at least two datasets, got {sorted(datasets)}")
    for domain in datasets:
        if not domain or ":" in domain:
            raise DataFormatError(f"domain name {domain!r} must be non-empty and contain no ':'")
    kinds = {ds.manifest.timestamp_kind for ds in datasets.values()}
    if share_users and kinds != {"unix"}:
        raise DataFormatError(
            "share_users=True needs unix timestamps in every domain: ordinal sequences from different files "
            f"cannot be interleaved in time (timestamp kinds: {sorted(kinds)})")

    interactions, items, users = [], [], []
    for domain, ds in datasets.items():
        part = ds.interactions[INTERACTION_COLUMNS].copy()
        part["item_id"] = domain + ":" + part["item_id"]
        if not share_users:
            part["user_id"] = domain + ":" + part["user_id"]
        interactions.append(part)
        domain_items = ds.items[ITEM_COLUMNS].copy()
        domain_items["item_id"] = domain + ":" + domain_items["item_id"]
        domain_items["text"] = ("[" + domain + "] " + domain_items["text"]).str.strip()
        items.append(domain_items)
        domain_users = ds.users[["user_id", "profile"]].copy()
        if not share_users:
            domain_users["user_id"] = domain + ":" + domain_users["user_id"]
        users.append(domain_users)

    merged_users = pd.concat(users, ignore_index=True)
    # With shared users keep the first non-empty profile seen, in domain order.
    merged_users = merged_users.sort_values("profile", key=lambda s: s.isna(), kind="stable")
    merged_users = merged_users.drop_duplicates("user_id", keep="first")
    return RawDataset(
        interactions=pd.concat(interactions, ignore_index=True),
        items=pd.concat(items, ignore_index=True),
        users=merged_users.reset_index(drop=True),
        # One ordinal domain makes the whole set ordinal: wall-clock recency and time cut-offs would lie.
        timestamp_kind="unix" if kinds == {"unix"} else "ordinal",
        stats={"domains": {d: {"users": ds.n_users, "items": ds.n_items,
                               "interactions": len(ds.interactions)} for d, ds in datasets.items()},
               "share_users": share_users},
    )
