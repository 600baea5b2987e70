"""The Ray-free steps of jobs/train_tools.py: per-tool settings, the progress headline and the metrics table."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reasonrec.tools.train_config import TrainToolsConfig
from reasonrec.tools.zoo import TABLE_COLUMNS, headline, markdown_table, tool_settings


def test_tool_settings_apply_the_variant_the_overrides_and_the_epoch_budget():
    cfg = TrainToolsConfig(seed=7, epochs=2, tool_configs={"sasrec": {"max_len": 20}, "sasrec+v": {"max_len": 30}})
    assert tool_settings(cfg, "sasrec") == ("sasrec", {"seed": 7, "max_len": 20, "epochs": 2})
    # '+v' turns the content tower on; the spec's own entry, when there is one, wins over the tool's
    assert tool_settings(cfg, "SASRec+V") == ("sasrec", {"seed": 7, "max_len": 20, "use_content": True, "epochs": 2})
    assert tool_settings(cfg, "sasrec+v") == ("sasrec", {"seed": 7, "max_len": 30, "use_content": True, "epochs": 2})
    assert tool_settings(TrainToolsConfig(), "bpr_mf") == ("bpr_mf", {"seed": 0})


def test_unknown_tools_variants_and_keys_fail_before_training():
    with pytest.raises(SystemExit, match="unknown tool 'nosuchtool'"):
        tool_settings(TrainToolsConfig(), "nosuchtool")
    with pytest.raises(SystemExit, match=r"unknown tool 'sasrec\+x'"):
        tool_settings(TrainToolsConfig(), "sasrec+x")
    with pytest.raises(ValidationError, match="no_such_key"):
        tool_settings(TrainToolsConfig(tool_configs={"bpr_mf": {"no_such_key": 1}}), "bpr_mf")


def test_headline_shows_the_row_kind_s_own_number():
    assert headline({"AUC": 0.71234, "sampled_HR@5": 0.5}) == "AUC 0.712"
    assert headline({"sampled_HR@5": 0.25}) == "HR@5 0.250"
    assert headline({"tool": "bpr_mf"}) == "not evaluated"


def test_markdown_table_has_one_row_per_tool_floats_at_four_places_and_blanks_for_missing():
    table = markdown_table([{"tool": "bpr_mf", "task": "direct", "sampled_HR@5": 0.123456, "epochs": 3},
                            {"tool": "dlrm", "task": "ctr", "AUC": 0.7, "device": None}]).splitlines()
    assert table[0] == "| " + " | ".join(TABLE_COLUMNS) + " |" and table[1] == "|" + "---|" * len(TABLE_COLUMNS)
    assert table[2] == "| bpr_mf | direct | 0.1235 |  |  |  |  |  |  | 3 |  |"
    assert table[3] == "| dlrm | ctr |  |  |  |  | 0.7000 |  |  |  |  |"
