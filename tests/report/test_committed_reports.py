"""The committed reports (docs/reports/*/) re-render from their report.json to the exact report.md: a change to
the report writer that would alter a committed number or sentence fails here, not in a reader's diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonrec.report.writer import markdown

REPORTS = sorted(p.parent for p in (Path(__file__).resolve().parents[2] / "docs" / "reports").glob("*/report.json"))


def test_there_are_committed_reports():
    assert {p.name for p in REPORTS} >= {"ml-latest-small", "beauty", "sports", "beauty-sports"}


@pytest.mark.parametrize("folder", REPORTS, ids=[p.name for p in REPORTS])
def test_a_committed_report_re_renders_byte_for_byte(folder):
    report = json.loads((folder / "report.json").read_text())
    assert markdown(report) == (folder / "report.md").read_text()
