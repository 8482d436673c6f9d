"""Time units (timestamps are int64 epoch nanoseconds everywhere) and how numbers are shown to people."""

from __future__ import annotations

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
