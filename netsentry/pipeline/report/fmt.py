"""Numbers, times and durations formatted for people (plain text; the caller escapes)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

DASH = "–"
_NS = 1_000_000_000


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


def nbytes(x: Any, per_s: bool = False) -> str:
    """Bytes in decimal units: 3_400_000 → '3.4 MB' (or 'MB/s')."""
    v = as_float(x)
    if v is None:
        return DASH
    suffix = "/s" if per_s else ""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= scale:
            return f"{_trim(f'{v / scale:.1f}')} {unit}{suffix}"
    return f"{num(v)} B{suffix}"


def duration(ns: Any) -> str:
    """A span of nanoseconds: '850 ms', '12.5 s', '4 min 05 s', '2 h 03 min', '1 d 02 h'."""
    v = as_float(ns)
    if v is None or math.isinf(v) or v < 0:
        return DASH
    s = v / _NS
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
        return datetime.fromtimestamp(int(v) // _NS, tz=UTC).strftime(fmt)
    except (TypeError, ValueError, OverflowError, OSError):
        return DASH


def _tokens(name: str) -> list[str]:
    return str(name).lower().replace("-", "_").replace(" ", "_").split("_")


def _unit(meaning: str) -> str:
    """The unit a feature's meaning ends with: '… (bytes/s)' → 'bytes/s', '(ratio; 1 …)' → 'ratio'."""
    text = str(meaning).strip()
    if not text.endswith(")") or "(" not in text:
        return ""
    return text[text.rfind("(") + 1 : -1].split(";")[0].strip().lower()


def kind_of(name: str, meaning: str = "") -> str:
    """How a named value reads: fold, pct, ms, bytes_per_s, bytes, per_min, per_s, bits, s or num."""
    t = _tokens(name)
    unit = _unit(meaning)
    if ("vs" in t and len(t) > t.index("vs") + 1) or "fold" in t or t[-1] == "burstiness":
        return "fold"
    if "ratio" in t:
        return "pct" if "failed" in t else "fold"
    if "share" in t or t[-1] in ("rate", "fraction", "frac"):
        return "pct"
    if t[-1] == "ms" or unit == "ms":
        return "ms"
    per_s = t[-2:] == ["per", "s"] or unit.endswith("/s")
    if "bytes" in t or unit.startswith("bytes"):
        return "bytes_per_s" if per_s else "bytes"
    if t[-2:] == ["per", "min"] or unit == "per minute":
        return "per_min"
    if per_s:
        return "per_s"
    if unit == "bits" or "entropy" in t:
        return "bits"
    if t[-1] == "s" or unit == "s":
        return "s"
    return "num"


def named(name: str, x: Any, meaning: str = "") -> str:
    """A value formatted by what its name (and the unit in its meaning) says it is."""
    k = kind_of(name, meaning)
    if k == "fold":
        return fold(x)
    if k == "pct":
        return pct(x)
    if k == "ms":
        return ms(x)
    if k in ("bytes", "bytes_per_s"):
        return nbytes(x, per_s=k == "bytes_per_s")
    if as_float(x) is None:
        return num(x)
    suffix = {"per_min": "/min", "per_s": "/s", "bits": " bits", "s": " s"}.get(k, "")
    return num(x) + suffix


def label(name: str) -> str:
    """A snake_case name as words: 'failed_out_per_min' → 'failed out per min'."""
    return str(name).replace("_", " ")
