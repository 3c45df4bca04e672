"""Shared test fixtures: the repository root on sys.path, and the location of ../shared (absent on user machines)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture
def realdata() -> Path:
    """../shared/realdata, or a clean skip where it is absent (a user's checkout has no shared/)."""
    path = SHARED / "realdata"
    if not path.is_dir():
        pytest.skip(f"real data not available at {path}")
    return path
