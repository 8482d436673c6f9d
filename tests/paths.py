"""Where the tests find things: the repository, its vendored test captures and the shared real captures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
# shared captures live beside the repository: <repo>/../shared/data
SHARED_DATA = REPO.parent / "shared" / "data"
