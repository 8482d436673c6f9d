"""Score timelines as small inline SVG charts (step line, dashed threshold, shaded flagged windows)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from netsentry.pipeline.core.units import NS_PER_S, as_float, num, plain, utc

MAX_POINTS = 600
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_TICKS = 8


@dataclass(frozen=True)
class Segment:
    """A stretch of the step line: one window (or several merged), drawn from ``x0`` to ``x1`` (epoch ns);
    ``end`` is where the window really ends (sliding windows reach past the next one's start)."""

    x0: int
    x1: int
    score: float
    flag: bool
    gap_before: bool
    end: int


def windows_from_timeline(timeline: Iterable[Any]) -> list[tuple[int, int, float, bool]]:
    """``evidence["timeline"]`` entries as sorted ``(start_ns, end_ns, score, flag)``; malformed ones dropped,
    duplicates of a start merged (highest score, any flag)."""
    by_start: dict[int, tuple[int, int, float, bool]] = {}
    for w in timeline or ():
        if not isinstance(w, Mapping):
            continue
        start, end, score = plain(w.get("start_ns")), plain(w.get("end_ns")), as_float(w.get("score"))
        if not isinstance(start, int) or isinstance(start, bool) or score is None or math.isinf(score):
            continue
        end = end if isinstance(end, int) and not isinstance(end, bool) and end >= start else start
        flag = bool(plain(w.get("flag")))
        if start in by_start:
            _, e0, s0, f0 = by_start[start]
            by_start[start] = (start, max(end, e0), max(score, s0), flag or f0)
        else:
            by_start[start] = (start, end, score, flag)
    return [by_start[k] for k in sorted(by_start)]


def segments(windows: Sequence[tuple[int, int, float, bool]]) -> list[Segment]:
    """Each window drawn up to the next window's start (sliding windows overlap); a hole breaks the line."""
    out = []
    for i, (start, end, score, flag) in enumerate(windows):
        x1 = min(end, windows[i + 1][0]) if i + 1 < len(windows) else end
        gap = i == 0 or windows[i - 1][1] < start
        out.append(Segment(start, max(x1, start), score, flag, gap, end))
    return out


def downsample(segs: Sequence[Segment], max_points: int = MAX_POINTS) -> list[Segment]:
    """At most ``max_points`` segments: equal time buckets, each keeping its highest score and any flag."""
    if len(segs) <= max_points:
        return list(segs)
    t0, span = segs[0].x0, max(s.x1 for s in segs) - segs[0].x0 + 1
    out: list[Segment] = []
    bucket = -1
    for s in segs:
        b = (s.x0 - t0) * max_points // span
        if b == bucket:
            a = out[-1]
            out[-1] = Segment(
                a.x0, max(a.x1, s.x1), max(a.score, s.score), a.flag or s.flag, a.gap_before, max(a.end, s.end)
            )
        else:
            out.append(s)
            bucket = b
    return out


def _tick_step_s(span_s: float) -> int:
    for step in _TICK_STEPS_S:
        if span_s / step <= _MAX_TICKS:
            return step
    return 86400 * math.ceil(span_s / 86400 / _MAX_TICKS)


def _coord(v: float) -> str:
    """An SVG coordinate, one decimal."""
    return f"{v:.1f}"


def timeline_svg(
    timeline: Iterable[Any],
    threshold: float | None,
    *,
    title: str = "",
    spans: Sequence[tuple[int, int, str]] = (),
    width: int = 960,
    height: int = 170,
    max_points: int = MAX_POINTS,
) -> str:
    """An inline ``<svg>`` of a scope's score per window; ``spans`` (start_ns, end_ns, label) mark findings.
    Returns "" when the timeline holds no usable window."""
    segs = downsample(segments(windows_from_timeline(timeline)), max_points)
    if not segs:
        return ""
    thr = as_float(threshold)
    thr = thr if thr is not None and math.isfinite(thr) else None
    left, right, top, bottom = 52, 84, 14, 34
    pw, ph = width - left - right, height - top - bottom
    t0, t1 = segs[0].x0, max(s.end for s in segs)
    if t1 <= t0:
        t1 = t0 + NS_PER_S
    peak = max(s.score for s in segs)
    scores = [s.score for s in segs] + ([thr] if thr is not None else [])
    lo, hi = min(0.0, *scores), max(scores)
    hi = hi + 0.08 * (hi - lo) if hi > lo else lo + 1.0

    def x(t: int) -> float:
        return left + (min(max(t, t0), t1) - t0) * pw / (t1 - t0)

    def y(v: float) -> float:
        return top + (hi - v) * ph / (hi - lo)

    parts = [
        f'<svg class="tl" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f"<title>{escape(title)}</title>",
        f'<rect class="tl-bg" x="{left}" y="{top}" width="{pw}" height="{ph}"/>',
    ]
    parts += _flag_rects(segs, x, top, ph)
    parts += _time_axis(t0, t1, x, top, ph, height)
    low_label = escape(num(lo))
    parts.append(f'<text class="tl-lbl" x="{left - 6}" y="{_coord(y(lo) + 4)}" text-anchor="end">{low_label}</text>')
    if y(lo) - y(peak) > 12:
        parts.append(f'<text class="tl-lbl" x="{left - 6}" y="{_coord(y(peak) + 4)}" text-anchor="end">'
                     f"{escape(num(peak))}</text>")  # fmt: skip
    if thr is not None:
        ty = _coord(y(thr))
        parts.append(f'<line class="tl-thr" x1="{left}" x2="{left + pw}" y1="{ty}" y2="{ty}" stroke-dasharray="5 4"/>')
        parts.append(f'<text class="tl-lbl tl-thr-lbl" x="{left + pw + 4}" y="{_coord(y(thr) + 4)}">'
                     f"threshold {escape(num(thr))}</text>")  # fmt: skip
    path = []
    for s in segs:
        path.append(f"M{_coord(x(s.x0))} {_coord(y(s.score))}" if s.gap_before else f"V{_coord(y(s.score))}")
        path.append(f"H{_coord(x(s.x1))}")
    parts.append(f'<path class="tl-score" d="{"".join(path)}"/>')
    for start, end, text in spans:
        if isinstance(start, int) and isinstance(end, int) and end >= t0 and start <= t1:
            w = _coord(max(x(end) - x(start), 2))
            parts.append(f'<rect class="tl-span" x="{_coord(x(start))}" y="{top - 9}" width="{w}" height="5">'
                         f"<title>{escape(text)}</title></rect>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _flag_rects(segs: Sequence[Segment], x: Callable[[int], float], top: int, ph: int) -> list[str]:
    """One shaded rectangle per run of contiguous flagged segments (to the last flagged window's end), with its
    span and peak score as a tooltip."""
    out, run = [], []
    for s in [*segs, None]:
        if s is not None and s.flag and (not run or not s.gap_before):
            run.append(s)
            continue
        if run:
            a, b, peak = run[0].x0, max(r.end for r in run), max(r.score for r in run)
            tip = f"flagged {utc(a, '%H:%M:%S')}–{utc(b, '%H:%M:%S')} UTC, peak score {num(peak)}"
            out.append(f'<rect class="tl-flag" x="{_coord(x(a))}" y="{top}" width="{_coord(max(x(b) - x(a), 1.5))}" '
                       f'height="{ph}"><title>{escape(tip)}</title></rect>')  # fmt: skip
        run = [s] if s is not None and s.flag else []
    return out


def _time_axis(t0: int, t1: int, x: Callable[[int], float], top: int, ph: int, height: int) -> list[str]:
    """Tick lines and HH:MM:SS labels (UTC) at round times, and the date under the axis."""
    step_s = _tick_step_s((t1 - t0) / NS_PER_S)
    step = step_s * NS_PER_S
    fmt = "%m-%d %H:%M" if step_s >= 86400 else "%H:%M:%S"
    out = []
    t = -(-t0 // step) * step
    while t <= t1:
        xt = _coord(x(t))
        out.append(f'<line class="tl-grid" x1="{xt}" x2="{xt}" y1="{top}" y2="{top + ph + 4}"/>')
        out.append(f'<text class="tl-lbl" x="{xt}" y="{top + ph + 16}" text-anchor="middle">{utc(t, fmt)}</text>')
        t += step
    out.append(f'<text class="tl-lbl tl-date" x="{_coord(x(t1))}" y="{height - 3}" text-anchor="end">'
               f"UTC, {utc(t0, '%Y-%m-%d')}</text>")  # fmt: skip
    return out
