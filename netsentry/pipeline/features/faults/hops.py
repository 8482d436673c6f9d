"""Multi-point matching of fault windows: one packet seen at several capture points (equal ``pkt_hash``) gives the
one-way delay between consecutive points and the packets missing downstream."""

from __future__ import annotations

import numpy as np
import pandas as pd

from netsentry.pipeline.core.units import NS_PER_MS
from netsentry.pipeline.features.faults.aggregates import Partials, log_bin
from netsentry.pipeline.features.faults.arrays import advance_last_ts, count_per_group, group_rows
from netsentry.pipeline.features.faults.scopes import Scopes

_MAX_HOP_POINTS = 8
_MATCH_BUFFER_ROWS = 1_000_000  # match sooner when the multi-point buffer holds this many observations


class HopMatcher:
    """Matches one packet seen at several capture points (equal ``pkt_hash``): one-way delay between
    consecutive points and packets missing downstream.

    Observations of a hash less than ``horizon`` apart form one packet instance (identical copies —
    duplicates, IPv6 retransmissions — count once, by their first copy at each point), placed in the
    window of its first observation. A window is processed once every
    capture point has passed all its instances by the horizon, and whole windows at a time, so the
    result does not depend on how the input was chunked. With the points fed interleaved in time the
    buffer holds a few seconds of packets.
    """

    _COLS = ("h", "ts", "pt", "flow", "hs", "hd", "pair", "vs", "vd")

    def __init__(self, window_ns: int, horizon_ns: int, expected_points: int) -> None:
        self.window_ns = window_ns
        self.horizon_ns = horizon_ns
        self.expected_points = expected_points
        self._buf: list[dict[str, np.ndarray]] = []
        self._rows = 0
        self._oldest: int | None = None
        self.last_ts: dict[int, int] = {}
        # without the list of points, chunks are kept per point and replayed interleaved at the end
        self._deferred: dict[int, list[dict[str, np.ndarray]]] | None = None if expected_points else {}
        self.counts = Partials(["scope", "window"])
        self.delays = Partials(["scope", "window", "hop", "bin"])

    def add(self, obs: dict[str, np.ndarray]) -> None:
        if len(obs["ts"]) == 0:
            return
        if self._deferred is not None:
            for p in np.unique(obs["pt"]).tolist():
                part = obs if obs["pt"][0] == obs["pt"][-1] == p else {k: v[obs["pt"] == p] for k, v in obs.items()}
                self._deferred.setdefault(p, []).append(part)
            return
        self._buf.append(obs)
        self._rows += len(obs["ts"])
        lo = int(obs["ts"].min())
        self._oldest = lo if self._oldest is None else min(self._oldest, lo)
        advance_last_ts(self.last_ts, obs["pt"], obs["ts"])
        if len(self.last_ts) < self.expected_points:
            return
        span = min(self.last_ts.values()) - self._oldest
        unit = self.window_ns + 2 * self.horizon_ns
        if span > 3 * unit or (self._rows > _MATCH_BUFFER_ROWS and span > 2 * unit):
            self._process(min(self.last_ts.values()))

    def finish(self) -> None:
        if self._deferred is not None:  # replay each point's chunks, earliest first, as if interleaved
            streams, self._deferred = self._deferred, None
            self.expected_points = len(streams)
            heads = dict.fromkeys(streams, 0)
            while heads:
                p = min(heads, key=lambda q: int(streams[q][heads[q]]["ts"][0]))
                chunk, streams[p][heads[p]] = streams[p][heads[p]], {}
                heads[p] += 1
                if heads[p] == len(streams[p]):
                    del heads[p]
                self.add(chunk)
        if self._buf:
            self._process(None)

    def _process(self, watermark: int | None) -> None:
        """Match the instances of every window that is complete by ``watermark`` (all when None)."""
        obs = {k: np.concatenate([x[k] for x in self._buf]) for k in self._COLS}
        order = np.lexsort((obs["ts"], obs["h"]))
        obs = {k: v[order] for k, v in obs.items()}
        hashes, ts = obs["h"], obs["ts"]
        new = np.ones(len(ts), bool)
        new[1:] = (hashes[1:] != hashes[:-1]) | (ts[1:] - ts[:-1] > self.horizon_ns)
        instance = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        instance_window = ts[starts] // self.window_ns
        if watermark is None:
            ready = np.ones(len(starts), bool)
        else:
            last = np.maximum.reduceat(ts, starts)
            incomplete = last >= watermark - self.horizon_ns
            first_open = instance_window[incomplete].min() if incomplete.any() else np.iinfo(np.int64).max
            ready = instance_window < first_open
        keep = ~ready[instance]
        rest = {k: v[keep] for k, v in obs.items()}
        self._buf = [rest] if len(rest["ts"]) else []
        self._rows = len(rest["ts"])
        self._oldest = int(rest["ts"].min()) if len(rest["ts"]) else None
        take = ~keep
        if take.any() and len(np.unique(obs["pt"][take])) > 1:
            n_points = int(obs["pt"][take].max()) + 1
            if n_points <= _MAX_HOP_POINTS:
                self._match({c: v[take] for c, v in obs.items()}, instance[take], n_points)

    def _match(self, obs: dict[str, np.ndarray], instance: np.ndarray, n_points: int) -> None:
        never = np.iinfo(np.int64).max
        instance_of, (instances,) = group_rows(instance)
        n_inst = len(instances)
        flat = np.full(n_inst * n_points, never)
        np.minimum.at(flat, instance_of * n_points + obs["pt"], obs["ts"])
        seen_ts = flat.reshape(n_inst, n_points)  # per instance and point: when first seen there
        present = seen_ts != never
        n_present = present.sum(axis=1)
        # the packet's flow and scopes (equal at every point), where and when it was first seen
        per_instance = {c: np.empty(n_inst, obs[c].dtype) for c in ("flow", "hs", "hd", "pair", "vs", "vd")}
        for c, values in per_instance.items():
            values[instance_of] = obs[c]
        flow = per_instance.pop("flow")
        first_point = np.argmin(seen_ts, axis=1)
        window = seen_ts[np.arange(n_inst), first_point] // self.window_ns
        # each flow's direction across points, per window: P before Q when its matched packets say so
        keys, signs = [], []
        for p in range(n_points):
            for q in range(p + 1, n_points):
                both = np.flatnonzero(present[:, p] & present[:, q])
                keys.append(_orient_key(flow[both], p, q, window[both]))
                signs.append(np.sign(seen_ts[both, q] - seen_ts[both, p]))
        key_codes, (uniq_keys,) = group_rows(np.concatenate(keys))
        direction = np.sign(np.bincount(key_codes, weights=np.concatenate(signs), minlength=len(uniq_keys)))
        sign = pd.Series(direction, index=uniq_keys)
        # loss: the packet missed a point downstream (for its flow, in its window) of where it was first seen
        expected = np.zeros(n_inst, bool)
        missing = np.zeros(n_inst, bool)
        for q in range(n_points):
            key = _orient_key(flow, np.minimum(first_point, q), np.maximum(first_point, q), window)
            sign_q = sign.reindex(key).to_numpy(dtype=np.float64, na_value=0.0)
            down = (first_point != q) & (np.where(first_point < q, sign_q, -sign_q) > 0)
            expected |= down
            missing |= down & ~present[:, q]
        # one-way delay between consecutive points (in time) of each matched packet
        multi = np.flatnonzero(n_present >= 2)
        multi_ts = seen_ts[multi]
        rank = np.argsort(multi_ts, axis=1, kind="stable")
        d_rows, d_hop, d_ms = [], [], []
        for i in range(n_points - 1):
            ok = np.flatnonzero(n_present[multi] > i + 1)
            up, dn = rank[ok, i], rank[ok, i + 1]
            d_rows.append(multi[ok])
            d_hop.append(up * n_points + dn)
            d_ms.append((multi_ts[ok, dn] - multi_ts[ok, up]) / NS_PER_MS)
        self._emit(window, per_instance, expected, missing, np.concatenate(d_rows), np.concatenate(d_hop),
                   np.concatenate(d_ms))  # fmt: skip

    def _emit(self, window: np.ndarray, ends: dict[str, np.ndarray], expected: np.ndarray, missing: np.ndarray,
              d_rows: np.ndarray, d_hop: np.ndarray, d_ms: np.ndarray) -> None:  # fmt: skip
        """Attribute each packet (and delay sample) to host(src), host(dst), their pair and the VMs at either end
        (a VM's rows show the delay and loss of its own packets, as its host's rows do)."""

        def spread(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            r, s = Scopes.memberships(np.full(len(rows), -1, np.int64), {k: v[rows] for k, v in ends.items()})
            keep = s >= 0  # the placeholder capture point scope
            return r[keep], s[keep]

        rows = np.flatnonzero(expected)
        if len(rows):
            j, scope = spread(rows)
            r = rows[j]
            codes, (scopes, windows) = group_rows(scope, window[r])
            n_groups = len(scopes)
            matched, lost = count_per_group(codes, n_groups), count_per_group(codes, n_groups, missing[r])
            self.counts.add(pd.DataFrame({"scope": scopes, "window": windows, "matched": matched, "lost": lost}))
        if len(d_rows):
            j, scope = spread(d_rows)
            codes, (scopes, windows, hops, bins) = group_rows(scope, window[d_rows[j]], d_hop[j], log_bin(d_ms[j]))
            n = count_per_group(codes, len(scopes))
            self.delays.add(pd.DataFrame({"scope": scopes, "window": windows, "hop": hops, "bin": bins, "n": n}))


def _orient_key(flow: np.ndarray, p: np.ndarray | int, q: np.ndarray | int, window: np.ndarray) -> np.ndarray:
    """A hash of (directed flow, point pair, window)."""
    with np.errstate(over="ignore"):
        pq_ = np.asarray(p, np.uint64) * np.uint64(_MAX_HOP_POINTS) + np.asarray(q, np.uint64)
        mix = (pq_ + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) ^ window.astype(np.uint64) * np.uint64(
            0xC2B2AE3D27D4EB4F
        )
        return (flow ^ mix).view(np.int64)
