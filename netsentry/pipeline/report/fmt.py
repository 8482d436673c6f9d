"""How the report reads a named value: the feature name (and the unit its meaning ends with) picks the formatter.

The number, byte and time formatters themselves are in :mod:`netsentry.pipeline.core.units`.
"""

from __future__ import annotations

from typing import Any

from netsentry.pipeline.core import units


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
        return units.fold(x)
    if k == "pct":
        return units.pct(x)
    if k == "ms":
        return units.ms(x)
    if k in ("bytes", "bytes_per_s"):
        return units.bytes_decimal(x, per_s=k == "bytes_per_s")
    if units.as_float(x) is None:
        return units.num(x)
    suffix = {"per_min": "/min", "per_s": "/s", "bits": " bits", "s": " s"}.get(k, "")
    return units.num(x) + suffix


def label(name: str) -> str:
    """A snake_case name as words: 'failed_out_per_min' → 'failed out per min'."""
    return str(name).replace("_", " ")
