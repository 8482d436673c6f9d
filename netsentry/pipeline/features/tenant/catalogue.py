"""Tenant-window catalogue: what each feature means, which are the detector's inputs, and the thresholds they use.

Rendered in ``docs/features.md``; the computation is :func:`netsentry.pipeline.features.tenant.windows.tenant_windows`.
"""

from __future__ import annotations

from netsentry.pipeline.core.units import NS_PER_S

FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")
"""Zeek states of a TCP connection whose handshake never completed."""
ICMP_PROTOCOLS = (1, 58)
"""ICMP and ICMPv6: one service each, whatever echo identifier the flow key carries."""
SENSITIVE_PORTS = (21, 22, 23, 3389, 5900)
"""Remote-login services (FTP, SSH, Telnet, RDP, VNC): a short session there is a failed login. File sharing and RPC
(135, 139, 445) are left out: Windows hosts open short connections to them all day (directory refreshes, share
browsing), and databases too: app servers open many short database connections every second."""
DNS_PORT = 53
DNS_LARGE_REQUEST_B = 180
"""A DNS request packet this big carries a name of ~100+ characters: tunnelled data, not a lookup (flows only)."""
DNS_LONG_NAME_CHARS = 100
"""A query name longer than this is tunnelled data: host names fit one label of <= 63 characters under a short
domain, while tunnels fill several labels to 57-63 characters each."""
DNS_TUNNEL_QTYPES = (5, 10, 15, 16, 255)
"""CNAME, NULL, MX, TXT, ANY: record types whose answers carry arbitrary data (iodine, dnscat2, dnstt use them)."""
DNS_PRIVATE_QTYPE = 65280
"""RFC 6895 private-use record types (65280-65534) start here; iodine's PRIVATE mode asks for 65399."""
BEACON_MIN_IATS = 4
"""Gaps between starts a (remote, port) needs before its regularity scores."""
BEACON_LAST_IATS = 8
"""The beacon score reads a service's last this many gaps."""
BEACON_MIN_PERIOD_S = 2.0
"""Faster repeats (geometric mean gap) are bursts, not beacons."""
BEACON_SD_SCALE = 0.5
"""sd(log gap) at which the beacon score reaches 0."""
HISTORY_CAP_S = 3600.0
"""``history_s`` stops counting here."""
IDLE_GAP_S = 2.0
"""A TCP connection whose packets are this many seconds apart on average is mostly idle (interactive sessions and
transfers exchange packets far more often)."""
MIN_OBSERVED_S = 1.0
"""Floor of a window's observed seconds: TCP's initial retransmission timeout (RFC 6298), the shortest span in which
an unanswered SYN is told from a pending one; the support rule (>= 3 connections) guards the thin windows."""
NEW_SERVICE_S = 300.0
"""A service (remote, port) an entity began using less than this long before a window is new to it: long enough to
cover a guessing run of a few minutes, short next to the hours a VM's steady peers last."""
SHORT_S = 30.0
SHORT_NS = int(SHORT_S * NS_PER_S)
"""Flows that end within :data:`SHORT_S` are guesses and probes, not sessions."""

KEY_COLUMNS = ("scope_type", "scope", "tenant", "vm", "ip", "capture_point", "window_start_ns", "window_s")
"""Columns that say which entity and window a row is; every other column is a feature (or a label)."""

