"""The VNI of packets seen outside the overlay (a VM tap, a gateway behind the decapsulation), from their copies
seen inside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netsentry.pipeline.core.schemas import ip16_numpy
from netsentry.pipeline.features.faults.arrays import advance_last_ts, find_sorted, flow_hash


class VniResolver:
    """Gives a packet seen without a VNI (a VM tap, a gateway behind the overlay decapsulate) the VNI of its copy
    at an overlay point: the observation with the same ``pkt_hash`` and a VNI nearest in time, less than the
    horizon away. Tenants reuse private addresses, so a bare address is ambiguous; its copy on the wire is not.

    Chunks wait until every named capture point has passed their last packet by the horizon (all when no
    points are named), then leave in arrival order, so each point stays time-ordered and the result does
    not depend on chunking. Each resolved (point, directed 5-tuple, window) is remembered, so that the same
    point's ``tcp_events`` and flows rows (which carry no ``pkt_hash``) get the same VNI; feed them after
    the packets.
    """

    def __init__(self, window_ns: int, horizon_ns: int, expected_points: int) -> None:
        self.window_ns, self.horizon_ns, self.expected_points = window_ns, horizon_ns, expected_points
        self._held: list[tuple[pa.Table, np.ndarray]] = []  # (chunk, its point codes)
        self._last: dict[int, int] = {}
        self._seen: list[pd.DataFrame] = []  # overlay observations: h, ts, v
        self._keys: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._map: tuple[np.ndarray, np.ndarray] | None = None

    def push(self, t: pa.Table, pt: np.ndarray) -> list[pa.Table]:
        """Take a chunk; return the chunks now resolved, in arrival order."""
        ts, vni = t.column("ts_ns").to_numpy(), t.column("vni").to_numpy()
        self._held.append((t, pt))
        tagged = vni != 0
        if tagged.any():
            h = t.column("pkt_hash").to_numpy().view(np.int64)
            self._seen.append(pd.DataFrame({"h": h[tagged], "ts": ts[tagged], "v": vni[tagged].astype(np.uint32)}))
        advance_last_ts(self._last, pt, ts)
        if not self.expected_points or len(self._last) < self.expected_points:
            return []
        watermark = min(self._last.values()) - self.horizon_ns
        out = []
        while self._held and int(self._held[0][0].column("ts_ns").to_numpy().max()) < watermark:
            out.append(self._resolve(*self._held.pop(0)))
        return out

    def finish(self) -> list[pa.Table]:
        out = []
        while self._held:
            out.append(self._resolve(*self._held.pop(0)))
        return out

    def _resolve(self, t: pa.Table, pt: np.ndarray) -> pa.Table:
        vni = t.column("vni").to_numpy().astype(np.uint32)
        bare = np.flatnonzero(vni == 0)
        ts = t.column("ts_ns").to_numpy()
        if len(bare) and self._seen:
            seen = pd.concat(self._seen, ignore_index=True).sort_values("ts", kind="stable")
            # observations older than every chunk still to resolve are of no further use
            lo = min([int(ts.min())] + [int(pc.min(c.column("ts_ns")).as_py()) for c, _ in self._held])
            seen = seen[seen["ts"].to_numpy() >= lo - self.horizon_ns]
            self._seen = [seen]
            q = pd.DataFrame({"h": t.column("pkt_hash").to_numpy().view(np.int64)[bare], "ts": ts[bare],
                              "row": bare}).sort_values("ts", kind="stable")  # fmt: skip
            m = pd.merge_asof(q, seen, on="ts", by="h", tolerance=self.horizon_ns - 1, direction="nearest")
            hit = m["v"].notna().to_numpy()
            rows, v = m["row"].to_numpy()[hit], m["v"].to_numpy()[hit].astype(np.uint32)
            if len(rows):
                vni[rows] = v
                r = t.take(pa.array(rows))
                self._keys.append(self.key(r, pt[rows], r.column("ts_ns").to_numpy(), r.column("proto").to_numpy()))
                self._vals.append(v)
                self._map = None
                t = t.set_column(t.column_names.index("vni"), "vni", pa.array(vni, pa.uint32()))
        return t

    def key(self, t: pa.Table, pt: np.ndarray, ts: np.ndarray, proto: np.ndarray) -> np.ndarray:
        """A hash of (capture point, directed 5-tuple, window) per row."""
        h = flow_hash(pt.astype(np.uint32), ip16_numpy(t.column("src_ip")), ip16_numpy(t.column("dst_ip")),
                       t.column("src_port").to_numpy(), t.column("dst_port").to_numpy(), proto)  # fmt: skip
        w = (ts // self.window_ns).astype(np.uint64)
        with np.errstate(over="ignore"):
            return (h ^ (w * np.uint64(0xC2B2AE3D27D4EB4F))).view(np.int64)

    def fill(self, t: pa.Table, pt: np.ndarray, ts: np.ndarray, proto: np.ndarray) -> pa.Table:
        """``tcp_events`` or flows rows without a VNI get the VNI their packets got (same point, 5-tuple and
        window); a key that got two VNIs stays bare."""
        if not self._keys:
            return t
        if self._map is None:
            k, v = np.concatenate(self._keys), np.concatenate(self._vals)
            self._keys, self._vals = [k], [v]
            f = pd.DataFrame({"k": k, "v": v}).drop_duplicates()
            f = f[~f["k"].duplicated(keep=False)].sort_values("k")
            self._map = (f["k"].to_numpy(), f["v"].to_numpy(np.uint32))
        vni = t.column("vni").to_numpy().astype(np.uint32)
        bare = np.flatnonzero(vni == 0)
        if len(bare) == 0:
            return t
        pos, found = find_sorted(self._map[0], self.key(t.take(pa.array(bare)), pt[bare], ts[bare], proto[bare]))
        if not found.any():
            return t
        vni[bare[found]] = self._map[1][pos[found]]
        return t.set_column(t.column_names.index("vni"), "vni", pa.array(vni, pa.uint32()))
