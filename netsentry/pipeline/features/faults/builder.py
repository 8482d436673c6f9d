"""Fault windows: per capture point, host, host pair and VM, per window (default 1 s), the symptoms of
transient network faults — retransmissions, dup-ACKs, RSTs, failed handshakes, handshake RTT, bursts,
traffic drops and, with several capture points, packets lost or delayed between them.

:class:`FaultWindowBuilder` takes chunks of the packets, ``tcp_events`` and flows tables in any
number and order (packets time-ordered within a capture point) and folds each chunk into partial sums
keyed by integer codes (scope, capture point, window), so memory grows with the output (plus one
small record per TCP handshake), not with the packets. :func:`label_fault_windows` joins ground
truth; :func:`build_fault_windows` runs the whole thing on a workspace. ``docs/features-faults.md``
documents every column and rule.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netsentry.pipeline.capture.stage import captured_tenant_map
from netsentry.pipeline.capture.tenants import EXTERNAL, UNKNOWN, TenantMap
from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError, SchemaError
from netsentry.pipeline.core.io import read_manifest, require_table, table_parts
from netsentry.pipeline.core.schemas import ACK, RST, SYN, TCP_ANALYSIS_BITS, ip16_numpy, ip_text

log = logging.getLogger(__name__)

SCOPE_TYPES = ("capture_point", "host", "host_pair", "vm")
_CP, _HOST, _PAIR, _VM = range(4)
KEY_COLUMNS = ("scope_type", "scope", "window_start_ns", "window_s", "capture_points")

FAULT_FEATURES: dict[str, str] = {
    "packets": "packets in the window; outside capture_point rows, one seen at k points counts k times (count)",
    "bytes": "wire length of those packets' frames (bytes)",
    "packets_per_s": "packets / window_s (packets/s)",
    "tcp_packets": "TCP packets (count)",
    "tcp_data_packets": "TCP packets carrying payload (count)",
    "retransmissions": "packets flagged tcp.analysis.retransmission, incl. fast, spurious and SYN ones (count)",
    "retransmission_rate": "retransmitted packets with payload / tcp_data_packets; 0 without data (ratio)",
    "fast_retransmissions": "packets flagged tcp.analysis.fast_retransmission (count)",
    "dup_acks": "packets flagged tcp.analysis.duplicate_ack (count)",
    "dup_ack_rate": "dup_acks / tcp_packets; 0 without TCP (ratio)",
    "out_of_order": "packets flagged tcp.analysis.out_of_order (count)",
    "lost_segments": "packets flagged tcp.analysis.lost_segment: a gap before them was never seen (count)",
    "zero_windows": "packets flagged tcp.analysis.zero_window (count)",
    "rst_packets": "TCP packets with RST (count)",
    "rst_rate": "rst_packets / tcp_packets; 0 without TCP (ratio)",
    "syn_packets": "TCP packets with SYN and without ACK: connection attempts incl. retries (count)",
    "connections": "TCP flows whose first packet falls in the window (count)",
    "syn_unanswered": "of those, SYN never answered (conn_state S0) (count)",
    "handshake_failures": "of those, handshake failed: conn_state S0, REJ, RSTOS0 or SH (count)",
    "handshake_failure_rate": "handshake_failures / connections opened with a SYN; 0 without (ratio)",
    "reset_connections": "of those connections, established and then reset (conn_state RSTO or RSTR): a server or "
    "middlebox tearing down live connections, unlike a scan's refused SYNs (count)",
    "reset_connection_rate": "reset_connections / connections; 0 without connections (ratio)",
    "udp_unanswered": "UDP flows starting in the window without a reply, to a server (address at a capture point) "
    "that answered other UDP flows in the window: requests or replies lost on the way to or from a live service; "
    "a flood to a silent target does not count (count)",
    "udp_unanswered_rate": "udp_unanswered / the UDP flows to servers that answered some; 0 without (ratio)",
    "icmp_unreachable": "ICMP destination unreachable (ICMPv4 type 3, ICMPv6 type 1) (count)",
    "handshakes": "connections starting in the window with a measured handshake RTT (count)",
    "handshake_rtt_p50_ms": "median handshake RTT (SYN to handshake ACK); no handshake: the scope's baseline (ms)",
    "handshake_rtt_p99_ms": "99th percentile handshake RTT; no handshake: the scope's baseline (ms)",
    "handshake_rtt_ratio": "handshake_rtt_p50_ms / the scope's baseline p50; 1 without evidence (ratio)",
    "handshake_rtt_path_ratio": "median of each handshake's RTT / its path's usual RTT; 1 without evidence (ratio)",
    "max_packets_per_ms": "most packets in one 1 ms bucket at one capture point (count)",
    "burstiness": "max over capture points of max packets in a 1 ms bucket / mean packets per ms (ratio)",
    "packets_ratio": "packets / the scope's baseline packets; 1 without baseline (ratio)",
    "matched_packets": "packets seen at a capture point upstream of another point that carries their flow (count)",
    "matched_loss": "of those, missing at a downstream point (count)",
    "matched_loss_rate": "matched_loss / matched_packets; 0 without matched packets (ratio)",
    "hop_delay_p50_ms": "median one-way delay between consecutive capture points; none: the scope's baseline (ms)",
    "hop_delay_worst_p50_ms": "largest per-hop median one-way delay; none: the scope's baseline (ms)",
    "hop_delay_ratio": "hop_delay_p50_ms / the scope's baseline; 1 without evidence (ratio)",
    "hop_delay_hop_ratio": "median over the window's hops (weighted by their delay samples) of the hop's median "
    "one-way delay / that hop's usual median in this scope: a delay measured against its own hop, so a change in "
    "which hops carry the traffic is no evidence; 1 without evidence (ratio)",
}
"""Feature column → meaning (unit); the key columns are :data:`KEY_COLUMNS`."""

NS_PER_MS = 1_000_000
FAILED_STATES = ("S0", "REJ", "RSTOS0", "SH")
RESET_STATES = ("RSTO", "RSTR")
_PACKET_COLUMNS = ("ts_ns", "capture_point", "frame_len", "vni", "src_ip", "dst_ip", "src_port", "dst_port", "proto",
                   "payload_len", "tcp_flags", "icmp_type", "pkt_hash")  # fmt: skip
_EVENT_COLUMNS = ("ts_ns", "capture_point", "vni", "src_ip", "dst_ip", "payload_len", "analysis")
_FLOW_COLUMNS = ("capture_point", "vni", "src_ip", "dst_ip", "protocol", "first_seen_ns", "conn_state",
                 "handshake_rtt_ms", "src2dst_syn_packets", "dst2src_packets")  # fmt: skip
_PORT_COLUMNS = ("src_port", "dst_port")  # events and flows: to give rows seen outside an overlay their VNI
_BINS_PER_DECADE = 200  # log histograms of delays: bins 1.2 % wide
_MIN_MS = 1e-3
_MAX_HOP_POINTS = 8
_CONSOLIDATE = 48
_MATCH_BUFFER_ROWS = 1_000_000  # match sooner when the multi-point buffer holds this many observations


# --------------------------------------------------------------------------- small vectorised helpers


FAULT_MONOTONIC: dict[str, int] = {
    **{name: 1 for name in (
        "retransmissions", "retransmission_rate", "fast_retransmissions", "dup_acks", "dup_ack_rate", "out_of_order",
        "lost_segments", "zero_windows", "rst_packets", "rst_rate", "syn_unanswered", "handshake_failures",
        "handshake_failure_rate", "reset_connections", "reset_connection_rate", "udp_unanswered",
        "udp_unanswered_rate", "icmp_unreachable",
        "handshake_rtt_ratio", "handshake_rtt_path_ratio", "burstiness",
        "matched_loss", "matched_loss_rate", "hop_delay_ratio", "hop_delay_hop_ratio",
    )},
    "packets_ratio": -1,
}  # fmt: skip
"""Symptoms: a window never looks healthier for having more of them (or, for ``packets_ratio``, less traffic than
usual). Given to the supervised detector as monotonic constraints, so a trace far worse than anything simulated
still scores as a fault."""


def _need(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SchemaError(f"{what} table lacks column(s) {', '.join(missing)}; expected the {what} contract")


def _group(*cols: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group rows by integer columns: (group index per row, each column's value per group)."""
    n = len(cols[0])
    if n == 0:
        return np.zeros(0, np.int64), [c[:0].astype(np.int64) for c in cols]
    if len(cols) == 1:
        codes, uniq = pd.factorize(cols[0])
        return codes.astype(np.int64), [uniq]
    lo = [int(c.min()) for c in cols]
    span = [int(c.max()) - m + 1 for c, m in zip(cols, lo, strict=True)]
    if math.prod(span) < 2**62:
        key = np.zeros(n, np.int64)
        for c, m, s in zip(cols, lo, span, strict=True):
            key = key * s + (c.astype(np.int64) - m)
        codes, uniq = pd.factorize(key)
        out = []
        for m, s in zip(reversed(lo), reversed(span), strict=True):
            out.append(uniq % s + m)
            uniq = uniq // s
        return codes.astype(np.int64), out[::-1]
    stacked = np.stack([c.astype(np.int64) for c in cols], axis=1)
    uniq, codes = np.unique(stacked, axis=0, return_inverse=True)
    return codes.ravel().astype(np.int64), [uniq[:, i] for i in range(len(cols))]