TENANT_FEATURES: dict[str, str] = {
    "observed_s": f"seconds of the window covered by the capture, at least {MIN_OBSERVED_S:g} (s)",
    "history_s": "seconds this entity had been seen before the window started, capped at 3600 (s)",
    "active_flows": "flows of the entity overlapping the window, both directions (count)",
    "flows_out_per_min": "connections the entity initiated that started in the window (per minute)",
    "flows_in_per_min": "connections to the entity that started in the window (per minute)",
    "bytes_sent_per_s": "bytes the entity sent, all its flows, spread over each flow's duration (bytes/s)",
    "bytes_received_per_s": "bytes the entity received (bytes/s)",
    "packets_sent_per_s": "packets the entity sent (packets/s)",
    "packets_received_per_s": "packets the entity received (packets/s)",
    "upload_out_per_s": "bytes the entity sent on connections it initiated (uploads, not answers) (bytes/s)",
    "bytes_sent_share": "bytes sent / (bytes sent + received): 1 uploads only, 0 downloads only (ratio)",
    "remote_ips_out": "distinct addresses the entity connected to (count)",
    "remote_ips_in": "distinct addresses that connected to the entity (count)",
    "remote_24s_out": "distinct /24 networks (IPv6: /64) the entity connected to (count)",
    "service_ports_out": "distinct destination ports of the entity's outgoing flows (count)",
    "local_ports_in": "distinct local ports that received incoming flows (count)",
    "remote_ip_entropy_out": "Shannon entropy of the outgoing flows' remote addresses (bits)",
    "service_port_entropy_out": "Shannon entropy of the outgoing flows' destination ports (bits)",
    "remote_ip_entropy_in": "Shannon entropy of the incoming flows' remote addresses (bits)",
    "failed_ratio_out": "outgoing flows that failed — TCP handshakes that never completed "
    f"({'/'.join(FAILED_STATES)}), UDP and ICMP to a unicast address that drew no packet back — / outgoing flows "
    "(ratio)",
    "failed_ratio_in": "incoming flows that failed / incoming flows (ratio)",
    "failed_out_per_min": "outgoing flows that failed, any protocol (per minute)",
    "failed_in_per_min": "incoming flows that failed, any protocol (per minute)",
    "sensitive_share_out": "outgoing flows to remote-login ports "
    f"({', '.join(map(str, SENSITIVE_PORTS))}) / outgoing flows (ratio)",
    "sensitive_share_in": "incoming flows to those ports / incoming flows (ratio)",
    "sensitive_out_per_min": "outgoing flows to those ports that started in the window (per minute)",
    "sensitive_in_per_min": "incoming flows to those ports that started in the window (per minute)",
    "short_sensitive_out_per_min": f"of those outgoing flows, the ones that ended within {SHORT_S:g} s: guesses "
    "and probes, not sessions; a connection still open when the capture ended is a session of unknown length, "
    "not short (per minute)",
    "short_sensitive_in_per_min": f"of those incoming flows, the ones that ended within {SHORT_S:g} s (per minute)",
    "short_per_service_out_per_min": f"most outgoing flows to one (remote address, port), any port, that started "
    f"in the window, ended within {SHORT_S:g} s and carried application bytes both ways: repeated guesses at one "
    "service, which answers each (a refused connection, or one reset before any answer, is no guess) (per minute)",
    "short_per_service_in_per_min": "most incoming flows from one remote address to one local port that started in "
    f"the window, ended within {SHORT_S:g} s and carried application bytes both ways (per minute)",
    "wordless_per_service_in_per_min": "most incoming TCP connections from one remote address to one local port "
    "that started in the window, were answered (a handshake, a refusal) and carried no application byte either way: "
    "a flood from a real source, whose kernel resets each answered handshake; a load balancer's health check is at "
    "most 30 a minute (per minute)",
    "new_service_short_out_per_min": "most short two-way outgoing flows to one (remote, port) the entity began "
    f"using at most {NEW_SERVICE_S:g} s before the window, after it had been seen for a window: guessing at a new "
    "service, unlike an app's steady database connections (per minute; 0 until a window of history)",
    "new_service_short_in_per_min": "most short two-way incoming flows from one remote that began connecting to "
    f"that local port at most {NEW_SERVICE_S:g} s before the window (per minute; 0 until a window of history)",
    "max_remotes_per_remote_port_in": "most distinct addresses whose incoming flows come from one remote port: "
    "replies from thousands of reflectors' service port (53, 123, 389, ...) that the entity never asked for (count)",
    "flows_per_service_out": "outgoing flows / distinct (remote address, port) pairs: repeated connections (ratio)",
    "max_flows_per_service_out": "most outgoing flows to one (remote address, port) (count)",
    "max_flows_per_service_in": "most incoming flows from one remote address to one local port (count)",
    "max_ports_per_remote_out": "most distinct TCP/UDP ports probed on one remote address (a ping probes none): "
    "vertical scan (count)",
    "max_remotes_per_port_out": "most distinct addresses contacted on one port: horizontal scan (count)",
    "max_remotes_per_port_in": "most distinct addresses connecting to one local port: flood or fan-in (count)",
    "new_remote_share_out": "share of the remote addresses contacted that the entity had not talked to "
    "before the window started (ratio; 0 until the entity has a window of history)",
    "new_ports_out": "destination ports the entity had never used before the window (count; 0 until it has a "
    "window of history)",
    "new_remotes_out": "remote addresses the entity had never contacted before the window (count; 0 until a "
    "window of history)",
    "new_local_ports_in": "local ports that had never received a flow before the window (count; 0 until a window "
    "of history)",
    "new_remotes_in": "remote addresses that had never connected to the entity before (count; 0 until a window of "
    "history)",
    "beacon_score_out": "regularity of repeated connections to one (remote, port): 1 - min(1, sd(log "
    f"inter-start time) / {BEACON_SD_SCALE:g}) over its last {BEACON_LAST_IATS} gaps, needing at least "
    f"{BEACON_MIN_IATS} with a geometric-mean period >= {BEACON_MIN_PERIOD_S:g} s; Poisson arrivals score ~0, "
    "a timer with 10% jitter ~0.8; max over services (0..1)",
    "persistent_flows_out": "outgoing flows active in the window that have lasted at least a window so far (count)",
    "new_beacon_score_out": "beacon_score_out over the services (remote, port) the entity began using at most "
    f"{NEW_SERVICE_S:g} s before the window, after it had been seen for a window: a check-in that started lately, "
    "unlike the timers a host runs from boot (0..1; 0 until a window of history)",
    "solo_persistent_flows_out": "persistent outgoing flows to a remote address no other VM contacts: a pool's or "
    "C2's session; 0 without a tenant map (count)",
    "solo_persistent_bytes_per_s_out": "bytes per second of those solo persistent flows, both directions: a miner "
    "keeps its pool session busy, a poller's idle keep-alive is nearly silent (bytes/s)",
    "persistent_bytes_per_s_out": "bytes per second of those persistent flows, both directions (bytes/s)",
    "idle_persistent_flows_out": "of those persistent flows, established TCP ones (handshake completed) whose "
    f"packets are on average at least {IDLE_GAP_S:g} s apart: a connection held open for occasional messages, as "
    "a mining pool's job channel or a C2 session; SYNs retried to a silent host are no such connection (count)",
    "dns_queries_per_min": f"DNS queries the entity sent (the dns table's messages; a one-socket tunnel is one flow "
    f"but every query counts), or, without a dns table, outgoing flows to port {DNS_PORT} (per minute)",
    "dns_query_mean_bytes": "mean size of the entity's DNS request packets; long tunnelled names are big (bytes)",
    "dns_large_queries_per_min": f"queries the entity sent whose name is longer than {DNS_LONG_NAME_CHARS} "
    f"characters (without a dns table: DNS flows whose request packets average more than {DNS_LARGE_REQUEST_B} "
    "bytes) (per minute)",
    "dns_large_originated_per_min": "long-name queries the entity sent beyond the long-name ones it received: a "
    "resolver forwarding its clients' tunnelled names relays them, the tunnelling VM originates them (per minute)",
    "dns_large_terminated_per_min": "long-name queries the entity received beyond the long-name ones it sent: a "
    "resolver passes its clients' tunnelled names on, a tunnel's server end answers them itself (per minute)",
    "dns_name_len_mean": "mean length of the names the entity queried, estimated from the packet length where the "
    "snap length cut the name (characters)",
    "dns_name_len_max": "longest name the entity queried (characters)",
    "dns_label_entropy_mean": "mean Shannon entropy of the queried names' characters: encoded data ~4-5, host names "
    "~3 (bits per character)",
    "dns_tunnel_type_share": "queries for record types that carry data (CNAME, NULL, MX, TXT, ANY, private-use >= "
    f"{DNS_PRIVATE_QTYPE}) / queries whose type was captured, vs address lookups (ratio)",
    "dns_nxdomain_share": "answers to the entity with response code NXDOMAIN / answers to it (ratio)",
    "dns_top_domain_per_min": "queries under the registered domain (last two labels; names the snap length cut "
    "count as one) the entity queried most (per minute)",
    "dns_top_domain_names_per_min": "distinct names queried under that domain: a tunnel asks ever-new names under "
    "one domain (per minute)",
    "mining_messages_out_per_min": "crypto-mining protocol calls (Stratum, CryptoNote, Ethereum stratum: the "
    "stratum table) on connections the entity opened, either direction; 0 without a stratum table (per minute)",
    "mining_pools_out": "distinct remote (address, port) the entity exchanged mining calls with (count)",
    "udp_share_out": "outgoing UDP flows / outgoing flows (ratio)",
    "icmp_share_out": "outgoing ICMP flows / outgoing flows (ratio)",
    "mean_flow_bytes_out": "mean bytes (both directions) of the outgoing flows that started in the window (bytes)",
    "mean_flow_duration_s_out": "mean duration of those flows (s)",
    "mean_packets_per_flow_out": "mean packets (both directions) of those flows (packets)",
    "flows_out_vs_baseline": "flows_out_per_min / the entity's median over its earlier windows (ratio; 1 when "
    "there is no earlier window)",
    "remote_ips_out_vs_baseline": "remote_ips_out / the entity's earlier median (ratio; 1 with no history)",
    "bytes_sent_vs_baseline": "bytes_sent_per_s / the entity's earlier median (ratio; 1 with no history)",
    "flows_in_vs_baseline": "flows_in_per_min / the entity's earlier median (ratio; 1 with no history)",
    "failed_out_vs_baseline": "failed_out_per_min / the entity's earlier median (ratio; 1 with no history)",
    "failed_in_vs_baseline": "failed_in_per_min / the entity's earlier median (ratio; 1 with no history)",
    "dns_queries_vs_baseline": "dns_queries_per_min / the entity's earlier median (ratio; 1 with no history)",
    "dns_bytes_vs_baseline": "dns_query_mean_bytes / the entity's earlier median (ratio; 1 with no history)",
    "max_flows_per_service_out_vs_baseline": "max_flows_per_service_out / the entity's earlier median (ratio; 1 "
    "with no history)",
    "max_flows_per_service_in_vs_baseline": "max_flows_per_service_in / the entity's earlier median (ratio; 1 "
    "with no history)",
    "sensitive_in_vs_baseline": "sensitive_in_per_min / the entity's earlier median (ratio; 1 with no history)",
    "sensitive_out_vs_baseline": "sensitive_out_per_min / the entity's earlier median (ratio; 1 with no history)",
    "upload_out_vs_baseline": "upload_out_per_s / the entity's earlier median (ratio; 1 with no history)",
}

