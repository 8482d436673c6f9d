"""The fault-window catalogue: scope types, key and feature columns (meaning and unit), the symptoms' monotonic
directions, and the input columns and connection states the builder reads. ``docs/features-faults.md`` documents
every column and rule."""

from __future__ import annotations

SCOPE_TYPES = ("capture_point", "host", "host_pair", "vm")
CAPTURE_POINT, HOST, HOST_PAIR, VM = range(4)
"""Scope type codes: indices into :data:`SCOPE_TYPES`."""
KEY_COLUMNS = ("scope_type", "scope", "window_start_ns", "window_s", "capture_points")

FAULT_FEATURES: dict[str, str] = {
    "packets": "packets in the window; outside capture_point rows, one seen at k points counts k times (count)",
    "bytes": "wire length of those packets' frames (bytes)",
    "packets_per_s": "packets / window_s (packets/s)",
    "tcp_packets": "TCP packets (count)",
    "tcp_data_packets": "TCP packets carrying payload (count)",
    "retransmissions": "packets flagged tcp.analysis.retransmission, incl. fast, spurious and SYN ones (count)",
    "retransmission_rate": "retransmitted packets with payload / tcp_data_packets; 0 without data (ratio)",
    "retransmitting_flows": "TCP connections (either direction, any capture point) with a retransmitted packet "
    "carrying payload in the window; context for the minimum evidence of loss, not a model input (count)",
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
    "silent_service_attempts": "most connections the scope began in the last 30 s (this window included) to one "
    "service (server address and port) that answered none of them: a client retrying a dead or black-holed server; "
    "carried to the scope's windows up to 30 s after the latest attempt (count)",
    "reset_connections": "of those connections, established and then reset (conn_state RSTO or RSTR): a server or "
    "middlebox tearing down live connections, unlike a scan's refused SYNs (count)",
    "reset_connection_rate": "reset_connections / connections; 0 without connections (ratio)",
    "udp_unanswered": "UDP flows starting in the window without a reply, to a server (address at a capture point) "
    "that answered other UDP flows in the window: requests or replies lost on the way to or from a live service; "
    "a flood to a silent target does not count (count)",
    "udp_unanswered_rate": "udp_unanswered / the UDP flows to servers that answered some; 0 without (ratio)",
    "icmp_unreachable": "ICMP destination unreachable from a router refusing the path: ICMPv4 type 3 net unreachable, "
    "net/host prohibited or administratively prohibited (codes 0, 9, 10, 13), ICMPv6 type 1 no route, administratively "
    "prohibited or reject route (codes 0, 1, 6); a host's port or host unreachable, what a scan of empty or closed "
    "addresses draws, is not counted (count)",
    "handshakes": "connections starting in the window with a measured handshake RTT, neither SYN nor SYN/ACK sent "
    "twice (Karn's rule: a retried handshake times the retry, not the path) (count)",
    "retried_handshake_rate": "of the connections starting in the window whose handshake completed, the share that "
    "completed only after a SYN or SYN/ACK was sent again (a lost handshake segment); 0 without handshakes (ratio)",
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

FAULT_MONOTONIC: dict[str, int] = {
    **{name: 1 for name in (
        "retransmissions", "retransmission_rate", "fast_retransmissions", "dup_acks", "dup_ack_rate", "out_of_order",
        "lost_segments", "zero_windows", "rst_packets", "rst_rate", "syn_unanswered", "handshake_failures",
        "handshake_failure_rate", "retried_handshake_rate", "reset_connections", "reset_connection_rate",
        "udp_unanswered", "udp_unanswered_rate", "icmp_unreachable",
        "handshake_rtt_ratio", "handshake_rtt_path_ratio", "burstiness",
        "matched_loss", "matched_loss_rate", "hop_delay_ratio", "hop_delay_hop_ratio",
    )},
    "packets_ratio": -1,
}  # fmt: skip
"""Symptoms: a window never looks healthier for having more of them (or, for ``packets_ratio``, less traffic than
usual). Given to the supervised detector as monotonic constraints, so a trace far worse than anything simulated
still scores as a fault."""

SILENT_SPAN_S = 30.0
"""How far back a silent service's unanswered connection attempts are counted: a client's retries of one dead
server are seconds apart, too sparse for one short window."""


FAILED_STATES = ("S0", "REJ", "RSTOS0", "SH")
RESET_STATES = ("RSTO", "RSTR")
PACKET_COLUMNS = ("ts_ns", "capture_point", "frame_len", "vni", "src_ip", "dst_ip", "src_port", "dst_port", "proto",
                  "payload_len", "tcp_flags", "icmp_type", "icmp_code", "pkt_hash")  # fmt: skip
PATH_REFUSALS_V4 = (0, 9, 10, 13)
"""ICMPv4 destination-unreachable codes a router sends when a route or a filter refuses the path."""
PATH_REFUSALS_V6 = (0, 1, 6)
"""ICMPv6 destination-unreachable codes of the same: no route, administratively prohibited, reject route."""
EVENT_COLUMNS = ("ts_ns", "capture_point", "vni", "src_ip", "dst_ip", "payload_len", "analysis")
FLOW_COLUMNS = ("capture_point", "vni", "src_ip", "dst_ip", "protocol", "first_seen_ns", "conn_state",
                "handshake_rtt_ms", "src2dst_syn_packets", "dst2src_syn_packets", "dst2src_packets")  # fmt: skip
PORT_COLUMNS = ("src_port", "dst_port")
"""Read from ``tcp_events`` and flows too: to give rows seen outside an overlay their VNI."""
