"""Fault windows: per capture point, host, host pair and VM, per window (default 1 s), the symptoms of
transient network faults — retransmissions, dup-ACKs, RSTs, failed handshakes, handshake RTT, bursts,
traffic drops and, with several capture points, packets lost or delayed between them.

:class:`FaultWindowBuilder` takes chunks of the packets, ``tcp_events`` and flows tables in any
number and order (packets time-ordered within a capture point) and folds each chunk into partial sums
keyed by integer codes (scope, capture point, window), so memory grows with the output (plus one
small record per TCP handshake), not with the packets. ``docs/features-faults.md`` documents every column and rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netsentry.pipeline.capture.tenants import TenantMap
from netsentry.pipeline.core.errors import ConfigError, SchemaError
from netsentry.pipeline.core.schemas import ACK, RST, SYN, TCP_ANALYSIS_BITS, ip16_numpy
from netsentry.pipeline.core.units import NS_PER_MS, NS_PER_S
from netsentry.pipeline.features.faults.aggregates import DistinctKeys, Partials, hist_quantile
from netsentry.pipeline.features.faults.arrays import count_per_group, dict_codes, flow_hash, group_rows, loo_median
from netsentry.pipeline.features.faults.catalogue import (
    EVENT_COLUMNS,
    FAILED_STATES,
    FAULT_FEATURES,
    FLOW_COLUMNS,
    KEY_COLUMNS,
    PACKET_COLUMNS,
    PATH_REFUSALS_V4,
    PATH_REFUSALS_V6,
    PORT_COLUMNS,
    RESET_STATES,
    SCOPE_TYPES,
    SILENT_SPAN_S,
)
from netsentry.pipeline.features.faults.hops import HopMatcher
from netsentry.pipeline.features.faults.scopes import Scopes
from netsentry.pipeline.features.faults.vni import VniResolver


def _need(table: pa.Table, columns: Sequence[str], what: str) -> None:
    """A chunk without a column the builder reads is a contract breach, not a fault."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SchemaError(f"{what} table lacks column(s) {', '.join(missing)}; expected the {what} contract")


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
        window_ns = round(window_s * NS_PER_S)
        if window_ns % NS_PER_MS:
            raise ConfigError(f"fault window must be a whole number of milliseconds, got {window_s} s")
        if not match_horizon_s > 0:
            raise ConfigError(f"match horizon must be > 0 seconds, got {match_horizon_s}")
        self.window_s = float(window_s)
        self.window_ns = window_ns
        self.tmap = tmap or TenantMap.empty()
        self._scopes = Scopes(self.tmap)
        if capture_points:
            self._scopes.point_codes(pa.array(list(capture_points), pa.string()))
        self._hops = HopMatcher(window_ns, round(match_horizon_s * NS_PER_S), len(capture_points or ()))
        # with an overlay (VPCs with a VNI), packets seen outside it take the VNI of their copy inside it
        overlay = any(v.vni for v in self.tmap.config.vpcs)
        self._vnis = (
            VniResolver(window_ns, round(match_horizon_s * NS_PER_S), len(capture_points or ())) if overlay else None
        )
        self._carry: pa.Table | None = None
        self._packets = Partials(["scope", "point", "window"], maxes=("max_ms",))
        self._events = Partials(["scope", "window"])
        self._flows = Partials(["scope", "window"])
        self._udp = Partials(["scope", "window", "server"])
        self._services = Partials(["scope", "window", "service"])
        self._retx_flows = DistinctKeys(["scope", "window", "flow"])
        self._rtt: list[dict[str, np.ndarray]] = []  # one sample per handshake: ~80 bytes each

    # ------------------------------------------------------------------ inputs

    def add_packets(self, packets: pa.Table) -> None:
        """Fold a chunk of the packets table in. The rows of each capture point's last millisecond
        wait for the next chunk, so 1 ms buckets are never split."""
        _need(packets, PACKET_COLUMNS, "packets")
        t = packets.select(list(PACKET_COLUMNS))
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
        code = t.column("icmp_code").to_numpy()
        tcp = proto == 6
        values = {
            "bytes": t.column("frame_len").to_numpy(),
            "tcp_packets": tcp,
            "tcp_data_packets": tcp & (t.column("payload_len").to_numpy() > 0),
            "rst_packets": tcp & ((flags & RST) != 0),
            "syn_packets": tcp & ((flags & SYN) != 0) & ((flags & ACK) == 0),
            "icmp_unreachable": ((proto == 1) & (icmp == 3) & np.isin(code, PATH_REFUSALS_V4))
            | ((proto == 58) & (icmp == 1) & np.isin(code, PATH_REFUSALS_V6)),
        }
        # 1. per (conversation, point, ms)
        codes, (conv_of, point_of, ms_of) = group_rows(conv, pt, ts // NS_PER_MS)
        n_groups = len(conv_of)
        sums = {"packets": count_per_group(codes, n_groups)}
        sums |= {k: count_per_group(codes, n_groups, weights=v) for k, v in values.items()}
        # 2. per (scope, point, ms): each conversation counts for its capture point, hosts, pair and VMs
        ends = {k: v[conv_of] for k, v in conv_ends.items()}
        r, scope = self._scopes.memberships(self._scopes.point_scope[point_of], ends)
        codes, (scope_of, point_of, ms_of) = group_rows(scope, point_of[r], ms_of[r])
        n_groups = len(scope_of)
        sums = {k: count_per_group(codes, n_groups, weights=v[r]) for k, v in sums.items()}
        # 3. per (scope, point, window), with the busiest millisecond
        codes, (scope_of, point_of, window_of) = group_rows(scope_of, point_of, ms_of * NS_PER_MS // self.window_ns)
        n_groups = len(scope_of)
        cols = {"scope": scope_of, "point": point_of, "window": window_of}
        cols |= {k: count_per_group(codes, n_groups, weights=v) for k, v in sums.items()}
        busiest_ms = np.zeros(n_groups, np.int64)
        np.maximum.at(busiest_ms, codes, sums["packets"])
        cols["max_ms"] = busiest_ms
        self._packets.add(pd.DataFrame(cols))
        flow = flow_hash(vni, src, dst, t.column("src_port").to_numpy(), t.column("dst_port").to_numpy(), proto)
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
        _need(t, PORT_COLUMNS, what)
        self._flush_vnis()  # the packets are in: resolve those still waiting for later copies
        pt, _ = self._scopes.point_codes(t.column("capture_point"))
        p = np.full(t.num_rows, 6, np.uint8) if proto is None else proto
        return self._vnis.fill(t, pt, t.column(ts).to_numpy(), p)

    def add_tcp_events(self, events: pa.Table) -> None:
        """Fold a chunk of the ``tcp_events`` table in (any order; with an overlay, after the packets)."""
        _need(events, EVENT_COLUMNS, "tcp_events")
        if events.num_rows == 0:
            return
        events = self._fill_vni(events, "ts_ns", "tcp_events")
        _, _, r, s = self._row_scopes(events)
        codes, (scopes, windows) = group_rows(s, events.column("ts_ns").to_numpy()[r] // self.window_ns)
        n_groups = len(scopes)
        a = events.column("analysis").to_numpy().astype(np.int64)
        bit = TCP_ANALYSIS_BITS
        retx = (a & bit["retransmission"]) != 0
        data_retx = retx & (events.column("payload_len").to_numpy() > 0)
        hit = data_retx[r]
        self._retx_flows.add({"scope": scopes[codes[hit]], "window": windows[codes[hit]],
                              "flow": _connection_hash(events)[r[hit]]})  # fmt: skip
        cols = {
            "scope": scopes,
            "window": windows,
            "retransmissions": count_per_group(codes, n_groups, retx[r]),
            "data_retransmissions": count_per_group(codes, n_groups, hit),
            "fast_retransmissions": count_per_group(codes, n_groups, ((a & bit["fast_retransmission"]) != 0)[r]),
            "dup_acks": count_per_group(codes, n_groups, ((a & bit["duplicate_ack"]) != 0)[r]),
            "out_of_order": count_per_group(codes, n_groups, ((a & bit["out_of_order"]) != 0)[r]),
            "lost_segments": count_per_group(codes, n_groups, ((a & bit["lost_segment"]) != 0)[r]),
            "zero_windows": count_per_group(codes, n_groups, ((a & bit["zero_window"]) != 0)[r]),
        }
        self._events.add(pd.DataFrame(cols))

    def add_flows(self, flows: pa.Table) -> None:
        """Fold a chunk of the flows table in: its TCP connections and UDP exchanges, by the window of
        ``first_seen_ns``."""
        _need(flows, FLOW_COLUMNS, "flows")
        flows = self._fill_vni(flows, "first_seen_ns", "flows", flows.column("protocol").to_numpy())
        self._add_udp(flows.filter(pc.equal(flows.column("protocol"), 17)))
        flows = flows.filter(pc.equal(flows.column("protocol"), 6))
        if flows.num_rows == 0:
            return
        cp, ends, r, s = self._row_scopes(flows)
        w = flows.column("first_seen_ns").to_numpy() // self.window_ns
        codes, (scopes, windows) = group_rows(s, w[r])
        n_groups = len(scopes)
        st_codes, st_names = dict_codes(flows.column("conn_state"))
        failed = np.isin(np.array(st_names, dtype=object), FAILED_STATES)[st_codes] if st_names else st_codes > 0
        s0 = np.array([n == "S0" for n in st_names], bool)[st_codes] if st_names else failed
        reset = np.isin(np.array(st_names, dtype=object), RESET_STATES)[st_codes] if st_names else st_codes < 0
        rtt = flows.column("handshake_rtt_ms").to_numpy(zero_copy_only=False).astype(np.float64)
        # Karn's rule: a handshake whose SYN or SYN/ACK was sent again times a loss and its retry timer, not the path
        syns = [flows.column(c).to_numpy() for c in ("src2dst_syn_packets", "dst2src_syn_packets")]
        retried = (syns[0] > 1) | (syns[1] > 1)
        has_rtt = ~np.isnan(rtt) & ~retried
        cols = {
            "scope": scopes,
            "window": windows,
            "connections": count_per_group(codes, n_groups),
            "syn_attempts": count_per_group(codes, n_groups, (flows.column("src2dst_syn_packets").to_numpy() > 0)[r]),
            "syn_unanswered": count_per_group(codes, n_groups, s0[r]),
            "handshake_failures": count_per_group(codes, n_groups, failed[r]),
            "reset_connections": count_per_group(codes, n_groups, reset[r]),
            "handshakes": count_per_group(codes, n_groups, has_rtt[r]),
            "retried_handshakes": count_per_group(codes, n_groups, (~np.isnan(rtt) & retried)[r]),
        }
        self._flows.add(pd.DataFrame(cols))
        self._add_services(flows, cp, r, s, w, s0)
        keep = np.flatnonzero(has_rtt)
        if len(keep):
            sample = {k: v[keep] for k, v in ends.items()}
            sample.update(cp=cp[keep], window=w[keep], rtt=rtt[keep])
            self._rtt.append(sample)

    def _add_services(self, flows: pa.Table, cp: np.ndarray, r: np.ndarray, s: np.ndarray, w: np.ndarray,
                      s0: np.ndarray) -> None:  # fmt: skip
        """TCP connections per (scope, window, service: server address and port at a capture point): those whose
        SYN was never answered, and those the server answered (a handshake or a refusal)."""
        vni = flows.column("vni").to_numpy().astype(np.uint32)
        dst = ip16_numpy(flows.column("dst_ip"))
        names = flows.column_names
        dport = (
            flows.column("dst_port").to_numpy().astype(np.uint16)
            if "dst_port" in names
            else np.zeros(len(vni), np.uint16)
        )
        service = flow_hash(vni, dst, dst, dport, dport, cp.astype(np.uint8)).view(np.int64)
        codes, (scopes, windows, services) = group_rows(s, w[r], service[r])
        n_groups = len(scopes)
        self._services.add(pd.DataFrame({"scope": scopes, "window": windows, "service": services,
                                         "silent": count_per_group(codes, n_groups, s0[r]),
                                         "answered": count_per_group(codes, n_groups, ~s0[r])}))  # fmt: skip

    def _silent_services(self) -> pd.DataFrame:
        """Per (scope, window): the most connection attempts the scope began in the :data:`SILENT_SPAN_S` up to
        its latest attempt, to one service that answered none of them, while that latest attempt is at most the
        span old; windows without such a service have no row."""
        u = self._services.frame()
        if u.empty:
            return pd.DataFrame(columns=["scope", "window", "silent_service_attempts"])
        u = u.sort_values(["scope", "service", "window"], ignore_index=True)
        group, _ = group_rows(u["scope"].to_numpy(np.int64), u["service"].to_numpy(np.int64))
        window = u["window"].to_numpy(np.int64)
        span = max(1, round(SILENT_SPAN_S * NS_PER_S / self.window_ns))
        # (group, window) as one sortable key: a group's rows are contiguous and in window order
        key = group * (1 << 32) + (window - window.min())
        lo = np.searchsorted(key, key - span + 1, side="left")

        def trailing(values: np.ndarray) -> np.ndarray:
            c = np.concatenate([[0], np.cumsum(values)])
            return c[1:] - c[lo]

        silent, answered = trailing(u["silent"].to_numpy(np.int64)), trailing(u["answered"].to_numpy(np.int64))
        value = np.where(answered == 0, silent, 0)
        # each value holds until the service's next attempt or for the span, whichever comes first
        last = np.r_[group[1:] != group[:-1], True]
        until = np.minimum(np.where(last, np.iinfo(np.int64).max, np.r_[window[1:], 0]), window + span)
        keep = np.flatnonzero(value > 0)
        lengths = (until - window)[keep]
        rows = np.repeat(keep, lengths)
        offset = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        held = pd.DataFrame({"scope": u["scope"].to_numpy()[rows], "window": window[rows] + offset,
                             "silent_service_attempts": value[rows]})  # fmt: skip
        return held.groupby(["scope", "window"], as_index=False, sort=False)["silent_service_attempts"].max()

    def _add_udp(self, flows: pa.Table) -> None:
        """UDP flows per (scope, window, server at a capture point): how many, how many got a reply."""
        if flows.num_rows == 0:
            return
        cp, _, r, s = self._row_scopes(flows)
        vni = flows.column("vni").to_numpy().astype(np.uint32)
        dst = ip16_numpy(flows.column("dst_ip"))
        zero = np.zeros(len(vni), np.uint16)
        server = flow_hash(vni, dst, dst, zero, zero, cp.astype(np.uint8)).view(np.int64)
        w = flows.column("first_seen_ns").to_numpy() // self.window_ns
        codes, (scopes, windows, servers) = group_rows(s, w[r], server[r])
        answered = flows.column("dst2src_packets").to_numpy() > 0
        n_groups = len(scopes)
        flows_n, answered_n = count_per_group(codes, n_groups), count_per_group(codes, n_groups, answered[r])
        self._udp.add(pd.DataFrame({"scope": scopes, "window": windows, "server": servers, "udp_flows": flows_n,
                                    "udp_answered": answered_n}))  # fmt: skip

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
        retx_flows = self._retx_flows.count(["scope", "window"], "retransmitting_flows")
        for part in (self._events.frame(), retx_flows, self._flows.frame(), self._hops.counts.frame(),
                     self._udp_unanswered()):  # fmt: skip
            if len(part):
                df = df.join(part.set_index(["scope", "window"]), how="left")
        df = df.join(self._latency(), how="left").reset_index()
        silent = self._silent_services()
        if len(silent):
            silent = silent.astype({"scope": df["scope"].dtype, "window": df["window"].dtype})
            df = df.merge(silent, on=["scope", "window"], how="left")
        return self._features(df)

    def _latency(self) -> pd.DataFrame:
        """Handshake RTT and hop delay statistics per (scope, window)."""
        keys = ["scope", "window"]
        cols = {c: pd.Series([], index=pd.MultiIndex.from_arrays([[], []], names=keys), dtype=np.float64)
                for c in ("handshake_rtt_p50_ms", "handshake_rtt_p99_ms", "handshake_rtt_path_ratio")}  # fmt: skip
        if self._rtt:
            shakes = {k: np.concatenate([x[k] for x in self._rtt]) for k in self._rtt[0]}
            rtt = shakes["rtt"]
            # each handshake against the usual RTT of its path (the other handshakes between the same locations)
            path, _ = group_rows(np.minimum(shakes["ws"], shakes["wd"]), np.maximum(shakes["ws"], shakes["wd"]))
            usual = loo_median(path, rtt)
            ratio = np.divide(rtt, usual, out=np.full(len(usual), np.nan), where=usual > 0)
            r, scope = Scopes.memberships(shakes["cp"], shakes)
            per_scope = pd.DataFrame(
                {"scope": scope, "window": shakes["window"][r], "rtt": rtt[r], "ratio": ratio[r]}
            ).groupby(keys)
            cols["handshake_rtt_p50_ms"] = per_scope["rtt"].median()
            cols["handshake_rtt_p99_ms"] = per_scope["rtt"].quantile(0.99)
            cols["handshake_rtt_path_ratio"] = per_scope["ratio"].median()
        delays = self._hops.delays.frame()
        if len(delays):
            cols["hop_delay_p50_ms"] = hist_quantile(delays, keys, 0.5)
            per_hop = hist_quantile(delays, [*keys, "hop"], 0.5)
            cols["hop_delay_worst_p50_ms"] = per_hop.groupby(level=keys).max()
            cols["hop_delay_hop_ratio"] = _hop_ratio(per_hop, delays.groupby([*keys, "hop"])["n"].sum())
        return pd.concat(cols, axis=1)

    def _features(self, df: pd.DataFrame) -> pd.DataFrame:
        zero_fill = ["retransmissions", "data_retransmissions", "retransmitting_flows", "fast_retransmissions",
                     "dup_acks", "out_of_order", "lost_segments", "zero_windows", "connections", "syn_attempts",
                     "syn_unanswered", "handshake_failures", "reset_connections", "handshakes", "retried_handshakes",
                     "matched", "lost", "udp_requests", "udp_unanswered", "silent_service_attempts"]  # fmt: skip
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
        df["retried_handshake_rate"] = ratio(df["retried_handshakes"], df["handshakes"] + df["retried_handshakes"])
        df["reset_connection_rate"] = ratio(df["reset_connections"], df["connections"])
        df["udp_unanswered_rate"] = ratio(df["udp_unanswered"], df["udp_requests"])
        df["matched_packets"], df["matched_loss"] = df["matched"], df["lost"]
        df["matched_loss_rate"] = ratio(df["lost"], df["matched"])
        base = loo_median(scope, df["packets"].to_numpy(np.float64))
        df["packets_ratio"] = np.where(base > 0, df["packets"] / np.where(base > 0, base, 1), 1.0)
        df["handshake_rtt_path_ratio"] = df["handshake_rtt_path_ratio"].fillna(1.0)
        df["hop_delay_hop_ratio"] = df["hop_delay_hop_ratio"].fillna(1.0)
        for col, ratio_col in (("handshake_rtt_p50_ms", "handshake_rtt_ratio"), ("handshake_rtt_p99_ms", None),
                               ("hop_delay_p50_ms", "hop_delay_ratio"), ("hop_delay_worst_p50_ms", None)):  # fmt: skip
            v = df[col].to_numpy(np.float64)
            base = loo_median(scope, v)
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


def _connection_hash(events: pa.Table) -> np.ndarray:
    """Per tcp_events row, a hash of its TCP connection, the same for both directions (the smaller of the two
    directed hashes); without port columns, of its address pair."""
    vni = events.column("vni").to_numpy().astype(np.uint32)
    src, dst = ip16_numpy(events.column("src_ip")), ip16_numpy(events.column("dst_ip"))
    zero = np.zeros(events.num_rows, np.uint16)
    sport = events.column("src_port").to_numpy() if "src_port" in events.column_names else zero
    dport = events.column("dst_port").to_numpy() if "dst_port" in events.column_names else zero
    tcp = np.full(events.num_rows, 6, np.uint8)
    return np.minimum(flow_hash(vni, src, dst, sport, dport, tcp), flow_hash(vni, dst, src, dport, sport, tcp))


def _hop_ratio(per_hop: pd.Series, samples: pd.Series) -> pd.Series:
    """Per (scope, window): the sample-weighted median over hops of each hop's median delay / its usual median in
    the scope (the median over the scope's other windows with that hop); NaN when no hop has a usual delay."""
    keys = list(per_hop.index.names[:-1])
    f = per_hop.rename("p50").to_frame().join(samples.rename("n"), how="left").reset_index()
    hop_of_scope, _ = group_rows(f[keys[0]].to_numpy(np.int64), f["hop"].to_numpy(np.int64))
    usual = loo_median(hop_of_scope, f["p50"].to_numpy(np.float64))
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
