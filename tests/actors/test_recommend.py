"""actors/recommend.py's Ray-free helpers: how tonight's user table is cut into the stream's blocks."""

from __future__ import annotations

import pyarrow as pa

from actors.recommend import user_blocks


def test_user_blocks_are_contiguous_even_slices_of_the_table():
    table = pa.table({"user_id": [str(i) for i in range(10)], "user_idx": list(range(10))})
    blocks = user_blocks(table, 8)
    assert [b.num_rows for b in blocks] == [2, 2, 1, 1, 1, 1, 1, 1]
    assert pa.concat_tables(blocks).equals(table)          # every user once, in file order
    assert [b.num_rows for b in user_blocks(table, 30)] == [1] * 10   # never an empty block
    assert [b.num_rows for b in user_blocks(table, 1)] == [10]
    empty = user_blocks(table.slice(0, 0), 8)
    assert len(empty) == 1 and empty[0].num_rows == 0 and empty[0].schema == table.schema