DESCRIPTIVE_FEATURES = (
    "observed_s", "history_s", "active_flows", "flows_out_per_min", "flows_in_per_min", "bytes_sent_per_s",
    "bytes_received_per_s", "packets_sent_per_s", "packets_received_per_s", "bytes_sent_share", "remote_ips_out",
    "remote_ips_in", "remote_24s_out", "local_ports_in", "remote_ip_entropy_out", "remote_ip_entropy_in",
    "flows_per_service_out", "max_flows_per_service_in", "service_ports_out", "service_port_entropy_out",
    "max_flows_per_service_out", "mean_flow_bytes_out", "mean_packets_per_flow_out",
    "mean_flow_duration_s_out", "udp_share_out", "dns_queries_per_min", "dns_query_mean_bytes",
)  # fmt: skip
"""Volumes and mixes that say what role a VM has more than whether it misbehaves. Kept in the table (evidence,
baselines) but not given to the compromise detector: trained on a handful of attacked VMs, a model would learn
*which* VMs were attacked instead of what an attack looks like (measured on ``mixed``: ROC-AUC 0.90 → 0.94)."""

MODEL_FEATURES = tuple(c for c in TENANT_FEATURES if c not in DESCRIPTIVE_FEATURES)
"""The compromise detector's inputs."""

