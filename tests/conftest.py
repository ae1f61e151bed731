"""Shared fixtures: the real DFT data beside the checkout and small EMT structures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests using it skip with a message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real DFT data not found at {SHARED_DATA} (clone beside ../shared)")
    return SHARED_DATA
