"""Flows stage: packets → bidirectional flows with timing, size and TCP-health statistics.

:class:`FlowAssembler` streams packet tables of one capture point in time order and emits
finished flows; flows spanning chunk boundaries are carried as compact state, not packets. After
each chunk, :meth:`FlowAssembler.last_tcp_events` gives that chunk's packets with a TCP analysis bit
(the ``tcp_events`` table). :func:`flows_from_packets` is the pure whole-table form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.hashing import SPLITMIX64, finalize64
from netsentry.pipeline.core.schemas import (
    CONN_STATES,
    DIRECTIONS,
    END_REASONS,
    FLAG_NAMES,
    FLOWS,
    PACKETS,
    TCP_EVENTS,
    check_columns,
    ip16_array,
    ip16_numpy,
)
from netsentry.pipeline.core.units import NS_PER_MS
from netsentry.pipeline.flows import kernel as fk
from netsentry.pipeline.flows.hop_duplicates import HopDuplicates

_KEY_WIDTH = 7  # vni|vlan, proto, a_hi, a_lo, b_hi, b_lo, a_port|b_port

TenantLabeler = Callable[[np.ndarray, np.ndarray], tuple[pa.Array, pa.Array]]
"""(vni, ip16) → (tenant, vm) dictionary arrays; see :mod:`netsentry.pipeline.capture.tenants`."""


@dataclass(frozen=True)
class FlowConfig:
    """Flow expiry: a flow ends after ``idle_timeout_s`` without packets, and is cut every
    ``active_timeout_s`` while it keeps going; the continuation of a timeout split keeps the original
    initiator (within a chunk) unless it opens with a SYN. A SYN after FIN/RST on the same 5-tuple starts a
    new flow."""

    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if not self.idle_timeout_s > 0:
            raise ConfigError(f"idle timeout must be > 0 seconds, got {self.idle_timeout_s}")
        if not self.active_timeout_s > 0:
            raise ConfigError(f"active timeout must be > 0 seconds, got {self.active_timeout_s}")


def _be_words(ip16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = np.ascontiguousarray(ip16).view(">u8").astype(np.uint64)
    return words[:, 0], words[:, 1]


def _inherit_fragment_ports(cols: dict[str, np.ndarray]) -> None:
    """Give later IP fragments (no transport header) the ports of their first fragment."""
    frag = cols["frag"]
    later = np.flatnonzero(frag == 2)
    if len(later) == 0:
        return
    first = np.flatnonzero(frag == 1)
    if len(first) == 0:
        return

    def frame(idx: np.ndarray) -> pd.DataFrame:
        s_hi, s_lo = _be_words(cols["src_ip"][idx])
        d_hi, d_lo = _be_words(cols["dst_ip"][idx])
        return pd.DataFrame(
            {
                "s_hi": s_hi,
                "s_lo": s_lo,
                "d_hi": d_hi,
                "d_lo": d_lo,
                "proto": cols["proto"][idx],
                "ip_id": cols["ip_id"][idx],
                "row": idx,
            }
        )

    keys = ["s_hi", "s_lo", "d_hi", "d_lo", "proto", "ip_id"]
    heads = frame(first).drop_duplicates(keys, keep="last")
    m = frame(later).merge(heads, on=keys, how="inner", suffixes=("", "_head"))
    if len(m):
        rows, heads_rows = m["row"].to_numpy(), m["row_head"].to_numpy()
        cols["src_port"][rows] = cols["src_port"][heads_rows]
        cols["dst_port"][rows] = cols["dst_port"][heads_rows]


def _packet_rows(packets: pa.Table) -> dict[str, np.ndarray]:
    """Columns the kernel needs, in time order, with canonical (A ≤ B) keys."""
    check_columns(packets, PACKETS, "packets")
    names = [
        "ts_ns",
        "frame_len",
        "payload_len",
        "tcp_flags",
        "tcp_seq",
        "tcp_ack",
        "tcp_win",
        "proto",
        "frag",
        "src_port",
        "dst_port",
        "vni",
        "vlan",
        "ip_version",
        "ip_id",
    ]
    cols = {n: packets.column(n).to_numpy() for n in names}
    cols["src_ip"] = ip16_numpy(packets.column("src_ip"))
    cols["dst_ip"] = ip16_numpy(packets.column("dst_ip"))
    ts = cols["ts_ns"]
    order = None
    if len(ts) > 1 and bool(np.any(ts[1:] < ts[:-1])):
        order = np.argsort(ts, kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
    else:
        cols = {k: v.copy() if k in ("src_port", "dst_port") else v for k, v in cols.items()}
    _inherit_fragment_ports(cols)
    s_hi, s_lo = _be_words(cols["src_ip"])
    d_hi, d_lo = _be_words(cols["dst_ip"])
    sp = cols["src_port"].astype(np.uint64)
    dp = cols["dst_port"].astype(np.uint64)
    fwd = (s_hi < d_hi) | ((s_hi == d_hi) & ((s_lo < d_lo) | ((s_lo == d_lo) & (sp <= dp))))
    keys = np.empty((len(ts), _KEY_WIDTH), dtype=np.uint64)
    keys[:, 0] = (cols["vni"].astype(np.uint64) << np.uint64(16)) | cols["vlan"].astype(np.uint64)
    keys[:, 1] = cols["proto"].astype(np.uint64)
    keys[:, 2] = np.where(fwd, s_hi, d_hi)
    keys[:, 3] = np.where(fwd, s_lo, d_lo)
    keys[:, 4] = np.where(fwd, d_hi, s_hi)
    keys[:, 5] = np.where(fwd, d_lo, s_lo)
    keys[:, 6] = (np.where(fwd, sp, dp) << np.uint64(16)) | np.where(fwd, dp, sp)
    return {
        "keys": keys,
        "ipver": cols["ip_version"],
        "ts": cols["ts_ns"],
        "size": cols["frame_len"],
        "pay": cols["payload_len"],
        "flags": cols["tcp_flags"],
        "seq": cols["tcp_seq"],
        "ack": cols["tcp_ack"],
        "win": cols["tcp_win"],
        "is_tcp": cols["proto"] == 6,
        "fwd": fwd,
        "frag": cols["frag"],
        # row of the input table behind each (time-ordered) row; empty: the input was in order
        "order": np.zeros(0, np.int64) if order is None else order,
    }


def _words_to_ip16(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    out = np.empty((len(hi), 2), dtype=">u8")
    out[:, 0] = hi
    out[:, 1] = lo
    return out.view(np.uint8).reshape(-1, 16)


def _dict_array(values: np.ndarray, categories: tuple[str, ...], index: type = np.int32) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(values.astype(index), pa.array(categories, pa.string()))


def _gather(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows), a.shape[1]), a.dtype, order="F")
    fk.gather_rows(a, rows, out)
    return out


def _flow_id(row_hash: np.ndarray, first_ns: np.ndarray) -> np.ndarray:
    return finalize64(row_hash ^ first_ns.astype(np.uint64), SPLITMIX64)


def _direction_columns(I: np.ndarray, F: np.ndarray) -> dict[str, np.ndarray]:
    """Per direction (src2dst, dst2src, bidirectional): first/last seen, packet sizes and inter-arrival times."""
    cols: dict[str, np.ndarray] = {}
    for d, name in enumerate(DIRECTIONS):
        b, fb = d * fk.D_WIDTH, d * fk.F_DWIDTH
        pk = I[:, b + fk.D_PKTS]
        has = pk > 0
        first, last = I[:, b + fk.D_FIRST], I[:, b + fk.D_LAST]
        cols[f"{name}_first_seen_ms"] = np.where(has, first // NS_PER_MS, 0)
        cols[f"{name}_last_seen_ms"] = np.where(has, last // NS_PER_MS, 0)
        cols[f"{name}_duration_ms"] = np.where(has, (last - first) / NS_PER_MS, 0.0)
        cols[f"{name}_packets"] = pk
        cols[f"{name}_bytes"] = I[:, b + fk.D_BYTES]
        cols[f"{name}_payload_bytes"] = I[:, b + fk.D_PAY]
        cols[f"{name}_min_ps"] = np.where(has, F[:, fb + fk.P_MIN], 0.0)
        cols[f"{name}_mean_ps"] = F[:, fb + fk.P_MEAN]
        cols[f"{name}_stddev_ps"] = np.sqrt(np.where(pk > 1, F[:, fb + fk.P_M2] / np.maximum(pk - 1, 1), 0.0))
        cols[f"{name}_max_ps"] = F[:, fb + fk.P_MAX]
        gaps = pk - 1
        hg = gaps > 0
        cols[f"{name}_min_piat_ms"] = np.where(hg, F[:, fb + fk.A_MIN], 0.0) / NS_PER_MS
        cols[f"{name}_mean_piat_ms"] = F[:, fb + fk.A_MEAN] / NS_PER_MS
        cols[f"{name}_stddev_piat_ms"] = (
            np.sqrt(np.where(gaps > 1, F[:, fb + fk.A_M2] / np.maximum(gaps - 1, 1), 0.0)) / NS_PER_MS
        )
        cols[f"{name}_max_piat_ms"] = F[:, fb + fk.A_MAX] / NS_PER_MS
    return cols


class FlowAssembler:
    """Streams packet tables of ONE capture point (in time order) into finished flows."""

    def __init__(
        self, capture_point: str, config: FlowConfig | None = None, labeler: TenantLabeler | None = None
    ) -> None:
        self.capture_point = capture_point
        self.config = config or FlowConfig()
        self.labeler = labeler
        self._idle = int(self.config.idle_timeout_s * 1e9)
        self._active = int(self.config.active_timeout_s * 1e9)
        self._watermark: int | None = None
        self._buf: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.last_packet_flags = np.zeros(0, np.int64)
        """TCP analysis bits (flow_kernel.PA_*) of the last chunk's packets, in time order."""
        self._last_chunk: pa.Table | None = None
        self._last_order = np.zeros(0, np.int64)
        self._state: dict[str, np.ndarray] = {
            "I": np.zeros((0, fk.I_WIDTH), np.int64),
            "F": np.zeros((0, fk.F_WIDTH), np.float64),
            "T": np.zeros((0, fk.T_WIDTH), np.int64),
            "keys": np.zeros((0, _KEY_WIDTH), np.uint64),
            "ipver": np.zeros(0, np.uint8),
        }

    def _scratch(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-flow accumulators, reused across chunks (fresh memory costs page faults)."""
        if self._buf is None or len(self._buf[0]) < rows:
            self._buf = (
                np.empty((rows, fk.I_WIDTH), np.int64),
                np.empty((rows, fk.F_WIDTH), np.float64),
                np.empty((rows, fk.T_WIDTH), np.int64),
            )
        return self._buf[0][:rows], self._buf[1][:rows], self._buf[2][:rows]

    @property
    def open_flows(self) -> int:
        """Flows carried to the next chunk."""
        return len(self._state["I"])

    def push(self, packets: pa.Table) -> pa.Table:
        """Add a chunk of packets; return the flows that are finished by now."""
        self._last_chunk, self._last_order = None, np.zeros(0, np.int64)
        if packets.num_rows == 0:
            self.last_packet_flags = np.zeros(0, np.int64)
            return FLOWS.empty_table()
        rows = _packet_rows(packets)
        self._last_chunk, self._last_order = packets, rows["order"]
        return self._run(rows, final=False)

    def finish(self) -> pa.Table:
        """End of data: return every flow still open."""
        self._last_chunk, self._last_order = None, np.zeros(0, np.int64)
        self.last_packet_flags = np.zeros(0, np.int64)
        if self.open_flows == 0:
            return FLOWS.empty_table()
        empty = _packet_rows(PACKETS.empty_table())
        return self._run(empty, final=True)

    def last_tcp_events(self) -> pa.Table:
        """The last pushed chunk's packets that carry a TCP analysis bit, in time order
        (:data:`netsentry.pipeline.core.schemas.TCP_EVENTS`)."""
        bits = self.last_packet_flags
        idx = np.flatnonzero(bits)
        if self._last_chunk is None or len(idx) == 0:
            return TCP_EVENTS.empty_table()
        rows = self._last_order[idx] if len(self._last_order) else idx
        cols = ("ts_ns", "vni", "src_ip", "dst_ip", "src_port", "dst_port", "tcp_flags", "payload_len")
        picked = self._last_chunk.select(cols).take(pa.array(rows))
        arrays: list[pa.Array | pa.ChunkedArray] = [
            picked.column("ts_ns"),
            _dict_array(np.zeros(len(idx)), (self.capture_point,)),
            *(picked.column(c) for c in cols[1:]),
            pa.array(bits[idx].astype(np.int16), pa.int16()),
        ]
        return pa.Table.from_arrays(arrays, schema=TCP_EVENTS)

    def _run(self, rows: dict[str, np.ndarray], final: bool) -> pa.Table:
        st = self._state
        k = len(st["I"])
        n = len(rows["ts"])
        if n:
            hi = int(rows["ts"].max())
            self._watermark = hi if self._watermark is None else max(self._watermark, hi)
        keys = np.concatenate([st["keys"], rows["keys"]]) if k else rows["keys"]
        ipver = np.concatenate([st["ipver"], rows["ipver"]]) if k else rows["ipver"]

        def padded(name: str) -> np.ndarray:
            """Packet column ``name`` behind ``k`` placeholder rows for the resumed flows."""
            col = rows[name]
            return np.concatenate([np.zeros(k, col.dtype), col]) if k else col

        gid, row_hash, ng = fk.group_rows(keys)
        order = fk.order_by_group(gid, ng)
        total = k + n
        pkt_flags = np.zeros(total, np.int64)
        args = (
            order,
            gid,
            k,
            padded("ts"),
            padded("size"),
            padded("pay"),
            padded("flags"),
            padded("seq"),
            padded("ack"),
            padded("win"),
            padded("is_tcp"),
            padded("fwd"),
            padded("frag"),
            st["I"],
            st["F"],
            st["T"],
            self._idle,
            self._active,
        )
        # one flow per key unless timeouts or SYN-after-FIN split it: size for that, retry if short
        capacity = min(total, ng + 64 + ng // 8)
        while True:
            # row-major: the kernel fills a flow at a time (the table is then read column-major)
            I, F, T = self._scratch(capacity)
            nf = fk.assemble(*args, I, F, T, pkt_flags)
            if nf >= 0:
                break
            capacity = total
        self.last_packet_flags = pkt_flags[k:]
        if nf < capacity:
            I, F, T = I[:nf], F[:nf], T[:nf]
        if final or self._watermark is None:
            is_open = np.zeros(nf, dtype=np.bool_)
        else:
            is_open = (I[:, fk.I_GROUP_LAST] == 1) & (I[:, fk.D_LAST] > self._watermark - self._idle)
        fk.finish(I, nf, is_open, fk.END_EOF if final else fk.END_IDLE)
        first_rows = I[:, fk.I_FIRST_ROW]
        self._state = {
            "I": np.ascontiguousarray(I[is_open]),
            "F": np.ascontiguousarray(F[is_open]),
            "T": np.ascontiguousarray(T[is_open]),
            "keys": keys[first_rows[is_open]],
            "ipver": ipver[first_rows[is_open]],
        }
        # finished flows, in order of first packet (the kernel emits them grouped by key), column-major
        done = np.flatnonzero(~is_open)
        first = I[done, fk.D_FIRST]
        if bool(np.any(first[1:] < first[:-1])):
            done = done[np.argsort(first, kind="stable")]
        I, F, first_rows = _gather(I, done), _gather(F, done), first_rows[done]
        return self._to_table(I, F, keys[first_rows], ipver[first_rows], row_hash[first_rows])

    def _to_table(
        self, I: np.ndarray, F: np.ndarray, keys: np.ndarray, ipver: np.ndarray, row_hash: np.ndarray
    ) -> pa.Table:
        m = len(I)
        if m == 0:
            return FLOWS.empty_table()
        init_a = I[:, fk.I_INIT_IS_A] == 1
        a_port = (keys[:, 6] >> np.uint64(16)).astype(np.uint16)
        b_port = (keys[:, 6] & np.uint64(0xFFFF)).astype(np.uint16)
        src_ip = _words_to_ip16(np.where(init_a, keys[:, 2], keys[:, 4]), np.where(init_a, keys[:, 3], keys[:, 5]))
        dst_ip = _words_to_ip16(np.where(init_a, keys[:, 4], keys[:, 2]), np.where(init_a, keys[:, 5], keys[:, 3]))
        proto = keys[:, 1].astype(np.uint8)
        vni = (keys[:, 0] >> np.uint64(16)).astype(np.uint32)
        cols: dict[str, object] = {
            "flow_id": _flow_id(row_hash, I[:, fk.D_FIRST]),
            "capture_point": _dict_array(np.zeros(m), (self.capture_point,)),
            "vni": vni,
            "vlan": (keys[:, 0] & np.uint64(0xFFFF)).astype(np.uint16),
            "ip_version": ipver,
            "src_ip": src_ip,
            "dst_ip": dst_ip,
            "src_port": np.where(init_a, a_port, b_port),
            "dst_port": np.where(init_a, b_port, a_port),
            "protocol": proto,
            "first_seen_ns": I[:, fk.D_FIRST],
            "last_seen_ns": I[:, fk.D_LAST],
        }
        cols.update(self._tenant_columns(vni, src_ip, dst_ip))
        cols.update(_direction_columns(I, F))
        for d, name in enumerate(DIRECTIONS):
            for j, flag in enumerate(FLAG_NAMES):
                cols[f"{name}_{flag}_packets"] = I[:, d * fk.D_WIDTH + fk.D_FLAG0 + j]
        is_tcp = proto == 6
        syn_ts, synack_ts, hs_ts = I[:, fk.I_SYN_TS], I[:, fk.I_SYNACK_TS], I[:, fk.I_HSACK_TS]
        cols["conn_state"] = _dict_array(fk.conn_state_codes(I[:, fk.I_CONN], is_tcp), CONN_STATES, np.int8)
        cols["syn_synack_ms"] = pa.array(
            (synack_ts - syn_ts) / NS_PER_MS, pa.float64(), mask=~((syn_ts > 0) & (synack_ts > 0))
        )
        cols["handshake_rtt_ms"] = pa.array(
            (hs_ts - syn_ts) / NS_PER_MS, pa.float64(), mask=~((syn_ts > 0) & (hs_ts > 0))
        )
        cols["src2dst_retransmissions"] = I[:, fk.I_RETX_S2D]
        cols["dst2src_retransmissions"] = I[:, fk.I_RETX_D2S]
        cols["retransmissions"] = I[:, fk.I_RETX_S2D] + I[:, fk.I_RETX_D2S]
        cols["fast_retransmissions"] = I[:, fk.I_FAST_RETX]
        cols["dup_acks"] = I[:, fk.I_DUPACK]
        cols["out_of_order"] = I[:, fk.I_OOO]
        cols["lost_segments"] = I[:, fk.I_LOST]
        cols["zero_windows"] = I[:, fk.I_ZEROWIN]
        cols["fragments"] = I[:, fk.I_FRAGS]
        cols["end_reason"] = _dict_array(I[:, fk.I_END], END_REASONS, np.int8)
        arrays = []
        for fld in FLOWS:
            v = cols[fld.name]
            if isinstance(v, pa.Array):
                arrays.append(v)
            elif fld.type == pa.binary(16):
                arrays.append(ip16_array(v))
            else:
                arrays.append(pa.array(v, type=fld.type))
        return pa.Table.from_arrays(arrays, schema=FLOWS)

    def _tenant_columns(self, vni: np.ndarray, src_ip: np.ndarray, dst_ip: np.ndarray) -> dict[str, pa.Array]:
        m = len(vni)
        if self.labeler is None:
            ext = _dict_array(np.zeros(m), ("external",))
            return {c: ext for c in ("tenant", "vm", "src_tenant", "src_vm", "dst_tenant", "dst_vm")}
        st, sv = self.labeler(vni, src_ip)
        dt, dv = self.labeler(vni, dst_ip)
        src_inside = pc.not_equal(st.cast(pa.string()), "external").to_numpy(zero_copy_only=False)
        tenant = np.where(
            src_inside,
            st.cast(pa.string()).to_numpy(zero_copy_only=False),
            dt.cast(pa.string()).to_numpy(zero_copy_only=False),
        )
        vm = np.where(
            src_inside,
            sv.cast(pa.string()).to_numpy(zero_copy_only=False),
            dv.cast(pa.string()).to_numpy(zero_copy_only=False),
        )
        return {
            "tenant": pa.array(tenant, pa.string()).dictionary_encode(),
            "vm": pa.array(vm, pa.string()).dictionary_encode(),
            "src_tenant": st,
            "src_vm": sv,
            "dst_tenant": dt,
            "dst_vm": dv,
        }


def assemble_stream(
    capture_point: str,
    chunks: Iterable[pa.Table],
    config: FlowConfig | None = None,
    labeler: TenantLabeler | None = None,
    on_tcp_events: Callable[[pa.Table], None] | None = None,
    hops: HopDuplicates | None = None,
) -> Iterator[pa.Table]:
    """Flows of one capture point from its packet chunks (time-ordered), finished flows first; a packet the point
    saw again after a router hop counts once (``hops`` counts those left out).

    ``on_tcp_events`` receives each chunk's non-empty ``tcp_events`` rows (see
    :meth:`FlowAssembler.last_tcp_events`) before that chunk's flows are yielded."""
    asm = FlowAssembler(capture_point, config, labeler)
    hops = hops if hops is not None else HopDuplicates()
    for chunk in chunks:
        out = asm.push(hops.filter(chunk))
        if on_tcp_events is not None:
            events = asm.last_tcp_events()
            if events.num_rows:
                on_tcp_events(events)
        if out.num_rows:
            yield out
    out = asm.finish()
    if out.num_rows:
        yield out


def flows_from_packets(
    packets: pa.Table, config: FlowConfig | None = None, labeler: TenantLabeler | None = None
) -> pa.Table:
    """Pure form of the flows stage: a whole packets table → its flows (per capture point)."""
    check_columns(packets, PACKETS, "packets")
    if packets.num_rows == 0:
        return FLOWS.empty_table()
    cp = packets.column("capture_point").combine_chunks()
    points = cp.dictionary.to_pylist() if isinstance(cp, pa.DictionaryArray) else sorted(set(cp.to_pylist()))
    out = []
    for point in points:
        mask = pc.equal(cp.cast(pa.string()) if isinstance(cp, pa.DictionaryArray) else cp, point)
        part = packets.filter(mask)
        if part.num_rows:
            out.extend(assemble_stream(point, [part], config, labeler))
    if not out:
        return FLOWS.empty_table()
    return pa.concat_tables(out, promote_options="permissive").combine_chunks()