BASELINED: dict[str, str] = {
    "flows_out_vs_baseline": "flows_out_per_min",
    "remote_ips_out_vs_baseline": "remote_ips_out",
    "bytes_sent_vs_baseline": "bytes_sent_per_s",
    "flows_in_vs_baseline": "flows_in_per_min",
    "failed_out_vs_baseline": "failed_out_per_min",
    "failed_in_vs_baseline": "failed_in_per_min",
    "dns_queries_vs_baseline": "dns_queries_per_min",
    "dns_bytes_vs_baseline": "dns_query_mean_bytes",
    "max_flows_per_service_out_vs_baseline": "max_flows_per_service_out",
    "max_flows_per_service_in_vs_baseline": "max_flows_per_service_in",
    "sensitive_in_vs_baseline": "sensitive_in_per_min",
    "sensitive_out_vs_baseline": "sensitive_out_per_min",
    "upload_out_vs_baseline": "upload_out_per_s",
}
"""``*_vs_baseline`` feature → the feature it compares with the entity's earlier median."""
FLOW_COLUMNS = (
    "capture_point", "vni", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "src_tenant", "src_vm",
    "dst_tenant", "dst_vm", "first_seen_ns", "last_seen_ns", "src2dst_packets", "dst2src_packets", "src2dst_bytes",
    "dst2src_bytes", "src2dst_payload_bytes", "dst2src_payload_bytes", "conn_state", "end_reason",
)  # fmt: skip
"""The flows columns the tenant windows read."""
