"""Multi-domain merge: ids remapped, nothing lost, impossible user joins refused."""

from __future__ import annotations

import pandas as pd
import pytest

from reasonrec.data.errors import DataFormatError
from reasonrec.data.merge import merge_domains
from reasonrec.data.schema import Dataset, write_dataset


def make(root, timestamp_kind="unix", users=("u1", "u2"), items=("a", "b")):
    interactions = pd.DataFrame({
        "user_id": [users[0], users[0], users[1]], "item_id": [items[0], items[1], items[0]],
        "timestamp": [1, 2, 3]})
    item_table = pd.DataFrame({"item_id": list(items), "title": ["A", "B"], "text": ["x", "y"],
                               "image_uri": [None, None], "image_status": ["none", "none"],
                               "image_format": [None, None]})
    write_dataset(str(root), name=root.name, source="test", timestamp_kind=timestamp_kind,
                  interactions=interactions, items=item_table)
    return Dataset.load(str(root))


def test_ids_are_prefixed_and_nothing_is_lost(tmp_path):
    beauty, sports = make(tmp_path / "beauty"), make(tmp_path / "sports")
    raw = merge_domains({"beauty": beauty, "sports": sports})
    assert len(raw.interactions) == 6 and len(raw.items) == 4
    assert set(raw.items["item_id"]) == {"beauty:a", "beauty:b", "sports:a", "sports:b"}
    assert set(raw.interactions["user_id"]) == {"beauty:u1", "beauty:u2", "sports:u1", "sports:u2"}
    assert raw.items.set_index("item_id").loc["sports:a", "text"] == "[sports] x"
    out = tmp_path / "merged"
    manifest = write_dataset(str(out), name="m", source="merge", timestamp_kind=raw.timestamp_kind,
                             interactions=raw.interactions, items=raw.items, users=raw.users,
                             domains=["beauty", "sports"])
    assert (manifest.n_users, manifest.n_items, manifest.n_interactions) == (4, 4, 6)
    assert manifest.domains == ["beauty", "sports"]


def test_shared_users_join_by_id(tmp_path):
    raw = merge_domains({"b": make(tmp_path / "b"), "s": make(tmp_path / "s")}, share_users=True)
    assert set(raw.interactions["user_id"]) == {"u1", "u2"}
    assert raw.users["user_id"].is_unique


def test_shared_users_need_real_timestamps(tmp_path):
    ordinal = make(tmp_path / "b", timestamp_kind="ordinal")
    with pytest.raises(DataFormatError, match="ordinal"):
        merge_domains({"b": ordinal, "s": make(tmp_path / "s")}, share_users=True)
    # Without sharing users, one ordinal domain makes the merged set ordinal.
    assert merge_domains({"b": ordinal, "s": make(tmp_path / "s2")}).timestamp_kind == "ordinal"


def test_bad_domain_names(tmp_path):
    ds = make(tmp_path / "b")
    with pytest.raises(DataFormatError, match="at least two"):
        merge_domains({"b": ds})
    with pytest.raises(DataFormatError, match="':'"):
        merge_domains({"a:b": ds, "c": ds})