def _count(codes: np.ndarray, m: int, mask: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    c = codes if mask is None else codes[mask]
    if weights is not None:
        w = weights if mask is None else weights[mask]
        return np.rint(np.bincount(c, weights=w.astype(np.float64), minlength=m)).astype(np.int64)
    return np.bincount(c, minlength=m).astype(np.int64)


def _log_bin(ms: np.ndarray) -> np.ndarray:
    return np.floor(np.log10(np.maximum(ms, _MIN_MS)) * _BINS_PER_DECADE).astype(np.int64)


def _bin_value(b: np.ndarray) -> np.ndarray:
    """Geometric centre of a log bin; bins at the floor are the floor value (no negative delays)."""
    v = 10.0 ** ((b + 0.5) / _BINS_PER_DECADE)
    return np.where(b <= math.floor(math.log10(_MIN_MS) * _BINS_PER_DECADE), 0.0, v)


def _hist_quantile(hist: pd.DataFrame, keys: list[str], q: float) -> pd.Series:
    """Nearest-rank ``q`` quantile per ``keys`` group of a (keys…, bin, n) histogram."""
    if hist.empty:
        return pd.Series([], index=pd.MultiIndex.from_arrays([[]] * len(keys), names=keys), dtype=np.float64)
    h = hist.groupby([*keys, "bin"], sort=True, as_index=False)["n"].sum()
    grp = h.groupby(keys, sort=False)["n"]
    cum, total = grp.cumsum().to_numpy(), grp.transform("sum").to_numpy()
    need = np.maximum(np.ceil(q * total), 1)
    pick = h[cum >= need].drop_duplicates(keys, keep="first")
    return pd.Series(_bin_value(pick["bin"].to_numpy()), index=pd.MultiIndex.from_frame(pick[keys]))


def _loo_median(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, the median of ``values`` over the other rows of its group (NaN values are left out;
    a NaN row gets its group's median). NaN when no other value exists."""
    n = len(values)
    out = np.full(n, np.nan)
    ok = np.flatnonzero(~np.isnan(values))
    if len(ok) == 0:
        return out
    order = ok[np.lexsort((values[ok], group[ok]))]
    g, v = group[order], values[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(g)])
    start_of = np.repeat(starts, sizes)
    size_of = np.repeat(sizes, sizes)
    rank = np.arange(len(g)) - start_of
    m = size_of - 1  # values left when this row's is removed

    def pick(p: np.ndarray) -> np.ndarray:
        p = np.where(p >= rank, p + 1, p)  # skip the removed row
        return v[np.minimum(start_of + p, len(v) - 1)]

    loo = np.where(m > 0, (pick((m - 1) // 2) + pick(m // 2)) / 2, np.nan)
    out[order] = loo
    # rows without a value: their group's full median
    uniq_g, first = g[starts], starts
    full = (v[first + (sizes - 1) // 2] + v[first + sizes // 2]) / 2
    nan_rows = np.flatnonzero(np.isnan(values))
    if len(nan_rows):
        pos = np.searchsorted(uniq_g, group[nan_rows])
        hit = (pos < len(uniq_g)) & (uniq_g[np.minimum(pos, len(uniq_g) - 1)] == group[nan_rows])
        out[nan_rows[hit]] = full[pos[hit]]
    return out


def _flow_hash(vni: np.ndarray, src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray,
               proto: np.ndarray) -> np.ndarray:  # fmt: skip
    """A 64-bit hash of the directed 5-tuple (+ VNI), to tell a packet's flow."""
    s, d = np.ascontiguousarray(src).view(">u8"), np.ascontiguousarray(dst).view(">u8")
    h = np.full(len(vni), 0xCBF29CE484222325, np.uint64)
    with np.errstate(over="ignore"):
        for w in (s[:, 0], s[:, 1], d[:, 0], d[:, 1], (sport.astype(np.uint64) << np.uint64(16)) | dport,
                  proto.astype(np.uint64) << np.uint64(32) | vni.astype(np.uint64)):  # fmt: skip
            h = (h ^ w.astype(np.uint64)) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(31)
    return h


def _distinct_rows(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a C-contiguous ``(n, w)`` uint8 array → (distinct rows, inverse index); hash-based."""
    n, w = key.shape
    enc = pa.FixedSizeBinaryArray.from_buffers(pa.binary(w), n, [None, pa.py_buffer(key)]).dictionary_encode()
    d = enc.dictionary
    uniq = np.frombuffer(d.buffers()[1], np.uint8, count=w * (len(d) + d.offset)).reshape(-1, w)[d.offset :]
    return uniq.copy(), enc.indices.to_numpy().astype(np.int64)


def _find(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``queries`` in ``sorted_keys`` and whether each is there."""
    pos = np.searchsorted(sorted_keys, queries)
    if len(sorted_keys) == 0:
        return pos, np.zeros(len(queries), bool)
    return pos, sorted_keys[np.minimum(pos, len(sorted_keys) - 1)] == queries


def _dict_codes(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """A (dictionary or string) column → (int codes, names)."""
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if not pa.types.is_dictionary(col.type):
        col = col.cast(pa.string()).dictionary_encode()
    if col.num_chunks == 0:
        return np.zeros(0, np.int64), []
    col = col.unify_dictionaries()
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in col.chunks]).astype(np.int64)
    return codes, col.chunk(0).dictionary.cast(pa.string()).to_pylist()


# --------------------------------------------------------------------------- scope codes


class _Scopes:
    """Every scope seen so far, as one integer code space: code → (scope type, name)."""

    def __init__(self, tmap: TenantMap) -> None:
        self.tmap = tmap
        self.types: list[int] = []
        self.names: list[str] = []
        self._index: dict[tuple[int, str], int] = {}
        self._ep_keys = np.zeros(0, "S20")
        self._ep_host = np.zeros(0, np.int64)
        self._ep_vm = np.zeros(0, np.int64)
        self._ep_where = np.zeros(0, np.int64)
        self._pair_keys = np.zeros(0, np.int64)
        self._pair_code = np.zeros(0, np.int64)
        self.points: dict[str, int] = {}  # capture point → point index
        self._point_scope: list[int] = []  # point index → scope code

    def code(self, stype: int, name: str) -> int:
        c = self._index.get((stype, name))
        if c is None:
            c = self._index[(stype, name)] = len(self.names)
            self.types.append(stype)
            self.names.append(name)
        return c

    def point_codes(self, col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Capture point column → (point index, capture_point scope code) per row."""
        codes, names = _dict_codes(col)
        for n in names:
            if n not in self.points:
                self.points[n] = len(self.points)
                self._point_scope.append(self.code(_CP, n))
        idx = np.array([self.points[n] for n in names], dtype=np.int64)
        pt = idx[codes] if len(idx) else np.zeros(0, np.int64)
        return pt, self.point_scope[pt]

    @property
    def point_scope(self) -> np.ndarray:
        """Point index → its capture_point scope code."""
        return np.array(self._point_scope, dtype=np.int64)

    def endpoints(self, vni: np.ndarray, ip16: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(host scope code, vm scope code or -1, location) per endpoint; each distinct endpoint is resolved
        once. The location tells network paths apart: the host scope code for an address on a declared
        (non-gateway) host, else a negative code of its own (external addresses, unmapped ones)."""
        n = len(vni)
        key = np.empty((n, 20), np.uint8)
        key[:, :4] = vni.astype("<u4").view(np.uint8).reshape(n, 4)
        key[:, 4:] = ip16
        uniq, inverse = _distinct_rows(key)
        uk = uniq.view("S20").ravel()
        pos, known = _find(self._ep_keys, uk)
        if not known.all():
            self._add_endpoints(uk[~known])
            pos = np.searchsorted(self._ep_keys, uk)
        return self._ep_host[pos][inverse], self._ep_vm[pos][inverse], self._ep_where[pos][inverse]

    def _add_endpoints(self, keys: np.ndarray) -> None:
        raw = np.frombuffer(keys.astype("S20").tobytes(), np.uint8).reshape(-1, 20)
        vni = np.ascontiguousarray(raw[:, :4]).view("<u4").ravel()
        ip = np.ascontiguousarray(raw[:, 4:])
        hosts = self.tmap.endpoint_hosts(vni, ip)
        hnames = hosts.dictionary.to_pylist()
        hidx = hosts.indices.to_numpy()
        used = np.unique(hidx)
        hcode = np.zeros(len(hnames), np.int64)
        hcode[used] = [self.code(_HOST, hnames[i]) for i in used]
        lab = self.tmap.lookup(vni, ip)
        vm = np.full(len(keys), -1, np.int64)
        inside = np.flatnonzero(lab.tenant != 0)
        if len(inside):
            texts = ip_text(ip[inside])
            for j, i in enumerate(inside):
                t, v = lab.tenants[lab.tenant[i]], lab.vms[lab.vm[i]]
                vm[i] = self.code(_VM, texts[j] if v in (UNKNOWN, EXTERNAL) else f"{t}/{v}")
        declared = (hidx < len(self.tmap.hosts)) & (np.array(hnames, dtype=object)[hidx] != self.tmap.gateway)
        where = np.where(declared, hcode[hidx], -1 - len(self._ep_keys) - np.arange(len(keys)))
        all_keys = np.concatenate([self._ep_keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self._ep_keys = all_keys[order]
        self._ep_host = np.concatenate([self._ep_host, hcode[hidx]])[order]
        self._ep_vm = np.concatenate([self._ep_vm, vm])[order]
        self._ep_where = np.concatenate([self._ep_where, where])[order]

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """host_pair scope code of host codes ``a != b`` (named ``A-B``, the names sorted)."""
        key = (np.minimum(a, b) << 32) | np.maximum(a, b)
        inverse, uk = pd.factorize(key)
        pos, known = _find(self._pair_keys, uk)
        if not known.all():
            new = uk[~known]
            codes = [self.code(_PAIR, "-".join(sorted((self.names[k >> 32], self.names[k & 0xFFFFFFFF])))) for k in new]
            all_keys = np.concatenate([self._pair_keys, new])
            order = np.argsort(all_keys, kind="stable")
            self._pair_keys = all_keys[order]
            self._pair_code = np.concatenate([self._pair_code, np.array(codes, np.int64)])[order]
            pos = np.searchsorted(self._pair_keys, uk)
        return self._pair_code[pos][inverse]

    def resolve(self, vni: np.ndarray, src: np.ndarray, dst: np.ndarray) -> dict[str, np.ndarray]:
        """Scope codes of both ends of each row (see :meth:`conversations`)."""
        ends, inverse = self.conversations(vni, src, dst)
        return {k: v[inverse] for k, v in ends.items()}

    def conversations(
        self, vni: np.ndarray, src: np.ndarray, dst: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per distinct (vni, src, dst): ``hs``/``hd`` host, ``vs``/``vd`` VM (-1: none) and ``pair`` (-1: same
        host) scope codes, ``ws``/``wd`` locations (:meth:`endpoints`); and each row's conversation index."""
        n = len(vni)
        key = np.empty((n, 36), np.uint8)
        key[:, :4] = vni.astype("<u4").view(np.uint8).reshape(n, 4)
        key[:, 4:20], key[:, 20:] = src, dst
        conv, inverse = _distinct_rows(key)  # each distinct (vni, src, dst) once
        m = len(conv)
        u_vni = np.ascontiguousarray(conv[:, :4]).view("<u4").ravel()
        ends = self.endpoints(np.concatenate([u_vni, u_vni]), np.concatenate([conv[:, 4:20], conv[:, 20:]]))
        host, vm, where = ends
        out = {"hs": host[:m], "hd": host[m:], "vs": vm[:m], "vd": vm[m:], "ws": where[:m], "wd": where[m:],
               "pair": np.full(m, -1, np.int64)}  # fmt: skip
        two = out["hs"] != out["hd"]
        if two.any():
            out["pair"][two] = self.pairs(out["hs"][two], out["hd"][two])
        return out, inverse

    @staticmethod
    def memberships(cp: np.ndarray, ends: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Every (row, scope) a row counts for: its capture point, host(src), host(dst), their pair and
        the VMs at either end. Returns (row index, scope code)."""
        rows = np.arange(len(cp))
        hs, hd, vs, vd, pair = (ends[k] for k in ("hs", "hd", "vs", "vd", "pair"))
        two = pair >= 0
        vs_ok = vs >= 0
        vd_ok = (vd >= 0) & (vd != vs)
        r = np.concatenate([rows, rows, rows[two], rows[two], rows[vs_ok], rows[vd_ok]])
        s = np.concatenate([cp, hs, hd[two], pair[two], vs[vs_ok], vd[vd_ok]])
        return r, s


# --------------------------------------------------------------------------- VNI of packets seen outside the overlay


def _advance(last_ts: dict[int, int], pt: np.ndarray, ts: np.ndarray) -> None:
    """Move each capture point's latest timestamp seen (``last_ts``) on by a chunk's packets."""
    codes, (pts,) = _group(pt)
    last = np.full(len(pts), np.iinfo(np.int64).min)
    np.maximum.at(last, codes, ts)
    for p, t in zip(pts.tolist(), last.tolist(), strict=True):
        last_ts[p] = max(last_ts.get(p, t), t)


class _VniResolver:
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
        _advance(self._last, pt, ts)
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
        h = _flow_hash(pt.astype(np.uint32), ip16_numpy(t.column("src_ip")), ip16_numpy(t.column("dst_ip")),
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
        pos, found = _find(self._map[0], self.key(t.take(pa.array(bare)), pt[bare], ts[bare], proto[bare]))
        if not found.any():
            return t
        vni[bare[found]] = self._map[1][pos[found]]
        return t.set_column(t.column_names.index("vni"), "vni", pa.array(vni, pa.uint32()))


# --------------------------------------------------------------------------- multi-point matching


class _HopMatcher:
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
        self.counts = _Partials(["scope", "window"])
        self.delays = _Partials(["scope", "window", "hop", "bin"])

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
        _advance(self.last_ts, obs["pt"], obs["ts"])
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
        b = {k: np.concatenate([x[k] for x in self._buf]) for k in self._COLS}
        order = np.lexsort((b["ts"], b["h"]))
        b = {k: v[order] for k, v in b.items()}
        h, ts = b["h"], b["ts"]
        new = np.ones(len(ts), bool)
        new[1:] = (h[1:] != h[:-1]) | (ts[1:] - ts[:-1] > self.horizon_ns)
        inst = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        win = ts[starts] // self.window_ns
        if watermark is None:
            ready = np.ones(len(starts), bool)
        else:
            last = np.maximum.reduceat(ts, starts)
            incomplete = last >= watermark - self.horizon_ns
            first_open = win[incomplete].min() if incomplete.any() else np.iinfo(np.int64).max
            ready = win < first_open
        keep = ~ready[inst]
        rest = {k: v[keep] for k, v in b.items()}
        self._buf = [rest] if len(rest["ts"]) else []
        self._rows = len(rest["ts"])
        self._oldest = int(rest["ts"].min()) if len(rest["ts"]) else None
        take = ~keep
        if take.any() and len(np.unique(b["pt"][take])) > 1:
            k = int(b["pt"][take].max()) + 1
            if k <= _MAX_HOP_POINTS:
                self._match({c: v[take] for c, v in b.items()}, inst[take], k)

    def _match(self, b: dict[str, np.ndarray], inst: np.ndarray, k: int) -> None:
        never = np.iinfo(np.int64).max
        g, (ui,) = _group(inst)
        ng = len(ui)
        flat = np.full(ng * k, never)
        np.minimum.at(flat, g * k + b["pt"], b["ts"])
        ts = flat.reshape(ng, k)
        present = ts != never
        npres = present.sum(axis=1)
        # the packet's flow and scopes (equal at every point), where and when it was first seen
        flow, hs, hd, pair, vs, vd = (np.empty(ng, b[c].dtype) for c in ("flow", "hs", "hd", "pair", "vs", "vd"))
        flow[g], hs[g], hd[g], pair[g], vs[g], vd[g] = (b[c] for c in ("flow", "hs", "hd", "pair", "vs", "vd"))
        p0 = np.argmin(ts, axis=1)
        window = ts[np.arange(ng), p0] // self.window_ns
        # each flow's direction across points, per window: P before Q when its matched packets say so
        keys, signs = [], []
        for p in range(k):
            for q in range(p + 1, k):
                both = np.flatnonzero(present[:, p] & present[:, q])
                keys.append(_orient_key(flow[both], p, q, window[both]))
                signs.append(np.sign(ts[both, q] - ts[both, p]))
        kc, (uk,) = _group(np.concatenate(keys))
        sign = pd.Series(np.sign(np.bincount(kc, weights=np.concatenate(signs), minlength=len(uk))), index=uk)
        # loss: the packet missed a point downstream (for its flow, in its window) of where it was first seen
        expected = np.zeros(ng, bool)
        missing = np.zeros(ng, bool)
        for q in range(k):
            key = _orient_key(flow, np.minimum(p0, q), np.maximum(p0, q), window)
            s_q = sign.reindex(key).to_numpy(dtype=np.float64, na_value=0.0)
            down = (p0 != q) & (np.where(p0 < q, s_q, -s_q) > 0)
            expected |= down
            missing |= down & ~present[:, q]
        # one-way delay between consecutive points (in time) of each matched packet
        multi = np.flatnonzero(npres >= 2)
        tm = ts[multi]
        rank = np.argsort(tm, axis=1, kind="stable")
        d_rows, d_hop, d_ms = [], [], []
        for i in range(k - 1):
            ok = np.flatnonzero(npres[multi] > i + 1)
            up, dn = rank[ok, i], rank[ok, i + 1]
            d_rows.append(multi[ok])
            d_hop.append(up * k + dn)
            d_ms.append((tm[ok, dn] - tm[ok, up]) / NS_PER_MS)
        ends = {"hs": hs, "hd": hd, "pair": pair, "vs": vs, "vd": vd}
        self._emit(window, ends, expected, missing, np.concatenate(d_rows), np.concatenate(d_hop),
                   np.concatenate(d_ms))  # fmt: skip

    def _emit(self, window: np.ndarray, ends: dict[str, np.ndarray], expected: np.ndarray, missing: np.ndarray,
              d_rows: np.ndarray, d_hop: np.ndarray, d_ms: np.ndarray) -> None:  # fmt: skip
        """Attribute each packet (and delay sample) to host(src), host(dst), their pair and the VMs at either end
        (a VM's rows show the delay and loss of its own packets, as its host's rows do)."""

        def spread(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            r, s = _Scopes.memberships(np.full(len(rows), -1, np.int64), {k: v[rows] for k, v in ends.items()})
            keep = s >= 0  # the placeholder capture point scope
            return r[keep], s[keep]

        rows = np.flatnonzero(expected)
        if len(rows):
            j, s = spread(rows)
            r = rows[j]
            codes, (u_s, u_w) = _group(s, window[r])
            m = len(u_s)
            lost = _count(codes, m, missing[r])
            self.counts.add(pd.DataFrame({"scope": u_s, "window": u_w, "matched": _count(codes, m), "lost": lost}))
        if len(d_rows):
            j, s = spread(d_rows)
            codes, (u_s, u_w, u_h, u_b) = _group(s, window[d_rows[j]], d_hop[j], _log_bin(d_ms[j]))
            n = _count(codes, len(u_s))
            self.delays.add(pd.DataFrame({"scope": u_s, "window": u_w, "hop": u_h, "bin": u_b, "n": n}))


def _orient_key(flow: np.ndarray, p: np.ndarray | int, q: np.ndarray | int, window: np.ndarray) -> np.ndarray:
    """A hash of (directed flow, point pair, window)."""
    with np.errstate(over="ignore"):
        pq_ = np.asarray(p, np.uint64) * np.uint64(_MAX_HOP_POINTS) + np.asarray(q, np.uint64)
        mix = (pq_ + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) ^ window.astype(np.uint64) * np.uint64(
            0xC2B2AE3D27D4EB4F
        )
        return (flow ^ mix).view(np.int64)


class _Partials:
    """Partial aggregates keyed by integer columns, consolidated now and then (sum; ``maxes`` by max)."""

    def __init__(self, keys: list[str], maxes: tuple[str, ...] = ()) -> None:
        self.keys, self.maxes = keys, maxes
        self._parts: list[pd.DataFrame] = []

    def add(self, frame: pd.DataFrame) -> None:
        if len(frame):
            self._parts.append(frame)
        if len(self._parts) > _CONSOLIDATE:
            self._parts = [self.frame()]

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame(columns=self.keys)
        df = pd.concat(self._parts, ignore_index=True)
        spec = {c: ("max" if c in self.maxes else "sum") for c in df.columns if c not in self.keys}
        return df.groupby(self.keys, as_index=False, sort=False).agg(spec)


class FaultWindowBuilder:
    """Streams the packets, ``tcp_events`` and flows tables into fault windows.

    Feed packet chunks of any capture point (time-ordered within a point); events and flows may come
    in any order. The result does not depend on chunking. With several points, name them
    (``capture_points``) and interleave them in time (as :func:`build_fault_windows` does) to keep the
    multi-point matching buffer to a few seconds of packets; unnamed (a point not seen yet may still
    come), every packet's small record (~60 bytes) is kept until :meth:`finish` — same result.
    """

    def __init__(self, window_s: float = 1.0, tmap: TenantMap | None = None, *,
                 capture_points: Sequence[str] | None = None, match_horizon_s: float = 1.0) -> None:  # fmt: skip
        if not window_s > 0:
            raise ConfigError(f"fault window must be > 0 seconds, got {window_s}")
        window_ns = round(window_s * 1e9)
        if window_ns % NS_PER_MS:
            raise ConfigError(f"fault window must be a whole number of milliseconds, got {window_s} s")
        if not match_horizon_s > 0:
            raise ConfigError(f"match horizon must be > 0 seconds, got {match_horizon_s}")
        self.window_s = float(window_s)
        self.window_ns = window_ns
        self.tmap = tmap or TenantMap.empty()
        self._scopes = _Scopes(self.tmap)
        if capture_points:
            self._scopes.point_codes(pa.array(list(capture_points), pa.string()))
        self._hops = _HopMatcher(window_ns, round(match_horizon_s * 1e9), len(capture_points or ()))
        # with an overlay (VPCs with a VNI), packets seen outside it take the VNI of their copy inside it
        overlay = any(v.vni for v in self.tmap.config.vpcs)
        self._vnis = (
            _VniResolver(window_ns, round(match_horizon_s * 1e9), len(capture_points or ())) if overlay else None
        )
        self._carry: pa.Table | None = None
        self._packets = _Partials(["scope", "point", "window"], maxes=("max_ms",))
        self._events = _Partials(["scope", "window"])
        self._flows = _Partials(["scope", "window"])
        self._udp = _Partials(["scope", "window", "server"])
        self._rtt: list[dict[str, np.ndarray]] = []  # one sample per handshake: ~80 bytes each

    # ------------------------------------------------------------------ inputs

    def add_packets(self, packets: pa.Table) -> None:
        """Fold a chunk of the packets table in. The rows of each capture point's last millisecond
        wait for the next chunk, so 1 ms buckets are never split."""
        _need(packets, _PACKET_COLUMNS, "packets")
        t = packets.select(list(_PACKET_COLUMNS))
        if self._vnis is None:
            self._add_ordered(t)
        elif t.num_rows:
            for ready in self._vnis.push(t, self._scopes.point_codes(t.column("capture_point"))[0]):
                self._add_ordered(ready)

    def _add_ordered(self, t: pa.Table) -> None:
        """Fold packets whose VNI is settled; the last millisecond of each point waits for the next chunk."""
        if self._carry is not None:
            t = pa.concat_tables([self._carry, t], promote_options="permissive")
            self._carry = None
        if t.num_rows == 0:
            return
        ts = t.column("ts_ns").to_numpy()
        pt, _ = self._scopes.point_codes(t.column("capture_point"))
        ms = ts // NS_PER_MS
        last = np.full(len(self._scopes.points), np.iinfo(np.int64).min)
        np.maximum.at(last, pt, ms)
        hold = ms == last[pt]
        self._carry = t.filter(pa.array(hold))
        if not hold.all():
            self._fold_packets(t.filter(pa.array(~hold)))

    def _fold_packets(self, t: pa.Table) -> None:
        """Sums per (conversation, point, ms), spread over the conversations' scopes, then per window."""
        ts = t.column("ts_ns").to_numpy()
        pt, _ = self._scopes.point_codes(t.column("capture_point"))
        vni = t.column("vni").to_numpy().astype(np.uint32)
        src, dst = ip16_numpy(t.column("src_ip")), ip16_numpy(t.column("dst_ip"))
        conv_ends, conv = self._scopes.conversations(vni, src, dst)
        proto = t.column("proto").to_numpy()
        flags = t.column("tcp_flags").to_numpy()
        icmp = t.column("icmp_type").to_numpy()
        tcp = proto == 6
        values = {
            "bytes": t.column("frame_len").to_numpy(),
            "tcp_packets": tcp,
            "tcp_data_packets": tcp & (t.column("payload_len").to_numpy() > 0),
            "rst_packets": tcp & ((flags & RST) != 0),
            "syn_packets": tcp & ((flags & SYN) != 0) & ((flags & ACK) == 0),
            "icmp_unreachable": ((proto == 1) & (icmp == 3)) | ((proto == 58) & (icmp == 1)),
        }
        # 1. per (conversation, point, ms)
        c1, (g_conv, g_pt, g_ms) = _group(conv, pt, ts // NS_PER_MS)
        m1 = len(g_conv)
        sums = {"packets": _count(c1, m1)} | {k: _count(c1, m1, weights=v) for k, v in values.items()}
        # 2. per (scope, point, ms): each conversation counts for its capture point, hosts, pair and VMs
        ends = {k: v[g_conv] for k, v in conv_ends.items()}
        r, sc = self._scopes.memberships(self._scopes.point_scope[g_pt], ends)
        c2, (s_sc, s_pt, s_ms) = _group(sc, g_pt[r], g_ms[r])
        m2 = len(s_sc)
        sums = {k: _count(c2, m2, weights=v[r]) for k, v in sums.items()}
        # 3. per (scope, point, window), with the busiest millisecond
        c3, (u_s, u_p, u_w) = _group(s_sc, s_pt, s_ms * NS_PER_MS // self.window_ns)
        m3 = len(u_s)
        cols = {"scope": u_s, "point": u_p, "window": u_w}
        cols |= {k: _count(c3, m3, weights=v) for k, v in sums.items()}
        top = np.zeros(m3, np.int64)
        np.maximum.at(top, c3, sums["packets"])
        cols["max_ms"] = top
        self._packets.add(pd.DataFrame(cols))
        flow = _flow_hash(vni, src, dst, t.column("src_port").to_numpy(), t.column("dst_port").to_numpy(), proto)
        obs = {"h": t.column("pkt_hash").to_numpy(), "ts": ts, "pt": pt, "flow": flow}
        self._hops.add(obs | {k: conv_ends[k][conv] for k in ("hs", "hd", "pair", "vs", "vd")})

    def _row_scopes(self, t: pa.Table) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Capture-point codes and resolved ends of a tcp_events or flows chunk, and (row, scope code) for every
        scope each row counts for."""
        _, cp = self._scopes.point_codes(t.column("capture_point"))
        vni = t.column("vni").to_numpy().astype(np.uint32)
        ends = self._scopes.resolve(vni, ip16_numpy(t.column("src_ip")), ip16_numpy(t.column("dst_ip")))
        r, s = self._scopes.memberships(cp, ends)
        return cp, ends, r, s

    def _flush_vnis(self) -> None:
        if self._vnis is not None:
            for ready in self._vnis.finish():
                self._add_ordered(ready)

    def _fill_vni(self, t: pa.Table, ts: str, what: str, proto: np.ndarray | None = None) -> pa.Table:
        """Rows without a VNI take the VNI their point's packets of the same flow and window got."""
        if self._vnis is None or t.num_rows == 0:
            return t
        _need(t, _PORT_COLUMNS, what)
        self._flush_vnis()  # the packets are in: resolve those still waiting for later copies
        pt, _ = self._scopes.point_codes(t.column("capture_point"))
        p = np.full(t.num_rows, 6, np.uint8) if proto is None else proto
        return self._vnis.fill(t, pt, t.column(ts).to_numpy(), p)

    def add_tcp_events(self, events: pa.Table) -> None:
        """Fold a chunk of the ``tcp_events`` table in (any order; with an overlay, after the packets)."""
        _need(events, _EVENT_COLUMNS, "tcp_events")
        if events.num_rows == 0:
            return
        events = self._fill_vni(events, "ts_ns", "tcp_events")
        _, _, r, s = self._row_scopes(events)
        codes, (u_s, u_w) = _group(s, events.column("ts_ns").to_numpy()[r] // self.window_ns)
        m = len(u_s)
        a = events.column("analysis").to_numpy().astype(np.int64)
        bit = TCP_ANALYSIS_BITS
        retx = (a & bit["retransmission"]) != 0
        cols = {
            "scope": u_s,
            "window": u_w,
            "retransmissions": _count(codes, m, retx[r]),
            "data_retransmissions": _count(codes, m, (retx & (events.column("payload_len").to_numpy() > 0))[r]),
            "fast_retransmissions": _count(codes, m, ((a & bit["fast_retransmission"]) != 0)[r]),
            "dup_acks": _count(codes, m, ((a & bit["duplicate_ack"]) != 0)[r]),
            "out_of_order": _count(codes, m, ((a & bit["out_of_order"]) != 0)[r]),
            "lost_segments": _count(codes, m, ((a & bit["lost_segment"]) != 0)[r]),
            "zero_windows": _count(codes, m, ((a & bit["zero_window"]) != 0)[r]),
        }
        self._events.add(pd.DataFrame(cols))

    def add_flows(self, flows: pa.Table) -> None:
        """Fold a chunk of the flows table in: its TCP connections and UDP exchanges, by the window of
        ``first_seen_ns``."""
        _need(flows, _FLOW_COLUMNS, "flows")
        flows = self._fill_vni(flows, "first_seen_ns", "flows", flows.column("protocol").to_numpy())
        self._add_udp(flows.filter(pc.equal(flows.column("protocol"), 17)))
        flows = flows.filter(pc.equal(flows.column("protocol"), 6))
        if flows.num_rows == 0:
            return
        cp, ends, r, s = self._row_scopes(flows)
        w = flows.column("first_seen_ns").to_numpy() // self.window_ns
        codes, (u_s, u_w) = _group(s, w[r])
        m = len(u_s)
        st_codes, st_names = _dict_codes(flows.column("conn_state"))
        failed = np.isin(np.array(st_names, dtype=object), FAILED_STATES)[st_codes] if st_names else st_codes > 0
        s0 = np.array([n == "S0" for n in st_names], bool)[st_codes] if st_names else failed
        reset = np.isin(np.array(st_names, dtype=object), RESET_STATES)[st_codes] if st_names else st_codes < 0
        rtt = flows.column("handshake_rtt_ms").to_numpy(zero_copy_only=False).astype(np.float64)
        has_rtt = ~np.isnan(rtt)
        cols = {
            "scope": u_s,
            "window": u_w,
            "connections": _count(codes, m),
            "syn_attempts": _count(codes, m, (flows.column("src2dst_syn_packets").to_numpy() > 0)[r]),
            "syn_unanswered": _count(codes, m, s0[r]),
            "handshake_failures": _count(codes, m, failed[r]),
            "reset_connections": _count(codes, m, reset[r]),
            "handshakes": _count(codes, m, has_rtt[r]),
        }
        self._flows.add(pd.DataFrame(cols))
        keep = np.flatnonzero(has_rtt)
        if len(keep):
            sample = {k: v[keep] for k, v in ends.items()}
            sample.update(cp=cp[keep], window=w[keep], rtt=rtt[keep])
            self._rtt.append(sample)

    def _add_udp(self, flows: pa.Table) -> None:
        """UDP flows per (scope, window, server at a capture point): how many, how many got a reply."""
        if flows.num_rows == 0:
            return
        cp, _, r, s = self._row_scopes(flows)
        vni = flows.column("vni").to_numpy().astype(np.uint32)
        dst = ip16_numpy(flows.column("dst_ip"))
        zero = np.zeros(len(vni), np.uint16)
        server = _flow_hash(vni, dst, dst, zero, zero, cp.astype(np.uint8)).view(np.int64)
        w = flows.column("first_seen_ns").to_numpy() // self.window_ns
        codes, (u_s, u_w, u_srv) = _group(s, w[r], server[r])
        answered = flows.column("dst2src_packets").to_numpy() > 0
        m = len(u_s)
        self._udp.add(pd.DataFrame({"scope": u_s, "window": u_w, "server": u_srv, "udp_flows": _count(codes, m),
                                    "udp_answered": _count(codes, m, answered[r])}))  # fmt: skip

    def _udp_unanswered(self) -> pd.DataFrame:
        """Per (scope, window): UDP flows left unanswered by a server that answered others in the window (an
        answering service whose requests or replies go missing), and the flows to such servers."""
        u = self._udp.frame()
        if u.empty:
            return pd.DataFrame(columns=["scope", "window", "udp_requests", "udp_unanswered"])
        serving = u.groupby(["server", "window"])["udp_answered"].transform("max") > 0
        u = u[serving]
        return pd.DataFrame({"scope": u["scope"], "window": u["window"], "udp_requests": u["udp_flows"],
                             "udp_unanswered": u["udp_flows"] - u["udp_answered"]}).groupby(
            ["scope", "window"], as_index=False, sort=False).sum()  # fmt: skip

    # ------------------------------------------------------------------ output

    def finish(self) -> pd.DataFrame:
        """The fault windows: one row per (scope_type, scope, window_start_ns) with packets."""
        self._flush_vnis()
        if self._carry is not None and self._carry.num_rows:
            carry, self._carry = self._carry, None
            self._fold_packets(carry)
        self._hops.finish()
        pk = self._packets.frame()
        if pk.empty:
            return _empty_windows()
        pk["burst"] = pk["max_ms"] * (self.window_ns / NS_PER_MS) / pk["packets"]
        sums = {c: (c, "sum") for c in ("packets", "bytes", "tcp_packets", "tcp_data_packets", "rst_packets",
                                        "syn_packets", "icmp_unreachable")}  # fmt: skip
        df = pk.groupby(["scope", "window"], sort=False).agg(
            **sums,
            max_packets_per_ms=("max_ms", "max"),
            burstiness=("burst", "max"),
            capture_points=("point", "nunique"),
        )
        for part in (self._events.frame(), self._flows.frame(), self._hops.counts.frame(), self._udp_unanswered()):
            if len(part):
                df = df.join(part.set_index(["scope", "window"]), how="left")
        df = df.join(self._latency(), how="left").reset_index()
        return self._features(df)

    def _latency(self) -> pd.DataFrame:
        """Handshake RTT and hop delay statistics per (scope, window)."""
        keys = ["scope", "window"]
        cols = {c: pd.Series([], index=pd.MultiIndex.from_arrays([[], []], names=keys), dtype=np.float64)
                for c in ("handshake_rtt_p50_ms", "handshake_rtt_p99_ms", "handshake_rtt_path_ratio")}  # fmt: skip
        if self._rtt:
            h = {k: np.concatenate([x[k] for x in self._rtt]) for k in self._rtt[0]}
            # each handshake against the usual RTT of its path (the other handshakes between the same locations)
            path, _ = _group(np.minimum(h["ws"], h["wd"]), np.maximum(h["ws"], h["wd"]))
            usual = _loo_median(path, h["rtt"])
            ratio = np.divide(h["rtt"], usual, out=np.full(len(usual), np.nan), where=usual > 0)
            r, sc = _Scopes.memberships(h["cp"], h)
            g = pd.DataFrame({"scope": sc, "window": h["window"][r], "rtt": h["rtt"][r], "ratio": ratio[r]}).groupby(
                keys
            )
            cols["handshake_rtt_p50_ms"] = g["rtt"].median()
            cols["handshake_rtt_p99_ms"] = g["rtt"].quantile(0.99)
            cols["handshake_rtt_path_ratio"] = g["ratio"].median()
        d = self._hops.delays.frame()
        if len(d):
            cols["hop_delay_p50_ms"] = _hist_quantile(d, keys, 0.5)
            per_hop = _hist_quantile(d, [*keys, "hop"], 0.5)
            cols["hop_delay_worst_p50_ms"] = per_hop.groupby(level=keys).max()
            cols["hop_delay_hop_ratio"] = _hop_ratio(per_hop, d.groupby([*keys, "hop"])["n"].sum())
        return pd.concat(cols, axis=1)

    def _features(self, df: pd.DataFrame) -> pd.DataFrame:
        zero_fill = ["retransmissions", "data_retransmissions", "fast_retransmissions", "dup_acks", "out_of_order",
                     "lost_segments", "zero_windows", "connections", "syn_attempts", "syn_unanswered",
                     "handshake_failures", "reset_connections", "handshakes", "matched", "lost", "udp_requests",
                     "udp_unanswered"]  # fmt: skip
        for c in zero_fill:
            df[c] = df[c].fillna(0).astype(np.int64) if c in df else 0
        for c in ("handshake_rtt_p50_ms", "handshake_rtt_p99_ms", "handshake_rtt_path_ratio", "hop_delay_p50_ms",
                  "hop_delay_worst_p50_ms", "hop_delay_hop_ratio"):  # fmt: skip
            if c not in df:
                df[c] = np.nan

        def ratio(num: pd.Series, den: pd.Series) -> np.ndarray:
            n, d = num.to_numpy(np.float64), den.to_numpy(np.float64)
            return np.divide(n, d, out=np.zeros(len(n)), where=d > 0)

        scope = df["scope"].to_numpy(np.int64)
        df["packets_per_s"] = df["packets"] / self.window_s
        df["retransmission_rate"] = ratio(df["data_retransmissions"], df["tcp_data_packets"])
        df["dup_ack_rate"] = ratio(df["dup_acks"], df["tcp_packets"])
        df["rst_rate"] = ratio(df["rst_packets"], df["tcp_packets"])
        df["handshake_failure_rate"] = ratio(df["handshake_failures"], df["syn_attempts"])
        df["reset_connection_rate"] = ratio(df["reset_connections"], df["connections"])
        df["udp_unanswered_rate"] = ratio(df["udp_unanswered"], df["udp_requests"])
        df["matched_packets"], df["matched_loss"] = df["matched"], df["lost"]
        df["matched_loss_rate"] = ratio(df["lost"], df["matched"])
        base = _loo_median(scope, df["packets"].to_numpy(np.float64))
        df["packets_ratio"] = np.where(base > 0, df["packets"] / np.where(base > 0, base, 1), 1.0)
        df["handshake_rtt_path_ratio"] = df["handshake_rtt_path_ratio"].fillna(1.0)
        df["hop_delay_hop_ratio"] = df["hop_delay_hop_ratio"].fillna(1.0)
        for col, ratio_col in (("handshake_rtt_p50_ms", "handshake_rtt_ratio"), ("handshake_rtt_p99_ms", None),
                               ("hop_delay_p50_ms", "hop_delay_ratio"), ("hop_delay_worst_p50_ms", None)):  # fmt: skip
            v = df[col].to_numpy(np.float64)
            base = _loo_median(scope, v)
            if ratio_col is not None:
                ok = ~np.isnan(v) & (base > 0)
                df[ratio_col] = np.divide(v, base, out=np.ones(len(v)), where=ok)
            df[col] = np.where(np.isnan(v), np.nan_to_num(base, nan=0.0), v)
        names = np.array(self._scopes.names, dtype=object)
        types = np.array(SCOPE_TYPES, dtype=object)[np.array(self._scopes.types, dtype=np.int64)]
        df["scope_type"] = pd.array(types[scope], dtype="string")
        df["scope"] = pd.array(names[scope], dtype="string")
        df["window_start_ns"] = df["window"].astype(np.int64) * self.window_ns
        df["window_s"] = self.window_s
        df["capture_points"] = df["capture_points"].astype(np.int16)
        out = df[list(KEY_COLUMNS) + list(FAULT_FEATURES)]
        return out.sort_values(["scope_type", "scope", "window_start_ns"], ignore_index=True)


def _hop_ratio(per_hop: pd.Series, samples: pd.Series) -> pd.Series:
    """Per (scope, window): the sample-weighted median over hops of each hop's median delay / its usual median in
    the scope (the median over the scope's other windows with that hop); NaN when no hop has a usual delay."""
    keys = list(per_hop.index.names[:-1])
    f = per_hop.rename("p50").to_frame().join(samples.rename("n"), how="left").reset_index()
    hop_of_scope, _ = _group(f[keys[0]].to_numpy(np.int64), f["hop"].to_numpy(np.int64))
    usual = _loo_median(hop_of_scope, f["p50"].to_numpy(np.float64))
    f["ratio"] = f["p50"] / np.where(usual > 0, usual, np.nan)
    f = f.dropna(subset=["ratio"]).sort_values([*keys, "ratio"])
    if f.empty:
        return pd.Series([], index=pd.MultiIndex.from_arrays([[]] * len(keys), names=keys), dtype=np.float64)
    g = f.groupby(keys, sort=False)["n"]
    pick = f[g.cumsum().to_numpy() >= g.transform("sum").to_numpy() / 2].drop_duplicates(keys, keep="first")
    return pd.Series(pick["ratio"].to_numpy(), index=pd.MultiIndex.from_frame(pick[keys]))


def _empty_windows() -> pd.DataFrame:
    cols: dict[str, pd.Series] = {
        "scope_type": pd.Series(dtype="string"),
        "scope": pd.Series(dtype="string"),
        "window_start_ns": pd.Series(dtype=np.int64),
        "window_s": pd.Series(dtype=np.float64),
        "capture_points": pd.Series(dtype=np.int16),
    }
    for c, meaning in FAULT_FEATURES.items():
        unit = meaning.rsplit("(", 1)[-1]
        cols[c] = pd.Series(dtype=np.int64 if unit.startswith("count") or unit.startswith("bytes") else np.float64)
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------- labels

_DETAIL_HOST = re.compile(r"(?:^|[;\s])host=([^;\s]+)")


def _vm_hosts(tmap: TenantMap | None) -> dict[str, str]:
    """``tenant/vm`` → the host its ports declare (the first one)."""
    out: dict[str, str] = {}
    if tmap is None:
        return out
    for v in tmap.config.vpcs:
        for s in v.subnets:
            for p in s.ports:
                if p.host is not None:
                    out.setdefault(f"{v.tenant_name}/{p.vm}", p.host)
    return out


def _pair_name(scope: str) -> str:
    a, sep, b = scope.partition("-")
    return "-".join(sorted((a, b))) if sep else scope


MIN_OBSERVABLE_PACKETS = 20
"""A host, host pair or VM that usually carries fewer packets per window cannot show a loss burst or a delay on
its host or path: its covered windows are ambiguous (-1), not faulty."""


def label_fault_windows(windows: pd.DataFrame, labels: pd.DataFrame, tmap: TenantMap | None = None) -> pd.DataFrame:
    """Add ``label`` (int8: 1 fault, 0 normal, -1 ambiguous) and ``label_scenario`` to fault windows.

    A window overlapping a fault label in time is 1 when its scope is the label's or inside it (host H:
    host H, pairs with H, VMs on H; link/host ``gateway`` is host gateway; host_pair A-B: that pair; vm V:
    vm V) and, for the rows of host, pair and link faults, the scope usually carries at least
    :data:`MIN_OBSERVABLE_PACKETS` packets a window (``packets / packets_ratio``; a pair that quiet cannot show
    loss or delay, while a black hole still shows as a busy scope gone silent). It is -1 when its scope only
    partly relates (it contains the label's scope — capture points, hosts A and B of a faulted pair, the host
    of a faulted VM and its pairs — or, for a host label, it is a host that exchanged packets with H in that
    window; or the VM's host is unknown) or it is covered but too quiet; else 0.
    1 wins over -1; ``label_scenario`` joins the scenarios of the 1 labels with ``+``.
    """
    out = windows.copy()
    n = len(out)
    label = np.zeros(n, np.int8)
    scenario = np.full(n, "", dtype=object)
    faults = labels[labels["kind"].astype(str) == "fault"] if len(labels) else labels
    if n == 0 or len(faults) == 0:
        out["label"] = label
        out["label_scenario"] = pd.array(scenario.astype(str), dtype="string")
        return out
    st = out["scope_type"].astype(str).to_numpy()
    sc = out["scope"].astype(str).to_numpy().astype(object)
    ws = out["window_start_ns"].to_numpy(np.int64)
    we = ws + np.rint(out["window_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
    is_cp, is_host, is_pair, is_vm = (st == t for t in SCOPE_TYPES)
    if {"packets", "packets_ratio"} <= set(out.columns):  # the scope's usual traffic per window
        usual = out["packets"].to_numpy(np.float64) / np.maximum(out["packets_ratio"].to_numpy(np.float64), 1e-9)
    else:
        usual = np.full(n, float(MIN_OBSERVABLE_PACKETS))
    vm_host_of = _vm_hosts(tmap)
    vm_host = np.array([vm_host_of.get(s, "") if v else "" for s, v in zip(sc, is_vm, strict=True)], dtype=object)
    sc_s = pd.Series(sc, dtype=object)
    pair_names = set(sc[is_pair])

    def in_pair(host: str) -> np.ndarray:
        return is_pair & (sc_s.str.startswith(host + "-") | sc_s.str.endswith("-" + host)).to_numpy(bool)

    def peers(host: str, when: np.ndarray) -> np.ndarray:
        """Host rows whose host exchanged packets with ``host`` in the same window."""
        rows = np.flatnonzero(in_pair(host) & when)
        other = [s[len(host) + 1 :] if s.startswith(host + "-") else s[: -len(host) - 1] for s in sc[rows]]
        pairs = pd.MultiIndex.from_arrays([other, ws[rows]])
        return is_host & pd.MultiIndex.from_arrays([sc, ws]).isin(pairs)

    for lab in faults.itertuples(index=False):
        ov = (ws < int(lab.end_ns)) & (we > int(lab.start_ns))
        if not ov.any():
            continue
        kind, scope = str(lab.scope_type), str(lab.scope)
        partial = is_cp.copy()
        if kind == "host_pair" or (kind == "link" and _pair_name(scope) in pair_names):
            name = _pair_name(scope)
            a, _, b = name.partition("-")
            cover = is_pair & (sc == name)
            partial |= (is_host & ((sc == a) | (sc == b))) | (is_vm & np.isin(vm_host, [a, b, ""]))
        elif kind in ("host", "link"):
            cover = (is_host & (sc == scope)) | in_pair(scope) | (is_vm & (vm_host == scope))
            partial |= (is_vm & (vm_host == "")) | peers(scope, ov)
        elif kind == "vm":
            vm_name = f"{lab.tenant}/{lab.vm}" if str(lab.vm) else scope
            cover = is_vm & ((sc == vm_name) | (sc == scope))
            m = _DETAIL_HOST.search(str(lab.detail))
            host = m.group(1) if m else vm_host_of.get(vm_name, scope)  # no map: hosts are addresses
            partial |= (is_host & (sc == host)) | in_pair(host)
        else:
            log.warning("fault label with unknown scope_type %r ignored", kind)
            continue
        # rows covered by a host, pair or link fault must usually be busy enough to show it; a VM's own rows
        # are taken as they are (measured on mixed: quiet VM rows ambiguous, fault ROC-AUC 0.89 → 0.93)
        observable = usual >= MIN_OBSERVABLE_PACKETS if kind != "vm" else np.ones(n, bool)
        pos = ov & cover & observable
        label[ov & (partial | cover) & ~pos & (label == 0)] = -1
        label[pos] = 1
        scenario[pos] = np.where(scenario[pos] == "", lab.scenario, scenario[pos] + "+" + str(lab.scenario))
    out["label"] = label
    out["label_scenario"] = pd.array(scenario.astype(str), dtype="string")
    return out


# --------------------------------------------------------------------------- workspace


def _table_batches(parts: list[Path], columns: Sequence[str], batch: int) -> Iterator[pa.Table]:
    for part in parts:
        f = pq.ParquetFile(part, pre_buffer=False)  # pre-buffering keeps every row group: unbounded
        for rb in f.iter_batches(batch_size=batch, columns=list(columns)):
            yield pa.Table.from_batches([rb])


def _interleaved(streams: dict[str, Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """Chunks of several time-ordered streams, always the one that starts earliest next."""
    pending: dict[str, pa.Table] = {}
    for name, it in streams.items():
        for chunk in it:
            if chunk.num_rows:
                pending[name] = chunk
                break
    while pending:
        name = min(pending, key=lambda k: pending[k].column("ts_ns")[0].as_py())
        yield pending.pop(name)
        for chunk in streams[name]:
            if chunk.num_rows:
                pending[name] = chunk
                break


def build_fault_windows(
    workspace: str | Path,
    window_s: float = 1.0,
    *,
    tmap: TenantMap | None = None,
    batch_packets: int = 131_072,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Fault windows of a workspace: its packets (capture points interleaved in time, so the matching
    buffer stays small), ``tcp_events`` and flows. ``tmap`` defaults to the map the packets were
    captured with; ``on_progress(packets done, packets total)``."""
    ws = Path(workspace)
    pkt_dir = ws / "packets"
    require_table(pkt_dir, "packets")
    require_table(ws / "flows", "flows")
    if not (ws / "tcp_events" / "_manifest.json").exists():
        raise InputNotFoundError("no tcp_events table; rerun `netsentry flows --force`", path=str(ws / "tcp_events"))
    manifest = read_manifest(pkt_dir) or {}
    if tmap is None:
        tmap = captured_tenant_map(pkt_dir)
    by_point: dict[str, list[dict[str, Any]]] = {}
    for part in manifest.get("parts", []):
        by_point.setdefault(part["capture_point"], []).append(part)
    builder = FaultWindowBuilder(window_s, tmap, capture_points=sorted(by_point))
    streams = {}
    for point, parts in by_point.items():
        parts.sort(key=lambda p: (p.get("first_ts_ns") or 0, p["part"]))
        streams[point] = _table_batches([pkt_dir / p["part"] for p in parts], _PACKET_COLUMNS, batch_packets)
    total = sum(int(p.get("rows", 0)) for p in manifest.get("parts", []))
    done = 0
    for chunk in _interleaved(streams):
        builder.add_packets(chunk)
        done += chunk.num_rows
        if on_progress is not None:
            on_progress(done, total)
    for chunk in _table_batches(table_parts(ws / "tcp_events"), _EVENT_COLUMNS + _PORT_COLUMNS, batch_packets):
        builder.add_tcp_events(chunk)
    for chunk in _table_batches(table_parts(ws / "flows"), _FLOW_COLUMNS + _PORT_COLUMNS, batch_packets):
        builder.add_flows(chunk)
    return builder.finish()
