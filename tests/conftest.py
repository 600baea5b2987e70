"""Shared fixtures: where the real data lives, and a skip with a reason when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI and developer machines have ../shared beside the checkout; RR_SHARED_DATA points elsewhere if needed.
SHARED_DATA = Path(os.environ.get("RR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets (../shared/data); tests that need them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set RR_SHARED_DATA to point at it)")
    return SHARED_DATA
