"""Time units (timestamps are int64 epoch nanoseconds everywhere), durations people type, and numbers shown to people.

The formatters return plain text (callers escape it) and a dash for missing values.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from netsentry.pipeline.core.errors import ConfigError

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

DASH = "–"
DURATION_HINT = "expected a duration like 60s, 1m or 500ms"
_DURATION_SUFFIXES = (("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0))


def parse_duration_s(text: str | float | None, what: str = "") -> float | None:
    """'60', '60s', '1m', '500ms', '2h' (or a number of seconds) → seconds; ``None`` stays ``None``.

    The one parser for duration flags and duration settings; a ``ConfigError`` naming ``what`` otherwise.
    """
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    t = str(text).strip().lower()
    for suffix, mult in _DURATION_SUFFIXES:
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * mult
    if t.replace(".", "", 1).isdigit():
        return float(t)
    message = f"{DURATION_HINT}, got {text!r}"
    raise ConfigError(f"{what}: {message}" if what else message)


def plain(x: Any) -> Any:
    """numpy scalars as Python values; anything else unchanged."""
    return x.item() if hasattr(x, "item") and not isinstance(x, (str, bytes)) else x


def as_float(x: Any) -> float | None:
    """A finite or infinite float, or None for missing/NaN/non-numeric values (bools are not numbers here)."""
    x = plain(x)
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _trim(text: str) -> str:
    """'12.0' → '12', '1.50' stays (only a bare '.0' is dropped)."""
    return text[:-2] if text.endswith(".0") else text


def num(x: Any) -> str:
    """A number with thousands separators and about three significant digits; text passes through."""
    x = plain(x)
    if isinstance(x, bool):
        return "yes" if x else "no"
    v = as_float(x)
    if v is None:
        return DASH if x is None or isinstance(x, float) else str(x)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.2e}" if a < 0.001 else f"{v:.3g}"


def pct(x: Any) -> str:
    """A fraction (0..1) as a percentage: 0.1234 → '12.3 %'."""
    v = as_float(x)
    if v is None:
        return DASH
    p = v * 100
    if p != 0 and abs(p) < 0.1:
        return "<0.1 %" if p > 0 else "−<0.1 %"
    return f"{_trim(f'{p:,.1f}')} %"


def fold(x: Any) -> str:
    """A ratio as x-fold: 0.5 → '0.50×', 3.27 → '3.3×', 120.4 → '120×'."""
    v = as_float(x)
    if v is None:
        return DASH
    if math.isinf(v):
        return "∞×"
    a = abs(v)
    if a >= 10:
        return f"{v:,.0f}×"
    return f"{v:.1f}×" if a >= 1 else f"{v:.2f}×"


def ms(x: Any) -> str:
    """Milliseconds: 0.35 → '0.35 ms', 42.1 → '42 ms', 1250 → '1.25 s'."""
    v = as_float(x)
    if v is None:
        return DASH
    a = abs(v)
    if a >= 1000:
        return f"{v / 1000:,.2f} s"
    if a >= 10:
        return f"{v:.0f} ms"
    return f"{v:.1f} ms" if a >= 1 else f"{v:.2f} ms"


def bytes_decimal(x: Any, per_s: bool = False) -> str:
    """Bytes in decimal (1000-based) units, as the report shows them: 3_400_000 → '3.4 MB' (or 'MB/s')."""
    v = as_float(x)
    if v is None:
        return DASH
    suffix = "/s" if per_s else ""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{_trim(f'{v / scale:.1f}')} {unit}{suffix}"
    return f"{num(v)} B{suffix}"


def bytes_binary(n: float) -> str:
    """Bytes in binary (1024-based) units, as the command line shows them: 1536 → '1.5 KB', 512 → '512 B'."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def duration(ns: Any) -> str:
    """A span of nanoseconds: '850 ms', '12.5 s', '4 min 05 s', '2 h 03 min', '1 d 02 h'."""
    v = as_float(ns)
    if v is None or math.isinf(v) or v < 0:
        return DASH
    s = v / NS_PER_S
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{_trim(f'{s:.1f}')} s"
    whole = round(s)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def utc(ns: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Epoch nanoseconds as UTC text ('–' when missing or out of range)."""
    v = plain(ns)
    if v is None or isinstance(v, bool):
        return DASH
    try:
        return datetime.fromtimestamp(int(v) // NS_PER_S, tz=UTC).strftime(fmt)
    except (TypeError, ValueError, OverflowError, OSError):
        return DASH
